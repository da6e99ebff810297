//===- VerifyPlan.cpp - the memory plan verifier and attn-verify-plan -----===//
//
// Checks a planned step function against the rules of
// docs/memory-planning.md: places, tiers, overlap, capacity and the copies'
// in-flight windows. The per-tier arena checks are ArenaPlanner's
// verifyArenaPlan; its messages are rewritten to name buffers as the user
// sees them and to count steps rather than program positions.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"
#include "attnc/Planning/ArenaPlanner.h"
#include "attnc/Planning/StepPlan.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNVERIFYPLAN
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

struct Tier {
  MemoryTier tier;
  int64_t capacity = 0;
  std::optional<int64_t> peak; // attn.plan's
};

std::string stepsText(int64_t first, int64_t last) {
  return first == last
             ? "step " + std::to_string(first)
             : "steps " + std::to_string(first) + ".." + std::to_string(last);
}

std::string rangeText(int64_t begin, int64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

class PlanVerifier {
public:
  PlanVerifier(func::FuncOp step, TargetAttr target)
      : step(step), target(target) {}

  LogicalResult run();

private:
  LogicalResult readTiers();
  LogicalResult checkPlaces();
  LogicalResult checkKernelTier();
  LogicalResult checkArena(const Tier &tier);
  LogicalResult checkInFlight();

  /// The buffer in the user's terms, e.g. `argument 'q0'` or
  /// `'decode__1.result0' (result 0 of attn.attention at x.mlir:3:8)`.
  std::string describe(unsigned b);
  /// Where a message about buffers `bs` goes: the op of the one that starts
  /// latest, else the step function.
  Operation *anchor(ArrayRef<unsigned> bs);
  InFlightDiagnostic error(ArrayRef<unsigned> bs) {
    return anchor(bs)->emitError()
           << "memory plan of step function '" << step.getSymName() << "': ";
  }
  std::string placeText(unsigned b) const {
    const PlacedValue &v = s.buffers[b];
    return rangeText(v.place.getOffset(), v.place.getOffset() + v.bytes) +
           " in tier " + stringifyMemoryTier(v.place.getTier()).str();
  }
  /// `before step s`, or `after step N-1` past the last compute op.
  std::string whenText(int64_t pos) const {
    int64_t last = s.posOf.lookup(s.computeOps.back());
    return pos > last ? "after step " + std::to_string(s.numSteps() - 1)
                      : "before step " + std::to_string(s.stepAt[pos]);
  }
  const Tier *findTier(MemoryTier t) const {
    for (const Tier &tier : tiers)
      if (tier.tier == t)
        return &tier;
    return nullptr;
  }

  func::FuncOp step;
  TargetAttr target;
  StepSchedule s;
  SmallVector<Tier> tiers;
  MemoryTier kernelTier = MemoryTier::Host;
  bool planPeaks = false;
};

} // namespace

std::string PlanVerifier::describe(unsigned b) {
  const PlacedValue &v = s.buffers[b];
  if (!v.op)
    return "argument '" + v.name + "'";
  std::string where = " at " + locationText(v.op->getLoc()) + ")";
  switch (v.kind) {
  case PlacedKind::Workspace:
    return "'" + v.name + "' (the workspace of " +
           v.op->getName().getStringRef().str() + where;
  case PlacedKind::Copy:
  case PlacedKind::Output:
    if (auto start = dyn_cast<CopyStartOp>(v.op))
      return "'" + v.name + "' (the copy of '" +
             s.buffers[s.bufferOf.lookup(start.getSource())].name + "'" + where;
    [[fallthrough]];
  default:
    return "'" + v.name + "' (result " +
           std::to_string(cast<OpResult>(v.value).getResultNumber()) + " of " +
           v.op->getName().getStringRef().str() + where;
  }
}

Operation *PlanVerifier::anchor(ArrayRef<unsigned> bs) {
  Operation *op = step;
  int64_t latest = -1;
  for (unsigned b : bs) {
    const PlacedValue &v = s.buffers[b];
    if (v.op && v.firstPos > latest) {
      latest = v.firstPos;
      op = v.op;
    }
  }
  return op;
}

