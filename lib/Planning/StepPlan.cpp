//===- StepPlan.cpp - reading a step function and its memory plan ---------===//

#include "attnc/Planning/StepPlan.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

bool attnc::isStepComputeOp(Operation *op) {
  return isa<AttentionOp, PagedAttentionOp, KVAppendOp, MergeOp, SelectPagesOp>(
      op);
}

std::string attnc::stepArgName(func::FuncOp step, unsigned i) {
  if (auto name = step.getArgAttrOfType<StringAttr>(i, "attn.name"))
    return name.str();
  return "arg" + std::to_string(i);
}

FailureOr<TargetAttr> attnc::targetPresetOption(ModuleOp module, StringRef name,
                                                StringRef pass) {
  if (name.empty())
    return TargetAttr();
  if (TargetAttr preset = TargetAttr::getPreset(module.getContext(), name))
    return preset;
  return module.emitError() << "unknown target '" << name << "' for " << pass
                            << "; the presets are "
                            << llvm::join(TargetAttr::getPresetNames(), ", ");
}

std::string attnc::stepResultName(func::FuncOp step, unsigned i) {
  if (auto name = step.getResultAttrOfType<StringAttr>(i, "attn.name"))
    return name.str();
  return "result" + std::to_string(i);
}

static int64_t elementBytes(Type t, int64_t count) {
  if (!t.isIntOrFloat())
    return -1;
  return int64_t(
      llvm::divideCeil(uint64_t(count) * t.getIntOrFloatBitWidth(), 8));
}

SmallVector<PlacedComponent> attnc::componentLayout(KVCacheType cache,
                                                    int64_t numPages) {
  assert(!cache.hasResidual() && "residual rings are not placed");
  SmallVector<PlacedComponent> out;
  int64_t end = 0;
  for (const KVCacheType::Component &c : cache.getComponents()) {
    PlacedComponent p;
    p.role = c.role;
    p.dtype = c.dtype;
    p.elementType = c.elementType;
    p.shape.assign(c.shape.begin(), c.shape.end());
    int64_t elements = 1;
    for (int64_t &d : p.shape) {
      if (ShapedType::isDynamic(d))
        d = numPages;
      elements *= d;
    }
    p.offset = int64_t(llvm::alignTo(uint64_t(end), kPlaceAlignment));
    p.bytes = elementBytes(c.elementType, elements);
    end = p.offset + p.bytes;
    out.push_back(std::move(p));
  }
  return out;
}

int64_t attnc::placedBytes(Type t, std::optional<int64_t> numPages) {
  if (auto cache = dyn_cast<KVCacheType>(t)) {
    if (!numPages || *numPages < 0 || cache.hasResidual())
      return -1;
    SmallVector<PlacedComponent> layout = componentLayout(cache, *numPages);
    return layout.empty() ? 0 : layout.back().offset + layout.back().bytes;
  }
  auto tensor = dyn_cast<RankedTensorType>(t);
  if (!tensor || !tensor.hasStaticShape())
    return -1;
  return elementBytes(tensor.getElementType(), tensor.getNumElements());
}

StringRef attnc::stringifyPlacedKind(PlacedKind kind) {
  switch (kind) {
  case PlacedKind::Input:
    return "input";
  case PlacedKind::State:
    return "state";
  case PlacedKind::Output:
    return "output";
  case PlacedKind::Temp:
    return "temp";
  case PlacedKind::Copy:
    return "copy";
  case PlacedKind::Workspace:
    return "workspace";
  }
  llvm_unreachable("unknown PlacedKind");
}

namespace {

/// Builds a StepSchedule; every method emits its own errors.
class ScheduleBuilder {
public:
  explicit ScheduleBuilder(func::FuncOp step) : step(step) { s.func = step; }

  FailureOr<StepSchedule> run();

private:
  LogicalResult readPositions(Block &body);
  LogicalResult readArguments();
  LogicalResult readComputeOp(Operation *op, int64_t index);
  LogicalResult readCopy(CopyStartOp start);
  void computeLiveness(Operation *ret);
  unsigned addBuffer(PlacedValue b) {
    s.buffers.push_back(std::move(b));
    root.push_back(unsigned(s.buffers.size() - 1));
    return unsigned(s.buffers.size() - 1);
  }
  InFlightDiagnostic error(Operation *op) {
    return op->emitError() << "step function '" << step.getSymName() << "': ";
  }

  func::FuncOp step;
  StepSchedule s;
  /// root[b]: the argument or compute result buffer b was copied from.
  std::vector<unsigned> root;
  /// Which result of the step returns a value, by value.
  llvm::DenseMap<Value, unsigned> returned;
};

} // namespace

