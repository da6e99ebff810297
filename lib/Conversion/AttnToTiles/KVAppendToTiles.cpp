//===- KVAppendToTiles.cpp - attn.kv_append to the tile level -------------===//
//
// Quantize-on-write of new tokens into a paged KV cache. One work item per
// KV head (an scf.parallel); inside it the tokens in order (an scf.for),
// because the per-channel K scales of a group grow token by token. The
// arithmetic is docs/kv-cache.md's, step for step, so that the NumPy model
// (test/e2e/kv_reference.py) reproduces the pool bit for bit: f32
// throughout, scales and minima rounded to f16 when stored and the rounded
// value used thereafter, round-half-to-even.
//
//===----------------------------------------------------------------------===//

#include "Lowerings.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <limits>

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

/// Per-chunk values of the K group update, kept for the requantization loop
/// and the final store.
struct KChunk {
  Value x;          // the new token's channels, f32
  Value sOld, sNew; // scales before and after (f16 values as f32)
  Value mOld, mNew; // i4: minima before and after
  Value grow;       // channels whose range grew (vector of i1)
};

class KVAppendLowering {
public:
  KVAppendLowering(KVAppendOp op, int64_t chunk, ImplicitLocOpBuilder &b)
      : op(op), cache(op.getCacheType()), chunk(chunk), b(b),
        headDim(cache.getHeadDim()), f32(b.getF32Type()),
        i8(b.getIntegerType(8)), i32(b.getI32Type()) {}

  /// Finds the component buffers; false (with an error on op) if the cache
  /// is not an expanded function argument.
  LogicalResult findBuffers();
  void build();

private:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  VectorType vec(int64_t n, Type t) { return VectorType::get({n}, t); }
  /// A vector<n x t> constant.
  Value splatF(int64_t n, double v) {
    return arith::ConstantOp::create(
        b,
        DenseElementsAttr::get(vec(n, f32), b.getF32FloatAttr(v).getValue()));
  }
  Value splatI(int64_t n, Type t, int64_t v) {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(vec(n, t),
                                  APInt(t.getIntOrFloatBitWidth(), v, true)));
  }
  Value f32c(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value bcast(Value scalar, int64_t n = 0) {
    return vector::BroadcastOp::create(b, vec(n ? n : chunk, scalar.getType()),
                                       scalar);
  }
  /// Rounds f32 values to f16 and back (what storing a scale does).
  Value roundF16(Value v) {
    Type f16 = b.getF16Type();
    Type t =
        isa<VectorType>(v.getType())
            ? Type(vec(cast<VectorType>(v.getType()).getNumElements(), f16))
            : f16;
    return widen(arith::TruncFOp::create(b, t, v));
  }
  /// f16 (or any float) scalar or vector to f32.
  Value widen(Value v) {
    Type t = f32;
    if (auto vt = dyn_cast<VectorType>(v.getType()))
      t = vec(vt.getNumElements(), f32);
    return v.getType() == t ? v : arith::ExtFOp::create(b, t, v);
  }
  Value narrowF16(Value v) {
    Type f16 = b.getF16Type();
    if (auto vt = dyn_cast<VectorType>(v.getType()))
      return arith::TruncFOp::create(b, vec(vt.getNumElements(), f16), v);
    return arith::TruncFOp::create(b, f16, v);
  }

  /// Indices of (page, offset, head, d) in a page buffer, per layout.
  SmallVector<Value> pageIndices(Value page, Value offset, Value head,
                                 Value d) {
    if (cache.getHeadMajor())
      return {page, head, offset, d};
    return {page, offset, head, d};
  }
  /// `chunk` channels of token `token`, head `head` of an input, as f32.
  Value loadInput(Value buffer, Value token, Value head, int64_t d) {
    Type elem = cast<MemRefType>(buffer.getType()).getElementType();
    return widen(vector::LoadOp::create(b, vec(chunk, elem), buffer,
                                        ValueRange{token, head, idx(d)}));
  }

  /// clamp(rne(num / den), lo, hi), 0 where den == 0 (f32 vectors).
  Value divRne(Value num, Value den, double lo, double hi);
  /// f32 quantized values (integers in range) to i8.
  Value toI8(Value q) { return arith::FPToSIOp::create(b, vec(chunk, i8), q); }
  /// vector<chunk x i8> of values 0..15 to vector<chunk/2 x i8>, channel 2i
  /// in the low nibble of byte i.
  Value packNibbles(Value q);
  /// The inverse of packNibbles, to f32.
  /// f32 to fp8 bits (vector<chunk x i8>), round to nearest even,
  /// saturating.
  Value encodeFp8(Value y);

  void emitHead(Value head);
  void emitToken(Value head, Value token, Value page, Value offset);
  /// The token, in f16, into its sequence's ring (residual window).
  void emitRingWrite(Value head, Value token);
  /// The page's key minima and maxima (summary = minmax): set at offset 0,
  /// widened by every later token.
  void emitSummary(Value token, Value head, Value page, Value offset);
  void emitFloat(Value input, Value pages, Value token, Value head, Value page,
                 Value offset);
  void emitFp8(Value input, Value pages, Value scale, Value token, Value head,
               Value page, Value offset);
  /// i8/i4 V: per token and head.
  void emitTokenQuant(Value token, Value head, Value page, Value offset);
  /// i8/i4 K: per channel over a group of k_group slots.
  void emitGroupQuant(Value token, Value head, Value page, Value offset);
  void storeQuantized(Value buffer, Value q, Value page, Value offset,
                      Value head, int64_t d);

  KVAppendOp op;
  KVCacheType cache;
  int64_t chunk;
  ImplicitLocOpBuilder &b;
  int64_t headDim;
  Type f32, i8, i32;

  Value key, value, slots, ringSlots;
  // Component buffers by role.
  Value kPages, vPages, kScale, vScale, kMin, vMin, kRecent, vRecent;
  Value kPageMax, kPageMin;
  // fp8: the head's scales, loaded once per work item.
  Value kHeadScale, vHeadScale;
};

} // namespace

