//===- DecodeKernel.cpp - the paged decode kernel -------------------------===//
//
// The kernel of a decode `attn.paged_attention` (one query per sequence,
// f16/bf16, int8, int4 or fp8 pages) for sm_80 and newer, in the shape of
// FlashInfer's decode:
//
//   - one block per (KV head, sequence): the G query heads of the KV head
//     are all computed in the block, so each K/V byte is read once;
//   - a key is read by D / E lanes, 16 bytes each (ld.global.v4.b32; E = 8
//     elements of f16/bf16 pages, 16 of int8 and fp8), so a block of 128
//     threads reads 128 / (D / E) keys at a time, each through the page
//     table (kv_indptr, kv_indices, kv_last_page_len); quantized K and V
//     are dequantized in registers (int8: per-channel K scales of the key's
//     group and the per-token V scale; fp8: the bits widened to f16, times
//     the per-head scale);
//   - per lane and query head, the dot product of its E elements, reduced
//     over the key's lanes with shuffles, then an online softmax (exp2 on
//     the SFU) over the keys its lane group visits;
//   - the lane groups' (max, sum, accumulator) merged through shared memory
//     at the end, as attn.merge does with partials, and stored with 16-byte
//     stores;
//   - split-KV: blockIdx.z is one of num_splits (chosen per call by the
//     runtime) ranges of the sequence's visible keys; with one split the
//     block writes the outputs, with more it writes its normalized output
//     and LSE to the partials that the merge kernel (MergeKernel.cpp)
//     combines.
//
// Decode sees every key up to the query's position (the last one), so a
// causal mask changes nothing; a window (with sinks) bounds the key range.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>
#include <limits>
#include <tuple>

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::gpu_kernels;

namespace {

class DecodeKernelBuilder : KernelBuilder {
public:
  DecodeKernelBuilder(PagedAttentionOp op, gpu::GPUFuncOp func, int64_t threads,
                      int64_t minSplitKeys)
      : KernelBuilder(op.getLoc(), op.getElementType()), op(op), func(func),
        threads(threads), minSplitKeys(minSplitKeys),
        storage(op.getCacheType().getStorage()), int8(storage.isInteger(8)),
        int4(storage.isInteger(4)),
        fp8(isa<Float8E4M3FNType, Float8E5M2Type>(storage)),
        vec(int8 || int4 || fp8 ? 16 : 8) {}

  void build();

private:
  /// `vec` elements of `type` at `indices` (16-byte aligned), as f32.
  Value loadVector(Value memref, ValueRange indices, Type type) {
    return loadAsF32(memref, indices, type, vec);
  }
  Value loadIndex(Value memref, Value i) {
    Value v = memref::LoadOp::create(b, memref, ValueRange{i});
    return arith::IndexCastOp::create(b, b.getIndexType(), v);
  }
  Value splat(Value scalar) {
    return vector::BroadcastOp::create(
        b, VectorType::get({vec}, b.getF32Type()), scalar);
  }

  PagedAttentionOp op;
  gpu::GPUFuncOp func;
  int64_t threads;
  int64_t minSplitKeys;
  Type storage;
  /// The pages' kind, for the parameters (PagedKV.cpp reads them).
  bool int8, int4, fp8;
  /// Elements per lane: one 16-byte load of the pages.
  int64_t vec;
};

void DecodeKernelBuilder::build() {
  MLIRContext *ctx = b.getContext();
  KVCacheType cache = op.getCacheType();
  int64_t hq = op.getNumQueryHeads(), hkv = cache.getNumKVHeads();
  int64_t d = cache.getHeadDim(), pageSize = cache.getPageSize();
  int64_t group = hq / hkv;
  int64_t lanesPerKey = d / vec, keysPerStep = threads / lanesPerKey;
  bool hasLse = op.getLse() != nullptr;
  Type f32Type = b.getF32Type();
  auto vecF32 = VectorType::get({vec}, f32Type);

  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);

