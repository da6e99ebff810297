//===- AttnOps.cpp - attn dialect operations ------------------------------===//

#include "attn/AttnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

#include <cmath>

using namespace mlir;
using namespace attnc::attn;

#define GET_OP_CLASSES
#include "attn/AttnOps.cpp.inc"

namespace {
/// Positions of the named dimensions in Q/K/V for one batch form.
struct QKVLayout {
  int64_t rank, heads, headDim;
  const char *shapeText;
};
} // namespace

static QKVLayout layoutFor(bool ragged) {
  if (ragged)
    return {3, 1, 2, "[total_tokens, heads, head_dim]"};
  return {4, 2, 3, "[batch, seq_len, heads, head_dim]"};
}

static std::string dimText(int64_t d) {
  return ShapedType::isDynamic(d) ? "?" : std::to_string(d);
}

/// Static sizes that disagree; dynamic sizes are checked at run time.
static bool mismatch(int64_t a, int64_t b) {
  return !ShapedType::isDynamic(a) && !ShapedType::isDynamic(b) && a != b;
}

/// `scale` and `softcap`, shared by the attention ops.
static LogicalResult verifyScoreAttributes(Operation *op, FloatAttr scale,
                                           FloatAttr softcap) {
  if (scale) {
    double s = scale.getValueAsDouble();
    if (!(s > 0) || !std::isfinite(s))
      return op->emitOpError()
             << "scale must be a positive finite number, got " << s;
  }
  if (softcap) {
    double c = softcap.getValueAsDouble();
    if (!(c > 0) || !std::isfinite(c))
      return op->emitOpError()
             << "softcap must be a positive finite number (omit "
                "it to disable soft-capping), got "
             << c;
  }
  return success();
}

static bool isAttentionElement(Type t) {
  return t.isF32() || t.isF16() || t.isBF16();
}

/// A 1-D i32 tensor, with `size` elements when both are static.
static LogicalResult verifyIndexVector(Operation *op, Value v, StringRef name,
                                       int64_t size, StringRef sizeText) {
  auto t = cast<RankedTensorType>(v.getType());
  if (t.getRank() != 1 || !t.getElementType().isInteger(32))
    return op->emitOpError() << name << " must be a 1-D i32 tensor of size "
                             << sizeText << ", got " << t;
  if (mismatch(t.getDimSize(0), size))
    return op->emitOpError()
           << name << " has " << t.getDimSize(0) << " entries; expected "
           << sizeText << " = " << size;
  return success();
}

/// A rank-3 query `[tokens, q_heads, head_dim]` (`shapeText`) read against
/// `cache`: f32/f16/bf16, static heads and head size, GQA-divisible.
static LogicalResult verifyQueryForCache(Operation *op, RankedTensorType q,
                                         KVCacheType cache,
                                         StringRef shapeText) {
  if (q.getRank() != 3)
    return op->emitOpError() << "query must be " << shapeText
                             << " (rank 3), got rank " << q.getRank();
  if (!isAttentionElement(q.getElementType()))
    return op->emitOpError()
           << "query element type must be f32, f16 or bf16, got "
           << q.getElementType();
  if (q.isDynamicDim(1) || q.isDynamicDim(2))
    return op->emitOpError() << "query head count and head size must be static";
  int64_t hq = q.getDimSize(1), hkv = cache.getNumKVHeads();
  if (q.getDimSize(2) != cache.getHeadDim())
    return op->emitOpError()
           << "query head size " << q.getDimSize(2)
           << " differs from the cache's head_dim " << cache.getHeadDim();
  if (hq < 1 || hq % hkv != 0)
    return op->emitOpError() << "query heads (" << hq
                             << ") must be a positive multiple of the cache's "
                                "kv_heads ("
                             << hkv << ") for grouped-query attention";
  return success();
}

/// `#attn.mask<none>`, what an absent mask means.
static MaskAttr noneMask(MLIRContext *ctx) {
  return MaskAttr::get(ctx, false, -1, 0, false);
}

/// `scale`, or 1/sqrt(head_dim) when absent.
static double scaleOrDefault(FloatAttr scale, int64_t headDim) {
  return scale ? scale.getValueAsDouble()
               : 1.0 / std::sqrt(static_cast<double>(headDim));
}