LogicalResult KVAppendLowering::findBuffers() {
  FailureOr<llvm::StringMap<Value>> buffers =
      expandedCacheBuffers(op, op.getCache());
  if (failed(buffers))
    return failure();
  for (const auto &[role, in] : *buffers) {
    Value *slot = llvm::StringSwitch<Value *>(role)
                      .Case("k_pages", &kPages)
                      .Case("v_pages", &vPages)
                      .Case("k_scale", &kScale)
                      .Case("v_scale", &vScale)
                      .Case("k_min", &kMin)
                      .Case("v_min", &vMin)
                      .Case("k_recent", &kRecent)
                      .Case("v_recent", &vRecent)
                      .Case("k_page_max", &kPageMax)
                      .Case("k_page_min", &kPageMin)
                      .Default(nullptr);
    if (!slot)
      return op.emitOpError() << "unknown cache component " << role;
    *slot = in;
  }
  return success();
}

void KVAppendLowering::build() {
  auto toBuffer = [&](Value tensor) -> Value {
    auto t = cast<RankedTensorType>(tensor.getType());
    return bufferization::ToBufferOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), tensor,
        /*read_only=*/true);
  };
  key = toBuffer(op.getKey());
  value = toBuffer(op.getValue());
  slots = toBuffer(op.getSlots());
  if (op.getRingSlots())
    ringSlots = toBuffer(op.getRingSlots());
  scf::ParallelOp::create(
      b, ValueRange{idx(0)}, ValueRange{idx(cache.getNumKVHeads())},
      ValueRange{idx(1)}, [&](OpBuilder &nb, Location loc, ValueRange ivs) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        emitHead(ivs[0]);
      });
}

