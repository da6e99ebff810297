//===- GpuLaunch.h - grid and parameters of a CUDA launch -------*- C++ -*-===//
//
// The launches attnrt_gpu_run makes for given tensors, computed on the host
// from the manifest alone (docs/gpu-artifacts.md), so they can be tested
// without a GPU: the main kernel's and, for split-KV kernels that run with
// more than one split, the merge's, with the scratch layout both share.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_GPULAUNCH_H
#define ATTNRT_SRC_GPULAUNCH_H

#include "Manifest.h"

#include <cstdint>
#include <vector>

namespace attnrt {

/// Alignment of each scratch buffer's offset in the scratch block (the
/// block itself comes from cuMemAlloc, or the caller, at least as aligned).
constexpr uint64_t kGpuScratchAlign = 256;

/// How a split-KV kernel's num_splits is chosen (docs/gpu-artifacts.md).
struct SplitPolicy {
  /// Blocks of gpu.entry the device runs at once: SMs x blocks per SM.
  int64_t residentBlocks = 1;
  /// attnrt_gpu_set_num_splits: 1 to max_splits, or 0 to choose per call.
  int fixed = 0;
};

struct GpuLaunch {
  /// Both launches; merge_grid is all 0 unless `merge`.
  attnrt_gpu_launch dims{};
  /// One 8-byte slot per gpu.params entry: a u64 device pointer, or an i32
  /// in the slot's first 4 bytes. cuLaunchKernel reads each parameter's
  /// size from the kernel, so kernelParams[i] = &paramSlots[i]. Scratch
  /// pointers are 0 until bindScratch.
  std::vector<uint64_t> paramSlots;
  /// The merge runs (num_splits > 1 and the main grid is not empty); its
  /// slots, as paramSlots for gpu.merge.params.
  bool merge = false;
  std::vector<uint64_t> mergeSlots;
  /// Byte offset of each scratch buffer in the scratch block (multiples of
  /// kGpuScratchAlign, back to back); empty when no scratch is used.
  std::vector<uint64_t> scratchOffsets;

  /// A grid dimension is 0: no block would run.
  bool empty() const {
    return dims.grid[0] == 0 || dims.grid[1] == 0 || dims.grid[2] == 0;
  }
  bool mergeEmpty() const {
    return !merge || dims.merge_grid[0] == 0 || dims.merge_grid[1] == 0 ||
           dims.merge_grid[2] == 0;
  }
  /// Points the {"scratch": NAME} parameters of both launches at the
  /// buffers of a scratch block at device address `base` (of at least
  /// dims.scratch_bytes bytes). Nothing to do when no scratch is used.
  void bindScratch(const GpuKernelDesc &gpu, uint64_t base);
};

/// Validates `args` (validateDeviceArgs), chooses num_splits for split-KV
/// kernels (`split`), then computes the grids (every dimension within
/// CUDA's limits), the parameters (symbol values must fit an i32) and the
/// scratch layout. Throws RuntimeError(ATTNRT_ERR_VALIDATION) naming the
/// kernel, the grid dimension or the symbol.
GpuLaunch planGpuLaunch(const KernelDesc &kernel, const attnrt_tensor *args,
                        int numArgs, const SplitPolicy &split);

} // namespace attnrt

#endif // ATTNRT_SRC_GPULAUNCH_H
