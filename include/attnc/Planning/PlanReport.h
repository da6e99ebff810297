//===- PlanReport.h - the memory plan as a report ---------------*- C++ -*-===//
//
// `attnc --emit=plan` and `attn-opt --attn-print-plan-report`: what the
// memory planner decided for every step function of a module, read only from
// the planned IR (places, copies, attn.plan and the predictions). See
// docs/memory-planning.md for the fields.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_PLANREPORT_H
#define ATTNC_PLANNING_PLANREPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"

#include <string>

namespace attnc {

/// {"steps": [{"name", "target", "tiers", "buffers", "transfers", "ops",
/// "step_seconds", "compute_seconds", "no_offload_seconds",
/// "bytes_moved"}, ...]} for the step functions (`attn.step`) of `module`,
/// in module order. A step that is not a well-formed step function is
/// reported as an error on it and left out.
llvm::json::Value planReport(mlir::ModuleOp module);

/// planReport as pretty-printed JSON text.
std::string planReportJSON(mlir::ModuleOp module);

/// A fixed-width text summary per step: the tiers (capacity, peak, lower
/// bound and their ratio), what each tier holds, each transfer, and the
/// predicted step time against the time without offloading.
std::string planReportTable(mlir::ModuleOp module);

} // namespace attnc

#endif // ATTNC_PLANNING_PLANREPORT_H