LogicalResult PlanVerifier::readTiers() {
  auto plan = step->getAttrOfType<DictionaryAttr>("attn.plan");
  if (step->getAttr("attn.plan") && !plan)
    return step.emitError() << "the attn.plan of step function '"
                            << step.getSymName() << "' must be a dictionary";
  // The planner may record the target it planned for (its option overrides
  // the module's attribute).
  if (!target && plan)
    target = plan.getAs<TargetAttr>("target");
  if (!target)
    if (auto module = step->getParentOfType<ModuleOp>())
      target = module->getAttrOfType<TargetAttr>("attn.target");
  if (target) {
    if (target.hasDevice())
      tiers.push_back({MemoryTier::HBM, target.getHbmBytes(), std::nullopt});
    tiers.push_back({MemoryTier::Host, target.getHostBytes(), std::nullopt});
  }
  if (plan) {
    auto list = plan.getAs<ArrayAttr>("tiers");
    if (!list)
      return step.emitError() << "the attn.plan of step function '"
                              << step.getSymName() << "' has no 'tiers' list";
    bool fromPlan = tiers.empty();
    for (Attribute a : list) {
      auto d = dyn_cast<DictionaryAttr>(a);
      auto name = d ? d.getAs<StringAttr>("name") : StringAttr();
      auto capacity = d ? d.getAs<IntegerAttr>("capacity") : IntegerAttr();
      auto peak = d ? d.getAs<IntegerAttr>("peak") : IntegerAttr();
      std::optional<MemoryTier> t =
          name ? symbolizeMemoryTier(name.getValue()) : std::nullopt;
      if (!t || !capacity || !peak)
        return step.emitError()
               << "the attn.plan of step function '" << step.getSymName()
               << "' has a malformed tier " << a
               << "; expected {name = \"hbm\" | \"host\", capacity = C : "
                  "i64, peak = P : i64, lower_bound = L : i64}";
      if (fromPlan) {
        if (findTier(*t))
          return step.emitError()
                 << "the attn.plan of step function '" << step.getSymName()
                 << "' lists tier " << name << " twice";
        tiers.push_back({*t, capacity.getInt(), peak.getInt()});
        continue;
      }
      auto *known = const_cast<Tier *>(findTier(*t));
      if (!known)
        return step.emitError()
               << "the attn.plan of step function '" << step.getSymName()
               << "' has tier " << name << ", which the target " << target
               << " does not have";
      if (known->capacity != capacity.getInt())
        return step.emitError()
               << "the attn.plan of step function '" << step.getSymName()
               << "' gives tier " << name << " the capacity "
               << capacity.getInt() << " but the target " << target << " has "
               << known->capacity;
      known->peak = peak.getInt();
    }
    planPeaks = true;
  }
  if (tiers.empty())
    return step.emitError()
           << "step function '" << step.getSymName()
           << "' has no target to check its plan against: give the module "
              "attn.target = #attn.target<...>, or the pass option "
              "target=<preset>";
  kernelTier = findTier(MemoryTier::HBM) ? MemoryTier::HBM : MemoryTier::Host;
  return success();
}

LogicalResult PlanVerifier::checkPlaces() {
  for (auto [b, v] : llvm::enumerate(s.buffers)) {
    if (!v.place) {
      InFlightDiagnostic d = error({unsigned(b)});
      d << describe(b) << " has no place";
      if (!v.op)
        d << " (its argument attribute attn.place)";
      else if (isa<CopyStartOp>(v.op))
        d << " (the copy's 'to')";
      else
        d << " (attn.places, one #attn.place per result)";
      return d;
    }
    if (v.place.getOffset() % kPlaceAlignment != 0)
      return error({unsigned(b)})
             << describe(b) << " at offset " << v.place.getOffset()
             << " in tier " << stringifyMemoryTier(v.place.getTier())
             << " is not " << kPlaceAlignment << "-byte aligned";
    if (!findTier(v.place.getTier()))
      return error({unsigned(b)}) << describe(b) << " is placed in tier "
                                  << stringifyMemoryTier(v.place.getTier())
                                  << ", which a host-only target does not have";
  }
  return success();
}

