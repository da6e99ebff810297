//===- KernelBuilder.h - Builder helpers of the GPU kernels -----*- C++ -*-===//
//
// Shared by the prefill and decode kernels of attn-lower-to-gpu: index and
// float arithmetic, global views over the kernels' bare pointers, warp
// shuffles, the SFU's exp2/log2.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOGPU_KERNELBUILDER_H
#define ATTNC_LIB_CONVERSION_ATTNTOGPU_KERNELBUILDER_H

#include "attn/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <cmath>

namespace attnc::gpu_kernels {

using namespace mlir;

/// The structured mask of the KV head a block computes, as values: the
/// constants of one mask, or for per-head policies (head_masks) selects over
/// the KV head. The flags say whether any head has a feature, so that code
/// for features no head has is not emitted (and constants fold the rest).
struct HeadMask {
  bool anyUpper = false, anyWindow = false, anySinks = false, topLeft = false;
  /// i1: keys past the query's position are hidden (causal, or a window).
  Value upper;
  /// i1, and the window and sinks (index) where it is set.
  Value hasWindow, window, sinks;
};

/// A paged cache's K and V pages and, when quantized, their scales (and
/// int4 minima) as global views (PagedKV.cpp): what a chunk of `vec`
/// channels of one token needs to be read as f32.
struct PagedKV {
  Type storage;
  bool int8 = false, int4 = false, fp8 = false, headMajor = false;
  int64_t kGroup = 1;
  /// Channels per 16-byte load of the pages (8 bytes of int4): 8 for
  /// f16/bf16 pages, 16 for quantized ones.
  int64_t vec = 8;
  Value kPages, vPages, kScale, vScale, kMin, vMin;
  /// fp8: the KV head's scales (f32), loaded once.
  Value kHeadScale, vHeadScale;
  bool quantized() const { return int8 || int4 || fp8; }
};

/// Builds into a gpu.func whose first block is the insertion point.
class KernelBuilder {
public:
  KernelBuilder(Location loc, Type elem)
      : b(loc, elem.getContext()), elem(elem) {}

protected:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value i32(int64_t v) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), v);
  }
  Value f32(double v) {
    return arith::ConstantFloatOp::create(b, b.getF32Type(), APFloat(float(v)));
  }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value div(Value x, int64_t y) { return arith::DivUIOp::create(b, x, idx(y)); }
  Value rem(Value x, int64_t y) { return arith::RemUIOp::create(b, x, idx(y)); }
  Value minIdx(Value x, Value y) { return arith::MinSIOp::create(b, x, y); }
  Value maxIdx(Value x, Value y) { return arith::MaxSIOp::create(b, x, y); }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, p, x, y);
  }
  Value andI(Value x, Value y) { return arith::AndIOp::create(b, x, y); }
  Value orI(Value x, Value y) { return arith::OrIOp::create(b, x, y); }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }
  /// `cond` where `when` holds, else true: a rule only some heads apply.
  Value unless(Value when, Value cond) {
    Value off = arith::XOrIOp::create(
        b, when, arith::ConstantIntOp::create(b, b.getI1Type(), 1));
    return orI(off, cond);
  }
  /// ceil(x / y) for x >= 0.
  Value ceilDiv(Value x, int64_t y) { return div(add(x, idx(y - 1)), y); }

  /// The mask of KV head `kvHead`: `masks` has one entry per KV head (or
  /// one for all).
  HeadMask headMask(ArrayRef<attn::MaskAttr> masks, Value kvHead);
  /// A global memref of `shape` (dynamic where `sizes` gives a value) over a
  /// raw kernel pointer: the descriptor is built by hand because the kernel
  /// ABI is bare pointers (docs/gpu-artifacts.md).
  Value globalView(Value ptr, Type elemType, ArrayRef<int64_t> shape,
                   ArrayRef<Value> sizes);
  /// Views over the pages (and scales) of `cache`: the kernel's pointers,
  /// the scale and minimum ones null where the storage has none.
  PagedKV pagedKV(attn::KVCacheType cache, Value kPtr, Value vPtr,
                  Value kScalePtr, Value vScalePtr, Value kMinPtr,
                  Value vMinPtr, Value numPages, Value kvHead);
  /// `n` elements of `type` (f16, bf16 or i8) at `indices`, 16-byte
  /// aligned, as f32.
  Value loadAsF32(Value memref, ValueRange indices, Type type, int64_t n);
  /// Channels [col, col + vec) of K and V of token `slot` of `page`, as
  /// stored (vectors of the storage type, bytes for fp8 and int4).
  std::pair<Value, Value> loadRawKV(const PagedKV &kv, Value page, Value slot,
                                    Value kvHead, Value col);
  /// Those chunks as f32, dequantized.
  std::pair<Value, Value> dequantizeKV(const PagedKV &kv, Value rawK,
                                       Value rawV, Value page, Value slot,
                                       Value kvHead, Value col);
  /// Emits `body` under `scf.if cond` (no results).
  void emitIf(Value cond, llvm::function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, TypeRange{}, cond, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    body();
  }
  Value shuffleXor(Value v, int64_t mask) {
    return gpu::ShuffleOp::create(b, v, i32(mask), i32(32),
                                  gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }
  /// The approximate exp2 and log2 of the SFU (ex2.approx.ftz.f32,
  /// lg2.approx.ftz.f32), as FlashAttention's exp2f with fast math: exact
  /// for -inf (0) and 0 (1); relative error about 2^-22.
  Value sfu(StringRef intrinsic, Value x) {
    return LLVM::CallIntrinsicOp::create(
               b, b.getF32Type(), b.getStringAttr(intrinsic), ValueRange{x})
        .getResult(0);
  }
  Value exp2(Value x) { return sfu("llvm.nvvm.ex2.approx.ftz.f", x); }
  Value log2(Value x) { return sfu("llvm.nvvm.lg2.approx.ftz.f", x); }
  /// Soft-capping of a score already multiplied by `scale`:
  /// cap * tanh(x / cap) * log2(e), the score in the log2 domain. tanh is
  /// 1 - 2 / (2^(2 log2(e) y) + 1) on the SFU's exp2 (relative error about
  /// 2^-22; tanh.approx's 2^-11 would show in the outputs), exact at the
  /// limits (+-1) and at 0.
  Value softcapLog2(Value x, double cap) {
    Value y = arith::MulFOp::create(b, x, f32(2 * M_LOG2E / cap));
    Value e = arith::AddFOp::create(b, exp2(y), f32(1));
    Value t =
        arith::SubFOp::create(b, f32(1), arith::DivFOp::create(b, f32(2), e));
    return arith::MulFOp::create(b, t, f32(cap * M_LOG2E));
  }
  ImplicitLocOpBuilder b;

private:
  Value widenFp8(const PagedKV &kv, Value bytes);
  Value int4Codes(const PagedKV &kv, Value bytes);

protected:
  /// The kernel's 16-bit element type (f16 or bf16).
  Type elem;
};

