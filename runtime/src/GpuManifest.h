//===- GpuManifest.h - the gpu object of CUDA manifests ---------*- C++ -*-===//
//
// What attnrt reads of a "target": "cuda" manifest beyond the host fields
// (docs/gpu-artifacts.md): the top-level "archs" and each kernel's "gpu"
// object (entry, PTX, cubins, launch geometry, parameters, and for split-KV
// kernels the split symbol and the merge launch). Everything is checked
// here, without CUDA, so a malformed artifact fails at open on any machine.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_GPUMANIFEST_H
#define ATTNRT_SRC_GPUMANIFEST_H

#include "attnrt/attnrt_cuda.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace attnrt {

/// One gpu.grid entry: `value` (symbol empty) or
/// ceil(value(symbol) * multiply / divide).
struct GridDimDesc {
  std::string symbol;
  int64_t value = 1;
  int64_t multiply = 1;
  int64_t divide = 1;
};

/// One gpu.params entry: the device pointer of argument `argIndex` or of
/// scratch buffer `scratchIndex` (u64), or the value of `symbol` (i32).
struct GpuParamDesc {
  int argIndex = -1;     // >= 0: an argument
  int scratchIndex = -1; // >= 0: a scratch buffer
  std::string symbol;    // otherwise
  bool isPointer() const { return argIndex >= 0 || scratchIndex >= 0; }
};

/// One kernel launch: the gpu object itself (the main kernel) or gpu.merge.
struct GpuLaunchDesc {
  std::string entry;
  int64_t block[3] = {1, 1, 1};
  GridDimDesc grid[3];
  int64_t smemBytes = 0;
  std::vector<GpuParamDesc> params;
  // gpu.ptxas (or gpu.merge.ptxas): arch -> report of the cubin.
  std::map<std::string, attnrt_gpu_ptxas_info> ptxas;
};

/// The gpu object; its GpuLaunchDesc part is the main launch.
struct GpuKernelDesc : GpuLaunchDesc {
  std::string ptx;
  std::string ptxArch;
  std::map<std::string, std::string> cubins; // arch -> file
  // gpu.tile (informative), 0 when absent.
  int64_t tileBlockQ = 0;
  int64_t tileBlockKv = 0;
  // Split-KV (gpu.split_kv): the symbol the runtime binds to num_splits,
  // its upper bound, and the merge launch. maxSplits 0: not split-KV.
  std::string splitSymbol;
  int maxSplits = 0;
  GpuLaunchDesc merge;

  bool splitKv() const { return maxSplits > 0; }
};

/// 90 for "sm_90", 100 for "sm_100"; -1 unless the text is sm_ followed by
/// digits only.
int archNumber(const std::string &arch);

/// "sm_XY" for a compute capability X.Y (sm_90, sm_100, sm_120).
std::string archName(int major, int minor);

/// Parses the top-level "archs": a non-empty, strictly ascending list of
/// sm_XY with XY >= 80. `where` names the manifest.
std::vector<std::string> parseArchs(const nlohmann::json &root,
                                    const std::string &where);

/// Parses a kernel's "gpu" object. `where` names the kernel; `argNames` are
/// its arguments in order, `scratchNames` its scratch buffers and `symbols`
/// the symbols the arguments' shapes bind. Throws
/// RuntimeError(ATTNRT_ERR_MANIFEST) naming the field.
GpuKernelDesc parseGpuKernel(const nlohmann::json &gpu,
                             const std::string &where,
                             const std::vector<std::string> &argNames,
                             const std::vector<std::string> &scratchNames,
                             const std::set<std::string> &symbols,
                             const std::vector<std::string> &archs);

} // namespace attnrt

#endif // ATTNRT_SRC_GPUMANIFEST_H
