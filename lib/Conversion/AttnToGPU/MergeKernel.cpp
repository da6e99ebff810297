//===- MergeKernel.cpp - the split-KV merge kernel ------------------------===//
//
// The second launch of the split-KV decode (DecodeKernel.cpp): one block of
// D threads per (sequence, query head) combines the splits' normalized
// outputs and LSEs as attn.merge does (docs/kv-cache.md):
//
//   lse = log sum_s exp(lse_s),  o = sum_s exp(lse_s - lse) o_s,
//
// with splits at -inf contributing nothing and all -inf giving 0 and -inf.
// Thread t owns column t, so each split's row is one coalesced load; the
// LSEs are re-read by every thread from L1 (num_splits is small).
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::gpu_kernels;

namespace {

class MergeKernelBuilder : KernelBuilder {
public:
  MergeKernelBuilder(PagedAttentionOp op, gpu::GPUFuncOp func)
      : KernelBuilder(op.getLoc(), op.getElementType()), op(op), func(func) {}

  void build();

private:
  /// A loop over the splits carrying `init`; `body` maps the split index
  /// and the carried values to the next ones.
  ValueRange
  overSplits(Value numSplits, ValueRange init,
             llvm::function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(b, idx(0), numSplits, idx(1), init);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    scf::YieldOp::create(
        b, body(loop.getInductionVar(), loop.getRegionIterArgs()));
    return loop.getResults();
  }

  PagedAttentionOp op;
  gpu::GPUFuncOp func;
};

void MergeKernelBuilder::build() {
  int64_t hq = op.getNumQueryHeads(), d = op.getHeadDim();
  bool hasLse = op.getLse() != nullptr;
  Type f32Type = b.getF32Type();
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);

  // Parameters: partial_o, partial_lse, o, [lse], then i32 batch where
  // dynamic and num_splits (attn-lower-to-gpu declares them in this order).
  unsigned p = 0;
  Value partialOPtr = entry.getArgument(p++),
        partialLsePtr = entry.getArgument(p++), oPtr = entry.getArgument(p++);
  Value lsePtr = hasLse ? entry.getArgument(p++) : Value();
  auto param = [&](int64_t staticSize) -> Value {
    if (!ShapedType::isDynamic(staticSize))
      return idx(staticSize);
    return arith::IndexCastOp::create(b, b.getIndexType(),
                                      entry.getArgument(p++));
  };
  Value batch =
      param(cast<RankedTensorType>(op.getQuery().getType()).getShape()[0]);
  Value numSplits = param(ShapedType::kDynamic);

  int64_t dyn = ShapedType::kDynamic;
  Value partialO =
      globalView(partialOPtr, f32Type, {dyn, dyn, hq, d}, {numSplits, batch});
  Value partialLse =
      globalView(partialLsePtr, f32Type, {dyn, hq, dyn}, {numSplits, batch});
  Value o = globalView(oPtr, elem, {dyn, hq, d}, {batch});
  Value lse =
      hasLse ? globalView(lsePtr, f32Type, {hq, dyn}, {batch}) : Value();

  Value seq = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value col = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  auto splitLse = [&](Value s) {
    return memref::LoadOp::create(b, partialLse, ValueRange{s, head, seq})
        .getResult();
  };

  Value negInf = f32(-std::numeric_limits<double>::infinity());
  Value mx = overSplits(numSplits, {negInf}, [&](Value s, ValueRange m) {
    return SmallVector<Value>{arith::MaximumFOp::create(b, m[0], splitLse(s))};
  })[0];
  Value empty = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mx, negInf);
  Value base = select(empty, f32(0), mx);
  ValueRange sums =
      overSplits(numSplits, {f32(0), f32(0)}, [&](Value s, ValueRange acc) {
        Value w = exp2(arith::MulFOp::create(
            b, arith::SubFOp::create(b, splitLse(s), base), f32(M_LOG2E)));
        Value part =
            memref::LoadOp::create(b, partialO, ValueRange{s, seq, head, col});
        return SmallVector<Value>{
            arith::AddFOp::create(b, acc[0], w),
            arith::AddFOp::create(b, acc[1],
                                  arith::MulFOp::create(b, w, part))};
      });
  Value sum = sums[0];
  Value none = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, sum, f32(0));
  Value out = select(none, f32(0), arith::DivFOp::create(b, sums[1], sum));
  memref::StoreOp::create(b, arith::TruncFOp::create(b, elem, out), o,
                          ValueRange{seq, head, col});
  if (lse)
    emitIf(cmp(arith::CmpIPredicate::eq, col, idx(0)), [&] {
      Value v = arith::AddFOp::create(
          b, base, arith::MulFOp::create(b, log2(sum), f32(M_LN2)));
      memref::StoreOp::create(b, select(none, negInf, v), lse,
                              ValueRange{head, seq});
    });
  gpu::ReturnOp::create(b);
}

} // namespace

void attnc::gpu_kernels::buildMergeKernel(PagedAttentionOp op,
                                          gpu::GPUFuncOp func) {
  MergeKernelBuilder(op, func).build();
}