void KVAppendLowering::emitHead(Value head) {
  if (cache.isFloat8()) {
    kHeadScale = memref::LoadOp::create(b, kScale, ValueRange{head});
    vHeadScale = memref::LoadOp::create(b, vScale, ValueRange{head});
  }
  Value numNew = memref::DimOp::create(b, key, 0);
  auto loop = scf::ForOp::create(b, idx(0), numNew, idx(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value token = loop.getInductionVar();
  if (ringSlots)
    emitRingWrite(head, token);
  // slot = page * page_size + offset; -1 (any negative slot) skips.
  Value slot = memref::LoadOp::create(b, slots, ValueRange{token});
  Value zero = arith::ConstantIntOp::create(b, slot.getType(), 0);
  Value keep = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot, zero);
  auto ifKeep = scf::IfOp::create(b, keep);
  b.setInsertionPointToStart(ifKeep.thenBlock());
  Value slotIdx = arith::IndexCastOp::create(b, b.getIndexType(), slot);
  Value page = arith::DivUIOp::create(b, slotIdx, idx(cache.getPageSize()));
  Value offset = arith::RemUIOp::create(b, slotIdx, idx(cache.getPageSize()));
  emitToken(head, token, page, offset);
}

void KVAppendLowering::emitToken(Value head, Value token, Value page,
                                 Value offset) {
  if (cache.isFloat8()) {
    emitFp8(key, kPages, kHeadScale, token, head, page, offset);
    emitFp8(value, vPages, vHeadScale, token, head, page, offset);
  } else if (cache.isInt8() || cache.isInt4()) {
    emitGroupQuant(token, head, page, offset);
    emitTokenQuant(token, head, page, offset);
  } else {
    emitFloat(key, kPages, token, head, page, offset);
    emitFloat(value, vPages, token, head, page, offset);
  }
  if (kPageMax)
    emitSummary(token, head, page, offset);
}

void KVAppendLowering::emitSummary(Value token, Value head, Value page,
                                   Value offset) {
  // From the input K, not the stored codes, so the bound holds for every
  // storage format (docs/sparsity.md section 3). Tokens arrive in order, so
  // offset 0 is the page's first write: the stale summary is replaced.
  Value first =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, offset, idx(0));
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value x = roundF16(loadInput(key, token, head, d));
    SmallVector<Value> at{page, head, idx(d)};
    auto update = [&](Value buffer, bool isMax) {
      Value old = widen(
          vector::LoadOp::create(b, vec(chunk, b.getF16Type()), buffer, at));
      Value wider = isMax ? Value(arith::MaximumFOp::create(b, old, x))
                          : Value(arith::MinimumFOp::create(b, old, x));
      Value next = arith::SelectOp::create(b, first, x, wider);
      vector::StoreOp::create(b, narrowF16(next), buffer, at);
    };
    update(kPageMax, /*isMax=*/true);
    update(kPageMin, /*isMax=*/false);
  }
}

void KVAppendLowering::emitRingWrite(Value head, Value token) {
  // ring_slot = ring * residual + position % residual; negative skips.
  OpBuilder::InsertionGuard guard(b);
  Value slot = memref::LoadOp::create(b, ringSlots, ValueRange{token});
  Value keep =
      arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot,
                            arith::ConstantIntOp::create(b, slot.getType(), 0));
  auto ifKeep = scf::IfOp::create(b, keep);
  b.setInsertionPointToStart(ifKeep.thenBlock());
  Value slotIdx = arith::IndexCastOp::create(b, b.getIndexType(), slot);
  Value ring = arith::DivUIOp::create(b, slotIdx, idx(cache.getResidual()));
  Value at = arith::RemUIOp::create(b, slotIdx, idx(cache.getResidual()));
  Type f16 = b.getF16Type();
  for (auto [input, recent] : {std::pair{key, kRecent}, {value, vRecent}}) {
    Type inElem = cast<MemRefType>(input.getType()).getElementType();
    for (int64_t d = 0; d < headDim; d += chunk) {
      Value x = vector::LoadOp::create(b, vec(chunk, inElem), input,
                                       ValueRange{token, head, idx(d)});
      if (inElem != f16) {
        // bf16 -> f16 through f32 (exact), then one rounding.
        if (!inElem.isF32())
          x = arith::ExtFOp::create(b, vec(chunk, f32), x);
        x = arith::TruncFOp::create(b, vec(chunk, f16), x);
      }
      vector::StoreOp::create(b, x, recent, ValueRange{ring, at, head, idx(d)});
    }
  }
}

void KVAppendLowering::emitFloat(Value input, Value pages, Value token,
                                 Value head, Value page, Value offset) {
  Type inElem = cast<MemRefType>(input.getType()).getElementType();
  Type storage = cache.getStorage();
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value x = vector::LoadOp::create(b, vec(chunk, inElem), input,
                                     ValueRange{token, head, idx(d)});
    if (inElem != storage) {
      // f16 <-> bf16 through f32 (exact), then one rounding.
      if (!inElem.isF32())
        x = arith::ExtFOp::create(b, vec(chunk, f32), x);
      x = arith::TruncFOp::create(b, vec(chunk, storage), x);
    }
    vector::StoreOp::create(b, x, pages,
                            pageIndices(page, offset, head, idx(d)));
  }
}

