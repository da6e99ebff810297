//===- HostLibrary.h - LLVM dialect to a host shared library ----*- C++ -*-===//

#ifndef ATTNC_TARGET_HOSTLIBRARY_H
#define ATTNC_TARGET_HOSTLIBRARY_H

#include "mlir/IR/BuiltinOps.h"

namespace attnc {

/// Translates an LLVM-dialect module to LLVM IR, optimizes it for the host
/// CPU, and links `sharedLibPath`. `objectPath` is a scratch object file.
mlir::LogicalResult emitHostLibrary(mlir::ModuleOp module,
                                    llvm::StringRef objectPath,
                                    llvm::StringRef sharedLibPath);

/// The optimized LLVM IR text of the module (for --emit=llvm-ir).
mlir::LogicalResult printHostLLVMIR(mlir::ModuleOp module,
                                    llvm::raw_ostream &os);

} // namespace attnc

#endif // ATTNC_TARGET_HOSTLIBRARY_H
