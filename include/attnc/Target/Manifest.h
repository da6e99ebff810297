//===- Manifest.h - kernel signatures, manifest.json and C header -*- C++ -*-//
//
// Describes each kernel of a level-1 module in the user's terms (argument
// names, roles, dtypes, shapes with symbolic sizes) for manifest.json and the
// generated C header. See docs/artifacts.md.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TARGET_MANIFEST_H
#define ATTNC_TARGET_MANIFEST_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <variant>
#include <vector>

namespace attnc {

/// A static size or the symbol of a dynamic one.
using ShapeDim = std::variant<int64_t, std::string>;

struct KernelArg {
  std::string name, role, dtype;
  bool isOutput = false;
  std::vector<ShapeDim> shape;
};

struct KernelInfo {
  std::string name;
  bool ragged = false;
  int64_t numQueryHeads = 0, numKVHeads = 0, headDim = 0;
  std::string dtype;
  double scale = 0, softcap = 0;
  bool causal = false, topLeft = false;
  int64_t window = -1, sinks = 0;
  bool hasLse = false;
  int64_t blockQ = 0, blockKV = 0, headDimChunk = 0, vectorWidth = 0;
  std::string qkForm; // "dot", "transposed" or "by_rows" (docs/passes.md)
  int64_t workspaceBytes = 0;
  std::vector<KernelArg> args; // inputs in function order, then outputs
};

/// Reads the kernels of a verified level-1 module. Emits a diagnostic at the
/// offending location and fails for functions the host ABI cannot express.
mlir::FailureOr<std::vector<KernelInfo>> collectKernels(mlir::ModuleOp module);

/// Fills tile sizes and workspace from the `attn.tile` attribute that
/// attn-lower-to-tiles leaves on each kernel function.
void recordTiling(mlir::ModuleOp tiled, std::vector<KernelInfo> &kernels,
                  int64_t vectorWidth);

void writeManifest(llvm::raw_ostream &os,
                   const std::vector<KernelInfo> &kernels,
                   llvm::StringRef target, llvm::StringRef library,
                   llvm::StringRef header);

void writeHeader(llvm::raw_ostream &os, const std::vector<KernelInfo> &kernels,
                 llvm::StringRef stem);

} // namespace attnc

#endif // ATTNC_TARGET_MANIFEST_H
