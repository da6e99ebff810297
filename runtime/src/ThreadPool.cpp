//===- ThreadPool.cpp - persistent workers for kernel work items ----------===//

#include "ThreadPool.h"

#include <algorithm>

using namespace attnrt;

unsigned ThreadPool::hardwareThreads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(unsigned threads)
    : defaultThreads(threads ? threads : hardwareThreads()) {
  growTo(defaultThreads - 1);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &t : workers)
    t.join();
}

void ThreadPool::growTo(unsigned count) {
  std::lock_guard<std::mutex> lock(mutex);
  while (workers.size() < count) {
    unsigned index = static_cast<unsigned>(workers.size());
    // A new worker must not mistake an already finished job for a new one.
    uint64_t seen = generation;
    workers.emplace_back([this, index, seen] { workerLoop(index, seen); });
  }
}

void ThreadPool::runChunks() {
  for (;;) {
    int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
    if (begin >= total)
      return;
    (*body)(begin, std::min(total, begin + chunk));
  }
}

void ThreadPool::workerLoop(unsigned index, uint64_t seen) {
  std::unique_lock<std::mutex> lock(mutex);
  for (;;) {
    wake.wait(lock, [&] { return stopping || generation != seen; });
    if (stopping)
      return;
    seen = generation;
    if (index >= participants)
      continue; // this job asked for fewer threads
    lock.unlock();
    runChunks();
    lock.lock();
    if (--pending == 0)
      done.notify_one();
  }
}

void ThreadPool::parallelFor(int64_t n, unsigned threads, const Body &fn) {
  if (n <= 0)
    return;
  if (threads == 0)
    threads = defaultThreads;
  threads = static_cast<unsigned>(
      std::min<int64_t>(static_cast<int64_t>(threads), n));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call(callMutex);
  growTo(threads - 1);
  {
    std::lock_guard<std::mutex> lock(mutex);
    body = &fn;
    total = n;
    // About 8 chunks per thread balances uneven items without contention.
    chunk = std::max<int64_t>(1, n / (int64_t(threads) * 8));
    next.store(0, std::memory_order_relaxed);
    participants = threads - 1;
    pending = participants;
    ++generation;
  }
  wake.notify_all();
  runChunks();
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return pending == 0; });
  body = nullptr;
}
