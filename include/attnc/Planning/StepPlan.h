//===- StepPlan.h - reading and verifying a step's memory plan --*- C++ -*-===//
//
// A step function (`func.func` with `attn.step`) is a straight-line schedule
// of attn compute ops; after attn-plan-memory it carries its memory plan as
// IR: places (`#attn.place`), copies (`attn.copy_start` / `attn.copy_done`)
// and predictions (docs/memory-planning.md). This header reads that IR into a
// StepSchedule (what the planner pass, the verifier, the outlining and the
// report share) and verifies a plan (`attn-verify-plan`, `attnc
// --verify-plan`).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_STEPPLAN_H
#define ATTNC_PLANNING_STEPPLAN_H

#include "attn/AttnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnc {

/// Every place offset is a multiple of this.
constexpr int64_t kPlaceAlignment = 64;

/// attn.attention, attn.paged_attention, attn.kv_append, attn.merge and
/// attn.select_pages: the ops that are the steps of a step function.
bool isStepComputeOp(mlir::Operation *op);

/// The name of argument `i` of a step function: its `attn.name`, else
/// `arg<i>`.
std::string stepArgName(mlir::func::FuncOp step, unsigned i);
/// The name of result `i` of a step function: its `attn.name`, else
/// `result<i>`.
std::string stepResultName(mlir::func::FuncOp step, unsigned i);

/// `file:line:col` of `loc` (its file name only) for messages and reports;
/// name and fused locations give their first file location.
std::string locationText(mlir::Location loc);

/// One component of a placed `!attn.kv_cache`, laid out from the cache's
/// place: components in KVCacheType::getComponents() order, each starting at
/// the previous one's end rounded up to kPlaceAlignment.
struct PlacedComponent {
  llvm::StringRef role;  // `k_pages`, ...
  llvm::StringRef dtype; // the manifest's dtype name
  mlir::Type elementType;
  llvm::SmallVector<int64_t> shape; // static: dimension 0 of a paged one is
                                    // the pool's page count
  int64_t offset = 0;               // from the cache's place
  int64_t bytes = 0;
};

/// The component layout of a cache with `numPages` pages. The cache must have
/// no residual window (its rings are not placed).
llvm::SmallVector<PlacedComponent> componentLayout(attn::KVCacheType cache,
                                                   int64_t numPages);

/// Bytes a value of type `t` occupies at its place: a static ranked tensor's
/// elements times the element size, or a KV cache's layout (the end of its
/// last component, not rounded) with `numPages` pages. -1 when `t` has no
/// placed size: a dynamic shape, a cache without `numPages` or with a
/// residual window, any other type.
int64_t placedBytes(mlir::Type t, std::optional<int64_t> numPages);

/// What a placed buffer is to the step.
enum class PlacedKind {
  Input,     // a tensor argument
  State,     // a KV cache argument (kept from step to step)
  Output,    // returned: a compute op's result or a copy's destination
  Temp,      // a compute op's result used inside the step only
  Copy,      // a copy's destination that is not returned
  Workspace, // a compute op's scratch (`attn.workspace`)
};
/// `input`, `state`, `output`, `temp`, `copy`, `workspace`.
llvm::StringRef stringifyPlacedKind(PlacedKind kind);

/// One buffer of a step: an argument, a compute op's result, a copy's
/// destination or a workspace.
///
/// Liveness is kept in program positions: 0 is the step's entry (the
/// arguments), the i-th op of the body (0-based, copies included) is at
/// i + 1 and the return at body size + 1. A buffer is live from the
/// position that starts writing it (0 for an argument; its compute op; the
/// copy_start of a copy into it) to the last position that reads it: its
/// last compute op user, the return (outputs and KV caches: the end), its
/// own copy_done (a copy writes its destination until then), and the
/// copy_start of each copy reading it. A copy reads its source until its
/// copy_done, but copies run in issue order on one stream, so only a later
/// copy may reuse the source's bytes before then; a compute op may not
/// (StepPlan.cpp checks that separately).
struct PlacedValue {
  std::string name;
  PlacedKind kind = PlacedKind::Temp;
  /// The SSA value (null for a workspace). A copy written back to the
  /// place of the value it was copied from adds no buffer: its result maps
  /// to that value's buffer.
  mlir::Value value;
  /// The compute op (result, workspace) or copy_start (copy) that makes
  /// it; null for an argument.
  mlir::Operation *op = nullptr;
  /// Null when the IR has none (not planned yet, or invalid).
  attn::PlaceAttr place;
  int64_t bytes = 0;
  std::optional<int64_t> numPages; // KV caches
  int64_t firstPos = 0, lastPos = 0;
  /// The steps of firstPos and lastPos (a copy belongs to the step of the
  /// next compute op after it, or to the last step).
  int64_t firstStep = 0, lastStep = 0;
};

