//===- PagedKV.cpp - Reading (quantized) KV pages in the GPU kernels ------===//
//
// The decode and prefill kernels read a paged cache's K and V as chunks of
// `vec` channels of one token: 16 bytes of f16/bf16, int8 or fp8 pages, 8
// of int4 pages. A chunk is loaded as stored (the raw registers, so the
// prefill kernel can issue the next tile's loads before computing this one)
// and dequantized in registers (docs/gpu.md, "Quantized pages"):
//
//   int8:  x = k_scale[page, slot / k_group, head, c] * q (per channel),
//          v_scale[page, slot, head] * q (per token);
//   int4:  the same with + min, codes unsigned, channel 2i in the low
//          nibble of byte i;
//   fp8:   the bits widened to f16 exactly, times the head's f32 scale.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace attnc::gpu_kernels;

PagedKV KernelBuilder::pagedKV(attn::KVCacheType cache, Value kPtr, Value vPtr,
                               Value kScalePtr, Value vScalePtr, Value kMinPtr,
                               Value vMinPtr, Value numPages, Value kvHead) {
  PagedKV kv;
  kv.storage = cache.getStorage();
  kv.int8 = kv.storage.isInteger(8);
  kv.int4 = kv.storage.isInteger(4);
  kv.fp8 = isa<Float8E4M3FNType, Float8E5M2Type>(kv.storage);
  kv.headMajor = cache.getHeadMajor();
  kv.kGroup = cache.getKGroup();
  kv.vec = kv.quantized() ? 16 : 8;
  int64_t dyn = ShapedType::kDynamic, hkv = cache.getNumKVHeads();
  int64_t d = cache.getHeadDim(), pageSize = cache.getPageSize();
  // int4 pages hold D / 2 bytes a row.
  int64_t rowElems = kv.int4 ? d / 2 : d;
  SmallVector<int64_t> pageShape =
      kv.headMajor ? SmallVector<int64_t>{dyn, hkv, pageSize, rowElems}
                   : SmallVector<int64_t>{dyn, pageSize, hkv, rowElems};
  Type pageType = kv.fp8 || kv.int4 ? b.getI8Type() : kv.storage;
  kv.kPages = globalView(kPtr, pageType, pageShape, {numPages});
  kv.vPages = globalView(vPtr, pageType, pageShape, {numPages});
  // int8, int4: K scales (and int4 minima) [P, page_size / k_group, H, D],
  // V scales (minima) [P, S, H] (f16); fp8: one f32 scale per KV head for K
  // and one for V.
  Type f16 = b.getF16Type(), f32 = b.getF32Type();
  if (kv.fp8) {
    kv.kScale = globalView(kScalePtr, f32, {hkv}, {});
    kv.vScale = globalView(vScalePtr, f32, {hkv}, {});
    kv.kHeadScale = memref::LoadOp::create(b, kv.kScale, ValueRange{kvHead});
    kv.vHeadScale = memref::LoadOp::create(b, kv.vScale, ValueRange{kvHead});
  }
  if (kv.int8 || kv.int4) {
    SmallVector<int64_t> kShape = {dyn, pageSize / kv.kGroup, hkv, d};
    kv.kScale = globalView(kScalePtr, f16, kShape, {numPages});
    kv.vScale = globalView(vScalePtr, f16, {dyn, pageSize, hkv}, {numPages});
    if (kv.int4) {
      kv.kMin = globalView(kMinPtr, f16, kShape, {numPages});
      kv.vMin = globalView(vMinPtr, f16, {dyn, pageSize, hkv}, {numPages});
    }
  }
  return kv;
}

Value KernelBuilder::loadAsF32(Value memref, ValueRange indices, Type type,
                               int64_t n) {
  Value v =
      vector::LoadOp::create(b, VectorType::get({n}, type), memref, indices,
                             /*nontemporal=*/false, llvm::MaybeAlign(16));
  auto f32Vec = VectorType::get({n}, b.getF32Type());
  if (type.isInteger(8))
    return arith::SIToFPOp::create(b, f32Vec, v);
  return arith::ExtFOp::create(b, f32Vec, v);
}

std::pair<Value, Value> KernelBuilder::loadRawKV(const PagedKV &kv, Value page,
                                                 Value slot, Value kvHead,
                                                 Value col) {
  Value byteCol = kv.int4 ? div(col, 2) : col;
  SmallVector<Value> at = kv.headMajor
                              ? SmallVector<Value>{page, kvHead, slot, byteCol}
                              : SmallVector<Value>{page, slot, kvHead, byteCol};
  int64_t n = kv.int4 ? kv.vec / 2 : kv.vec;
  Type type = kv.fp8 || kv.int4 ? b.getI8Type() : kv.storage;
  auto load = [&](Value pages) -> Value {
    return vector::LoadOp::create(b, VectorType::get({n}, type), pages, at,
                                  /*nontemporal=*/false,
                                  llvm::MaybeAlign(kv.int4 ? 8 : 16));
  };
  return {load(kv.kPages), load(kv.vPages)};
}

