//===- GpuLaunch.h - grid and parameters of a CUDA launch -------*- C++ -*-===//
//
// The launch attnrt_gpu_run makes for given tensors, computed on the host
// from the manifest alone (docs/gpu-artifacts.md), so it can be tested
// without a GPU.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_GPULAUNCH_H
#define ATTNRT_SRC_GPULAUNCH_H

#include "Manifest.h"

#include <cstdint>
#include <vector>

namespace attnrt {

struct GpuLaunch {
  attnrt_gpu_launch dims{};
  /// One 8-byte slot per gpu.params entry: a u64 device pointer, or an i32
  /// in the slot's first 4 bytes. cuLaunchKernel reads each parameter's
  /// size from the kernel, so kernelParams[i] = &paramSlots[i].
  std::vector<uint64_t> paramSlots;

  /// A grid dimension is 0: no block would run.
  bool empty() const {
    return dims.grid[0] == 0 || dims.grid[1] == 0 || dims.grid[2] == 0;
  }
};

/// Validates `args` (validateDeviceArgs), then computes the grid (every
/// dimension within CUDA's limits) and the parameters (symbol values must
/// fit an i32). Throws RuntimeError(ATTNRT_ERR_VALIDATION) naming the
/// kernel, the grid dimension or the symbol.
GpuLaunch planGpuLaunch(const KernelDesc &kernel, const attnrt_tensor *args,
                        int numArgs);

} // namespace attnrt

#endif // ATTNRT_SRC_GPULAUNCH_H
