//===- SelectPagesToTiles.cpp - attn.select_pages to the tile level -------===//
//
// Quest-style query-aware page selection (docs/sparsity.md section 3). One
// work item per (sequence, KV head), an scf.parallel. A sequence with at most
// top_k pages keeps all of them. Otherwise the item scores the pages between
// the sinks and the recent pages from the per-page key maxima and minima and
// keeps the best ones in a candidate list sorted by score: a fixed-size stack
// buffer of top_k - sink_pages - recent_pages entries, since the page count
// is only known at run time. Pages are visited in increasing order and a page
// enters only when it beats the worst candidate strictly, so equal scores
// keep the lower page. The selected pages are written to the result in
// ascending order.
//
// Scores are f32. The item first copies its G query rows, widened to f32,
// into a stack buffer; a page then costs, per vector of channels, two
// summary loads and per query head two products, a max and an add, with one
// accumulator register per query head (wider chunks would spill them).
//
//===----------------------------------------------------------------------===//

#include "Lowerings.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

class SelectPagesLowering {
public:
  SelectPagesLowering(SelectPagesOp op, int64_t chunk, ImplicitLocOpBuilder &b)
      : op(op), cache(op.getCacheType()), chunk(chunk), b(b),
        headDim(cache.getHeadDim()), groupSize(op.getGroupSize()),
        topK(op.getTopK()), sinks(op.getSinkPages()),
        recent(op.getRecentPages()), numCandidates(topK - sinks - recent),
        f32(b.getF32Type()), i32(b.getI32Type()) {}

  /// Finds k_page_max and k_page_min; fails (with an error on op) if the
  /// cache is not an expanded function argument.
  LogicalResult findBuffers();
  /// Emits the selection; returns the (offsets, indices) tensors.
  SmallVector<Value> build();

private:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value i32c(int64_t v) { return arith::ConstantIntOp::create(b, i32, v); }
  Value f32c(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  VectorType vec(int64_t n, Type t) { return VectorType::get({n}, t); }
  Value toI32(Value index) { return arith::IndexCastOp::create(b, i32, index); }
  Value toIndex(Value i) {
    return arith::IndexCastOp::create(b, b.getIndexType(), i);
  }
  Value cmp(arith::CmpIPredicate pred, Value lhs, Value rhs) {
    return arith::CmpIOp::create(b, pred, lhs, rhs);
  }
  /// `chunk` channels at d of a buffer [page or row, head, d], as f32.
  Value loadF32(Value buffer, Value row, Value head, int64_t d) {
    Type elem = cast<MemRefType>(buffer.getType()).getElementType();
    Value v = vector::LoadOp::create(b, vec(chunk, elem), buffer,
                                     ValueRange{row, head, idx(d)});
    return elem.isF32() ? v : arith::ExtFOp::create(b, vec(chunk, f32), v);
  }
  /// max(x, y) as one compare and select, which is one max instruction on
  /// x86 (a NaN operand gives y; arith.maximumf would propagate it, at
  /// several instructions and, for scalars, a branch).
  Value vmax(Value x, Value y) {
    return arith::SelectOp::create(
        b, arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, x, y), x, y);
  }
  /// indices[item, at] = value (i32).
  void storeIndex(Value value, Value at) {
    memref::StoreOp::create(b, value, indices, ValueRange{batch, head, at});
  }

  void emitItem();
  /// Writes the selection of a sequence with more than top_k pages.
  void emitSelection(Value numPages);
  /// The page's score: max over the KV head's query heads of
  /// sum_d max(q * kmax, q * kmin), f32; -inf for a negative page number.
  Value emitScore(Value physical);
  /// Inserts (score, page) into the candidate list holding `count` entries;
  /// returns the new count.
  Value emitInsert(Value score, Value page, Value count);

  SelectPagesOp op;
  KVCacheType cache;
  int64_t chunk;
  ImplicitLocOpBuilder &b;
  int64_t headDim, groupSize, topK, sinks, recent, numCandidates;
  Type f32, i32;

  Value query, kvIndptr, kvIndices, kPageMax, kPageMin;
  Value offsets, indices;
  // Per work item.
  Value batch, head, start;
  SmallVector<Value> queryHeads;
  Value candScores, candPages;
  /// The item's query rows [G, head_dim] in f32.
  Value queryRows;
};

} // namespace