/// One copy_start / copy_done pair.
struct StepCopy {
  attn::CopyStartOp start;
  attn::CopyDoneOp done;
  unsigned source = 0;      // index into StepSchedule::buffers
  unsigned destination = 0; // the source's root buffer for a write-back
  /// The destination is the place of the value the source was copied from
  /// (e.g. a KV cache's home): the copy writes that buffer back.
  bool writeBack = false;
  int64_t issuePos = 0, waitPos = 0;
  int64_t issueStep = 0, waitStep = 0;
  int64_t bytes = 0;
};

/// A step function read from the IR.
struct StepSchedule {
  mlir::func::FuncOp func;
  /// The steps: compute op s is step s.
  llvm::SmallVector<mlir::Operation *> computeOps;
  /// Arguments in order, then compute op results, copy destinations and
  /// workspaces in program order.
  std::vector<PlacedValue> buffers;
  /// In program order of their copy_start.
  std::vector<StepCopy> copies;
  /// The buffer of every tensor and KV cache value of the step.
  llvm::DenseMap<mlir::Value, unsigned> bufferOf;
  /// The workspace buffer of a compute op with `attn.workspace`.
  llvm::DenseMap<mlir::Operation *, unsigned> workspaceOf;
  /// The position of every op of the body (the return included).
  llvm::DenseMap<mlir::Operation *, int64_t> posOf;
  /// stepAt[p] is the step of position p.
  std::vector<int64_t> stepAt;

  int64_t numSteps() const { return int64_t(computeOps.size()); }
  int64_t stepOf(mlir::Operation *op) const { return stepAt[posOf.at(op)]; }

  /// Reads `step`. Emits an error and fails when it is not a step function
  /// the planner handles: one block of compute ops, copies and a return, at
  /// least one compute op, static tensors, KV cache arguments with
  /// `attn.num_pages = N` and no residual window. Places are read when
  /// present; a malformed place attribute is an error.
  static mlir::FailureOr<StepSchedule> build(mlir::func::FuncOp step);
};

/// Checks the memory plan of the step function `step` (docs/memory-planning.md,
/// "Verifier rules"): every value has exactly one place, 64-byte aligned; per
/// tier no two buffers live at a common position share a byte, and no
/// compute op writes bytes an unfinished copy reads or writes; every operand,
/// result and workspace of a compute op is in the tier kernels read (hbm
/// when the target has a device) and no compute op reads a buffer while a
/// copy writes it back; every tier's buffers end within its capacity and
/// within `attn.plan`'s peak, which is at most their end rounded up to 64.
/// The tiers and capacities come from `target` when given, else
/// `attn.plan`'s `target` entry (the planner may record the target it
/// planned for), else the module's `attn.target`, else `attn.plan`'s tiers.
/// Emits an error naming the buffers in the user's terms and fails on the
/// first violation.
/// The preset a pass option `target=<name>` names: null for an empty name,
/// failure (with an error on `module` listing the presets) for an unknown one.
mlir::FailureOr<attn::TargetAttr> targetPresetOption(mlir::ModuleOp module,
                                                     llvm::StringRef name,
                                                     llvm::StringRef pass);

mlir::LogicalResult verifyStepPlan(mlir::func::FuncOp step,
                                   attn::TargetAttr target = {});

} // namespace attnc

#endif // ATTNC_PLANNING_STEPPLAN_H