/// The per-head masks of an attention op; `mask` (or none) for each head.
static SmallVector<MaskAttr> kvHeadMasks(MLIRContext *ctx, MaskAttr mask,
                                         ArrayAttr headMasks,
                                         int64_t numKVHeads) {
  if (headMasks)
    return llvm::map_to_vector(headMasks,
                               [](Attribute a) { return cast<MaskAttr>(a); });
  if (!mask)
    mask = noneMask(ctx);
  return SmallVector<MaskAttr>(numKVHeads, mask);
}

/// `head_masks` and the block-sparse operands (docs/sparsity.md). `batch`
/// is the op's batch (dynamic when unknown); decode ops have one query per
/// sequence.
static LogicalResult
verifySparsity(Operation *op, MaskAttr mask, ArrayAttr headMasks,
               DenseI64ArrayAttr blockSize, Value offsets, Value indices,
               Value full, int64_t numKVHeads, int64_t batch, bool decode) {
  if (headMasks) {
    if (mask)
      return op->emitOpError()
             << "has both mask and head_masks; give one (head_masks sets "
                "every KV head's mask)";
    if ((int64_t)headMasks.size() != numKVHeads)
      return op->emitOpError()
             << "head_masks has " << headMasks.size()
             << " entries; expected one #attn.mask per KV head (" << numKVHeads
             << ")";
    std::optional<bool> topLeft;
    for (auto [h, a] : llvm::enumerate(headMasks)) {
      auto m = dyn_cast<MaskAttr>(a);
      if (!m)
        return op->emitOpError() << "head_masks entry " << h
                                 << " must be an #attn.mask, got " << a;
      if (topLeft && *topLeft != m.getTopLeft())
        return op->emitOpError()
               << "head_masks entry " << h
               << " differs in alignment (top_left) from entry 0; all heads "
                  "of one op share the query positions";
      topLeft = m.getTopLeft();
    }
  }
  if (!offsets) {
    if (blockSize)
      return op->emitOpError() << "block_size given without block_sparse "
                                  "operands; pass block_sparse(%offsets, "
                                  "%indices) or drop block_size";
    if (full)
      return op->emitOpError() << "block_full needs block_sparse(%offsets, "
                                  "%indices)";
    return success();
  }
  if (!blockSize || blockSize.size() != 2 || blockSize[0] < 1 ||
      blockSize[1] < 1)
    return op->emitOpError()
           << "block_sparse needs block_size = array<i64: BQ, BK>, the query "
              "and KV block sizes in tokens (both >= 1)";
  if (decode && blockSize[0] != 1)
    return op->emitOpError()
           << "decode has one query per sequence: block_size must be "
              "array<i64: 1, BK>, got BQ = "
           << blockSize[0];
  auto offType = cast<RankedTensorType>(offsets.getType());
  auto idxType = cast<RankedTensorType>(indices.getType());
  for (auto [name, t] : {std::pair{"block_sparse offsets", offType},
                         std::pair{"block_sparse indices", idxType}})
    if (t.getRank() != 3 || !t.getElementType().isInteger(32))
      return op->emitOpError()
             << name << " must be an i32 tensor [batch, heads, "
             << (t == offType ? "num_q_blocks + 1" : "max_blocks") << "], got "
             << t;
  int64_t heads = offType.getDimSize(1);
  if (ShapedType::isDynamic(heads) || (heads != 1 && heads != numKVHeads))
    return op->emitOpError() << "block_sparse offsets have " << dimText(heads)
                             << " heads; expected the KV heads (" << numKVHeads
                             << ") or 1 for one pattern shared by every head";
  for (int64_t d : {0, 1})
    if (mismatch(offType.getDimSize(d), idxType.getDimSize(d)))
      return op->emitOpError()
             << "block_sparse offsets " << offType << " and indices " << idxType
             << " differ in dimension " << d;
  if (mismatch(offType.getDimSize(0), batch))
    return op->emitOpError()
           << "block_sparse offsets cover " << offType.getDimSize(0)
           << " sequences; the batch has " << batch;
  if (decode && mismatch(offType.getDimSize(2), 2))
    return op->emitOpError()
           << "decode has one query block per sequence: block_sparse offsets "
              "must be [batch, heads, 2], got "
           << offType;
  if (full) {
    auto fullType = cast<RankedTensorType>(full.getType());
    if (fullType.getRank() != 3 || !fullType.getElementType().isInteger(8) ||
        llvm::any_of(llvm::seq<int64_t>(0, 3), [&](int64_t d) {
          return mismatch(fullType.getDimSize(d), idxType.getDimSize(d));
        }))
      return op->emitOpError()
             << "block_full must be an i8 tensor shaped like the indices "
             << idxType << ", got " << fullType;
  }
  return success();
}

