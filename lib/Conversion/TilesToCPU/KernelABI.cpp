//===- KernelABI.cpp - host work-item ABI for bufferized kernels ----------===//
//
// Turns each bufferized kernel function into the host ABI of
// docs/artifacts.md: results become out-parameters, the buffers listed in
// `attn.scratch` become trailing scratch parameters, each top-level
// scf.parallel (one per phase) becomes a loop over a caller-given work-item
// range run when the caller's `phase` selects it, and a companion
// `NAME__count` function returns how many items a phase has.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/SetVector.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNCPUKERNELABI
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {

constexpr StringLiteral kScratchAttr = "attn.scratch";
constexpr StringLiteral kPhasesAttr = "attn.phases";

/// Results that are fresh allocations become trailing out-parameters.
LogicalResult resultsToOutParams(func::FuncOp func) {
  auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
    auto alloc = v.getDefiningOp<memref::AllocOp>();
    if (!alloc)
      return func.emitError()
             << "kernel '" << func.getSymName() << "' result #" << i
             << " is not computed by the kernel (it returns "
                "an argument or a view); return only "
                "attention results";
    unsigned argNo = func.getNumArguments();
    if (failed(func.insertArgument(argNo, alloc.getType(),
                                   func.getResultAttrDict(i), v.getLoc())))
      return failure();
    alloc.replaceAllUsesWith(func.getArgument(argNo));
    alloc.erase();
  }
  ret->setOperands({});
  func.setFunctionType(
      FunctionType::get(func.getContext(), func.getArgumentTypes(), {}));
  func.setAllResultAttrs(ArrayRef<DictionaryAttr>{});
  return success();
}

/// Checks one `attn.scratch` entry against the allocation it describes.
LogicalResult checkScratchEntry(func::FuncOp func, memref::AllocOp alloc,
                                Attribute entry, unsigned index) {
  auto fail = [&]() {
    return alloc.emitError() << "scratch buffer #" << index << " of kernel '"
                             << func.getSymName() << "' ";
  };
  auto dict = dyn_cast<DictionaryAttr>(entry);
  auto name = dict ? dict.getAs<StringAttr>("name") : StringAttr();
  auto dtype = dict ? dict.getAs<StringAttr>("dtype") : StringAttr();
  auto shape = dict ? dict.getAs<ArrayAttr>("shape") : ArrayAttr();
  if (!name || !dtype || !shape)
    return fail() << "is described by " << entry << " in " << kScratchAttr
                  << "; expected {name = \"...\", dtype = \"...\", shape = "
                     "[...]}";
  MemRefType type = alloc.getType();
  if (dtype.getValue() != attnc::manifestDtypeName(type.getElementType()))
    return fail() << "'" << name.getValue() << "' is " << type << " but "
                  << kScratchAttr << " says dtype " << dtype;
  if (shape.size() != static_cast<size_t>(type.getRank()))
    return fail() << "'" << name.getValue() << "' is " << type << " but "
                  << kScratchAttr << " gives " << shape.size() << " dimensions";
  for (auto [dim, size] : llvm::zip(shape, type.getShape())) {
    auto fixed = dyn_cast<IntegerAttr>(dim);
    if (!fixed && !isa<StringAttr>(dim))
      return fail() << "'" << name.getValue() << "' has shape entry " << dim
                    << " in " << kScratchAttr
                    << "; expected an integer or a symbol string";
    if (fixed && !ShapedType::isDynamic(size) && fixed.getInt() != size)
      return fail() << "'" << name.getValue() << "' is " << type << " but "
                    << kScratchAttr << " gives shape " << shape;
  }
  return success();
}

/// The top-level allocations that are neither results (already
/// out-parameters) nor workspace (allocas) are the scratch buffers that
/// `attn.scratch` lists in program order; they become trailing parameters
/// the caller provides.
LogicalResult scratchToParams(func::FuncOp func) {
  SmallVector<memref::AllocOp> allocs(
      func.getBody().front().getOps<memref::AllocOp>());
  ArrayAttr listed;
  if (Attribute attr = func->getAttr(kScratchAttr)) {
    listed = dyn_cast<ArrayAttr>(attr);
    if (!listed)
      return func.emitError()
             << "kernel '" << func.getSymName() << "' has " << kScratchAttr
             << " = " << attr << "; expected an array of dictionaries";
  }
  size_t count = listed ? listed.size() : 0;
  if (allocs.size() != count)
    return func.emitError()
           << "kernel '" << func.getSymName() << "' allocates " << allocs.size()
           << " buffers outside its work loops that are not results, but its "
           << kScratchAttr << " attribute lists " << count
           << "; every such buffer must be a scratch buffer the manifest "
              "describes";
  for (auto [i, alloc] : llvm::enumerate(allocs))
    if (failed(checkScratchEntry(func, alloc, listed[i], i)))
      return failure();
  for (memref::AllocOp alloc : allocs) {
    unsigned argNo = func.getNumArguments();
    if (failed(func.insertArgument(argNo, alloc.getType(), {}, alloc.getLoc())))
      return failure();
    alloc.replaceAllUsesWith(func.getArgument(argNo));
    alloc.erase();
  }
  func->removeAttr(kScratchAttr);
  return success();
}