/// What the prefill kernel computes and where its rows are: a dense or
/// ragged attn.attention, or a paged attn.paged_attention with qo_indptr.
struct PrefillSpec {
  enum class Layout { Dense, Ragged, Paged };
  Layout layout = Layout::Dense;
  int64_t numQHeads = 0, numKVHeads = 0, headDim = 0;
  /// One mask per KV head (head_masks), or one for every head.
  SmallVector<attn::MaskAttr> masks;
  double scale = 1, softcap = 0;
  bool hasLse = false;
  /// Dense: q [B, Lq, Hq, D] and k/v [B, Lk, Hkv, D]; ragged: q [total_q,
  /// Hq, D] and k/v [total_k, Hkv, D]; paged: q [total_q, Hq, D]. Sizes
  /// static or dynamic, as `batch` (ragged, paged) and `numPageRefs`.
  SmallVector<int64_t> qShape, kShape;
  int64_t batch = 0, numPageRefs = 0;
  /// Paged: the pages' size and layout (HND when headMajor), and the cache
  /// (quantized pages are dequantized into the shared tiles).
  int64_t pageSize = 0;
  bool headMajor = false;
  attn::KVCacheType cache;
  /// Keys per K/V tile (64; 32 where the registers need it).
  int64_t blockKV = 64;
};

/// The kernel builders (PrefillKernel.cpp, DecodeKernel.cpp, MergeKernel.cpp).
/// Each fills the body of `func`, whose parameters are the ones
/// attn-lower-to-gpu declared.
void buildPrefillKernel(Location loc, Type elem, const PrefillSpec &spec,
                        gpu::GPUFuncOp func);
/// The split-KV decode kernel: each block covers one split of at least
/// `minSplitKeys` keys (MergeKernel.cpp combines the splits).
void buildDecodeKernel(attn::PagedAttentionOp op, gpu::GPUFuncOp func,
                       int64_t threads, int64_t minSplitKeys);
void buildMergeKernel(attn::PagedAttentionOp op, gpu::GPUFuncOp func);

} // namespace attnc::gpu_kernels

#endif // ATTNC_LIB_CONVERSION_ATTNTOGPU_KERNELBUILDER_H