/// What the attention ops share after their shapes: masks, block-sparse
/// operands, scale and softcap.
template <typename OpTy>
static LogicalResult verifyMaskAndScores(OpTy op, int64_t numKVHeads,
                                         int64_t batch, bool decode) {
  if (failed(verifySparsity(op, op.getMaskAttr(), op.getHeadMasksAttr(),
                            op.getBlockSizeAttr(), op.getBlockOffsets(),
                            op.getBlockIndices(), op.getBlockFull(), numKVHeads,
                            batch, decode)))
    return failure();
  return verifyScoreAttributes(op, op.getScaleAttr(), op.getSoftcapAttr());
}

SmallVector<MaskAttr> AttentionOp::getKVHeadMasks() {
  return kvHeadMasks(getContext(), getMaskAttr(), getHeadMasksAttr(),
                     getNumKVHeads());
}

SmallVector<MaskAttr> PagedAttentionOp::getKVHeadMasks() {
  return kvHeadMasks(getContext(), getMaskAttr(), getHeadMasksAttr(),
                     getNumKVHeads());
}

int64_t AttentionOp::getNumQueryHeads() {
  return getQuery().getType().getDimSize(layoutFor(isRagged()).heads);
}
int64_t AttentionOp::getNumKVHeads() {
  return getKey().getType().getDimSize(layoutFor(isRagged()).heads);
}
int64_t AttentionOp::getHeadDim() {
  return getQuery().getType().getDimSize(layoutFor(isRagged()).headDim);
}

double AttentionOp::getScaleOrDefault() {
  return scaleOrDefault(getScaleAttr(), getHeadDim());
}

MaskAttr AttentionOp::getMaskOrNone() {
  return getMaskAttr() ? getMaskAttr() : noneMask(getContext());
}