LogicalResult PlanVerifier::checkKernelTier() {
  StringRef kernels = stringifyMemoryTier(kernelTier);
  for (auto [index, op] : llvm::enumerate(s.computeOps)) {
    int64_t stepIndex = int64_t(index);
    for (OpOperand &operand : op->getOpOperands()) {
      unsigned b = s.bufferOf.lookup(operand.get());
      if (s.buffers[b].place.getTier() != kernelTier)
        return op->emitError()
               << "memory plan of step function '" << step.getSymName()
               << "': operand #" << operand.getOperandNumber() << " of "
               << op->getName() << " at step " << stepIndex << " is "
               << describe(b) << ", in tier "
               << stringifyMemoryTier(s.buffers[b].place.getTier())
               << "; kernels read only tier " << kernels
               << " (copy it there first)";
    }
    for (OpResult r : op->getResults()) {
      unsigned b = s.bufferOf.lookup(r);
      if (s.buffers[b].place.getTier() != kernelTier)
        return op->emitError()
               << "memory plan of step function '" << step.getSymName()
               << "': result #" << r.getResultNumber() << " of "
               << op->getName() << " at step " << stepIndex
               << " is placed in tier "
               << stringifyMemoryTier(s.buffers[b].place.getTier())
               << "; kernels write only tier " << kernels;
    }
    auto ws = s.workspaceOf.find(op);
    if (ws != s.workspaceOf.end() &&
        s.buffers[ws->second].place.getTier() != kernelTier)
      return op->emitError()
             << "memory plan of step function '" << step.getSymName()
             << "': the workspace of " << op->getName() << " at step "
             << stepIndex << " is placed in tier "
             << stringifyMemoryTier(s.buffers[ws->second].place.getTier())
             << "; kernels use only tier " << kernels;
  }
  return success();
}

LogicalResult PlanVerifier::checkArena(const Tier &tier) {
  std::vector<ArenaBuffer> buffers;
  ArenaPlan plan;
  SmallVector<unsigned> index;
  int64_t end = 0;
  for (auto [b, v] : llvm::enumerate(s.buffers)) {
    if (v.place.getTier() != tier.tier)
      continue;
    // Placeholder names, replaced below by describe().
    buffers.push_back({"\x01" + std::to_string(b) + "\x01", uint64_t(v.bytes),
                       uint64_t(kPlaceAlignment), v.firstPos, v.lastPos});
    plan.offsets.push_back(uint64_t(v.place.getOffset()));
    index.push_back(unsigned(b));
    if (v.bytes > 0)
      end = std::max(end, v.place.getOffset() + v.bytes);
  }
  plan.peak = uint64_t(tier.peak.value_or(end));
  std::optional<std::string> problem =
      verifyArenaPlan(buffers, plan, uint64_t(tier.capacity));
  StringRef name = stringifyMemoryTier(tier.tier);
  if (!problem) {
    int64_t rounded = int64_t(llvm::alignTo(uint64_t(end), kPlaceAlignment));
    if (tier.peak && *tier.peak > rounded)
      return step.emitError()
             << "memory plan of step function '" << step.getSymName()
             << "': attn.plan gives tier " << name << " the peak " << *tier.peak
             << " but its buffers end at " << end
             << (rounded != end ? " (" + std::to_string(rounded) +
                                      " rounded up to a multiple of " +
                                      std::to_string(kPlaceAlignment) + ")"
                                : std::string());
    return success();
  }

  // Program positions to steps, then placeholders to the user's names.
  std::string text = *problem;
  llvm::Regex stepsRe("steps? ([0-9]+)(\\.\\.([0-9]+))?");
  SmallVector<StringRef> m;
  std::string out;
  StringRef rest = text;
  while (stepsRe.match(rest, &m)) {
    size_t at = m[0].data() - rest.data();
    int64_t first = 0, last = 0;
    m[1].getAsInteger(10, first);
    last = first;
    if (!m[3].empty())
      m[3].getAsInteger(10, last);
    out +=
        rest.substr(0, at).str() + stepsText(s.stepAt[first], s.stepAt[last]);
    rest = rest.substr(at + m[0].size());
  }
  out += rest.str();
  SmallVector<unsigned> mentioned;
  std::string named;
  StringRef r = out;
  while (!r.empty()) {
    size_t open = r.find("'\x01");
    if (open == StringRef::npos) {
      named += r.str();
      break;
    }
    size_t close = r.find("\x01'", open + 2);
    unsigned b = 0;
    r.substr(open + 2, close - open - 2).getAsInteger(10, b);
    mentioned.push_back(b);
    named += r.substr(0, open).str() + describe(b);
    r = r.substr(close + 2);
  }
  if (tier.peak) {
    size_t at = named.find("the peak ");
    if (at != std::string::npos)
      named.replace(at, 9, "attn.plan's peak ");
  }
  size_t at = named.find("the arena's peak");
  if (at != std::string::npos)
    named.replace(at, 16, "the peak");
  return error(mentioned) << "in tier " << name << ": " << named;
}