/// The work loops, one per phase, in order. None at all when
/// canonicalization folded a single-iteration loop away (static shapes with
/// one work item): then the kernel has one phase of one item.
FailureOr<SmallVector<scf::ParallelOp>> findPhaseLoops(func::FuncOp func) {
  SmallVector<scf::ParallelOp> loops(
      func.getBody().front().getOps<scf::ParallelOp>());
  for (scf::ParallelOp loop : loops) {
    for (Value lb : loop.getLowerBound())
      if (!matchPattern(lb, m_Zero()))
        return loop.emitError("work loop must start at 0");
    for (Value step : loop.getStep())
      if (!matchPattern(step, m_One()))
        return loop.emitError("work loop must have unit steps");
  }
  if (auto phases = func->getAttrOfType<IntegerAttr>(kPhasesAttr)) {
    int64_t expected = phases.getInt();
    int64_t found = std::max<int64_t>(loops.size(), 1);
    if (expected != found)
      return func.emitError()
             << "kernel '" << func.getSymName() << "' declares " << kPhasesAttr
             << " = " << expected << " but has " << loops.size()
             << " top-level scf.parallel work loops (one per phase); was a "
                "single-iteration phase loop folded away?";
    func->removeAttr(kPhasesAttr);
  }
  return loops;
}

/// Position of `op` in its block.
int64_t positionOf(Operation *op) {
  return std::distance(op->getBlock()->begin(), op->getIterator());
}

/// `NAME__count(args..., phase)`: the work-item count of `phase` (0 for a
/// phase the kernel does not have), from the same argument list.
void buildCountFunction(func::FuncOp func, ArrayRef<scf::ParallelOp> loops) {
  OpBuilder top(func);
  top.setInsertionPointAfter(func);
  auto count = cast<func::FuncOp>(top.clone(*func));
  count.setSymName((func.getSymName() + "__count").str());
  count.setFunctionType(FunctionType::get(
      func.getContext(), count.getArgumentTypes(), {top.getIndexType()}));
  Block &entry = count.getBody().front();
  Value phase = count.getArguments().back();

  // Each phase's count, computed where its loop was: the clone's loops sit
  // at the same positions of its entry block.
  SmallVector<Operation *> entryOps =
      llvm::map_to_vector(entry, [](Operation &op) { return &op; });
  SmallVector<Value> totals;
  for (scf::ParallelOp loop : loops) {
    auto par = cast<scf::ParallelOp>(entryOps[positionOf(loop)]);
    ImplicitLocOpBuilder b(par.getLoc(), par);
    Value total = arith::ConstantIndexOp::create(b, 1);
    for (Value ub : par.getUpperBound())
      total = arith::MulIOp::create(b, total, ub);
    totals.push_back(total);
  }
  Operation *oldReturn = entry.getTerminator();
  ImplicitLocOpBuilder b(func.getLoc(), oldReturn);
  if (loops.empty())
    totals.push_back(arith::ConstantIndexOp::create(b, 1));
  Value result = arith::ConstantIndexOp::create(b, 0);
  for (auto [i, total] : llvm::enumerate(totals)) {
    Value selected = arith::CmpIOp::create(
        b, arith::CmpIPredicate::eq, phase,
        arith::ConstantIndexOp::create(b, static_cast<int64_t>(i)));
    result = arith::SelectOp::create(b, selected, total, result);
  }
  auto ret = func::ReturnOp::create(b, result);
  oldReturn->erase();

  // Keep only what the counts need: the work itself, scratch writes outside
  // the loops and the workspace go.
  llvm::SetVector<Operation *> keep;
  SmallVector<Value> worklist{result};
  while (!worklist.empty()) {
    Operation *def = worklist.pop_back_val().getDefiningOp();
    if (!def || def->getBlock() != &entry || !keep.insert(def))
      continue;
    llvm::append_range(worklist, def->getOperands());
    visitUsedValuesDefinedAbove(def->getRegions(), [&](OpOperand *operand) {
      worklist.push_back(operand->get());
    });
  }
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(entry)))
    if (&op != ret && !keep.contains(&op))
      op.erase();
}