LogicalResult AttentionOp::verify() {
  bool ragged = isRagged();
  QKVLayout layout = layoutFor(ragged);
  RankedTensorType q = getQuery().getType(), k = getKey().getType(),
                   v = getValue().getType();
  const char *form = ragged ? "ragged (cu_seqlens)" : "dense";

  struct Named {
    const char *name;
    RankedTensorType type;
  } qkv[] = {{"query", q}, {"key", k}, {"value", v}};
  for (auto [name, type] : qkv)
    if (type.getRank() != layout.rank)
      return emitOpError() << name << " must be " << layout.shapeText
                           << " (rank " << layout.rank << ") in the " << form
                           << " form, got rank " << type.getRank();

  Type elem = q.getElementType();
  if (!elem.isF32() && !elem.isF16() && !elem.isBF16())
    return emitOpError() << "query element type must be f32, f16 or bf16, got "
                         << elem;
  for (auto [name, type] : ArrayRef(qkv).drop_front())
    if (type.getElementType() != elem)
      return emitOpError() << name << " element type " << type.getElementType()
                           << " differs from the query's " << elem
                           << "; quantized caches use attn.paged_attention";

  // Head counts and head size shape the generated code: they must be static.
  for (auto [name, type] : qkv)
    for (int64_t dim : {layout.heads, layout.headDim})
      if (type.isDynamicDim(dim))
        return emitOpError()
               << name << " has a dynamic "
               << (dim == layout.heads ? "head count" : "head size")
               << " (dimension " << dim
               << "); head counts and head size must be static";

  int64_t hq = q.getDimSize(layout.heads), hkv = k.getDimSize(layout.heads);
  int64_t d = q.getDimSize(layout.headDim);
  if (hq < 1 || hkv < 1 || d < 1)
    return emitOpError() << "head counts and head size must be positive";
  if (v.getDimSize(layout.heads) != hkv)
    return emitOpError() << "value has " << v.getDimSize(layout.heads)
                         << " heads but key has " << hkv;
  if (hq % hkv != 0)
    return emitOpError() << "query heads (" << hq
                         << ") must be a multiple of key/value heads (" << hkv
                         << ") for grouped-query attention";
  if (k.getDimSize(layout.headDim) != d || v.getDimSize(layout.headDim) != d)
    return emitOpError() << "head size differs: query " << d << ", key "
                         << k.getDimSize(layout.headDim) << ", value "
                         << v.getDimSize(layout.headDim)
                         << "; all three must match";
  for (int64_t i = 0; i < layout.heads; ++i)
    if (mismatch(k.getDimSize(i), v.getDimSize(i)))
      return emitOpError() << "key and value differ in dimension " << i << " ("
                           << dimText(k.getDimSize(i)) << " vs "
                           << dimText(v.getDimSize(i)) << ")";
  if (!ragged && mismatch(q.getDimSize(0), k.getDimSize(0)))
    return emitOpError() << "query batch " << q.getDimSize(0)
                         << " differs from key batch " << k.getDimSize(0);

  if (ragged) {
    for (auto [name, val] : {std::pair{"cu_seqlens_q", getCuSeqlensQ()},
                             std::pair{"cu_seqlens_k", getCuSeqlensK()}}) {
      auto t = cast<RankedTensorType>(val.getType());
      if (t.getRank() != 1 || !t.getElementType().isInteger(32))
        return emitOpError() << name << " must be a 1-D i32 tensor of size "
                             << "batch + 1, got " << t;
    }
    if (mismatch(getCuSeqlensQ().getType().getDimSize(0),
                 getCuSeqlensK().getType().getDimSize(0)))
      return emitOpError() << "cu_seqlens_q and cu_seqlens_k must have the "
                              "same size (batch + 1)";
  }

  if (getOutput().getType() != q)
    return emitOpError() << "result must have the query's type " << q
                         << ", got " << getOutput().getType();

  if (Value lse = getLse()) {
    auto t = cast<RankedTensorType>(lse.getType());
    SmallVector<int64_t> expect =
        ragged ? SmallVector<int64_t>{hq, q.getDimSize(0)}
               : SmallVector<int64_t>{q.getDimSize(0), hq, q.getDimSize(1)};
    const char *text =
        ragged ? "[q_heads, total_q]" : "[batch, q_heads, seq_q]";
    if (!t.getElementType().isF32() || t.getRank() != (int64_t)expect.size() ||
        llvm::any_of(llvm::zip(t.getShape(), expect), [](auto p) {
          return mismatch(std::get<0>(p), std::get<1>(p));
        }))
      return emitOpError() << "log-sum-exp result must be f32 " << text << " = "
                           << RankedTensorType::get(
                                  expect, Float32Type::get(getContext()))
                           << ", got " << t;
  }

  int64_t batch = ShapedType::kDynamic;
  if (!ragged)
    batch = q.getDimSize(0);
  else if (!getCuSeqlensQ().getType().isDynamicDim(0))
    batch = getCuSeqlensQ().getType().getDimSize(0) - 1;
  return verifyMaskAndScores(*this, hkv, batch, /*decode=*/false);
}

//===----------------------------------------------------------------------===//
// PagedAttentionOp
//===----------------------------------------------------------------------===//

double PagedAttentionOp::getScaleOrDefault() {
  return scaleOrDefault(getScaleAttr(), getHeadDim());
}

MaskAttr PagedAttentionOp::getMaskOrNone() {
  return getMaskAttr() ? getMaskAttr() : noneMask(getContext());
}

