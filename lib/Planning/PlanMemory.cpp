//===- PlanMemory.cpp - the attn-plan-memory pass -------------------------===//
//
// Plans every step function (`attn.step`) of a module with the memory
// planner (MemoryPlanner.h) against the module's `#attn.target`, and writes
// the plan into the IR: a place per argument and result, copy_start/
// copy_done pairs at the planned positions, kernels reading the copies, the
// cost model's predictions, and a summary (docs/memory-planning.md).
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"
#include "attnc/Planning/MemoryPlanner.h"
#include "attnc/Planning/StepPlan.h"

#include "attn/AttnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNPLANMEMORY
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

/// The average number of keys a query sees under `mask`, for Lq queries
/// against Lk keys (DESIGN.md section 4).
double visibleKeys(MaskAttr mask, int64_t lq, int64_t lk) {
  if (!mask || mask.isNone() || lq <= 0)
    return double(lk);
  double sum = 0;
  for (int64_t i = 0; i < lq; ++i) {
    int64_t pos = mask.getTopLeft() ? i : i + lk - lq;
    int64_t hi = std::min(pos, lk - 1);
    int64_t lo =
        mask.hasWindow() ? std::max<int64_t>(0, pos - mask.getWindow()) : 0;
    int64_t seen = hi >= lo ? hi - lo + 1 : 0;
    if (mask.hasWindow())
      seen += std::min(mask.getSinks(), std::max<int64_t>(lo, 0));
    sum += double(std::max<int64_t>(seen, 0));
  }
  return sum / double(lq);
}

/// The two contractions' FLOPs of an attention op. For paged ones, an
/// estimate: their lengths are run-time values, so every one of the cache's
/// `numPages` pages is taken as read, shared evenly by the sequences of the
/// page table.
double attentionFlops(Operation *op, int64_t numPages) {
  if (auto a = dyn_cast<AttentionOp>(op)) {
    auto q = cast<RankedTensorType>(a.getQuery().getType());
    auto k = cast<RankedTensorType>(a.getKey().getType());
    bool ragged = q.getRank() == 3;
    int64_t batch = ragged ? 1 : q.getDimSize(0);
    int64_t lq = q.getDimSize(ragged ? 0 : 1),
            lk = k.getDimSize(ragged ? 0 : 1);
    int64_t hq = q.getDimSize(q.getRank() - 2),
            d = q.getDimSize(q.getRank() - 1);
    return 4.0 * double(batch * hq * d * lq) *
           visibleKeys(a.getMaskOrNone(), lq, lk);
  }
  if (auto pa = dyn_cast<PagedAttentionOp>(op)) {
    auto q = cast<RankedTensorType>(pa.getQuery().getType());
    auto cache = cast<KVCacheType>(pa.getCache().getType());
    auto indptr = cast<RankedTensorType>(pa.getKvIndptr().getType());
    int64_t sequences = std::max<int64_t>(1, indptr.getDimSize(0) - 1);
    return 4.0 * double(q.getDimSize(0) * q.getDimSize(1) * q.getDimSize(2)) *
           double(numPages * cache.getPageSize()) / double(sequences);
  }
  return 0;
}

struct AttnPlanMemoryPass
    : public attnc::impl::AttnPlanMemoryBase<AttnPlanMemoryPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<TargetAttr> preset =
        targetPresetOption(module, targetName, "attn-plan-memory");
    if (failed(preset))
      return signalPassFailure();
    TargetAttr target =
        *preset ? *preset : module->getAttrOfType<TargetAttr>("attn.target");
    for (auto step : module.getOps<func::FuncOp>()) {
      if (!step->hasAttr("attn.step"))
        continue;
      if (!target) {
        step.emitError()
            << "planning step function '" << step.getSymName()
            << "' needs a target: give the module the attribute attn.target "
               "= #attn.target<...> or the pass option target=<preset>";
        return signalPassFailure();
      }
      if (failed(planStep(step, target)))
        return signalPassFailure();
    }
  }

  LogicalResult planStep(func::FuncOp step, TargetAttr target);
};

/// A step function, read into the planner's terms: problem.values[i] is
/// values[i].
struct StepProblem {
  MemoryPlanProblem problem;
  SmallVector<Operation *> kernels;
  SmallVector<Value> values;
  llvm::DenseMap<Value, int> index;
};

