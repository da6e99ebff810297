//===- OutlineSteps.cpp - planned steps into kernels and a program --------===//

#include "attnc/Planning/OutlineSteps.h"

#include "attnc/Conversion/Passes.h"
#include "attnc/Planning/StepPlan.h"

#include "attn/AttnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;
namespace json = llvm::json;

namespace {

json::Object placeJSON(PlaceAttr place) {
  return json::Object{{"tier", stringifyMemoryTier(place.getTier())},
                      {"offset", place.getOffset()}};
}

json::Array shapeJSON(ArrayRef<int64_t> shape) {
  json::Array a;
  for (int64_t d : shape)
    a.push_back(d);
  return a;
}

/// Reads a planned step: the place of every value and the kv_cache sizes.
class StepReader {
public:
  explicit StepReader(func::FuncOp step) : step(step) {}

  PlaceAttr placeOf(Value v) const {
    if (auto arg = dyn_cast<BlockArgument>(v))
      return step.getArgAttrOfType<PlaceAttr>(arg.getArgNumber(), "attn.place");
    Operation *def = v.getDefiningOp();
    if (auto done = dyn_cast<CopyDoneOp>(def))
      return done.getStart().getTo();
    auto places = def->getAttrOfType<ArrayAttr>("attn.places");
    return cast<PlaceAttr>(places[cast<OpResult>(v).getResultNumber()]);
  }

  /// The pool size of the cache `v` stands for (through its copies).
  int64_t numPagesOf(Value v) const {
    while (auto done = v.getDefiningOp<CopyDoneOp>())
      v = done.getStart().getSource();
    auto arg = cast<BlockArgument>(v);
    return step
        .getArgAttrOfType<IntegerAttr>(arg.getArgNumber(), "attn.num_pages")
        .getInt();
  }

  /// Kernel arguments (or step buffers) for `v`: one per tensor, one per
  /// component of a cache.
  void appendArgs(Value v, json::Array &out, StringRef name = {},
                  StringRef dir = {}) const {
    PlaceAttr place = placeOf(v);
    auto entry = [&](StringRef n, StringRef dtype, ArrayRef<int64_t> shape,
                     int64_t offset, int64_t bytes) {
      json::Object o{{"tier", stringifyMemoryTier(place.getTier())},
                     {"offset", place.getOffset() + offset},
                     {"bytes", bytes},
                     {"shape", shapeJSON(shape)}};
      // json::Value keeps a StringRef without copying it.
      if (!n.empty()) {
        o["name"] = n.str();
        o["dir"] = dir.str();
        o["dtype"] = dtype.str();
      }
      out.push_back(std::move(o));
    };
    if (auto cache = dyn_cast<KVCacheType>(v.getType())) {
      for (const PlacedComponent &c : componentLayout(cache, numPagesOf(v)))
        entry(name.empty() ? "" : (name + "." + c.role).str(), c.dtype, c.shape,
              c.offset, c.bytes);
      return;
    }
    auto t = cast<RankedTensorType>(v.getType());
    entry(name, manifestDtypeName(t.getElementType()), t.getShape(), 0,
          placedBytes(t, std::nullopt));
  }

private:
  // Op handles' accessors are not const.
  mutable func::FuncOp step;
};

FailureOr<json::Object> outlineStep(func::FuncOp step, SymbolTable &symbols) {
  StepReader reader(step);
  Block &body = step.getBody().front();
  json::Object entry;
  entry["name"] = step.getSymName().str();

  // Tiers: the summary's capacities and peaks (the arenas' sizes).
  json::Array tiers;
  auto plan = step->getAttrOfType<DictionaryAttr>("attn.plan");
  auto summaries = plan.getAs<ArrayAttr>("tiers");
  for (Attribute a : summaries) {
    auto t = cast<DictionaryAttr>(a);
    StringRef name = t.getAs<StringAttr>("name").getValue();
    tiers.push_back(
        json::Object{{"name", name.str()},
                     {"capacity", t.getAs<IntegerAttr>("capacity").getInt()},
                     {"size", t.getAs<IntegerAttr>("peak").getInt()},
                     {"device", name == "hbm"}});
  }
  entry["tiers"] = std::move(tiers);

  json::Array buffers;
  for (BlockArgument arg : step.getArguments())
    reader.appendArgs(arg, buffers, stepArgName(step, arg.getArgNumber()),
                      isa<KVCacheType>(arg.getType()) ? "inout" : "in");
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands()))
    reader.appendArgs(v, buffers, stepResultName(step, i), "out");
  entry["buffers"] = std::move(buffers);

  json::Array program;
  llvm::DenseMap<Operation *, int64_t> copyIds;
  int64_t kernelIndex = 0;
  OpBuilder b(step);
  for (Operation &op : body.without_terminator()) {
    if (auto start = dyn_cast<CopyStartOp>(op)) {
      int64_t id = int64_t(copyIds.size());
      copyIds[start] = id;
      program.push_back(json::Object{
          {"op", "copy_start"},
          {"id", id},
          {"bytes", placedBytes(start.getSource().getType(),
                                isa<KVCacheType>(start.getSource().getType())
                                    ? std::optional<int64_t>(
                                          reader.numPagesOf(start.getSource()))
                                    : std::nullopt)},
          {"from", placeJSON(reader.placeOf(start.getSource()))},
          {"to", placeJSON(start.getTo())}});
      continue;
    }
    if (auto done = dyn_cast<CopyDoneOp>(op)) {
      program.push_back(json::Object{{"op", "copy_done"},
                                     {"id", copyIds.lookup(done.getStart())}});
      continue;
    }
    // A compute op: its own kernel function.
    std::string name = (step.getSymName() + "__" + Twine(kernelIndex++)).str();
    if (symbols.lookup(name))
      return step.emitError()
             << "cannot outline kernel " << (kernelIndex - 1) << " of step '"
             << step.getSymName() << "': the symbol '" << name
             << "' is taken; rename it";
    auto type = FunctionType::get(step.getContext(), op.getOperandTypes(),
                                  op.getResultTypes());
    auto kernel = func::FuncOp::create(b, op.getLoc(), name, type);
    IRMapping mapping;
    Block *entryBlock = kernel.addEntryBlock();
    mapping.map(op.getOperands(), entryBlock->getArguments());
    OpBuilder kb = OpBuilder::atBlockEnd(entryBlock);
    Operation *clone = kb.clone(op, mapping);
    for (StringRef attr : {"attn.places", "attn.seconds", "attn.workspace",
                           "attn.workspace_bytes"})
      clone->removeAttr(attr);
    func::ReturnOp::create(kb, op.getLoc(), clone->getResults());
    symbols.insert(kernel);

    json::Array args;
    for (Value v : op.getOperands())
      reader.appendArgs(v, args);
    for (Value v : op.getResults())
      reader.appendArgs(v, args);
    program.push_back(json::Object{
        {"op", "kernel"}, {"kernel", name}, {"args", std::move(args)}});
  }
  entry["program"] = std::move(program);
  return entry;
}

} // namespace

FailureOr<json::Array> attnc::outlineSteps(ModuleOp module) {
  SymbolTable symbols(module);
  SmallVector<func::FuncOp> steps;
  for (auto fn : module.getOps<func::FuncOp>())
    if (fn->hasAttr("attn.step"))
      steps.push_back(fn);
  json::Array entries;
  for (func::FuncOp step : steps) {
    if (failed(verifyStepPlan(step)))
      return failure();
    FailureOr<json::Object> entry = outlineStep(step, symbols);
    if (failed(entry))
      return failure();
    entries.push_back(std::move(*entry));
    symbols.erase(step);
  }
  return entries;
}