LogicalResult PagedAttentionOp::verify() {
  RankedTensorType q = getQuery().getType();
  KVCacheType cache = getCacheType();
  if (failed(verifyQueryForCache(*this, q, cache,
                                 isRagged() ? "[total_q, q_heads, head_dim]"
                                            : "[batch, q_heads, head_dim]")))
    return failure();
  int64_t hq = q.getDimSize(1), hkv = cache.getNumKVHeads();

  int64_t batch =
      isRagged() ? (ShapedType::isDynamic(getQoIndptr().getType().getDimSize(0))
                        ? ShapedType::kDynamic
                        : getQoIndptr().getType().getDimSize(0) - 1)
                 : q.getDimSize(0);
  int64_t batchPlusOne =
      ShapedType::isDynamic(batch) ? ShapedType::kDynamic : batch + 1;
  if (isRagged() &&
      failed(verifyIndexVector(*this, getQoIndptr(), "qo_indptr",
                               ShapedType::kDynamic, "batch + 1")))
    return failure();
  if (failed(verifyIndexVector(*this, getKvIndptr(), "kv_indptr", batchPlusOne,
                               "batch + 1")) ||
      failed(verifyIndexVector(*this, getKvIndices(), "kv_indices",
                               ShapedType::kDynamic, "the number of pages")) ||
      failed(verifyIndexVector(*this, getKvLastPageLen(), "kv_last_page_len",
                               batch, "batch")))
    return failure();

  if (cache.hasResidual() != (getKvRings() != nullptr))
    return emitOpError()
           << (cache.hasResidual()
                   ? "the cache keeps a residual window: pass each sequence's "
                     "ring with kv_rings(%rings : [batch] i32)"
                   : "kv_rings given but the cache has no residual window");
  if (getKvRings() && failed(verifyIndexVector(*this, getKvRings(), "kv_rings",
                                               batch, "batch")))
    return failure();

  if (getOutput().getType() != q)
    return emitOpError() << "result must have the query's type " << q
                         << ", got " << getOutput().getType();
  if (Value lse = getLse()) {
    auto t = cast<RankedTensorType>(lse.getType());
    auto expect = RankedTensorType::get({hq, q.getDimSize(0)},
                                        Float32Type::get(getContext()));
    if (!t.getElementType().isF32() || t.getRank() != 2 ||
        mismatch(t.getDimSize(0), hq) ||
        mismatch(t.getDimSize(1), q.getDimSize(0)))
      return emitOpError() << "log-sum-exp result must be f32 [q_heads, "
                           << (isRagged() ? "total_q" : "batch")
                           << "] = " << expect << ", got " << t;
  }
  return verifyMaskAndScores(*this, hkv, batch, /*decode=*/!isRagged());
}

//===----------------------------------------------------------------------===//
// SelectPagesOp
//===----------------------------------------------------------------------===//

