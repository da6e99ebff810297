//===- Step.cpp - running memory plans (attnrt_step.h) --------------------===//
//
// A step object owns one arena per tier and a copy thread, the CPU stand-in
// for a copy stream: copy_start enqueues a memcpy, the thread runs them in
// FIFO order, copy_done blocks until that copy (and so every earlier one)
// has finished. Kernels run on the calling thread through runKernel, so
// they get attnrt_run's checks. The plan itself was checked at open time
// (StepManifest.cpp).
//
//===----------------------------------------------------------------------===//

#include "attnrt/attnrt_step.h"

#include "Error.h"
#include "Module.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

using namespace attnrt;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

struct Interval {
  Clock::time_point begin, end;
};

/// One long-lived worker running memcpys in the order they were enqueued.
class CopyThread {
public:
  CopyThread() : worker([this] { loop(); }) {}
  ~CopyThread() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    wake.notify_one();
    worker.join();
  }
  CopyThread(const CopyThread &) = delete;
  CopyThread &operator=(const CopyThread &) = delete;

  /// Enqueues a copy; returns its ticket for wait().
  uint64_t enqueue(void *dst, const void *src, size_t bytes) {
    uint64_t ticket;
    {
      std::lock_guard<std::mutex> lock(mutex);
      queue.push_back({dst, src, bytes});
      ticket = ++issued;
    }
    wake.notify_one();
    return ticket;
  }

  /// Blocks until the copy with `ticket` (and every earlier one) is done.
  void wait(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mutex);
    finished.wait(lock, [&] { return done >= ticket; });
  }

  /// Blocks until every enqueued copy is done.
  void drain() {
    std::unique_lock<std::mutex> lock(mutex);
    finished.wait(lock, [&] { return done == issued; });
  }

  /// When each copy since the last call ran (call after drain()).
  std::vector<Interval> takeIntervals() {
    std::lock_guard<std::mutex> lock(mutex);
    return std::move(intervals);
  }

private:
  struct Job {
    void *dst;
    const void *src;
    size_t bytes;
  };

  void loop() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty())
        return; // stopping with nothing left
      Job job = queue.front();
      queue.pop_front();
      lock.unlock();
      Interval when;
      when.begin = Clock::now();
      std::memcpy(job.dst, job.src, job.bytes);
      when.end = Clock::now();
      lock.lock();
      intervals.push_back(when);
      ++done;
      finished.notify_all();
    }
  }

  std::mutex mutex;
  std::condition_variable wake, finished;
  std::deque<Job> queue;
  std::vector<Interval> intervals;
  uint64_t issued = 0, done = 0;
  bool stopping = false;
  std::thread worker; // last: it starts in the constructor
};

/// Total length of the parts of `copies` that lie inside `kernels` (the
/// kernel intervals are disjoint: kernels run one after another).
double overlapSeconds(const std::vector<Interval> &copies,
                      const std::vector<Interval> &kernels) {
  Clock::duration total{};
  for (const Interval &c : copies)
    for (const Interval &k : kernels) {
      Clock::time_point b = std::max(c.begin, k.begin);
      Clock::time_point e = std::min(c.end, k.end);
      if (b < e)
        total += e - b;
    }
  return seconds(total);
}

} // namespace

struct attnrt_step {
  attnrt_module *module = nullptr;
  const StepDesc *desc = nullptr;
  std::vector<AlignedBlock> arenas; // one per tier
  std::vector<attnrt_step_buffer_info> buffers;
  std::mutex runMutex; // one run at a time
  mutable std::mutex statsMutex;
  attnrt_step_run_stats stats{};
  CopyThread copies;

  char *at(const StepRange &r) const {
    return static_cast<char *>(arenas[r.tier].data) + r.offset;
  }
  void run(unsigned threads);
};

