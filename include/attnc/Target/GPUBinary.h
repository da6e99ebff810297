//===- GPUBinary.h - PTX, cubins and ptxas reports for GPU kernels -*- C++ -*-//
//
// The artifact side of the GPU target (docs/gpu-artifacts.md): the launch
// geometry attn-lower-to-gpu records, the PTX the NVPTX back-end writes for
// each gpu.module, and ptxas runs that assemble it into cubins and report
// registers, spills and shared memory.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TARGET_GPUBINARY_H
#define ATTNC_TARGET_GPUBINARY_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace attnc {

/// `sm_80,sm_90` as sorted, distinct architectures, or an error that says
/// what is wrong with the list.
std::variant<std::vector<std::string>, std::string>
parseGPUArchs(llvm::StringRef list);

/// The manifest `gpu` object of every kernel function attn-lower-to-gpu
/// produced (its `attn.launch` attribute), by kernel name: entry, block,
/// grid, smem_bytes, params, tile.
std::map<std::string, llvm::json::Object>
collectGPULaunches(mlir::ModuleOp module);

/// The PTX of each `gpu.binary @NAME_gpu` (format isa), by kernel name.
std::map<std::string, std::string> collectPTX(mlir::ModuleOp module);

/// ptxas's `-v` report for one function.
struct PtxasReport {
  int64_t registers = 0, spillStores = 0, spillLoads = 0, stackBytes = 0,
          staticSmemBytes = 0, barriers = 0;
};
/// Parses the report ptxas prints to stderr with -v for the function
/// `entry`. Nullopt when the text has no "Used N registers" line for it.
std::optional<PtxasReport> parsePtxasReport(llvm::StringRef text,
                                            llvm::StringRef entry);
llvm::json::Object toJSON(const PtxasReport &report);

/// The ptxas to use: $ATTNC_PTXAS, else the CUDA toolkit's found at
/// configure time, else `ptxas` on PATH; nullopt when there is none.
std::optional<std::string> findPtxas();

/// Assembles `ptxPath` for `arch` into `cubinPath` with `ptxas -v` and
/// returns the report of each of `entries`. On failure returns ptxas's own
/// message.
std::variant<std::map<std::string, PtxasReport>, std::string>
runPtxas(llvm::StringRef ptxas, llvm::StringRef ptxPath, llvm::StringRef arch,
         llvm::StringRef cubinPath, llvm::ArrayRef<llvm::StringRef> entries);

} // namespace attnc

#endif // ATTNC_TARGET_GPUBINARY_H
