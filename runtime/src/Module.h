//===- Module.h - attnrt_module and attnrt_kernel internals -----*- C++ -*-===//
//
// The C API's opaque module and kernel, shared by attnrt.cpp (open, run) and
// Step.cpp (memory plans, which run kernels through the same path).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_MODULE_H
#define ATTNRT_SRC_MODULE_H

#include "Library.h"
#include "Manifest.h"
#include "ThreadPool.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace attnrt {

/// 64-byte aligned heap block (scratch, step arenas).
struct AlignedBlock {
  void *data = nullptr;
  size_t bytes = 0;
  AlignedBlock() = default;
  AlignedBlock(const AlignedBlock &) = delete;
  AlignedBlock &operator=(const AlignedBlock &) = delete;
  AlignedBlock(AlignedBlock &&other) noexcept
      : data(other.data), bytes(other.bytes) {
    other.data = nullptr;
    other.bytes = 0;
  }
  ~AlignedBlock();
  /// Makes the block hold at least `n` bytes (contents are not kept).
  void reserve(size_t n);
};

using RunFn = void (*)(void **args, int64_t phase, int64_t begin, int64_t end);
using WorkItemsFn = int64_t (*)(void **args, int64_t phase);

/// Scratch placed by the caller (a step's plan) instead of the module's
/// block: buffer i of the kernel's scratch list at data[i], bytes[i] long.
struct ScratchPlacement {
  std::vector<void *> data;
  std::vector<int64_t> bytes;
};

/// Validates `args` and runs every phase of `kernel` (attnrt_run after its
/// API checks). With `scratch`, the kernel's scratch buffers are those; each
/// must hold what the kernel needs for these argument sizes.
void runKernel(attnrt_module &module, const attnrt_kernel &kernel,
               const attnrt_tensor *args, int numArgs, unsigned threads,
               const ScratchPlacement *scratch);

/// The kernels of a host or CUDA module, in manifest order.
using KernelList = std::vector<std::unique_ptr<attnrt_kernel>>;

/// Kernel `index`, or ATTNRT_ERR_INVALID_ARGUMENT naming `fn` and the count.
const attnrt_kernel *kernelAt(const KernelList &kernels, int index,
                              const char *fn);

/// The kernel named `name`, or ATTNRT_ERR_NOT_FOUND listing those of `dir`.
const attnrt_kernel *findKernel(const KernelList &kernels,
                                const std::string &dir, const char *name);

} // namespace attnrt

struct attnrt_kernel {
  attnrt_module *module = nullptr;
  attnrt::KernelDesc desc;
  attnrt::RunFn run = nullptr;
  attnrt::WorkItemsFn workItems = nullptr;
  // NAME__tile_stats (attnc --count-tiles), NULL when not instrumented.
  int64_t *tileStats = nullptr;
  // CUDA kernels (attnrt_gpu_open; `module` is NULL): their module, the
  // CUfunction of gpu.entry, and the C view of desc.gpu with the image
  // loaded for the device.
  attnrt_gpu_module *gpuModule = nullptr;
  void *cuFunction = nullptr;
  attnrt_gpu_kernel_info gpuInfo{};
  std::string gpuImage, gpuImageArch;
  // Split-KV kernels: the CUfunction of gpu.merge.entry; the blocks of
  // gpu.entry the device runs at once (SMs x occupancy, at least 1), taken
  // at open; attnrt_gpu_set_num_splits (0: automatic), which the C API sets
  // through const handles, from any thread.
  void *cuMergeFunction = nullptr;
  int64_t gpuResidentBlocks = 1;
  mutable std::atomic<int> gpuFixedSplits{0};
};

struct attnrt_module {
  std::string dir;
  std::unique_ptr<attnrt::Library> library;
  attnrt::KernelList kernels;
  // Memory plans; StepOp::kernel indexes `kernels` (same order).
  std::vector<attnrt::StepDesc> steps;
  std::unique_ptr<attnrt::ThreadPool> pool;
  // Scratch reused across calls; a run that finds it taken (a concurrent
  // run on another thread) allocates its own.
  std::mutex scratchMutex;
  attnrt::AlignedBlock scratch;
};

#endif // ATTNRT_SRC_MODULE_H