Value KVAppendLowering::encodeFp8(Value y) {
  // The fp8 magnitude bits are the f32 exponent and top mantissa bits,
  // rebiased. e4m3fn: bias 7, 3 mantissa bits, max 448 (1.75 * 2^8), min
  // normal 2^-6, subnormal step 2^-9; e5m2: bias 15, 2 bits, max 57344,
  // min normal 2^-14, step 2^-16.
  bool e4m3 = isa<Float8E4M3FNType>(cache.getStorage());
  const int64_t shift = e4m3 ? 20 : 21;    // 23 - mantissa bits
  const int64_t rebias = e4m3 ? 120 : 112; // 127 - fp8 bias
  const double maxFinite = e4m3 ? 448.0 : 57344.0;
  const double minNormal = e4m3 ? 0x1p-6 : 0x1p-14;
  const double subStep = e4m3 ? 0x1p-9 : 0x1p-16;
  const int64_t nanCode = e4m3 ? 0x7F : 0x7E;
  VectorType vi32 = vec(chunk, i32);
  auto vi = [&](int64_t v) { return splatI(chunk, i32, v); };

  Value bits = arith::BitcastOp::create(b, vi32, y);
  Value sign = arith::AndIOp::create(b, arith::ShRUIOp::create(b, bits, vi(24)),
                                     vi(0x80));
  // Saturate (NaN stays NaN and is encoded below).
  Value mag = arith::MinimumFOp::create(b, math::AbsFOp::create(b, y),
                                        splatF(chunk, maxFinite));
  Value magBits = arith::BitcastOp::create(b, vi32, mag);
  // Normal range: rebias the exponent, round the mantissa to nearest even
  // (a carry into the exponent is the right result).
  Value r = arith::SubIOp::create(b, magBits, vi(rebias << 23));
  Value odd =
      arith::AndIOp::create(b, arith::ShRUIOp::create(b, r, vi(shift)), vi(1));
  Value normal = arith::ShRUIOp::create(
      b,
      arith::AddIOp::create(
          b, arith::AddIOp::create(b, r, vi((int64_t(1) << (shift - 1)) - 1)),
          odd),
      vi(shift));
  // Subnormal range: multiples of the subnormal step, rounded once (the
  // scaling by a power of two is exact). Up to the minimum normal, whose
  // code is the step count.
  Value steps = math::RoundEvenOp::create(
      b, arith::MulFOp::create(
             b, arith::MinimumFOp::create(b, mag, splatF(chunk, minNormal)),
             splatF(chunk, 1.0 / subStep)));
  Value subnormal = arith::FPToSIOp::create(b, vi32, steps);
  Value isSub = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, magBits,
                                      vi((rebias + 1) << 23));
  Value code = arith::SelectOp::create(b, isSub, subnormal, normal);
  Value isNaN = arith::CmpFOp::create(b, arith::CmpFPredicate::UNO, y, y);
  code = arith::SelectOp::create(b, isNaN, vi(nanCode), code);
  code = arith::OrIOp::create(b, code, sign);
  return arith::TruncIOp::create(b, vec(chunk, i8), code);
}

void KVAppendLowering::emitFp8(Value input, Value pages, Value scale,
                               Value token, Value head, Value page,
                               Value offset) {
  Value s = bcast(scale);
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value x = loadInput(input, token, head, d);
    Value code = encodeFp8(arith::DivFOp::create(b, x, s));
    vector::StoreOp::create(b, code, pages,
                            pageIndices(page, offset, head, idx(d)));
  }
}

Value KVAppendLowering::divRne(Value num, Value den, double lo, double hi) {
  int64_t n = cast<VectorType>(num.getType()).getNumElements();
  Value q = math::RoundEvenOp::create(b, arith::DivFOp::create(b, num, den));
  // maxnumf/minnumf: a NaN quotient becomes `lo`, never poison for fptosi.
  q = arith::MinNumFOp::create(b, arith::MaxNumFOp::create(b, q, splatF(n, lo)),
                               splatF(n, hi));
  Value zeroScale =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, den, splatF(n, 0.0));
  return arith::SelectOp::create(b, zeroScale, splatF(n, 0.0), q);
}

Value KVAppendLowering::packNibbles(Value q) {
  auto halves = vector::DeinterleaveOp::create(b, q);
  Value high =
      arith::ShLIOp::create(b, halves.getRes2(), splatI(chunk / 2, i8, 4));
  return arith::OrIOp::create(b, halves.getRes1(), high);
}

Value attnc::unpackInt4(ImplicitLocOpBuilder &b, Value bytes) {
  auto type = cast<VectorType>(bytes.getType());
  auto splat = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(b,
                                     DenseElementsAttr::get(type, APInt(8, v)));
  };
  Value low = arith::AndIOp::create(b, bytes, splat(0xF));
  Value high = arith::ShRUIOp::create(b, bytes, splat(4));
  Value q = vector::InterleaveOp::create(b, low, high);
  return arith::UIToFPOp::create(
      b, VectorType::get({2 * type.getNumElements()}, b.getF32Type()), q);
}