LogicalResult SelectPagesLowering::findBuffers() {
  FailureOr<llvm::StringMap<Value>> buffers =
      expandedCacheBuffers(op, op.getCache());
  if (failed(buffers))
    return failure();
  kPageMax = buffers->lookup("k_page_max");
  kPageMin = buffers->lookup("k_page_min");
  if (!kPageMax || !kPageMin)
    return op.emitOpError() << "cache has no k_page_max / k_page_min "
                               "components (declare it with summary = minmax)";
  return success();
}

SmallVector<Value> SelectPagesLowering::build() {
  auto toBuffer = [&](Value tensor) -> Value {
    auto t = cast<RankedTensorType>(tensor.getType());
    return bufferization::ToBufferOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), tensor,
        /*read_only=*/true);
  };
  query = toBuffer(op.getQuery());
  kvIndptr = toBuffer(op.getKvIndptr());
  kvIndices = toBuffer(op.getKvIndices());
  Value numBatches = memref::DimOp::create(b, query, 0);
  auto alloc = [&](Type type) -> Value {
    auto t = cast<RankedTensorType>(type);
    SmallVector<Value> sizes;
    if (t.isDynamicDim(0))
      sizes.push_back(numBatches);
    return memref::AllocOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), sizes);
  };
  offsets = alloc(op.getOffsets().getType());
  indices = alloc(op.getIndices().getType());
  scf::ParallelOp::create(b, ValueRange{idx(0), idx(0)},
                          ValueRange{numBatches, idx(cache.getNumKVHeads())},
                          ValueRange{idx(1), idx(1)},
                          [&](OpBuilder &nb, Location loc, ValueRange ivs) {
                            OpBuilder::InsertionGuard guard(b);
                            b.setInsertionPoint(nb.getInsertionBlock(),
                                                nb.getInsertionPoint());
                            batch = ivs[0];
                            head = ivs[1];
                            emitItem();
                          });
  auto toTensor = [&](Value buffer, Type type) -> Value {
    return bufferization::ToTensorOp::create(b, type, buffer,
                                             /*restrict=*/true,
                                             /*writable=*/true);
  };
  return {toTensor(offsets, op.getOffsets().getType()),
          toTensor(indices, op.getIndices().getType())};
}

