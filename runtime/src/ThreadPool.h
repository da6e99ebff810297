//===- ThreadPool.h - persistent workers for kernel work items --*- C++ -*-===//
//
// Work items are many and uneven (causal rows, ragged sequences), so workers
// pull small chunks from a shared atomic counter instead of taking static
// slices. The calling thread participates, so `threads` = 1 runs inline.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_THREADPOOL_H
#define ATTNRT_SRC_THREADPOOL_H

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace attnrt {

class ThreadPool {
public:
  using Body = std::function<void(int64_t begin, int64_t end)>;

  /// Threads = total participants including the caller; 0 = hardware threads.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  /// Default number of participants.
  unsigned size() const { return defaultThreads; }

  /// Calls body on disjoint chunks covering [0, n) using up to `threads`
  /// participants (0 = size()); returns when all chunks are done. Calls from
  /// several threads are serialized.
  void parallelFor(int64_t n, unsigned threads, const Body &body);

  static unsigned hardwareThreads();

private:
  void workerLoop(unsigned index, uint64_t seen);
  void runChunks();
  void growTo(unsigned workers);

  unsigned defaultThreads;
  std::mutex callMutex; // one parallelFor at a time
  std::mutex mutex;     // guards the job fields below
  std::condition_variable wake;
  std::condition_variable done;
  std::vector<std::thread> workers;
  bool stopping = false;
  uint64_t generation = 0;
  unsigned participants = 0; // workers (excluding caller) in the current job
  unsigned pending = 0;      // participating workers not yet finished
  const Body *body = nullptr;
  int64_t total = 0;
  int64_t chunk = 1;
  std::atomic<int64_t> next{0};
};

} // namespace attnrt

#endif // ATTNRT_SRC_THREADPOOL_H