LogicalResult PlanVerifier::checkInFlight() {
  auto overlaps = [&](unsigned a, unsigned b) {
    const PlacedValue &x = s.buffers[a], &y = s.buffers[b];
    if (x.place.getTier() != y.place.getTier() || !x.bytes || !y.bytes)
      return false;
    int64_t xb = x.place.getOffset(), yb = y.place.getOffset();
    return xb < yb + y.bytes && yb < xb + x.bytes;
  };
  for (const StepCopy &c : s.copies) {
    std::string copyText = "the copy of '" + s.buffers[c.source].name +
                           "' to " + placeText(c.destination) + " (issued " +
                           whenText(c.issuePos) + ", waited " +
                           whenText(c.waitPos) + ")";
    for (auto [index, op] : llvm::enumerate(s.computeOps)) {
      int64_t pos = s.posOf.lookup(op);
      if (pos <= c.issuePos || pos >= c.waitPos)
        continue;
      // What the kernel writes: its results, its workspace and the cache
      // kv_append writes in place.
      SmallVector<unsigned> written;
      for (Value r : op->getResults())
        written.push_back(s.bufferOf.lookup(r));
      if (auto ws = s.workspaceOf.find(op); ws != s.workspaceOf.end())
        written.push_back(ws->second);
      if (auto append = dyn_cast<KVAppendOp>(op))
        written.push_back(s.bufferOf.lookup(append.getCache()));
      for (unsigned w : written)
        if (overlaps(w, c.source))
          return op->emitError()
                 << "memory plan of step function '" << step.getSymName()
                 << "': " << op->getName() << " at step " << index << " writes "
                 << describe(w) << " at " << placeText(w) << " while "
                 << copyText << " still reads " << placeText(c.source);
      if (!c.writeBack)
        continue;
      for (Value v : op->getOperands())
        if (s.bufferOf.lookup(v) == c.destination)
          return op->emitError()
                 << "memory plan of step function '" << step.getSymName()
                 << "': " << op->getName() << " at step " << index << " uses "
                 << describe(c.destination) << " before " << copyText
                 << " has written it back";
    }
  }
  return success();
}

LogicalResult PlanVerifier::run() {
  FailureOr<StepSchedule> schedule = StepSchedule::build(step);
  if (failed(schedule))
    return failure();
  s = std::move(*schedule);
  bool anyPlace = llvm::any_of(
      s.buffers, [](const PlacedValue &v) { return !v.op && v.place; });
  if (!anyPlace && !step->hasAttr("attn.plan"))
    return step.emitError() << "step function '" << step.getSymName()
                            << "' has no memory plan; run attn-plan-memory "
                               "first";
  if (failed(readTiers()) || failed(checkPlaces()) || failed(checkKernelTier()))
    return failure();
  for (const Tier &tier : tiers)
    if (failed(checkArena(tier)))
      return failure();
  return checkInFlight();
}

LogicalResult attnc::verifyStepPlan(func::FuncOp step, TargetAttr target) {
  return PlanVerifier(step, target).run();
}

namespace {

struct AttnVerifyPlanPass
    : public attnc::impl::AttnVerifyPlanBase<AttnVerifyPlanPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<TargetAttr> preset =
        targetPresetOption(module, target, "attn-verify-plan");
    if (failed(preset))
      return signalPassFailure();
    bool failedAny = false;
    for (auto fn : module.getOps<func::FuncOp>())
      if (fn->hasAttr("attn.step") && failed(verifyStepPlan(fn, *preset)))
        failedAny = true;
    if (failedAny)
      return signalPassFailure();
    markAllAnalysesPreserved();
  }
};

} // namespace