  // Parameters: q, k_pages, v_pages, [k_scale, v_scale, [k_min, v_min]],
  // [k_recent, v_recent], kv_indptr, kv_indices, kv_last_page_len,
  // [kv_rings], o, [lse], partial_o, partial_lse, then i32 batch /
  // num_pages / num_page_refs where dynamic, [num_rings] and num_splits
  // (attn-lower-to-gpu declares them in this order).
  unsigned p = 0;
  Value qPtr = entry.getArgument(p++), kPtr = entry.getArgument(p++),
        vPtr = entry.getArgument(p++);
  Value kScalePtr = int8 || int4 || fp8 ? entry.getArgument(p++) : Value();
  Value vScalePtr = int8 || int4 || fp8 ? entry.getArgument(p++) : Value();
  Value kMinPtr = int4 ? entry.getArgument(p++) : Value();
  Value vMinPtr = int4 ? entry.getArgument(p++) : Value();
  // A residual window of R tokens: each sequence's ring of its R latest
  // tokens in f16, and the sequences' rings.
  int64_t residual = cache.getResidual();
  Value kRecentPtr = residual ? entry.getArgument(p++) : Value();
  Value vRecentPtr = residual ? entry.getArgument(p++) : Value();
  Value indptrPtr = entry.getArgument(p++), indicesPtr = entry.getArgument(p++),
        lastPtr = entry.getArgument(p++);
  Value ringsPtr = residual ? entry.getArgument(p++) : Value();
  Value oPtr = entry.getArgument(p++);
  Value lsePtr = hasLse ? entry.getArgument(p++) : Value();
  Value partialOPtr = entry.getArgument(p++),
        partialLsePtr = entry.getArgument(p++);
  auto qShape = cast<RankedTensorType>(op.getQuery().getType()).getShape();
  auto refsShape =
      cast<RankedTensorType>(op.getKvIndices().getType()).getShape();
  auto param = [&](int64_t staticSize) -> Value {
    if (!ShapedType::isDynamic(staticSize))
      return idx(staticSize);
    return arith::IndexCastOp::create(b, b.getIndexType(),
                                      entry.getArgument(p++));
  };
  Value batch = param(qShape[0]);
  Value numPages = param(ShapedType::kDynamic);
  Value numRefs = param(refsShape[0]);
  Value numRings = residual ? param(ShapedType::kDynamic) : Value();
  Value numSplits = param(ShapedType::kDynamic);

  int64_t dyn = ShapedType::kDynamic;
  Value q = globalView(qPtr, elem, {dyn, hq, d}, {batch});
  Type i32 = b.getI32Type();
  Value indptr = globalView(indptrPtr, i32, {dyn}, {add(batch, idx(1))});
  Value indices = globalView(indicesPtr, i32, {dyn}, {numRefs});
  Value lastLen = globalView(lastPtr, i32, {dyn}, {batch});
  Type f16 = b.getF16Type();
  Value kRecent, vRecent, rings;
  if (residual) {
    kRecent = globalView(kRecentPtr, f16, {dyn, residual, hkv, d}, {numRings});
    vRecent = globalView(vRecentPtr, f16, {dyn, residual, hkv, d}, {numRings});
    rings = globalView(ringsPtr, i32, {dyn}, {batch});
  }
  Value o = globalView(oPtr, elem, {dyn, hq, d}, {batch});
  Value lse =
      hasLse ? globalView(lsePtr, f32Type, {hq, dyn}, {batch}) : Value();
  Value partialO =
      globalView(partialOPtr, f32Type, {dyn, dyn, hq, d}, {numSplits, batch});
  Value partialLse =
      globalView(partialLsePtr, f32Type, {dyn, hq, dyn}, {numSplits, batch});

  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value lane = rem(tid, lanesPerKey), keyGroup = div(tid, lanesPerKey);
  Value kvHead = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  PagedKV kvPages = pagedKV(cache, kPtr, vPtr, kScalePtr, vScalePtr, kMinPtr,
                            vMinPtr, numPages, kvHead);
  Value seq = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value split = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  Value col = mul(lane, idx(vec));

  // The sequence's keys and, with a window, the visible range: the sink
  // keys [0, sinks) below it, then [lo, Lk).
  Value first = loadIndex(indptr, seq);
  Value pages = sub(loadIndex(indptr, add(seq, idx(1))), first);
  Value last = loadIndex(lastLen, seq);
  Value hasPages = cmp(arith::CmpIPredicate::sgt, pages, idx(0));
  Value lk = select(hasPages, add(mul(sub(pages, idx(1)), idx(pageSize)), last),
                    idx(0));
  Value lo = idx(0), sinks = idx(0);
  HeadMask mask = headMask(op.getKVHeadMasks(), kvHead);
  if (mask.anyWindow) {
    Value windowLo = maxIdx(sub(sub(lk, idx(1)), mask.window), idx(0));
    lo = select(mask.hasWindow, windowLo, idx(0));
    if (mask.anySinks)
      sinks = minIdx(mask.sinks, lo);
  }
  Value count = add(sinks, sub(lk, lo));
  Value ring = residual ? loadIndex(rings, seq) : Value();