FailureOr<StepProblem> readStep(func::FuncOp step, TargetAttr target) {
  if (step->hasAttr("attn.plan"))
    return step.emitError()
           << "step function '" << step.getSymName() << "' is already planned";
  FailureOr<StepSchedule> schedule = StepSchedule::build(step);
  if (failed(schedule))
    return failure();
  StepProblem sp;
  MemoryPlanProblem &p = sp.problem;
  p.hasDevice = target.hasDevice();
  p.deviceCapacity = uint64_t(target.getHbmBytes());
  p.hostCapacity = uint64_t(target.getHostBytes());
  p.linkBandwidth = double(target.getLinkBandwidth());
  p.alignment = uint64_t(kPlaceAlignment);
  for (auto [s, op] : llvm::enumerate(schedule->computeOps)) {
    if (op->hasAttr("attn.places"))
      return op->emitError() << "already placed; plan the step once";
    sp.kernels.push_back(op);
    p.kernels.push_back({(step.getSymName() + "__" + Twine(s)).str(), 0});
  }
  if (!schedule->copies.empty())
    return step.emitError() << "step function '" << step.getSymName()
                            << "' already has copies; plan the step once";

  auto ret = cast<func::ReturnOp>(step.getBody().front().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands()))
    if (isa<BlockArgument>(v))
      return ret.emitError() << "the step returns its argument as result #" << i
                             << "; a step returns what its kernels "
                                "produce";
  for (const PlacedValue &b : schedule->buffers) {
    StepValue v;
    v.name = b.name;
    v.size = uint64_t(b.bytes);
    switch (b.kind) {
    case PlacedKind::Input:
      v.kind = StepValueKind::Input;
      break;
    case PlacedKind::State:
      v.kind = StepValueKind::State;
      break;
    case PlacedKind::Output:
      v.kind = StepValueKind::Output;
      break;
    case PlacedKind::Temp:
      v.kind = StepValueKind::Temp;
      break;
    case PlacedKind::Copy:
    case PlacedKind::Workspace:
      llvm_unreachable("an unplanned step has no copies or workspaces");
    }
    v.definingStep = b.op ? schedule->stepOf(b.op) : -1;
    sp.index[b.value] = int(sp.values.size());
    sp.values.push_back(b.value);
    p.values.push_back(std::move(v));
  }
  for (auto [s, op] : llvm::enumerate(sp.kernels)) {
    for (Value operand : op->getOperands()) {
      StepValue &v = p.values[sp.index.lookup(operand)];
      if (v.useSteps.empty() || v.useSteps.back() != int64_t(s))
        v.useSteps.push_back(int64_t(s));
    }
    if (auto append = dyn_cast<KVAppendOp>(op))
      p.values[sp.index.lookup(append.getCache())].writeSteps.push_back(
          int64_t(s));
  }

  // The cost model: a kernel takes the longer of its tensor-core time and
  // the time to move its operands and results through HBM once.
  for (auto [s, op] : llvm::enumerate(sp.kernels)) {
    double bytes = 0;
    for (Value v : op->getOperands())
      bytes += double(p.values[sp.index.lookup(v)].size);
    for (Value v : op->getResults())
      bytes += double(p.values[sp.index.lookup(v)].size);
    int64_t pages = 0;
    if (auto pa = dyn_cast<PagedAttentionOp>(op))
      pages = *schedule->buffers[schedule->bufferOf.at(pa.getCache())].numPages;
    if (target.hasDevice())
      p.kernels[s].seconds =
          std::max(attentionFlops(op, pages) / double(target.getTensorFlops()),
                   bytes / double(target.getHbmBandwidth()));
  }
  return sp;
}

