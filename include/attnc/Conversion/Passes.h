//===- Passes.h - attnc lowering passes -------------------------*- C++ -*-===//

#ifndef ATTNC_CONVERSION_PASSES_H
#define ATTNC_CONVERSION_PASSES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace attnc {

/// The kernel-boundary name of the !attn.kv_cache argument `argNo`: its
/// `attn.name`, else `cache`, `cache1`, ... by position among the caches.
/// Its component buffers are named `NAME_<component>`.
std::string cacheArgumentName(mlir::func::FuncOp func, unsigned argNo);

/// The manifest's dtype name of an element type (`f32`, `f16`, `bf16`, `i32`,
/// `i8`), else the type as MLIR prints it.
std::string manifestDtypeName(mlir::Type type);

#define GEN_PASS_DECL
#include "attnc/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "attnc/Conversion/Passes.h.inc"

} // namespace attnc

#endif // ATTNC_CONVERSION_PASSES_H