  // This split's share [begin, end) of the count visible keys: whole steps,
  // at least minSplitKeys, so later splits of a short sequence are empty.
  Value perSplit = arith::CeilDivUIOp::create(b, count, numSplits);
  Value share = ceilDiv(perSplit, keysPerStep);
  Value chunk = maxIdx(mul(share, idx(keysPerStep)), idx(minSplitKeys));
  Value begin = minIdx(mul(split, chunk), count);
  Value end = minIdx(add(begin, chunk), count);

  // This lane's elements of each query head, times the scale and, without
  // softcap, log2(e) (with softcap, the cap brings the score to log2).
  double softcap = op.getSoftcap() ? op.getSoftcap()->convertToDouble() : 0;
  double scaleLog2 = op.getScaleOrDefault() * (softcap > 0 ? 1.0 : M_LOG2E);
  SmallVector<Value> qv;
  for (int64_t g = 0; g < group; ++g) {
    Value head = add(mul(kvHead, idx(group)), idx(g));
    qv.push_back(arith::MulFOp::create(b, loadVector(q, {seq, head, col}, elem),
                                       splat(f32(scaleLog2))));
  }

  // State per query head: running max, sum, and this lane's outputs.
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  SmallVector<Value> init;
  for (int64_t g = 0; g < group; ++g)
    init.append({negInf, f32(0)});
  Value zeroVec = arith::ConstantOp::create(
      b, vecF32, DenseElementsAttr::get(vecF32, APFloat(0.0f)));
  for (int64_t g = 0; g < group; ++g)
    init.push_back(zeroVec);

  // Every lane of a warp runs the same number of steps (the shuffles need
  // all of them); a lane past the range reads a valid key and drops it.
  Value steps = ceilDiv(sub(end, begin), keysPerStep);
  auto loop = scf::ForOp::create(b, idx(0), steps, idx(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    ValueRange state = loop.getRegionIterArgs();
    Value i = add(begin,
                  add(mul(loop.getInductionVar(), idx(keysPerStep)), keyGroup));
    Value valid = cmp(arith::CmpIPredicate::ult, i, end);
    Value ic = minIdx(i, sub(count, idx(1)));
    Value inSinks = cmp(arith::CmpIPredicate::ult, ic, sinks);
    Value key = select(inSinks, ic, add(lo, sub(ic, sinks)));
    Value page = loadIndex(indices, add(first, div(key, pageSize)));
    Value slot = rem(key, pageSize);
    // K and V of the key as f32: from the pages, dequantized in registers,
    // or, for the residual window's keys, from the sequence's f16 ring.
    auto fromPages = [&]() -> std::pair<Value, Value> {
      auto [rawK, rawV] = loadRawKV(kvPages, page, slot, kvHead, col);
      return dequantizeKV(kvPages, rawK, rawV, page, slot, kvHead, col);
    };
    Value kv, vv;
    if (!residual) {
      std::tie(kv, vv) = fromPages();
    } else {
      Value fromRing =
          cmp(arith::CmpIPredicate::sge, key, sub(lk, idx(residual)));
      auto pick = scf::IfOp::create(b, TypeRange{vecF32, vecF32}, fromRing,
                                    /*withElseRegion=*/true);
      OpBuilder::InsertionGuard ifGuard(b);
      b.setInsertionPointToStart(pick.thenBlock());
      SmallVector<Value> ringAt = {ring, rem(key, residual), kvHead, col};
      scf::YieldOp::create(b, ValueRange{loadVector(kRecent, ringAt, f16),
                                         loadVector(vRecent, ringAt, f16)});
      b.setInsertionPointToStart(pick.elseBlock());
      auto [pk, pv] = fromPages();
      scf::YieldOp::create(b, ValueRange{pk, pv});
      kv = pick.getResult(0);
      vv = pick.getResult(1);
    }

    SmallVector<Value> next(state.begin(), state.end());
    for (int64_t g = 0; g < group; ++g) {
      Value prod = arith::MulFOp::create(b, qv[g], kv);
      Value s =
          vector::ReductionOp::create(b, vector::CombiningKind::ADD, prod);
      for (int64_t off = lanesPerKey / 2; off >= 1; off /= 2)
        s = arith::AddFOp::create(b, s, shuffleXor(s, off));
      if (softcap > 0)
        s = softcapLog2(s, softcap);
      s = select(valid, s, negInf);
      Value m = state[2 * g], l = state[2 * g + 1];
      Value mNew = arith::MaximumFOp::create(b, m, s);
      Value isInf =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew, negInf);
      Value base = select(isInf, f32(0), mNew);
      Value alpha = exp2(arith::SubFOp::create(b, m, base));
      Value pr = exp2(arith::SubFOp::create(b, s, base));
      next[2 * g] = mNew;
      next[2 * g + 1] =
          arith::AddFOp::create(b, arith::MulFOp::create(b, l, alpha), pr);
      Value acc = arith::MulFOp::create(b, state[2 * group + g], splat(alpha));
      next[2 * group + g] = arith::AddFOp::create(
          b, acc, arith::MulFOp::create(b, vv, splat(pr)));
    }
    scf::YieldOp::create(b, next);
  }
  ValueRange fin = loop.getResults();

