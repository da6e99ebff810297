//===- PrefillKernel.cpp - the FlashAttention-2 prefill kernel -----------===//
//
// The kernel of a dense `attn.attention`, in the FlashAttention-2 shape for
// sm_80 and newer:
//
//   - one thread block of 4 warps per (query tile of 64 rows, query head,
//     sequence); each warp owns 16 query rows;
//   - Q, then K/V tiles of 64 keys staged in dynamic shared memory with
//     cp.async (16-byte copies, zero-filled past the sequence's end), K/V
//     double-buffered so the next tile loads while this one is computed;
//     rows are XOR-swizzled in 16-byte chunks so ldmatrix is conflict-free;
//   - S = Q K^T and O += P V on tensor cores (ldmatrix, ldmatrix.trans,
//     mma.sync m16n8k16, f16/bf16 in, f32 accumulate); P never leaves the
//     registers (the S accumulator fragments are the A operand of P V);
//   - online softmax in registers in the log2 domain (exp2), row max and
//     sum reduced across the 4 lanes sharing a row with shuffles;
//   - the mask's block predicate as the KV loop's bounds (causal upper
//     edge, window lower edge, sink tiles first) and its element predicate
//     only on partial tiles.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::gpu_kernels;

namespace {

constexpr int64_t kBlockQ = 64, kBlockKV = 64, kWarps = 4, kThreads = 128;
constexpr int64_t kWarpRows = kBlockQ / kWarps; // 16: one mma tile of rows
constexpr int64_t kChunk = 8;                   // f16/bf16 per 16 bytes

class PrefillKernelBuilder : KernelBuilder {
public:
  PrefillKernelBuilder(AttentionOp op, gpu::GPUFuncOp func)
      : KernelBuilder(op.getLoc(), op.getElementType()), op(op), func(func),
        hq(op.getNumQueryHeads()), hkv(op.getNumKVHeads()), d(op.getHeadDim()),
        mask(op.getMaskOrNone()) {}

  void build(ArrayRef<int64_t> qShape, ArrayRef<int64_t> kShape, bool hasLse);

private:
  using Frag = SmallVector<Value>;

  /// The swizzled column of element column `col` (a multiple of 8) in row
  /// `row` of a shared tile: 16-byte chunk index XOR (row % 8).
  Value swizzle(Value row, Value col) {
    Value chunk = div(col, kChunk);
    Value x = arith::XOrIOp::create(b, chunk, rem(row, 8));
    return mul(x, idx(kChunk));
  }
  /// cp.async of rows [row0, row0 + 64) of head `head` of `src` (shape
  /// [B, L, H, D]) into the shared tile `dst` ([64, D], swizzled); rows at
  /// or past `len` are zero-filled.
  void loadTile(Value src, Value batch, Value row0, Value len, Value head,
                Value dst, ValueRange dstPrefix);
  Frag ldmatrix(Value tile, ValueRange prefix, Value row, Value col,
                int numTiles, bool transpose);
  /// D += A * B for one m16n8k16 tile: a = 4, b = 2 registers, c = 4 f32.
  Frag mma(ArrayRef<Value> a, ArrayRef<Value> bReg, ArrayRef<Value> c);
  Value pack(Value lo, Value hi) {
    Value v = vector::FromElementsOp::create(
        b, VectorType::get({2}, b.getF32Type()), ValueRange{lo, hi});
    return arith::TruncFOp::create(b, VectorType::get({2}, elem), v);
  }

  AttentionOp op;
  gpu::GPUFuncOp func;
  int64_t hq, hkv, d;
  MaskAttr mask;
  Value tid, lane, warp;
};

void PrefillKernelBuilder::loadTile(Value src, Value batch, Value row0,
                                    Value len, Value head, Value dst,
                                    ValueRange dstPrefix) {
  int64_t chunksPerRow = d / kChunk;
  int64_t perThread = kBlockKV * chunksPerRow / kThreads;
  Value last = maxIdx(sub(len, idx(1)), idx(0));
  for (int64_t i = 0; i < perThread; ++i) {
    Value c = add(tid, idx(i * kThreads));
    Value row = div(c, chunksPerRow);
    Value col = mul(rem(c, chunksPerRow), idx(kChunk));
    Value grow = add(row0, row);
    Value valid = cmp(arith::CmpIPredicate::slt, grow, len);
    // Past the end: 0 bytes read (zero fill) from a row that exists.
    Value srcRow = minIdx(grow, last);
    Value srcElems = select(valid, idx(kChunk), idx(0));
    SmallVector<Value> dstIdx(dstPrefix);
    dstIdx.append({row, swizzle(row, col)});
    nvgpu::DeviceAsyncCopyOp::create(
        b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), dst, dstIdx, src,
        ValueRange{batch, srcRow, head, col}, b.getIndexAttr(kChunk), srcElems,
        /*bypassL1=*/b.getUnitAttr());
  }
}