void KVAppendLowering::storeQuantized(Value buffer, Value q, Value page,
                                      Value offset, Value head, int64_t d) {
  Value bytes = toI8(q);
  if (cache.isInt4()) {
    bytes = packNibbles(bytes);
    d /= 2;
  }
  vector::StoreOp::create(b, bytes, buffer,
                          pageIndices(page, offset, head, idx(d)));
}

void KVAppendLowering::emitTokenQuant(Value token, Value head, Value page,
                                      Value offset) {
  const bool i4 = cache.isInt4();
  const double inf = std::numeric_limits<double>::infinity();
  // Range over the head's channels.
  Value hiAcc = splatF(chunk, -inf), loAcc = splatF(chunk, inf);
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value x = loadInput(value, token, head, d);
    if (i4) {
      loAcc = arith::MinimumFOp::create(b, loAcc, x);
      hiAcc = arith::MaximumFOp::create(b, hiAcc, x);
    } else {
      hiAcc = arith::MaximumFOp::create(b, hiAcc, math::AbsFOp::create(b, x));
    }
  }
  Value hi =
      vector::ReductionOp::create(b, vector::CombiningKind::MAXIMUMF, hiAcc);
  SmallVector<Value> scaleAt{page, offset, head};
  Value s, m;
  if (i4) {
    Value lo =
        vector::ReductionOp::create(b, vector::CombiningKind::MINIMUMF, loAcc);
    m = roundF16(lo);
    s = roundF16(
        arith::DivFOp::create(b, arith::SubFOp::create(b, hi, lo), f32c(15.0)));
    memref::StoreOp::create(b, narrowF16(m), vMin, scaleAt);
  } else {
    s = roundF16(arith::DivFOp::create(b, hi, f32c(127.0)));
  }
  memref::StoreOp::create(b, narrowF16(s), vScale, scaleAt);
  Value sv = bcast(s), mv = i4 ? bcast(m) : Value();
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value x = loadInput(value, token, head, d);
    Value q = i4 ? divRne(arith::SubFOp::create(b, x, mv), sv, 0.0, 15.0)
                 : divRne(x, sv, -127.0, 127.0);
    storeQuantized(vPages, q, page, offset, head, d);
  }
}