void SelectPagesLowering::emitItem() {
  start = toIndex(memref::LoadOp::create(b, kvIndptr, ValueRange{batch}));
  Value end = toIndex(memref::LoadOp::create(
      b, kvIndptr, ValueRange{arith::AddIOp::create(b, batch, idx(1))}));
  Value numPages = arith::SubIOp::create(b, end, start);
  // Query head g of this KV head is head * G + g (GQA packing).
  queryHeads.clear();
  Value firstHead = arith::MulIOp::create(b, head, idx(groupSize));
  for (int64_t g = 0; g < groupSize; ++g)
    queryHeads.push_back(arith::AddIOp::create(b, firstHead, idx(g)));

  Value all = cmp(arith::CmpIPredicate::sle, numPages, idx(topK));
  auto ifAll = scf::IfOp::create(b, TypeRange{b.getIndexType()}, all,
                                 /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    // At most top_k pages: all of them.
    b.setInsertionPointToStart(ifAll.thenBlock());
    Value count = arith::MaxSIOp::create(b, numPages, idx(0));
    auto loop = scf::ForOp::create(b, idx(0), count, idx(1));
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(loop.getBody());
      storeIndex(toI32(loop.getInductionVar()), loop.getInductionVar());
    }
    scf::YieldOp::create(b, count);
    b.setInsertionPointToStart(ifAll.elseBlock());
    emitSelection(numPages);
    scf::YieldOp::create(b, idx(topK));
  }
  Value selected = ifAll.getResult(0);
  memref::StoreOp::create(b, i32c(0), offsets, ValueRange{batch, head, idx(0)});
  memref::StoreOp::create(b, toI32(selected), offsets,
                          ValueRange{batch, head, idx(1)});
  // Entries past the selection are -1 (never read by the attention).
  auto pad = scf::ForOp::create(b, selected, idx(topK), idx(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(pad.getBody());
  storeIndex(i32c(-1), pad.getInductionVar());
}

void SelectPagesLowering::emitSelection(Value numPages) {
  // Output order: sinks [0, S), the candidates (all in [S, n - R)) sorted,
  // then the recent pages [n - R, n).
  Value recentStart = arith::SubIOp::create(b, numPages, idx(recent));
  auto fill = [&](int64_t count, Value firstPage, int64_t firstSlot) {
    if (count == 0)
      return;
    auto loop = scf::ForOp::create(b, idx(0), idx(count), idx(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    storeIndex(toI32(arith::AddIOp::create(b, firstPage, i)),
               arith::AddIOp::create(b, idx(firstSlot), i));
  };
  fill(sinks, idx(0), 0);
  fill(recent, recentStart, sinks + numCandidates);
  if (numCandidates == 0)
    return;

  // The candidate list, best first: scores and page numbers. Every item
  // starts it empty, so one stack buffer per thread serves all items.
  candScores =
      memref::AllocaOp::create(b, MemRefType::get({numCandidates}, f32));
  candPages =
      memref::AllocaOp::create(b, MemRefType::get({numCandidates}, i32));
  queryRows =
      memref::AllocaOp::create(b, MemRefType::get({groupSize, headDim}, f32));
  for (int64_t g = 0; g < groupSize; ++g)
    for (int64_t d = 0; d < headDim; d += chunk)
      vector::StoreOp::create(b, loadF32(query, batch, queryHeads[g], d),
                              queryRows, ValueRange{idx(g), idx(d)});
  auto scan = scf::ForOp::create(b, idx(sinks), recentStart, idx(1),
                                 ValueRange{idx(0)});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(scan.getBody());
    Value page = scan.getInductionVar();
    Value physical = memref::LoadOp::create(
        b, kvIndices, ValueRange{arith::AddIOp::create(b, start, page)});
    Value count =
        emitInsert(emitScore(physical), toI32(page), scan.getRegionIterArg(0));
    scf::YieldOp::create(b, count);
  }

  // n > top_k, so the list is full: insertion-sort its pages into
  // indices[S, S + m).
  auto sort = scf::ForOp::create(b, idx(0), idx(numCandidates), idx(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(sort.getBody());
  Value i = sort.getInductionVar();
  Value page = memref::LoadOp::create(b, candPages, ValueRange{i});
  Value first = idx(sinks);
  // Shift the larger pages of [S, S + i) up by one; j ends at the slot.
  auto shift = scf::WhileOp::create(
      b, TypeRange{b.getIndexType()},
      ValueRange{arith::AddIOp::create(b, first, i)},
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value j = args[0];
        Value more =
            arith::CmpIOp::create(ib, arith::CmpIPredicate::ugt, j, first);
        // Read slot j - 1 only when it exists (else a harmless in-bounds
        // slot, discarded by the select).
        Value prevAt = arith::SelectOp::create(
            ib, more,
            arith::SubIOp::create(ib, j, arith::ConstantIndexOp::create(ib, 1)),
            first);
        Value prev = memref::LoadOp::create(ib, indices,
                                            ValueRange{batch, head, prevAt});
        Value larger =
            arith::CmpIOp::create(ib, arith::CmpIPredicate::sgt, prev, page);
        scf::ConditionOp::create(
            ib, arith::SelectOp::create(ib, more, larger, more), j);
      },
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value j = args[0];
        Value prevAt =
            arith::SubIOp::create(ib, j, arith::ConstantIndexOp::create(ib, 1));
        Value prev = memref::LoadOp::create(ib, indices,
                                            ValueRange{batch, head, prevAt});
        memref::StoreOp::create(ib, prev, indices, ValueRange{batch, head, j});
        scf::YieldOp::create(ib, prevAt);
      });
  storeIndex(page, shift.getResult(0));
}

Value SelectPagesLowering::emitScore(Value physical) {
  const double inf = std::numeric_limits<double>::infinity();
  // A negative page number (a trimmed page) is never read; it scores -inf.
  Value valid = cmp(arith::CmpIPredicate::sge, physical, i32c(0));
  auto ifValid = scf::IfOp::create(b, TypeRange{f32}, valid,
                                   /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifValid.elseBlock());
  scf::YieldOp::create(b, f32c(-inf));
  b.setInsertionPointToStart(ifValid.thenBlock());
  Value page = toIndex(physical);
  // One accumulator per query head; the summary chunk is loaded once for
  // all of them.
  SmallVector<Value> acc(groupSize);
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value kmax = loadF32(kPageMax, page, head, d);
    Value kmin = loadF32(kPageMin, page, head, d);
    for (int64_t g = 0; g < groupSize; ++g) {
      Value q = vector::LoadOp::create(b, vec(chunk, f32), queryRows,
                                       ValueRange{idx(g), idx(d)});
      Value bound = vmax(arith::MulFOp::create(b, q, kmax),
                         arith::MulFOp::create(b, q, kmin));
      acc[g] = acc[g] ? Value(arith::AddFOp::create(b, acc[g], bound)) : bound;
    }
  }
  Value score;
  for (Value a : acc) {
    Value sum = vector::ReductionOp::create(b, vector::CombiningKind::ADD, a);
    score = score ? vmax(sum, score) : sum;
  }
  scf::YieldOp::create(b, score);
  return ifValid.getResult(0);
}

Value SelectPagesLowering::emitInsert(Value score, Value page, Value count) {
  Value last = idx(numCandidates - 1);
  Value full = cmp(arith::CmpIPredicate::eq, count, idx(numCandidates));
  // Enter when the list has room or the page beats the worst candidate
  // strictly (an equal score keeps the earlier, lower page).
  auto ifFull = scf::IfOp::create(b, TypeRange{b.getI1Type()}, full,
                                  /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifFull.thenBlock());
    Value worst = memref::LoadOp::create(b, candScores, ValueRange{last});
    scf::YieldOp::create(b, ValueRange{arith::CmpFOp::create(
                                b, arith::CmpFPredicate::OGT, score, worst)});
    b.setInsertionPointToStart(ifFull.elseBlock());
    scf::YieldOp::create(b, ValueRange{arith::ConstantIntOp::create(b, 1, 1)});
  }
  auto ifEnter =
      scf::IfOp::create(b, TypeRange{b.getIndexType()}, ifFull.getResult(0),
                        /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(ifEnter.elseBlock());
  scf::YieldOp::create(b, count);
  b.setInsertionPointToStart(ifEnter.thenBlock());
  // Shift the entries with a lower score down one slot (a full list drops
  // its last entry); j ends at the new entry's slot.
  Value from = arith::SelectOp::create(b, full, last, count);
  auto shift = scf::WhileOp::create(
      b, TypeRange{b.getIndexType()}, ValueRange{from},
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value j = args[0];
        Value zeroIdx = arith::ConstantIndexOp::create(ib, 0);
        Value more =
            arith::CmpIOp::create(ib, arith::CmpIPredicate::ugt, j, zeroIdx);
        Value prevAt = arith::SelectOp::create(
            ib, more,
            arith::SubIOp::create(ib, j, arith::ConstantIndexOp::create(ib, 1)),
            zeroIdx);
        // At j = 0 this reads slot 0, perhaps not yet written; the select
        // discards it.
        Value prev = memref::LoadOp::create(ib, candScores, ValueRange{prevAt});
        Value lower =
            arith::CmpFOp::create(ib, arith::CmpFPredicate::OLT, prev, score);
        scf::ConditionOp::create(
            ib, arith::SelectOp::create(ib, more, lower, more), j);
      },
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value j = args[0];
        Value prevAt =
            arith::SubIOp::create(ib, j, arith::ConstantIndexOp::create(ib, 1));
        memref::StoreOp::create(
            ib, memref::LoadOp::create(ib, candScores, ValueRange{prevAt}),
            candScores, ValueRange{j});
        memref::StoreOp::create(
            ib, memref::LoadOp::create(ib, candPages, ValueRange{prevAt}),
            candPages, ValueRange{j});
        scf::YieldOp::create(ib, prevAt);
      });
  Value at = shift.getResult(0);
  memref::StoreOp::create(b, score, candScores, ValueRange{at});
  memref::StoreOp::create(b, page, candPages, ValueRange{at});
  Value grown = arith::AddIOp::create(b, count, idx(1));
  scf::YieldOp::create(
      b, ValueRange{arith::SelectOp::create(b, full, count, grown)});
  return ifEnter.getResult(0);
}

LogicalResult attnc::lowerSelectPages(SelectPagesOp op, int64_t vectorWidth) {
  // Largest power of two up to one vector that divides head_dim.
  int64_t headDim = op.getCacheType().getHeadDim(), chunk = 1;
  for (int64_t c = std::max<int64_t>(1, vectorWidth); c >= 1; c /= 2)
    if (headDim % c == 0) {
      chunk = c;
      break;
    }
  ImplicitLocOpBuilder b(op.getLoc(), op);
  SelectPagesLowering lowering(op, chunk, b);
  if (failed(lowering.findBuffers()))
    return failure();
  SmallVector<Value> results = lowering.build();
  auto castOp = op.getCache().getDefiningOp<UnrealizedConversionCastOp>();
  op->replaceAllUsesWith(results);
  op.erase();
  if (castOp && castOp->use_empty())
    castOp.erase();
  return success();
}