PrefillKernelBuilder::Frag
PrefillKernelBuilder::ldmatrix(Value tile, ValueRange prefix, Value row,
                               Value col, int numTiles, bool transpose) {
  SmallVector<Value> indices(prefix);
  indices.append({row, swizzle(row, col)});
  auto type = VectorType::get({numTiles, 2}, elem);
  Value m =
      nvgpu::LdMatrixOp::create(b, type, tile, indices, transpose, numTiles);
  Frag regs;
  for (int i = 0; i < numTiles; ++i)
    regs.push_back(vector::ExtractOp::create(b, m, ArrayRef<int64_t>{i}));
  return regs;
}

PrefillKernelBuilder::Frag PrefillKernelBuilder::mma(ArrayRef<Value> a,
                                                     ArrayRef<Value> bReg,
                                                     ArrayRef<Value> c) {
  MLIRContext *ctx = b.getContext();
  // nvvm.mma.sync takes bf16 pairs as i32 registers, f16 pairs as vectors.
  auto operand = [&](Value v) -> Value {
    if (elem.isF16())
      return v;
    Value i =
        vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()), v);
    return vector::ExtractOp::create(b, i, ArrayRef<int64_t>{0});
  };
  SmallVector<Value> aOps, bOps;
  for (Value v : a)
    aOps.push_back(operand(v));
  for (Value v : bReg)
    bOps.push_back(operand(v));
  Type f32 = b.getF32Type();
  auto resTy = LLVM::LLVMStructType::getLiteral(ctx, {f32, f32, f32, f32});
  auto ptx = elem.isF16() ? NVVM::MMATypes::f16 : NVVM::MMATypes::bf16;
  Value r =
      NVVM::MmaOp::create(b, resTy, aOps, bOps, c, ArrayRef<int64_t>{16, 8, 16},
                          /*b1Op=*/std::nullopt, /*intOverflow=*/std::nullopt,
                          std::array<NVVM::MMATypes, 2>{ptx, ptx},
                          std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                                         NVVM::MMALayout::col});
  Frag out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(b, r, ArrayRef<int64_t>{i}));
  return out;
}

