//===- GpuLaunch.cpp - grid and parameters of a CUDA launch ---------------===//

#include "GpuLaunch.h"
#include "Error.h"
#include "Validate.h"

#include <algorithm>
#include <cstring>

using namespace attnrt;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

/// ceil(value * multiply / divide) of grid dimension `axis` of `launch`;
/// `grid` names it in messages ("grid", "merge grid").
uint32_t gridDim(const KernelDesc &kernel, const GpuLaunchDesc &launch,
                 const char *grid, int axis,
                 const std::map<std::string, int64_t> &symbols) {
  static const char *axes[3] = {"x", "y", "z"};
  static const int64_t limits[3] = {INT32_MAX, 65535, 65535};
  const GridDimDesc &dim = launch.grid[axis];
  if (dim.symbol.empty())
    return static_cast<uint32_t>(dim.value); // checked by the parser
  // The parser checked that an argument (or the runtime) binds the symbol.
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
         "kernel '" + kernel.name + "': " + grid + " " + axes[axis] + " = " +
             formula + " is over CUDA's limit of " + str(limits[axis]) +
             " blocks for " + dim.symbol + " = " + str(value) +
             "; split the call into smaller ones");
  }
  return static_cast<uint32_t>(blocks);
}

/// The grid, block, shared memory and parameter slots of one launch.
void planOne(const KernelDesc &kernel, const GpuLaunchDesc &launch,
             const char *grid, const attnrt_tensor *args,
             const std::map<std::string, int64_t> &symbols, uint32_t gridOut[3],
             uint32_t blockOut[3], uint32_t &smemOut,
             std::vector<uint64_t> &slots) {
  for (int axis = 0; axis < 3; ++axis) {
    gridOut[axis] = gridDim(kernel, launch, grid, axis, symbols);
    blockOut[axis] = static_cast<uint32_t>(launch.block[axis]);
  }
  smemOut = static_cast<uint32_t>(launch.smemBytes);
  for (const GpuParamDesc &p : launch.params) {
    uint64_t slot = 0; // scratch: bound later (GpuLaunch::bindScratch)
    if (p.argIndex >= 0) {
      slot = static_cast<uint64_t>(
          reinterpret_cast<uintptr_t>(args[p.argIndex].data));
    } else if (p.scratchIndex < 0) {
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
    slots.push_back(slot);
  }
}

/// Bytes of scratch buffer `s` for these symbols.
uint64_t scratchBytes(const KernelDesc &kernel, const ArgDesc &s,
                      const std::map<std::string, int64_t> &symbols) {
  uint64_t bytes = static_cast<uint64_t>(attnrt_dtype_size(s.dtype));
  for (const DimDesc &d : s.shape) {
    // The parser checked that every symbol is bound.
    int64_t size =
        d.symbol.empty() ? d.value : symbols.at(d.symbolName) + d.value;
    if (size < 0 ||
        __builtin_mul_overflow(bytes, static_cast<uint64_t>(size), &bytes) ||
        bytes > (uint64_t(1) << 48))
      fail(ATTNRT_ERR_VALIDATION,
           "kernel '" + kernel.name + "': scratch buffer '" + s.name +
               "' would need more than 2^48 bytes for these argument "
               "sizes; pass smaller tensors");
  }
  return bytes;
}

/// The split-KV choice (docs/gpu-artifacts.md): a batch that fills the
/// device with blocks runs unsplit; a small one is spread over one wave.
int chooseSplits(const KernelDesc &kernel, const SplitPolicy &split,
                 const std::map<std::string, int64_t> &symbols) {
  const GpuKernelDesc &gpu = kernel.gpu;
  if (split.fixed > 0)
    return split.fixed;
  unsigned __int128 blocks = 1;
  for (int axis = 0; axis < 3; ++axis)
    if (gpu.grid[axis].symbol != gpu.splitSymbol)
      blocks *= gridDim(kernel, gpu, "grid", axis, symbols);
  if (blocks == 0) // nothing to launch
    return 1;
  unsigned __int128 fit = static_cast<unsigned __int128>(
                              std::max<int64_t>(split.residentBlocks, 1)) /
                          blocks;
  return static_cast<int>(std::clamp<unsigned __int128>(
      fit, 1, static_cast<unsigned __int128>(gpu.maxSplits)));
}

} // namespace

void GpuLaunch::bindScratch(const GpuKernelDesc &gpu, uint64_t base) {
  if (scratchOffsets.empty())
    return;
  for (size_t i = 0; i < gpu.params.size(); ++i)
    if (gpu.params[i].scratchIndex >= 0)
      paramSlots[i] = base + scratchOffsets[gpu.params[i].scratchIndex];
  for (size_t i = 0; merge && i < gpu.merge.params.size(); ++i)
    if (gpu.merge.params[i].scratchIndex >= 0)
      mergeSlots[i] = base + scratchOffsets[gpu.merge.params[i].scratchIndex];
}

GpuLaunch attnrt::planGpuLaunch(const KernelDesc &kernel,
                                const attnrt_tensor *args, int numArgs,
                                const SplitPolicy &split) {
  std::map<std::string, int64_t> symbols =
      validateDeviceArgs(kernel, args, numArgs);
  const GpuKernelDesc &gpu = kernel.gpu;
  GpuLaunch launch;
  launch.dims.num_splits = 1;
  if (gpu.splitKv()) {
    int splits = chooseSplits(kernel, split, symbols);
    symbols[gpu.splitSymbol] = splits;
    launch.dims.num_splits = static_cast<uint32_t>(splits);
  }
  planOne(kernel, gpu, "grid", args, symbols, launch.dims.grid,
          launch.dims.block, launch.dims.smem_bytes, launch.paramSlots);
  // With one split the main kernel writes the outputs itself.
  if (launch.dims.num_splits < 2 || launch.empty())
    return launch;
  uint64_t offset = 0;
  for (const ArgDesc &s : kernel.scratch) {
    launch.scratchOffsets.push_back(offset);
    uint64_t bytes = scratchBytes(kernel, s, symbols);
    offset +=
        (bytes + kGpuScratchAlign - 1) / kGpuScratchAlign * kGpuScratchAlign;
  }
  launch.dims.scratch_bytes = offset;
  launch.merge = true;
  planOne(kernel, gpu.merge, "merge grid", args, symbols,
          launch.dims.merge_grid, launch.dims.merge_block,
          launch.dims.merge_smem_bytes, launch.mergeSlots);
  return launch;
}
