//===- GpuLaunch.cpp - grid and parameters of a CUDA launch ---------------===//

#include "GpuLaunch.h"
#include "Error.h"
#include "Validate.h"

#include <cstring>

using namespace attnrt;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

/// ceil(value * multiply / divide) of grid dimension `axis`.
uint32_t gridDim(const KernelDesc &kernel, int axis,
                 const std::map<std::string, int64_t> &symbols) {
  static const char *axes[3] = {"x", "y", "z"};
  static const int64_t limits[3] = {INT32_MAX, 65535, 65535};
  const GridDimDesc &dim = kernel.gpu.grid[axis];
  if (dim.symbol.empty())
    return static_cast<uint32_t>(dim.value); // checked by the parser
  // The parser checked that an argument binds the symbol; validation did.
  int64_t value = symbols.at(dim.symbol);
  unsigned __int128 n = static_cast<unsigned __int128>(value) *
                        static_cast<unsigned __int128>(dim.multiply);
  unsigned __int128 blocks = (n + dim.divide - 1) / dim.divide;
  if (blocks > static_cast<unsigned __int128>(limits[axis])) {
    std::string formula = dim.symbol;
    if (dim.multiply != 1)
      formula += " * " + str(dim.multiply);
    if (dim.divide != 1)
      formula = "ceil(" + formula + " / " + str(dim.divide) + ")";
    fail(ATTNRT_ERR_VALIDATION,
         "kernel '" + kernel.name + "': grid " + axes[axis] + " = " + formula +
             " is over CUDA's limit of " + str(limits[axis]) + " blocks for " +
             dim.symbol + " = " + str(value) +
             "; split the call into smaller ones");
  }
  return static_cast<uint32_t>(blocks);
}

} // namespace

GpuLaunch attnrt::planGpuLaunch(const KernelDesc &kernel,
                                const attnrt_tensor *args, int numArgs) {
  std::map<std::string, int64_t> symbols =
      validateDeviceArgs(kernel, args, numArgs);
  const GpuKernelDesc &gpu = kernel.gpu;
  GpuLaunch launch;
  for (int axis = 0; axis < 3; ++axis) {
    launch.dims.grid[axis] = gridDim(kernel, axis, symbols);
    launch.dims.block[axis] = static_cast<uint32_t>(gpu.block[axis]);
  }
  launch.dims.smem_bytes = static_cast<uint32_t>(gpu.smemBytes);
  for (const GpuParamDesc &p : gpu.params) {
    uint64_t slot = 0;
    if (p.argIndex >= 0) {
      slot = static_cast<uint64_t>(
          reinterpret_cast<uintptr_t>(args[p.argIndex].data));
    } else {
      int64_t value = symbols.at(p.symbol);
      if (value > INT32_MAX)
        fail(ATTNRT_ERR_VALIDATION,
             "kernel '" + kernel.name + "': symbol '" + p.symbol +
                 "' = " + str(value) +
                 " does not fit the kernel's i32 parameter (at most " +
                 str(INT32_MAX) + "); split the call into smaller ones");
      int32_t v = static_cast<int32_t>(value);
      std::memcpy(&slot, &v, sizeof v);
    }
    launch.paramSlots.push_back(slot);
  }
  return launch;
}