void KVAppendLowering::emitGroupQuant(Value token, Value head, Value page,
                                      Value offset) {
  const bool i4 = cache.isInt4();
  const int64_t kGroup = cache.getKGroup();
  Value group = arith::DivUIOp::create(b, offset, idx(kGroup));
  Value inGroup = arith::RemUIOp::create(b, offset, idx(kGroup));
  Value groupStart = arith::SubIOp::create(b, offset, inGroup);
  Value first =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, inGroup, idx(0));
  Value later = bcast(
      arith::XOrIOp::create(b, first, arith::ConstantIntOp::create(b, 1, 1)));
  Value firstV = bcast(first);
  Type f16 = b.getF16Type();
  auto scaleIndices = [&](int64_t d) {
    return SmallVector<Value>{page, group, head, idx(d)};
  };

  // New scales (and minima) per channel. At the group's first slot the
  // stored values are stale and ignored; afterwards they only grow.
  SmallVector<KChunk> chunks;
  Value anyGrow = arith::ConstantIntOp::create(b, 0, 1);
  for (int64_t d = 0; d < headDim; d += chunk) {
    KChunk c;
    c.x = loadInput(key, token, head, d);
    c.sOld = widen(
        vector::LoadOp::create(b, vec(chunk, f16), kScale, scaleIndices(d)));
    if (!i4) {
      // s = f16(|x| / 127) when |x| / 127 exceeds the stored scale.
      Value cand = arith::DivFOp::create(b, math::AbsFOp::create(b, c.x),
                                         splatF(chunk, 127.0));
      Value above =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, cand, c.sOld);
      c.grow = arith::AndIOp::create(b, later, above);
      c.sNew = arith::SelectOp::create(
          b, arith::OrIOp::create(b, firstV, above), roundF16(cand), c.sOld);
    } else {
      // The range [m, m + 15 s] extended to include x.
      c.mOld = widen(
          vector::LoadOp::create(b, vec(chunk, f16), kMin, scaleIndices(d)));
      Value top = arith::AddFOp::create(
          b, c.mOld, arith::MulFOp::create(b, splatF(chunk, 15.0), c.sOld));
      Value outside = arith::OrIOp::create(
          b, arith::CmpFOp::create(b, arith::CmpFPredicate::OLT, c.x, c.mOld),
          arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, c.x, top));
      c.grow = arith::AndIOp::create(b, later, outside);
      Value lo = arith::MinimumFOp::create(b, c.mOld, c.x);
      Value hi = arith::MaximumFOp::create(b, top, c.x);
      Value mGrown = roundF16(lo);
      Value sGrown = roundF16(arith::DivFOp::create(
          b, arith::SubFOp::create(b, hi, lo), splatF(chunk, 15.0)));
      c.mNew = arith::SelectOp::create(
          b, firstV, roundF16(c.x),
          arith::SelectOp::create(b, c.grow, mGrown, c.mOld));
      c.sNew = arith::SelectOp::create(
          b, firstV, splatF(chunk, 0.0),
          arith::SelectOp::create(b, c.grow, sGrown, c.sOld));
    }
    anyGrow = arith::OrIOp::create(
        b, anyGrow,
        vector::ReductionOp::create(b, vector::CombiningKind::OR, c.grow));
    chunks.push_back(c);
  }

  // Requantize the group's earlier tokens [group start, offset) of this page
  // and head in the channels that grew.
  auto ifGrow = scf::IfOp::create(b, anyGrow);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifGrow.thenBlock());
    auto loop = scf::ForOp::create(b, groupStart, offset, idx(1));
    b.setInsertionPointToStart(loop.getBody());
    Value t = loop.getInductionVar();
    for (auto [n, c] : llvm::enumerate(chunks)) {
      int64_t d = n * chunk;
      Value q, requant;
      if (!i4) {
        Value bytes = vector::LoadOp::create(
            b, vec(chunk, i8), kPages, pageIndices(page, t, head, idx(d)));
        q = arith::SIToFPOp::create(b, vec(chunk, f32), bytes);
        requant =
            divRne(arith::MulFOp::create(b, q, c.sOld), c.sNew, -127.0, 127.0);
      } else {
        Value bytes =
            vector::LoadOp::create(b, vec(chunk / 2, i8), kPages,
                                   pageIndices(page, t, head, idx(d / 2)));
        q = unpackInt4(b, bytes);
        Value xr = arith::AddFOp::create(b, arith::MulFOp::create(b, c.sOld, q),
                                         c.mOld);
        requant =
            divRne(arith::SubFOp::create(b, xr, c.mNew), c.sNew, 0.0, 15.0);
      }
      q = arith::SelectOp::create(b, c.grow, requant, q);
      storeQuantized(kPages, q, page, t, head, d);
    }
  }

  // Store the scales, then the new token with them.
  for (auto [n, c] : llvm::enumerate(chunks)) {
    int64_t d = n * chunk;
    vector::StoreOp::create(b, narrowF16(c.sNew), kScale, scaleIndices(d));
    Value q;
    if (!i4) {
      q = divRne(c.x, c.sNew, -127.0, 127.0);
    } else {
      vector::StoreOp::create(b, narrowF16(c.mNew), kMin, scaleIndices(d));
      q = divRne(arith::SubFOp::create(b, c.x, c.mNew), c.sNew, 0.0, 15.0);
    }
    storeQuantized(kPages, q, page, offset, head, d);
  }
}

LogicalResult attnc::lowerKVAppend(KVAppendOp op, int64_t vectorWidth) {
  // Largest power of two up to 8 vectors that divides head_dim (even for
  // i4, whose chunks are split into nibble pairs).
  int64_t headDim = op.getCacheType().getHeadDim(), chunk = 1;
  for (int64_t c = 8 * std::max<int64_t>(1, vectorWidth); c >= 1; c /= 2)
    if (headDim % c == 0) {
      chunk = c;
      break;
    }
  if (op.getCacheType().isInt4() && chunk % 2) {
    return op.emitOpError()
           << "i4 storage needs an even head_dim, got " << headDim;
  }
  ImplicitLocOpBuilder b(op.getLoc(), op);
  KVAppendLowering lowering(op, chunk, b);
  if (failed(lowering.findBuffers()))
    return failure();
  lowering.build();
  auto castOp = op.getCache().getDefiningOp<UnrealizedConversionCastOp>();
  op.erase();
  if (castOp && castOp->use_empty())
    castOp.erase();
  return success();
}