/// Runs phase `i`'s work loop as an scf.for over [begin, end) of its
/// linearized item space when `phase == i`. Code outside the loops is
/// shared by every phase.
void distributeWorkItems(func::FuncOp func, ArrayRef<scf::ParallelOp> loops,
                         Value phase) {
  Location loc = func.getLoc();
  MLIRContext *ctx = func.getContext();
  unsigned n = func.getNumArguments();
  Type indexType = IndexType::get(ctx);
  (void)func.insertArgument(n, indexType, {}, loc);
  (void)func.insertArgument(n + 1, indexType, {}, loc);
  Value begin = func.getArgument(n), end = func.getArgument(n + 1);

  if (loops.empty()) {
    // One phase of one work item: run the whole body in phase 0 when item
    // 0 is in the range.
    Block &entry = func.getBody().front();
    ImplicitLocOpBuilder b(func.getLoc(), &entry, entry.begin());
    Value zero = arith::ConstantIndexOp::create(b, 0);
    Value inRange = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::eq, phase, zero),
        arith::AndIOp::create(
            b, arith::CmpIOp::create(b, arith::CmpIPredicate::sle, begin, zero),
            arith::CmpIOp::create(b, arith::CmpIPredicate::sgt, end, zero)));
    auto guard = scf::IfOp::create(b, inRange);
    Operation *ret = entry.getTerminator();
    Block *then = guard.thenBlock();
    then->getOperations().splice(then->begin(), entry.getOperations(),
                                 std::next(guard->getIterator()),
                                 ret->getIterator());
    return;
  }

  IRRewriter rewriter(ctx);
  for (auto [i, phaseLoop] : llvm::enumerate(loops)) {
    scf::ParallelOp loop = phaseLoop;
    ImplicitLocOpBuilder b(loop.getLoc(), loop);
    Value selected = arith::CmpIOp::create(
        b, arith::CmpIPredicate::eq, phase,
        arith::ConstantIndexOp::create(b, static_cast<int64_t>(i)));
    auto guard = scf::IfOp::create(b, selected);
    b.setInsertionPointToStart(guard.thenBlock());
    auto forOp =
        scf::ForOp::create(b, begin, end, arith::ConstantIndexOp::create(b, 1));
    b.setInsertionPointToStart(forOp.getBody());
    // Innermost dimension varies fastest: consecutive items share K/V.
    SmallVector<Value> ivs(loop.getNumLoops());
    Value rest = forOp.getInductionVar();
    for (int64_t d = loop.getNumLoops() - 1; d >= 0; --d) {
      Value ub = loop.getUpperBound()[d];
      ivs[d] = d == 0 ? rest : arith::RemUIOp::create(b, rest, ub);
      if (d > 0)
        rest = arith::DivUIOp::create(b, rest, ub);
    }
    Block *body = loop.getBody();
    body->getTerminator()->erase();
    rewriter.inlineBlockBefore(body, forOp.getBody()->getTerminator(), ivs);
    loop.erase();
  }
}

/// Workspace allocas are re-initialized by every item before use, so one
/// per call suffices: hoist them to the entry block.
void hoistWorkspace(func::FuncOp func) {
  Block &entry = func.getBody().front();
  func.walk([&](memref::AllocaOp alloca) {
    if (alloca->getBlock() != &entry && alloca.getType().hasStaticShape())
      alloca->moveBefore(&entry, entry.begin());
  });
}

struct AttnCPUKernelABIPass
    : public attnc::impl::AttnCPUKernelABIBase<AttnCPUKernelABIPass> {
  void runOnOperation() override {
    SmallVector<func::FuncOp> kernels;
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isDeclaration())
        kernels.push_back(func);
    for (func::FuncOp func : kernels) {
      // Argument names went to the manifest; LLVM has no use for them.
      for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
        func.removeArgAttr(i, "attn.name");
        func.removeArgAttr(i, "attn.role");
      }
      for (unsigned i = 0, e = func.getNumResults(); i < e; ++i)
        func.removeResultAttr(i, StringAttr::get(&getContext(), "attn.name"));
      if (failed(resultsToOutParams(func)) || failed(scratchToParams(func)))
        return signalPassFailure();
      FailureOr<SmallVector<scf::ParallelOp>> loops = findPhaseLoops(func);
      if (failed(loops))
        return signalPassFailure();
      unsigned phaseArg = func.getNumArguments();
      if (failed(func.insertArgument(phaseArg, IndexType::get(&getContext()),
                                     {}, func.getLoc())))
        return signalPassFailure();
      buildCountFunction(func, *loops);
      distributeWorkItems(func, *loops, func.getArgument(phaseArg));
      hoistWorkspace(func);
    }
    UnitAttr unit = UnitAttr::get(&getContext());
    for (auto func : getOperation().getOps<func::FuncOp>())
      func->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), unit);
  }
};

} // namespace

std::string attnc::manifestDtypeName(Type t) {
  if (t.isF32())
    return "f32";
  if (t.isF16())
    return "f16";
  if (t.isBF16())
    return "bf16";
  if (t.isInteger(32))
    return "i32";
  if (t.isInteger(8))
    return "i8";
  std::string s;
  llvm::raw_string_ostream(s) << t;
  return s;
}