  // Merge the lane groups (keysPerStep partial softmaxes per query head)
  // through shared memory.
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  Value stats = func.addWorkgroupAttribution(
      MemRefType::get({2, keysPerStep, group}, f32Type,
                      MemRefLayoutAttrInterface(), wg),
      b.getLoc());
  Value accs = func.addWorkgroupAttribution(
      MemRefType::get({keysPerStep, group, d}, f32Type,
                      MemRefLayoutAttrInterface(), wg),
      b.getLoc());
  Value firstLane = cmp(arith::CmpIPredicate::eq, lane, idx(0));
  for (int64_t g = 0; g < group; ++g) {
    emitIf(firstLane, [&] {
      memref::StoreOp::create(b, fin[2 * g], stats,
                              ValueRange{idx(0), keyGroup, idx(g)});
      memref::StoreOp::create(b, fin[2 * g + 1], stats,
                              ValueRange{idx(1), keyGroup, idx(g)});
    });
    vector::StoreOp::create(b, fin[2 * group + g], accs,
                            ValueRange{keyGroup, idx(g), col});
  }
  gpu::BarrierOp::create(b);

  // Lane group g (< G) writes query head g: 16-byte stores.
  emitIf(cmp(arith::CmpIPredicate::ult, keyGroup, idx(group)), [&] {
    Value g = keyGroup;
    Value mx = negInf;
    for (int64_t k = 0; k < keysPerStep; ++k)
      mx = arith::MaximumFOp::create(
          b, mx,
          memref::LoadOp::create(b, stats, ValueRange{idx(0), idx(k), g}));
    Value isInf =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mx, negInf);
    Value base = select(isInf, f32(0), mx);
    Value sum = f32(0);
    Value acc = zeroVec;
    for (int64_t k = 0; k < keysPerStep; ++k) {
      Value m = memref::LoadOp::create(b, stats, ValueRange{idx(0), idx(k), g});
      Value l = memref::LoadOp::create(b, stats, ValueRange{idx(1), idx(k), g});
      Value w = exp2(arith::SubFOp::create(b, m, base));
      sum = arith::AddFOp::create(b, sum, arith::MulFOp::create(b, l, w));
      Value part =
          vector::LoadOp::create(b, vecF32, accs, ValueRange{idx(k), g, col});
      acc = arith::AddFOp::create(b, acc,
                                  arith::MulFOp::create(b, part, splat(w)));
    }
    Value empty =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, sum, f32(0));
    Value inv = select(empty, f32(0), arith::DivFOp::create(b, f32(1), sum));
    Value out = arith::MulFOp::create(b, acc, splat(inv));
    Value head = add(mul(kvHead, idx(group)), g);
    Value lseNats =
        select(empty, negInf,
               arith::MulFOp::create(
                   b, arith::AddFOp::create(b, base, log2(sum)), f32(M_LN2)));
    Value unsplit = cmp(arith::CmpIPredicate::eq, numSplits, idx(1));
    emitIf(unsplit, [&] {
      vector::StoreOp::create(
          b, arith::TruncFOp::create(b, VectorType::get({vec}, elem), out), o,
          ValueRange{seq, head, col},
          /*nontemporal=*/false, llvm::MaybeAlign(16));
      if (lse)
        emitIf(firstLane, [&] {
          memref::StoreOp::create(b, lseNats, lse, ValueRange{head, seq});
        });
    });
    // Several splits: this split's normalized output and LSE, every split
    // written (an empty one as 0 and -inf) so the merge reads no garbage.
    emitIf(cmp(arith::CmpIPredicate::ne, numSplits, idx(1)), [&] {
      vector::StoreOp::create(b, out, partialO,
                              ValueRange{split, seq, head, col},
                              /*nontemporal=*/false, llvm::MaybeAlign(16));
      emitIf(firstLane, [&] {
        memref::StoreOp::create(b, lseNats, partialLse,
                                ValueRange{split, head, seq});
      });
    });
  });
  gpu::ReturnOp::create(b);
}

} // namespace

void attnc::gpu_kernels::buildDecodeKernel(PagedAttentionOp op,
                                           gpu::GPUFuncOp func, int64_t threads,
                                           int64_t minSplitKeys) {
  DecodeKernelBuilder(op, func, threads, minSplitKeys).build();
}