void attnrt_step::run(unsigned threads) {
  Clock::time_point start = Clock::now();
  attnrt_step_run_stats s{};
  std::vector<uint64_t> tickets(desc->numCopies, 0);
  std::vector<Interval> kernels;
  std::vector<attnrt_tensor> tensors;
  ScratchPlacement scratch;
  try {
    for (const StepOp &op : desc->program) {
      switch (op.kind) {
      case StepOp::CopyStart:
        tickets[op.copy] = copies.enqueue(at(op.to), at(op.from),
                                          static_cast<size_t>(op.from.bytes));
        ++s.copies;
        s.bytes_copied += op.from.bytes;
        break;
      case StepOp::CopyDone: {
        Clock::time_point t = Clock::now();
        copies.wait(tickets[op.copy]);
        s.exposed_seconds += seconds(Clock::now() - t);
        break;
      }
      case StepOp::Kernel: {
        const attnrt_kernel &kernel = *module->kernels[op.kernel];
        tensors.clear();
        for (size_t i = 0; i < op.args.size(); ++i) {
          const StepArg &a = op.args[i];
          tensors.push_back({at(a.range), kernel.desc.args[i].dtype,
                             static_cast<int>(a.shape.size()), a.shape.data(),
                             nullptr});
        }
        scratch.data.clear();
        scratch.bytes.clear();
        for (const StepRange &r : op.scratch) {
          scratch.data.push_back(at(r));
          scratch.bytes.push_back(r.bytes);
        }
        Interval when;
        when.begin = Clock::now();
        try {
          runKernel(*module, kernel, tensors.data(),
                    static_cast<int>(tensors.size()), threads,
                    op.scratch.empty() ? nullptr : &scratch);
        } catch (const RuntimeError &e) {
          fail(e.status, "step '" + desc->name + "' program[" +
                             std::to_string(&op - desc->program.data()) +
                             "]: " + e.what());
        }
        when.end = Clock::now();
        kernels.push_back(when);
        s.kernel_seconds += seconds(when.end - when.begin);
        ++s.kernels;
        break;
      }
      }
    }
  } catch (...) {
    // The copy thread must not write into the arenas after we return.
    copies.drain();
    copies.takeIntervals();
    throw;
  }
  // The plan waits for every copy, so none is left running.
  copies.drain();
  std::vector<Interval> copied = copies.takeIntervals();
  for (const Interval &c : copied)
    s.copy_seconds += seconds(c.end - c.begin);
  s.overlap_seconds = overlapSeconds(copied, kernels);
  s.total_seconds = seconds(Clock::now() - start);
  std::lock_guard<std::mutex> lock(statsMutex);
  s.runs = stats.runs + 1;
  stats = s;
}

namespace {

void requireStep(const attnrt_step *step, const char *fn) {
  if (!step)
    fail(ATTNRT_ERR_INVALID_ARGUMENT,
         std::string(fn) + ": step is NULL; open one with attnrt_step_open");
}

std::string stepNames(const attnrt_module &module) {
  std::string names;
  for (const StepDesc &s : module.steps)
    names += (names.empty() ? "'" : ", '") + s.name + "'";
  return names.empty() ? "none (its manifest has no \"steps\")" : names;
}

} // namespace

extern "C" int attnrt_num_steps(const attnrt_module *module) {
  return module ? static_cast<int>(module->steps.size()) : 0;
}

extern "C" const char *attnrt_step_name_at(const attnrt_module *module,
                                           int index) {
  const char *result = nullptr;
  guard([&] {
    if (!module)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_step_name_at: module is NULL");
    if (index < 0 || static_cast<size_t>(index) >= module->steps.size())
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_name_at: index " + std::to_string(index) +
               " is out of range; the module has " +
               std::to_string(module->steps.size()) + " steps");
    result = module->steps[index].name.c_str();
  });
  return result;
}