LogicalResult ScheduleBuilder::readPositions(Block &body) {
  int64_t pos = 0;
  for (Operation &op : body) {
    s.posOf[&op] = ++pos;
    if (isStepComputeOp(&op))
      s.computeOps.push_back(&op);
    else if (!isa<CopyStartOp, CopyDoneOp, func::ReturnOp>(op))
      return error(&op) << "'" << op.getName()
                        << "' is not a step op; a step function holds attn "
                           "compute ops (attention, paged_attention, "
                           "kv_append, merge, select_pages), copies and a "
                           "return";
  }
  if (s.computeOps.empty())
    return step.emitError()
           << "step function '" << step.getSymName() << "' has no compute ops";
  // A copy belongs to the step of the next compute op after it, or to the
  // last step; the arguments to step 0.
  s.stepAt.assign(pos + 1, s.numSteps() - 1);
  int64_t next = s.numSteps() - 1;
  for (Operation &op : llvm::reverse(body)) {
    if (isStepComputeOp(&op))
      --next;
    s.stepAt[s.posOf[&op]] =
        isStepComputeOp(&op) ? next + 1 : std::min(next + 1, s.numSteps() - 1);
  }
  s.stepAt[0] = 0;
  return success();
}

LogicalResult ScheduleBuilder::readArguments() {
  for (BlockArgument arg : step.getArguments()) {
    unsigned i = arg.getArgNumber();
    PlacedValue b;
    b.name = stepArgName(step, i);
    b.value = arg;
    Type type = arg.getType();
    if (auto cache = dyn_cast<KVCacheType>(type)) {
      if (cache.hasResidual())
        return step.emitError()
               << "step function '" << step.getSymName() << "': argument '"
               << b.name
               << "' is a KV cache with a residual window; its rings are not "
                  "placed";
      auto pages = step.getArgAttrOfType<IntegerAttr>(i, "attn.num_pages");
      if (!pages || pages.getInt() <= 0)
        return step.emitError()
               << "step function '" << step.getSymName()
               << "': KV cache argument '" << b.name
               << "' needs its pool size: add {attn.num_pages = N : i64} "
                  "with N > 0";
      b.numPages = pages.getInt();
      b.kind = PlacedKind::State;
    } else if (auto t = dyn_cast<RankedTensorType>(type);
               t && t.hasStaticShape()) {
      b.kind = PlacedKind::Input;
    } else {
      return step.emitError()
             << "step function '" << step.getSymName() << "': argument '"
             << b.name << "' has type " << type
             << "; a step takes static-shape tensors and KV caches";
    }
    b.bytes = placedBytes(type, b.numPages);
    if (Attribute place = step.getArgAttr(i, "attn.place")) {
      b.place = dyn_cast<PlaceAttr>(place);
      if (!b.place)
        return step.emitError() << "step function '" << step.getSymName()
                                << "': the attn.place of argument '" << b.name
                                << "' must be an #attn.place, got " << place;
    }
    s.bufferOf[arg] = addBuffer(std::move(b));
  }
  return success();
}

LogicalResult ScheduleBuilder::readComputeOp(Operation *op, int64_t index) {
  std::string kernel = (step.getSymName() + "__" + Twine(index)).str();
  for (Value v : op->getOperands())
    if (!s.bufferOf.count(v))
      return error(op) << "operand of '" << op->getName()
                       << "' is not a step value";
  ArrayAttr places;
  if (Attribute a = op->getAttr("attn.places")) {
    places = dyn_cast<ArrayAttr>(a);
    if (!places || places.size() != op->getNumResults() ||
        !llvm::all_of(places, [](Attribute p) { return isa<PlaceAttr>(p); }))
      return error(op) << "attn.places of '" << op->getName()
                       << "' must hold one #attn.place per result ("
                       << op->getNumResults() << "), got " << a;
  }
  for (OpResult r : op->getResults()) {
    auto t = dyn_cast<RankedTensorType>(r.getType());
    if (!t || !t.hasStaticShape())
      return error(op) << "result #" << r.getResultNumber() << " of '"
                       << op->getName() << "' has type " << r.getType()
                       << "; a step's tensors need static shapes";
    PlacedValue b;
    auto it = returned.find(r);
    b.kind = it != returned.end() ? PlacedKind::Output : PlacedKind::Temp;
    b.name = it != returned.end()
                 ? stepResultName(step, it->second)
                 : kernel + ".result" + std::to_string(r.getResultNumber());
    b.value = r;
    b.op = op;
    b.bytes = placedBytes(t, std::nullopt);
    if (places)
      b.place = cast<PlaceAttr>(places[r.getResultNumber()]);
    s.bufferOf[r] = addBuffer(std::move(b));
  }
  Attribute workspace = op->getAttr("attn.workspace");
  Attribute workspaceBytes = op->getAttr("attn.workspace_bytes");
  if (bool(workspace) != bool(workspaceBytes))
    return error(op) << "'" << op->getName()
                     << "' needs both attn.workspace (its place) and "
                        "attn.workspace_bytes (its size), or neither";
  if (workspace) {
    auto place = dyn_cast<PlaceAttr>(workspace);
    auto bytes = dyn_cast<IntegerAttr>(workspaceBytes);
    if (!place || !bytes || bytes.getInt() < 0)
      return error(op) << "the workspace of '" << op->getName()
                       << "' needs attn.workspace = #attn.place<...> and "
                          "attn.workspace_bytes = N : i64 with N >= 0";
    PlacedValue b;
    b.name = kernel + ".workspace";
    b.kind = PlacedKind::Workspace;
    b.op = op;
    b.place = place;
    b.bytes = bytes.getInt();
    s.workspaceOf[op] = addBuffer(std::move(b));
  }
  return success();
}