LogicalResult SelectPagesOp::verify() {
  RankedTensorType q = getQuery().getType();
  KVCacheType cache = getCacheType();
  if (!cache.hasPageSummary())
    return emitOpError() << "needs per-page key summaries: declare the cache "
                            "with summary = minmax, got "
                         << cache;
  if (failed(verifyQueryForCache(*this, q, cache,
                                 "[batch, q_heads, head_dim] (one decode "
                                 "query per sequence)")))
    return failure();
  int64_t hkv = cache.getNumKVHeads();
  int64_t batch = q.getDimSize(0);
  if (failed(verifyIndexVector(
          *this, getKvIndptr(), "kv_indptr",
          ShapedType::isDynamic(batch) ? ShapedType::kDynamic : batch + 1,
          "batch + 1")) ||
      failed(verifyIndexVector(*this, getKvIndices(), "kv_indices",
                               ShapedType::kDynamic, "the number of pages")) ||
      failed(verifyIndexVector(*this, getKvLastPageLen(), "kv_last_page_len",
                               batch, "batch")))
    return failure();
  int64_t k = getTopK(), sinks = getSinkPages(), recent = getRecentPages();
  if (k < 1 || sinks < 0 || recent < 0 || sinks + recent > k)
    return emitOpError() << "needs top_k >= 1 and 0 <= sink_pages + "
                            "recent_pages <= top_k, got top_k = "
                         << k << ", sink_pages = " << sinks
                         << ", recent_pages = " << recent;
  auto i32 = IntegerType::get(getContext(), 32);
  auto expectOffsets = RankedTensorType::get({batch, hkv, 2}, i32);
  auto expectIndices = RankedTensorType::get({batch, hkv, k}, i32);
  for (auto [name, value, expect] :
       {std::tuple{"offsets", getOffsets(), expectOffsets},
        std::tuple{"indices", getIndices(), expectIndices}}) {
    auto t = cast<RankedTensorType>(value.getType());
    if (t.getRank() != 3 || t.getElementType() != i32 ||
        mismatch(t.getDimSize(0), batch) || t.getDimSize(1) != hkv ||
        t.getDimSize(2) != expect.getDimSize(2))
      return emitOpError() << name << " result must be " << expect
                           << " (batch, kv_heads, "
                           << (expect == expectOffsets ? "2" : "top_k")
                           << "), got " << t;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// KVAppendOp
//===----------------------------------------------------------------------===//

LogicalResult KVAppendOp::verify() {
  KVCacheType cache = getCacheType();
  for (auto [name, value] :
       {std::pair{"key", getKey()}, std::pair{"value", getValue()}}) {
    auto t = cast<RankedTensorType>(value.getType());
    if (t.getRank() != 3)
      return emitOpError() << name
                           << " must be [num_new, kv_heads, head_dim] (rank "
                              "3), got rank "
                           << t.getRank();
    if (!isAttentionElement(t.getElementType()))
      return emitOpError() << name
                           << " element type must be f32, f16 or bf16, got "
                           << t.getElementType();
    if (t.getDimSize(1) != cache.getNumKVHeads() ||
        t.getDimSize(2) != cache.getHeadDim())
      return emitOpError() << name << " is " << t << " but the cache holds "
                           << cache.getNumKVHeads() << " heads of size "
                           << cache.getHeadDim() << "; expected tensor<?x"
                           << cache.getNumKVHeads() << "x" << cache.getHeadDim()
                           << "x...>";
  }
  RankedTensorType k = getKey().getType(), v = getValue().getType();
  if (k.getElementType() != v.getElementType() ||
      mismatch(k.getDimSize(0), v.getDimSize(0)))
    return emitOpError() << "key " << k << " and value " << v
                         << " must have the same element type and token count";
  if (failed(verifyIndexVector(*this, getSlots(), "slots", k.getDimSize(0),
                               "num_new")))
    return failure();
  if (cache.hasResidual() != (getRingSlots() != nullptr))
    return emitOpError()
           << (cache.hasResidual()
                   ? "the cache keeps a residual window: pass the tokens' "
                     "ring slots with ring_slots(%ring_slots : [num_new] i32)"
                   : "ring_slots given but the cache has no residual window");
  if (getRingSlots())
    return verifyIndexVector(*this, getRingSlots(), "ring_slots",
                             k.getDimSize(0), "num_new");
  return success();
}

//===----------------------------------------------------------------------===//
// MergeOp
//===----------------------------------------------------------------------===//

LogicalResult MergeOp::verify() {
  auto po = cast<RankedTensorType>(getPartialOutput().getType());
  auto plse = cast<RankedTensorType>(getPartialLse().getType());
  auto o = cast<RankedTensorType>(getOutput().getType());
  if (po.getRank() != 4 || !isAttentionElement(po.getElementType()))
    return emitOpError() << "partial outputs must be f32, f16 or bf16 "
                            "[num_partials, tokens, heads, head_dim], got "
                         << po;
  if (plse.getRank() != 3 || !plse.getElementType().isF32())
    return emitOpError() << "partial log-sum-exps must be f32 [num_partials, "
                            "heads, tokens], got "
                         << plse;
  if (po.isDynamicDim(2) || po.isDynamicDim(3))
    return emitOpError() << "head count and head size must be static";
  int64_t parts = po.getDimSize(0), tokens = po.getDimSize(1),
          heads = po.getDimSize(2);
  if (mismatch(plse.getDimSize(0), parts) ||
      mismatch(plse.getDimSize(1), heads) ||
      mismatch(plse.getDimSize(2), tokens))
    return emitOpError() << "partial log-sum-exps " << plse
                         << " do not match the partial outputs " << po
                         << "; expected [" << dimText(parts) << ", " << heads
                         << ", " << dimText(tokens) << "]";
  if (o.getRank() != 3 || !isAttentionElement(o.getElementType()) ||
      mismatch(o.getDimSize(0), tokens) || o.getDimSize(1) != heads ||
      o.getDimSize(2) != po.getDimSize(3))
    return emitOpError() << "result must be [tokens, heads, head_dim] = ["
                         << dimText(tokens) << ", " << heads << ", "
                         << po.getDimSize(3) << "] in f32, f16 or bf16, got "
                         << o;
  if (Value lse = getLse()) {
    auto t = cast<RankedTensorType>(lse.getType());
    if (t.getRank() != 2 || !t.getElementType().isF32() ||
        mismatch(t.getDimSize(0), heads) || mismatch(t.getDimSize(1), tokens))
      return emitOpError() << "log-sum-exp result must be f32 [heads, tokens] "
                              "= ["
                           << heads << ", " << dimText(tokens) << "], got "
                           << t;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Copies
//===----------------------------------------------------------------------===//

static LogicalResult verifyCopyable(std::optional<Location> location,
                                    StringRef opName, Type type) {
  if (CopyType::isCopyable(type))
    return success();
  return emitOptionalError(location, "'", opName,
                           "' op copies a static-shape ranked tensor or an "
                           "!attn.kv_cache, got ",
                           type);
}

LogicalResult CopyStartOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> location, ValueRange operands,
    DictionaryAttr, OpaqueProperties, RegionRange,
    SmallVectorImpl<Type> &inferredReturnTypes) {
  if (operands.size() != 1)
    return failure();
  Type type = operands[0].getType();
  if (failed(verifyCopyable(location, getOperationName(), type)))
    return failure();
  inferredReturnTypes.push_back(CopyType::get(context, type));
  return success();
}

CopyDoneOp CopyStartOp::getDone() {
  Value copy = getCopy();
  if (!copy.hasOneUse())
    return {};
  return dyn_cast<CopyDoneOp>(*copy.getUsers().begin());
}

LogicalResult CopyStartOp::verify() {
  unsigned waits = 0;
  for (Operation *user : getCopy().getUsers()) {
    if (!isa<CopyDoneOp>(user))
      return emitOpError() << "copy handle may only be used by attn.copy_done, "
                              "but '"
                           << user->getName() << "' uses it";
    ++waits;
  }
  if (waits != 1)
    return emitOpError() << "copy must be waited for by exactly one "
                            "attn.copy_done, found "
                         << waits;
  return success();
}

LogicalResult
CopyDoneOp::inferReturnTypes(MLIRContext *, std::optional<Location> location,
                             ValueRange operands, DictionaryAttr,
                             OpaqueProperties, RegionRange,
                             SmallVectorImpl<Type> &inferredReturnTypes) {
  if (operands.size() != 1)
    return failure();
  auto copy = dyn_cast<CopyType>(operands[0].getType());
  if (!copy)
    return emitOptionalError(location, "'", getOperationName(),
                             "' op expects an !attn.copy operand, got ",
                             operands[0].getType());
  inferredReturnTypes.push_back(copy.getValueType());
  return success();
}

CopyStartOp CopyDoneOp::getStart() {
  return getCopy().getDefiningOp<CopyStartOp>();
}

LogicalResult CopyDoneOp::verify() {
  if (!getStart())
    return emitOpError() << "operand must be the result of an attn.copy_start";
  return success();
}

// `$source to #attn.place<...> attr-dict : type`. MLIR's parser reads a
// `: T` right after a dialect attribute as that attribute's type, so without
// an attr-dict the place swallows the op's type: PlaceAttr::parse then hands
// back [place, T] (see there), which is unpacked here.
ParseResult CopyStartOp::parse(OpAsmParser &parser, OperationState &result) {
  OpAsmParser::UnresolvedOperand source;
  Attribute toAttr;
  Type type;
  SMLoc placeLoc;
  if (parser.parseOperand(source) || parser.parseKeyword("to"))
    return failure();
  placeLoc = parser.getCurrentLocation();
  if (parser.parseAttribute(toAttr))
    return failure();
  if (auto pair = dyn_cast<ArrayAttr>(toAttr);
      pair && pair.size() == 2 && isa<TypeAttr>(pair[1])) {
    toAttr = pair[0];
    type = cast<TypeAttr>(pair[1]).getValue();
  }
  auto to = dyn_cast<PlaceAttr>(toAttr);
  if (!to)
    return parser.emitError(placeLoc, "expected an #attn.place, got ")
           << toAttr;
  result.getOrAddProperties<Properties>().to = to;
  SMLoc typeLoc = placeLoc;
  if (!type &&
      (parser.parseOptionalAttrDict(result.attributes) ||
       parser.getCurrentLocation(&typeLoc) || parser.parseColonType(type)))
    return failure();
  if (!CopyType::isCopyable(type))
    return parser.emitError(typeLoc, "cannot copy a value of type ")
           << type
           << ": a copy moves a static-shape ranked tensor or an "
              "!attn.kv_cache";
  if (parser.resolveOperand(source, type, result.operands))
    return failure();
  result.addTypes(CopyType::get(parser.getContext(), type));
  return success();
}

void CopyStartOp::print(OpAsmPrinter &printer) {
  printer << " " << getSource() << " to " << getTo();
  printer.printOptionalAttrDict((*this)->getAttrs(), {"to"});
  printer << " : " << getSource().getType();
}