LogicalResult AttnPlanMemoryPass::planStep(func::FuncOp step,
                                           TargetAttr target) {
  FailureOr<StepProblem> read = readStep(step, target);
  if (failed(read))
    return failure();
  StepProblem &sp = *read;
  const MemoryPlanProblem &p = sp.problem;
  auto planned = planMemory(p);
  if (auto *err = std::get_if<std::string>(&planned))
    return step.emitError() << "cannot plan step '" << step.getSymName()
                            << "' for " << target << ": " << *err;
  MemoryPlan &plan = std::get<MemoryPlan>(planned);
  if (std::optional<std::string> bad = verifyMemoryPlan(p, plan))
    return step.emitError()
           << "internal error: the plan of '" << step.getSymName()
           << "' fails verification: " << *bad;

  MLIRContext *ctx = step.getContext();
  OpBuilder b(ctx);
  auto placeOf = [&](int buffer) {
    const PlacedBuffer &pb = plan.buffers[buffer];
    return PlaceAttr::get(
        ctx, pb.tier == PlanTier::Device ? MemoryTier::HBM : MemoryTier::Host,
        int64_t(pb.offset));
  };
  auto f64 = [&](double x) { return b.getF64FloatAttr(x); };

  // The SSA value standing for each placed buffer.
  SmallVector<Value> bufferValue(plan.buffers.size());
  for (auto [bi, pb] : llvm::enumerate(plan.buffers)) {
    Value v = sp.values[pb.value];
    if (pb.home && isa<BlockArgument>(v))
      bufferValue[bi] = v;
    else if (plan.defBuffer[pb.value] == int(bi))
      bufferValue[bi] = v;
  }

  // Copies at their positions: waits for copies issued earlier, then the
  // copies issued here, then waits for those (docs/memory-planning.md).
  const int64_t n = int64_t(sp.kernels.size());
  Operation *ret = step.getBody().front().getTerminator();
  auto anchor = [&](int64_t pos) { return pos < n ? sp.kernels[pos] : ret; };
  SmallVector<CopyStartOp> starts(plan.copies.size());
  auto emitDone = [&](size_t c) {
    const PlannedCopy &copy = plan.copies[c];
    b.setInsertionPoint(anchor(copy.wait));
    auto done = CopyDoneOp::create(b, starts[c].getLoc(), starts[c]);
    done->setAttr("attn.exposed_seconds", f64(copy.exposedSeconds));
    bufferValue[copy.destination] = done.getResult();
  };
  for (int64_t pos = 0; pos <= n; ++pos) {
    for (size_t c = 0; c < plan.copies.size(); ++c)
      if (plan.copies[c].wait == pos && plan.copies[c].issue < pos)
        emitDone(c);
    for (size_t c = 0; c < plan.copies.size(); ++c) {
      const PlannedCopy &copy = plan.copies[c];
      if (copy.issue != pos)
        continue;
      Value source = bufferValue[copy.source];
      assert(source && "a copy's source is placed before it");
      b.setInsertionPoint(anchor(pos));
      starts[c] = CopyStartOp::create(b, anchor(pos)->getLoc(), source,
                                      placeOf(copy.destination));
      starts[c]->setAttr("attn.transfer_seconds", f64(copy.transferSeconds));
    }
    for (size_t c = 0; c < plan.copies.size(); ++c)
      if (plan.copies[c].wait == pos && plan.copies[c].issue == pos)
        emitDone(c);
  }

  // Kernels read the buffers the plan gives each use.
  for (auto [vi, sv] : llvm::enumerate(p.values)) {
    for (auto [k, s] : llvm::enumerate(sv.useSteps)) {
      Value use = bufferValue[plan.useBuffer[vi][k]];
      for (OpOperand &operand : sp.kernels[s]->getOpOperands())
        if (operand.get() == sp.values[vi])
          operand.set(use);
    }
  }
  // The step returns each output's home.
  for (OpOperand &operand : ret->getOpOperands()) {
    int vi = sp.index.lookup(operand.get());
    for (auto [bi, pb] : llvm::enumerate(plan.buffers))
      if (pb.value == vi && pb.home)
        operand.set(bufferValue[bi]);
  }

  // Places and predictions.
  for (auto [bi, pb] : llvm::enumerate(plan.buffers))
    if (pb.home && sp.values[pb.value].getDefiningOp() == nullptr)
      step.setArgAttr(cast<BlockArgument>(sp.values[pb.value]).getArgNumber(),
                      "attn.place", placeOf(bi));
  for (auto [s, op] : llvm::enumerate(sp.kernels)) {
    SmallVector<Attribute> places;
    for (Value r : op->getResults())
      places.push_back(placeOf(plan.defBuffer[sp.index[r]]));
    if (!places.empty())
      op->setAttr("attn.places", b.getArrayAttr(places));
    op->setAttr("attn.seconds", f64(p.kernels[s].seconds));
  }
  SmallVector<Attribute> tiers;
  auto tierSummary = [&](StringRef name, const TierSummary &t) {
    tiers.push_back(b.getDictionaryAttr(
        {b.getNamedAttr("name", b.getStringAttr(name)),
         b.getNamedAttr("capacity", b.getI64IntegerAttr(int64_t(t.capacity))),
         b.getNamedAttr("peak", b.getI64IntegerAttr(int64_t(t.peak))),
         b.getNamedAttr("lower_bound",
                        b.getI64IntegerAttr(int64_t(t.lowerBound)))}));
  };
  if (p.hasDevice)
    tierSummary("hbm", plan.tiers[0]);
  tierSummary("host", plan.tiers.back());
  double compute = 0;
  for (const StepKernel &k : p.kernels)
    compute += k.seconds;
  step->setAttr(
      "attn.plan",
      b.getDictionaryAttr(
          {b.getNamedAttr("target", target),
           b.getNamedAttr("tiers", b.getArrayAttr(tiers)),
           b.getNamedAttr("step_seconds", f64(plan.stepSeconds)),
           b.getNamedAttr("compute_seconds", f64(compute)),
           b.getNamedAttr("no_offload_seconds", f64(plan.noOffloadSeconds)),
           b.getNamedAttr("bytes_moved",
                          b.getI64IntegerAttr(int64_t(plan.bytesMoved)))}));
  return success();
}

} // namespace