extern "C" attnrt_status attnrt_step_open(attnrt_module *module,
                                          const char *name, attnrt_step **out) {
  return guard([&] {
    if (!module || !name || !out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_open: module, name and out must be non-NULL");
    *out = nullptr;
    const StepDesc *desc = nullptr;
    for (const StepDesc &s : module->steps)
      if (s.name == name)
        desc = &s;
    if (!desc)
      fail(ATTNRT_ERR_NOT_FOUND, std::string("no step named '") + name +
                                     "' in " + module->dir +
                                     "; available: " + stepNames(*module));
    auto step = std::make_unique<attnrt_step>();
    step->module = module;
    step->desc = desc;
    for (const StepTier &t : desc->tiers) {
      AlignedBlock block;
      block.reserve(static_cast<size_t>(t.size));
      // Zero-filled, so a plan reading a buffer nobody wrote is
      // deterministic.
      std::memset(block.data, 0, block.bytes);
      step->arenas.push_back(std::move(block));
    }
    for (const StepBuffer &b : desc->buffers)
      step->buffers.push_back({b.name.c_str(), b.dir, b.dtype,
                               static_cast<int>(b.shape.size()), b.shape.data(),
                               b.range.tier, b.range.offset, b.range.bytes});
    *out = step.release();
  });
}

extern "C" void attnrt_step_close(attnrt_step *step) { delete step; }

extern "C" const char *attnrt_step_name(const attnrt_step *step) {
  return step ? step->desc->name.c_str() : nullptr;
}

extern "C" int attnrt_step_num_tiers(const attnrt_step *step) {
  return step ? static_cast<int>(step->desc->tiers.size()) : 0;
}

extern "C" attnrt_status attnrt_step_tier(const attnrt_step *step, int index,
                                          attnrt_step_tier_info *out) {
  return guard([&] {
    requireStep(step, "attnrt_step_tier");
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_step_tier: out is NULL");
    if (index < 0 || static_cast<size_t>(index) >= step->desc->tiers.size())
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_tier: index " + std::to_string(index) +
               " is out of range; step '" + step->desc->name + "' has " +
               std::to_string(step->desc->tiers.size()) + " tiers");
    const StepTier &t = step->desc->tiers[index];
    *out = {t.name.c_str(), t.capacity, t.size, t.device ? 1 : 0,
            step->arenas[index].data};
  });
}

extern "C" int attnrt_step_num_buffers(const attnrt_step *step) {
  return step ? static_cast<int>(step->buffers.size()) : 0;
}

extern "C" const attnrt_step_buffer_info *
attnrt_step_buffer(const attnrt_step *step, int index) {
  const attnrt_step_buffer_info *result = nullptr;
  guard([&] {
    requireStep(step, "attnrt_step_buffer");
    if (index < 0 || static_cast<size_t>(index) >= step->buffers.size())
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_buffer: index " + std::to_string(index) +
               " is out of range; step '" + step->desc->name + "' has " +
               std::to_string(step->buffers.size()) + " buffers");
    result = &step->buffers[index];
  });
  return result;
}

extern "C" attnrt_status attnrt_step_find_buffer(const attnrt_step *step,
                                                 const char *name, int *index) {
  return guard([&] {
    if (!step || !name || !index)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_find_buffer: step, name and index must be non-NULL");
    std::string names;
    for (size_t i = 0; i < step->buffers.size(); ++i) {
      if (std::strcmp(step->buffers[i].name, name) == 0) {
        *index = static_cast<int>(i);
        return;
      }
      names += (names.empty() ? "'" : ", '") +
               std::string(step->buffers[i].name) + "'";
    }
    fail(ATTNRT_ERR_NOT_FOUND,
         std::string("step '") + step->desc->name + "' has no buffer named '" +
             name + "'; its buffers: " + (names.empty() ? "none" : names));
  });
}

extern "C" void *attnrt_step_data(const attnrt_step *step, int index) {
  if (!step || index < 0 || static_cast<size_t>(index) >= step->buffers.size())
    return nullptr;
  return step->at(step->desc->buffers[index].range);
}

extern "C" attnrt_status attnrt_step_run(attnrt_step *step, int numThreads) {
  return guard([&] {
    requireStep(step, "attnrt_step_run");
    if (numThreads < 0)
      fail(ATTNRT_ERR_INVALID_ARGUMENT,
           "attnrt_step_run: num_threads is " + std::to_string(numThreads) +
               "; pass 0 (the module default) or a positive count");
    std::lock_guard<std::mutex> lock(step->runMutex);
    step->run(static_cast<unsigned>(numThreads));
  });
}

extern "C" attnrt_status attnrt_step_stats(const attnrt_step *step,
                                           attnrt_step_run_stats *out) {
  return guard([&] {
    requireStep(step, "attnrt_step_stats");
    if (!out)
      fail(ATTNRT_ERR_INVALID_ARGUMENT, "attnrt_step_stats: out is NULL");
    std::lock_guard<std::mutex> lock(step->statsMutex);
    *out = step->stats;
  });
}
