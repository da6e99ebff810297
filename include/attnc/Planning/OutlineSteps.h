//===- OutlineSteps.h - planned steps into kernels and a program -*- C++
//-*-===//
//
// After attn-plan-memory: every planned step function becomes one ordinary
// kernel function per compute op (`STEP__i`) and a program for attnrt, the
// manifest's `steps` entry (docs/memory-planning.md, docs/artifacts.md).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_OUTLINESTEPS_H
#define ATTNC_PLANNING_OUTLINESTEPS_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"

namespace attnc {

/// Outlines every planned step function of `module` (it must verify with
/// verifyStepPlan) into kernel functions, erases the step functions and
/// returns their manifest entries, in module order. Emits an error and fails
/// when a kernel name is taken.
mlir::FailureOr<llvm::json::Array> outlineSteps(mlir::ModuleOp module);

} // namespace attnc

#endif // ATTNC_PLANNING_OUTLINESTEPS_H
