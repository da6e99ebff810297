//===- HostLibrary.h - LLVM dialect to host kernel artifacts ----*- C++ -*-===//

#ifndef ATTNC_TARGET_HOSTLIBRARY_H
#define ATTNC_TARGET_HOSTLIBRARY_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <utility>
#include <vector>

namespace attnc {

/// What emitHostArtifact writes: always the object file; the shared library
/// too when sharedLibPath is set (the object is then removed).
struct HostArtifact {
  std::string objectPath;
  std::string sharedLibPath;
  /// NUL-terminated constant strings defined in the artifact with external
  /// linkage, by symbol name (the embedded manifest).
  std::vector<std::pair<std::string, std::string>> strings;
};

/// Generates position-independent code for this host (its CPU and
/// features) and links the shared library with the configured linker.
mlir::LogicalResult emitHostArtifact(mlir::ModuleOp module,
                                     const HostArtifact &artifact);

/// The optimized LLVM IR text of the module (for --emit=llvm-ir).
mlir::LogicalResult printHostLLVMIR(mlir::ModuleOp module,
                                    llvm::raw_ostream &os);

} // namespace attnc

#endif // ATTNC_TARGET_HOSTLIBRARY_H
