//===- KernelABI.cpp - host work-item ABI for bufferized kernels ----------===//
//
// Turns each bufferized kernel function into the host ABI of
// docs/artifacts.md: results become out-parameters, the tile level's outer
// scf.parallel becomes a loop over a caller-given work-item range, and a
// companion `NAME__count` function returns how many items there are.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNCPUKERNELABI
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {

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

/// The tile level's work loop, or null when canonicalization folded a
/// single-iteration loop away (static shapes with one work item).
FailureOr<scf::ParallelOp> findWorkLoop(func::FuncOp func) {
  SmallVector<scf::ParallelOp> loops;
  for (auto loop : func.getBody().front().getOps<scf::ParallelOp>())
    loops.push_back(loop);
  if (loops.empty())
    return scf::ParallelOp();
  if (loops.size() != 1)
    return func.emitError()
           << "kernel '" << func.getSymName() << "' has " << loops.size()
           << " attention computations; the host target "
              "compiles exactly one per kernel function";
  for (Value lb : loops[0].getLowerBound())
    if (!matchPattern(lb, m_Zero()))
      return loops[0].emitError("work loop must start at 0");
  for (Value step : loops[0].getStep())
    if (!matchPattern(step, m_One()))
      return loops[0].emitError("work loop must have unit steps");
  return loops[0];
}

/// `NAME__count`: the work-item count, from the same argument list.
void buildCountFunction(func::FuncOp func, scf::ParallelOp loop) {
  OpBuilder top(func);
  top.setInsertionPointAfter(func);
  auto count = cast<func::FuncOp>(top.clone(*func));
  count.setSymName((func.getSymName() + "__count").str());
  count.setFunctionType(FunctionType::get(
      func.getContext(), count.getArgumentTypes(), {top.getIndexType()}));
  Block &entry = count.getBody().front();
  if (!loop) {
    entry.getTerminator()->erase();
    while (!entry.empty())
      entry.back().erase();
    ImplicitLocOpBuilder b(func.getLoc(), &entry, entry.end());
    func::ReturnOp::create(b, ValueRange{arith::ConstantIndexOp::create(b, 1)});
    return;
  }

  // The clone's work loop sits at the same position of its entry block.
  auto position =
      std::distance(func.getBody().front().begin(), loop->getIterator());
  Operation *cloneLoop = &*std::next(entry.begin(), position);
  auto par = cast<scf::ParallelOp>(cloneLoop);
  ImplicitLocOpBuilder b(par.getLoc(), par);
  Value total = arith::ConstantIndexOp::create(b, 1);
  for (Value ub : par.getUpperBound())
    total = arith::MulIOp::create(b, total, ub);
  func::ReturnOp::create(b, total);
  while (&entry.back() != total.getDefiningOp()->getNextNode())
    entry.back().erase();
}

/// Replaces the work loop by an scf.for over [begin, end) of the
/// linearized (batch, kv head, query tile) space.
void distributeWorkItems(func::FuncOp func, scf::ParallelOp loop) {
  Location loc = func.getLoc();
  MLIRContext *ctx = func.getContext();
  unsigned n = func.getNumArguments();
  Type indexType = IndexType::get(ctx);
  (void)func.insertArgument(n, indexType, {}, loc);
  (void)func.insertArgument(n + 1, indexType, {}, loc);
  Value begin = func.getArgument(n), end = func.getArgument(n + 1);

  if (!loop) {
    // One work item: run the whole body when item 0 is in the range.
    Block &entry = func.getBody().front();
    ImplicitLocOpBuilder b(func.getLoc(), &entry, entry.begin());
    Value zero = arith::ConstantIndexOp::create(b, 0);
    Value inRange = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::sle, begin, zero),
        arith::CmpIOp::create(b, arith::CmpIPredicate::sgt, end, zero));
    auto guard = scf::IfOp::create(b, inRange);
    Operation *ret = entry.getTerminator();
    Block *then = guard.thenBlock();
    then->getOperations().splice(then->begin(), entry.getOperations(),
                                 std::next(guard->getIterator()),
                                 ret->getIterator());
    return;
  }

  ImplicitLocOpBuilder b(loc, loop);
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
  IRRewriter rewriter(ctx);
  rewriter.inlineBlockBefore(body, forOp.getBody()->getTerminator(), ivs);
  loop.erase();
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
      for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
        func.removeArgAttr(i, "attn.name");
      for (unsigned i = 0, e = func.getNumResults(); i < e; ++i)
        func.removeResultAttr(i, StringAttr::get(&getContext(), "attn.name"));
      if (failed(resultsToOutParams(func)))
        return signalPassFailure();
      FailureOr<scf::ParallelOp> loop = findWorkLoop(func);
      if (failed(loop))
        return signalPassFailure();
      buildCountFunction(func, *loop);
      distributeWorkItems(func, *loop);
      hoistWorkspace(func);
    }
    UnitAttr unit = UnitAttr::get(&getContext());
    for (auto func : getOperation().getOps<func::FuncOp>())
      func->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), unit);
  }
};

} // namespace