Value KernelBuilder::widenFp8(const PagedKV &kv, Value bytes) {
  // e5m2 is the high byte of an f16; e4m3fn's bits go to f16 bit 7 up
  // (exponent bias 15 instead of 7, subnormals included), then times 2^8.
  // (e4m3fn's NaN, 0x7f, becomes 480: caches hold no NaN.)
  auto i16Vec = VectorType::get({kv.vec}, b.getI16Type());
  Value wide = arith::ExtUIOp::create(b, i16Vec, bytes);
  auto constant = [&](int64_t v) {
    return arith::ConstantOp::create(
        b, i16Vec, DenseElementsAttr::get(i16Vec, APInt(16, v)));
  };
  bool e5m2 = isa<Float8E5M2Type>(kv.storage);
  Value half;
  if (e5m2) {
    half = arith::ShLIOp::create(b, wide, constant(8));
  } else {
    Value sign = arith::ShLIOp::create(
        b, arith::AndIOp::create(b, wide, constant(0x80)), constant(8));
    Value rest = arith::ShLIOp::create(
        b, arith::AndIOp::create(b, wide, constant(0x7f)), constant(7));
    half = arith::OrIOp::create(b, sign, rest);
  }
  Value f16s = arith::BitcastOp::create(
      b, VectorType::get({kv.vec}, b.getF16Type()), half);
  auto f32Vec = VectorType::get({kv.vec}, b.getF32Type());
  Value f = arith::ExtFOp::create(b, f32Vec, f16s);
  if (e5m2)
    return f;
  return arith::MulFOp::create(
      b, f, vector::BroadcastOp::create(b, f32Vec, f32(256.0)));
}

Value KernelBuilder::int4Codes(const PagedKV &kv, Value bytes) {
  auto i16Vec = VectorType::get({kv.vec / 2}, b.getI16Type());
  Value wide = arith::ExtUIOp::create(b, i16Vec, bytes);
  auto constant = [&](int64_t v) {
    return arith::ConstantOp::create(
        b, i16Vec, DenseElementsAttr::get(i16Vec, APInt(16, v)));
  };
  Value low = arith::AndIOp::create(b, wide, constant(0xf));
  Value high = arith::ShRUIOp::create(b, wide, constant(4));
  Value codes = vector::InterleaveOp::create(b, low, high);
  return arith::UIToFPOp::create(b, VectorType::get({kv.vec}, b.getF32Type()),
                                 codes);
}

std::pair<Value, Value> KernelBuilder::dequantizeKV(const PagedKV &kv,
                                                    Value rawK, Value rawV,
                                                    Value page, Value slot,
                                                    Value kvHead, Value col) {
  auto f32Vec = VectorType::get({kv.vec}, b.getF32Type());
  auto splat = [&](Value x) -> Value {
    return vector::BroadcastOp::create(b, f32Vec, x);
  };
  auto widen = [&](Value raw) -> Value {
    if (kv.fp8)
      return widenFp8(kv, raw);
    if (kv.int4)
      return int4Codes(kv, raw);
    if (kv.int8)
      return arith::SIToFPOp::create(b, f32Vec, raw);
    return arith::ExtFOp::create(b, f32Vec, raw);
  };
  Value k = widen(rawK), v = widen(rawV);
  if (kv.fp8) {
    k = arith::MulFOp::create(b, k, splat(kv.kHeadScale));
    v = arith::MulFOp::create(b, v, splat(kv.vHeadScale));
  }
  if (kv.int8 || kv.int4) {
    Type f16 = b.getF16Type();
    SmallVector<Value> kAt = {page, div(slot, kv.kGroup), kvHead, col};
    auto perToken = [&](Value memref) {
      Value x =
          memref::LoadOp::create(b, memref, ValueRange{page, slot, kvHead});
      return splat(arith::ExtFOp::create(b, b.getF32Type(), x));
    };
    k = arith::MulFOp::create(b, k, loadAsF32(kv.kScale, kAt, f16, kv.vec));
    v = arith::MulFOp::create(b, v, perToken(kv.vScale));
    if (kv.int4) {
      k = arith::AddFOp::create(b, k, loadAsF32(kv.kMin, kAt, f16, kv.vec));
      v = arith::AddFOp::create(b, v, perToken(kv.vMin));
    }
  }
  return {k, v};
}