void PrefillKernelBuilder::build(ArrayRef<int64_t> qShape,
                                 ArrayRef<int64_t> kShape, bool hasLse) {
  MLIRContext *ctx = b.getContext();
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);

  // Parameters: q, k, v, o, [lse], then the dynamic sizes (batch, seqlen_q,
  // seqlen_k, those that are dynamic) as i32.
  unsigned p = 0;
  Value qPtr = entry.getArgument(p++), kPtr = entry.getArgument(p++),
        vPtr = entry.getArgument(p++), oPtr = entry.getArgument(p++);
  Value lsePtr = hasLse ? entry.getArgument(p++) : Value();
  auto size = [&](int64_t staticSize) -> Value {
    if (!ShapedType::isDynamic(staticSize))
      return idx(staticSize);
    return arith::IndexCastOp::create(b, b.getIndexType(),
                                      entry.getArgument(p++));
  };
  Value batchN = size(qShape[0]);
  Value lq = size(qShape[1]);
  Value lk = size(kShape[1]);

  auto dyn = [&](ArrayRef<int64_t> shape, Value l) {
    SmallVector<Value> s;
    if (ShapedType::isDynamic(shape[0]))
      s.push_back(batchN);
    if (ShapedType::isDynamic(shape[1]))
      s.push_back(l);
    return s;
  };
  Value q = globalView(qPtr, elem, qShape, dyn(qShape, lq));
  Value k = globalView(kPtr, elem, kShape, dyn(kShape, lk));
  Value v = globalView(vPtr, elem, kShape, dyn(kShape, lk));
  Value o = globalView(oPtr, elem, qShape, dyn(qShape, lq));
  Value lseView;
  if (lsePtr)
    lseView = globalView(lsePtr, b.getF32Type(), {qShape[0], hq, qShape[1]},
                         dyn(qShape, lq));

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = rem(tid, 32);
  warp = div(tid, 32);
  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value seq = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  Value kvHead = div(head, hq / hkv);
  Value q0 = mul(qTile, idx(kBlockQ));

  // Shared memory: Q [64, D], K [2, 64, D], V [2, 64, D].
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  int64_t tileBytes = kBlockQ * d * 2;
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface(), wg));
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape) {
    return memref::ViewOp::create(
        b, MemRefType::get(shape, elem, MemRefLayoutAttrInterface(), wg), smem,
        idx(offset), ValueRange{});
  };
  Value qs = view(0, {kBlockQ, d});
  Value ks = view(tileBytes, {2, kBlockKV, d});
  Value vs = view(3 * tileBytes, {2, kBlockKV, d});

  // The block predicate. pos(i) = i + (Lk - Lq) (bottom-right) or i.
  Value offset = mask.getTopLeft() ? idx(0) : sub(lk, lq);
  Value lastRow = minIdx(add(q0, idx(kBlockQ - 1)), sub(lq, idx(1)));
  Value firstPos = add(q0, offset), lastPos = add(lastRow, offset);
  Value numTiles = ceilDiv(lk, kBlockKV);
  Value kvEnd = numTiles;
  if (mask.hasUpperBound()) {
    Value visible = maxIdx(minIdx(add(lastPos, idx(1)), lk), idx(0));
    kvEnd = ceilDiv(visible, kBlockKV);
  }
  Value kvBegin = idx(0), sinkTiles = idx(0);
  if (mask.hasWindow()) {
    Value lo = maxIdx(sub(firstPos, idx(mask.getWindow())), idx(0));
    kvBegin = minIdx(div(lo, kBlockKV), kvEnd);
    if (mask.getSinks() > 0)
      sinkTiles =
          minIdx(ceilDiv(minIdx(idx(mask.getSinks()), lk), kBlockKV), kvBegin);
  }
  // Iterations: the sink tiles [0, sinkTiles), then [kvBegin, kvEnd).
  Value iters = add(sinkTiles, sub(kvEnd, kvBegin));
  auto tileOf = [&](Value i) {
    Value inSinks = cmp(arith::CmpIPredicate::ult, i, sinkTiles);
    return select(inSinks, i, add(sub(i, sinkTiles), kvBegin));
  };

  // Q and the first K/V tile, one cp.async group.
  Value qHead = head;
  loadTile(q, seq, q0, lq, qHead, qs, {});
  Value haveTiles = cmp(arith::CmpIPredicate::sgt, iters, idx(0));
  emitIf(haveTiles, [&] {
    Value r0 = mul(tileOf(idx(0)), idx(kBlockKV));
    loadTile(k, seq, r0, lk, kvHead, ks, {idx(0)});
    loadTile(v, seq, r0, lk, kvHead, vs, {idx(0)});
  });
  NVVM::CpAsyncCommitGroupOp::create(b);
  NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(0));
  gpu::BarrierOp::create(b);

  // This warp's Q fragments, one per 16 columns of D.
  Value warpRow = mul(warp, idx(kWarpRows));
  SmallVector<Frag> qFrag;
  for (int64_t kk = 0; kk < d / 16; ++kk)
    qFrag.push_back(ldmatrix(qs, {}, add(warpRow, rem(lane, 16)),
                             add(idx(kk * 16), mul(div(lane, 16), idx(8))), 4,
                             false));

  // Loop state: row max and sum for rows g and g + 8 (g = lane / 4), and
  // the O accumulator, D / 8 tiles of 4 f32.
  Value negInf = f32(-std::numeric_limits<double>::infinity());
  SmallVector<Value> init = {negInf, negInf, f32(0), f32(0)};
  for (int64_t i = 0; i < d / 8 * 4; ++i)
    init.push_back(f32(0));
  double scale = op.getScaleOrDefault(), scaleLog2 = scale * M_LOG2E;
  double softcap = op.getSoftcap() ? op.getSoftcap()->convertToDouble() : 0;
  Value group = div(lane, 4), quad = rem(lane, 4);
  Value rowA = add(add(q0, warpRow), group); // rows rowA and rowA + 8

  auto loop = scf::ForOp::create(b, idx(0), iters, idx(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    ValueRange state = loop.getRegionIterArgs();
    Value t = tileOf(i);
    Value stage = rem(i, 2);
    // Prefetch the next tile into the other stage.
    Value next = add(i, idx(1));
    emitIf(cmp(arith::CmpIPredicate::ult, next, iters), [&] {
      Value r0 = mul(tileOf(next), idx(kBlockKV));
      Value other = sub(idx(1), stage);
      loadTile(k, seq, r0, lk, kvHead, ks, {other});
      loadTile(v, seq, r0, lk, kvHead, vs, {other});
    });
    // An empty group when nothing was prefetched keeps the count uniform.
    NVVM::CpAsyncCommitGroupOp::create(b);
    NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(1)); // all but the prefetch
    gpu::BarrierOp::create(b);

    // S = Q K^T: 8 tiles of 8 keys, each 4 f32 per lane.
    SmallVector<Frag> s(kBlockKV / 8);
    for (int64_t n = 0; n < kBlockKV / 8; ++n) {
      Frag acc = {f32(0), f32(0), f32(0), f32(0)};
      for (int64_t kk = 0; kk < d / 16; kk += 2) {
        Frag kb =
            ldmatrix(ks, {stage}, add(idx(n * 8), rem(lane, 8)),
                     add(idx(kk * 16), mul(div(lane, 8), idx(8))), 4, false);
        acc = mma(qFrag[kk], {kb[0], kb[1]}, acc);
        acc = mma(qFrag[kk + 1], {kb[2], kb[3]}, acc);
      }
      for (Value &x : acc)
        x = softcap > 0
                ? softcapLog2(arith::MulFOp::create(b, x, f32(scale)), softcap)
                : arith::MulFOp::create(b, x, f32(scaleLog2));
      s[n] = acc;
    }

    // The element predicate, on partial tiles only.
    Value tileStart = mul(t, idx(kBlockKV));
    Value tileEnd = add(tileStart, idx(kBlockKV));
    Value full = cmp(arith::CmpIPredicate::sle, tileEnd, lk);
    if (mask.hasUpperBound())
      full = andI(
          full, cmp(arith::CmpIPredicate::sle, sub(tileEnd, idx(1)), firstPos));
    if (mask.hasWindow()) {
      Value lower = cmp(arith::CmpIPredicate::sge, tileStart,
                        sub(lastPos, idx(mask.getWindow())));
      if (mask.getSinks() > 0)
        lower = orI(lower, cmp(arith::CmpIPredicate::sle, tileEnd,
                               idx(mask.getSinks())));
      full = andI(full, lower);
    }
    SmallVector<Value> flat;
    for (Frag &f : s)
      flat.append(f.begin(), f.end());
    SmallVector<Type> flatTypes(flat.size(), b.getF32Type());
    auto masked = scf::IfOp::create(b, flatTypes, full, true, true);
    {
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(masked.thenBlock());
      scf::YieldOp::create(b, flat);
      b.setInsertionPointToStart(masked.elseBlock());
      SmallVector<Value> out;
      for (int64_t n = 0; n < kBlockKV / 8; ++n)
        for (int64_t e = 0; e < 4; ++e) {
          Value key =
              add(add(tileStart, idx(n * 8 + (e % 2))), mul(quad, idx(2)));
          Value row = add(rowA, idx(8 * (e / 2)));
          Value pos = add(row, offset);
          Value ok = cmp(arith::CmpIPredicate::slt, key, lk);
          if (mask.hasUpperBound())
            ok = andI(ok, cmp(arith::CmpIPredicate::sle, key, pos));
          if (mask.hasWindow()) {
            Value in = cmp(arith::CmpIPredicate::sge, key,
                           sub(pos, idx(mask.getWindow())));
            if (mask.getSinks() > 0)
              in = orI(in, cmp(arith::CmpIPredicate::slt, key,
                               idx(mask.getSinks())));
            ok = andI(ok, in);
          }
          out.push_back(select(ok, s[n][e], negInf));
        }
      scf::YieldOp::create(b, out);
    }
    for (int64_t n = 0; n < kBlockKV / 8; ++n)
      for (int64_t e = 0; e < 4; ++e)
        s[n][e] = masked.getResult(n * 4 + e);

    // Online softmax for rows g (half 0) and g + 8 (half 1).
    SmallVector<Value> newState(state.begin(), state.end());
    SmallVector<Value> alpha(2);
    for (int h = 0; h < 2; ++h) {
      Value mx = state[h];
      for (int64_t n = 0; n < kBlockKV / 8; ++n)
        for (int e = 0; e < 2; ++e)
          mx = arith::MaximumFOp::create(b, mx, s[n][2 * h + e]);
      mx = arith::MaximumFOp::create(b, mx, shuffleXor(mx, 1));
      mx = arith::MaximumFOp::create(b, mx, shuffleXor(mx, 2));
      Value isInf =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mx, negInf);
      Value base = select(isInf, f32(0), mx);
      alpha[h] = exp2(arith::SubFOp::create(b, state[h], base));
      Value sum = f32(0);
      for (int64_t n = 0; n < kBlockKV / 8; ++n)
        for (int e = 0; e < 2; ++e) {
          Value &x = s[n][2 * h + e];
          x = exp2(arith::SubFOp::create(b, x, base));
          sum = arith::AddFOp::create(b, sum, x);
        }
      newState[h] = mx;
      newState[2 + h] = arith::AddFOp::create(
          b, arith::MulFOp::create(b, state[2 + h], alpha[h]), sum);
    }

    // P as A fragments (16 keys each), then O = O * alpha + P V.
    SmallVector<Frag> pFrag;
    for (int64_t kc = 0; kc < kBlockKV / 16; ++kc)
      pFrag.push_back({pack(s[2 * kc][0], s[2 * kc][1]),
                       pack(s[2 * kc][2], s[2 * kc][3]),
                       pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                       pack(s[2 * kc + 1][2], s[2 * kc + 1][3])});
    for (int64_t dn = 0; dn < d / 8; dn += 2) {
      Frag acc[2];
      for (int j = 0; j < 2; ++j)
        for (int e = 0; e < 4; ++e)
          acc[j].push_back(arith::MulFOp::create(b, state[4 + (dn + j) * 4 + e],
                                                 alpha[e / 2]));
      for (int64_t kc = 0; kc < kBlockKV / 16; ++kc) {
        Frag vb = ldmatrix(vs, {stage}, add(idx(kc * 16), rem(lane, 16)),
                           mul(add(idx(dn), div(lane, 16)), idx(8)), 4, true);
        acc[0] = mma(pFrag[kc], {vb[0], vb[1]}, acc[0]);
        acc[1] = mma(pFrag[kc], {vb[2], vb[3]}, acc[1]);
      }
      for (int j = 0; j < 2; ++j)
        for (int e = 0; e < 4; ++e)
          newState[4 + (dn + j) * 4 + e] = acc[j][e];
    }
    // Every warp is done with this stage before the next prefetch into it.
    gpu::BarrierOp::create(b);
    scf::YieldOp::create(b, newState);
  }

  // Epilogue: the row sums over the 4 lanes of a row, O / l, 0 when l == 0.
  ValueRange fin = loop.getResults();
  for (int h = 0; h < 2; ++h) {
    Value l = fin[2 + h];
    l = arith::AddFOp::create(b, l, shuffleXor(l, 1));
    l = arith::AddFOp::create(b, l, shuffleXor(l, 2));
    Value empty =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, l, f32(0));
    Value inv = select(empty, f32(0), arith::DivFOp::create(b, f32(1), l));
    Value row = add(rowA, idx(8 * h));
    Value inRange = cmp(arith::CmpIPredicate::slt, row, lq);
    emitIf(inRange, [&] {
      for (int64_t dn = 0; dn < d / 8; ++dn) {
        Value lo = arith::MulFOp::create(b, fin[4 + dn * 4 + 2 * h], inv);
        Value hi = arith::MulFOp::create(b, fin[4 + dn * 4 + 2 * h + 1], inv);
        Value col = add(idx(dn * 8), mul(quad, idx(2)));
        vector::StoreOp::create(b, pack(lo, hi), o,
                                ValueRange{seq, row, head, col});
      }
      if (lseView) {
        // lse = (m + log2 l) * ln 2, -inf for a row with no visible key.
        Value first = cmp(arith::CmpIPredicate::eq, quad, idx(0));
        emitIf(first, [&] {
          Value lse = arith::MulFOp::create(
              b, arith::AddFOp::create(b, fin[h], log2(l)), f32(M_LN2));
          lse = select(empty, negInf, lse);
          memref::StoreOp::create(b, lse, lseView, ValueRange{seq, head, row});
        });
      }
    });
  }
  gpu::ReturnOp::create(b);
}

} // namespace

void attnc::gpu_kernels::buildPrefillKernel(AttentionOp op, gpu::GPUFuncOp func,
                                            ArrayRef<int64_t> qShape,
                                            ArrayRef<int64_t> kShape,
                                            bool hasLse) {
  PrefillKernelBuilder(op, func).build(qShape, kShape, hasLse);
}