LogicalResult ScheduleBuilder::readCopy(CopyStartOp start) {
  CopyDoneOp done = start.getDone();
  if (!done)
    return error(start) << "copy without its one attn.copy_done";
  auto srcIt = s.bufferOf.find(start.getSource());
  if (srcIt == s.bufferOf.end())
    return error(start) << "the source of the copy is not a step value";
  unsigned source = srcIt->second;
  StepCopy c;
  c.start = start;
  c.done = done;
  c.source = source;
  c.issuePos = s.posOf[start];
  c.waitPos = s.posOf[done];
  c.issueStep = s.stepAt[c.issuePos];
  c.waitStep = s.stepAt[c.waitPos];
  const PlacedValue &src = s.buffers[source];
  c.bytes = src.bytes;
  const PlacedValue &home = s.buffers[root[source]];
  c.writeBack = home.place && home.place == start.getTo() &&
                home.value.getType() == start.getSource().getType();
  if (c.writeBack) {
    c.destination = root[source];
  } else {
    PlacedValue b;
    auto it = returned.find(done.getResult());
    b.kind = it != returned.end() ? PlacedKind::Output : PlacedKind::Copy;
    b.name = it != returned.end()
                 ? stepResultName(step, it->second)
                 : src.name + "@" +
                       stringifyMemoryTier(start.getTo().getTier()).str();
    b.value = done.getResult();
    b.op = start;
    b.place = start.getTo();
    b.bytes = src.bytes;
    b.numPages = src.numPages;
    unsigned r = root[source];
    c.destination = addBuffer(std::move(b));
    root.back() = r;
  }
  s.bufferOf[done.getResult()] = c.destination;
  s.copies.push_back(c);
  return success();
}

void ScheduleBuilder::computeLiveness(Operation *ret) {
  const int64_t end = s.posOf[ret];
  for (PlacedValue &b : s.buffers) {
    b.firstPos = b.op ? s.posOf[b.op] : 0;
    b.lastPos = b.kind == PlacedKind::State ? end : b.firstPos;
  }
  for (auto [value, index] : s.bufferOf) {
    PlacedValue &b = s.buffers[index];
    for (Operation *user : value.getUsers()) {
      // A copy's source may be reused by later copies once this one is
      // issued (one stream, in order); compute ops are kept off its bytes
      // until the copy_done by a separate check.
      int64_t pos = s.posOf.lookup(user);
      b.lastPos = std::max(b.lastPos, pos);
    }
  }
  for (const StepCopy &c : s.copies) {
    PlacedValue &dest = s.buffers[c.destination];
    dest.lastPos = std::max(dest.lastPos, c.waitPos);
  }
  for (PlacedValue &b : s.buffers) {
    b.firstStep = s.stepAt[b.firstPos];
    b.lastStep = s.stepAt[b.lastPos];
  }
}

FailureOr<StepSchedule> ScheduleBuilder::run() {
  if (!step.getBody().hasOneBlock())
    return step.emitError() << "step function '" << step.getSymName()
                            << "' must be one straight-line block";
  Block &body = step.getBody().front();
  if (failed(readPositions(body)))
    return failure();
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands()))
    returned.try_emplace(v, unsigned(i));
  if (failed(readArguments()))
    return failure();
  int64_t index = 0;
  for (Operation &op : body.without_terminator()) {
    if (isStepComputeOp(&op)) {
      if (failed(readComputeOp(&op, index++)))
        return failure();
    } else if (auto start = dyn_cast<CopyStartOp>(op)) {
      if (failed(readCopy(start)))
        return failure();
    }
  }
  for (Value v : ret.getOperands())
    if (!s.bufferOf.count(v))
      return error(ret) << "returns a value that is not a step value";
  computeLiveness(ret);

  // Names are how messages and reports refer to buffers: keep them unique.
  llvm::StringMap<unsigned> seen;
  for (PlacedValue &b : s.buffers) {
    unsigned n = ++seen[b.name];
    if (n > 1)
      b.name += "#" + std::to_string(n);
  }
  return std::move(s);
}

FailureOr<StepSchedule> StepSchedule::build(func::FuncOp step) {
  return ScheduleBuilder(step).run();
}

std::string attnc::locationText(Location loc) {
  if (auto file = dyn_cast<FileLineColLoc>(loc))
    return (llvm::sys::path::filename(file.getFilename().getValue()) + ":" +
            Twine(file.getLine()) + ":" + Twine(file.getColumn()))
        .str();
  if (auto name = dyn_cast<NameLoc>(loc))
    return locationText(name.getChildLoc());
  if (auto fused = dyn_cast<FusedLoc>(loc))
    if (!fused.getLocations().empty())
      return locationText(fused.getLocations().front());
  std::string text;
  llvm::raw_string_ostream os(text);
  loc.print(os);
  return text;
}
