//===- PlanTiles.cpp - shared-memory tile planning for GPU kernels --------===//
//
// The kernel level of the memory planner (issue 6 item 2,
// docs/memory-planning.md): for a device target, the tile sizes and
// pipeline depth of each attention op's GPU kernel such that every
// shared-memory buffer fits the block's budget at the wanted occupancy.
//
//===----------------------------------------------------------------------===//

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

#include <optional>
#include <string>

namespace attnc {
#define GEN_PASS_DEF_ATTNPLANTILES
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc::attn;

namespace {

// The candidate grid, largest first.
constexpr int64_t kTileSizes[] = {128, 64, 32, 16};
constexpr int64_t kStages[] = {3, 2, 1};
// Rows of the smallest tensor-core tile (mma m16n8k16): a query tile is
// padded to at least this many rows.
constexpr int64_t kMinRows = 16;
// Every stage of every buffer starts on this boundary: TMA's requirement for
// a shared-memory destination, and whole 128-byte rows for swizzled layouts.
constexpr int64_t kBufferAlignment = 128;

/// What the shared-memory footprint of one op's kernel depends on.
struct TileProblem {
  int64_t headDim = 0;
  int64_t groupSize = 1; // query heads per KV head: rows per query token
  bool decode = false;   // one query token per sequence
  // Upper bound on the rows one (sequence, KV head) has, when static.
  std::optional<int64_t> maxRows;
  int64_t queryBits = 16;
  int64_t keyBits = 16, valueBits = 16; // storage bits per element
  // Quantized cache (docs/kv-cache.md): i8/i4 carry per-channel K scales
  // over groups of kGroup tokens and per-token V scales, i4 also minima.
  bool scaled = false, minima = false;
  int64_t kGroup = 0;
  // A residual window's newest tokens are f16 and go through the same stage
  // buffers as the quantized ones.
  bool residual = false;
  // Block-sparse block size in tokens (BQ, BK), when the op has one.
  std::optional<std::pair<int64_t, int64_t>> sparseBlock;
};

struct Buffer {
  StringRef name;
  int64_t bytes;
};

struct Candidate {
  int64_t blockQ, blockKV, stages;
};

int64_t alignTo(int64_t bytes) {
  return llvm::divideCeil(bytes, kBufferAlignment) * kBufferAlignment;
}

/// Groups of `group` tokens that one tile of `tile` tokens touches.
int64_t groupsPerTile(int64_t tile, int64_t group) {
  if (tile % group == 0)
    return tile / group;
  if (group % tile == 0)
    return 1;
  // A tile may straddle a group boundary at both ends.
  return llvm::divideCeil(tile - 1, group) + 1;
}

/// The FlashAttention-2 buffers of one thread block: the Q tile once, K and
/// V tiles (and their scales) once per pipeline stage. P stays in registers
/// (the S accumulator becomes the A operand of P.V) and O is written through
/// the Q buffer, so neither adds shared memory.
SmallVector<Buffer> buffersFor(const TileProblem &p, const Candidate &c) {
  auto tileBytes = [&](int64_t tokens, int64_t bits) {
    int64_t bytes = llvm::divideCeil(tokens * p.headDim * bits, 8);
    if (p.residual)
      bytes = std::max(bytes, tokens * p.headDim * 2);
    return bytes;
  };
  auto staged = [&](int64_t bytes) { return c.stages * alignTo(bytes); };
  SmallVector<Buffer> buffers{
      {"q", alignTo(c.blockQ * p.headDim * p.queryBits / 8)},
      {"k", staged(tileBytes(c.blockKV, p.keyBits))},
      {"v", staged(tileBytes(c.blockKV, p.valueBits))}};
  if (p.scaled) {
    int64_t kScale = groupsPerTile(c.blockKV, p.kGroup) * p.headDim * 2;
    int64_t vScale = c.blockKV * 2;
    buffers.push_back({"k_scale", staged(kScale)});
    if (p.minima)
      buffers.push_back({"k_min", staged(kScale)});
    buffers.push_back({"v_scale", staged(vScale)});
    if (p.minima)
      buffers.push_back({"v_min", staged(vScale)});
  }
  return buffers;
}

int64_t totalBytes(ArrayRef<Buffer> buffers) {
  int64_t total = 0;
  for (const Buffer &b : buffers)
    total += b.bytes;
  return total;
}

int64_t bitWidth(Type t) {
  if (auto f = dyn_cast<FloatType>(t))
    return f.getWidth();
  return t.getIntOrFloatBitWidth();
}

template <typename OpTy> void describeSparse(OpTy op, TileProblem &p) {
  if (!op.isBlockSparse())
    return;
  if (std::optional<ArrayRef<int64_t>> size = op.getBlockSize();
      size && size->size() == 2)
    p.sparseBlock = {size->front(), size->back()};
}

TileProblem describe(AttentionOp op) {
  TileProblem p;
  p.headDim = op.getHeadDim();
  p.groupSize = op.getGroupSize();
  p.queryBits = bitWidth(op.getElementType());
  p.keyBits = bitWidth(op.getKey().getType().getElementType());
  p.valueBits = bitWidth(op.getValue().getType().getElementType());
  // Dense [batch, seq_q, heads, head_dim]: a static seq_q bounds the rows.
  auto qType = op.getQuery().getType();
  if (!op.isRagged() && !qType.isDynamicDim(1)) {
    p.maxRows = qType.getDimSize(1) * p.groupSize;
    p.decode = qType.getDimSize(1) == 1;
  }
  describeSparse(op, p);
  return p;
}

TileProblem describe(PagedAttentionOp op) {
  TileProblem p;
  KVCacheType cache = op.getCacheType();
  p.headDim = op.getHeadDim();
  p.groupSize = op.getGroupSize();
  p.queryBits = bitWidth(op.getElementType());
  p.decode = !op.isRagged();
  if (p.decode)
    p.maxRows = p.groupSize;
  // fp8 and packed i4 travel as bytes; the element width is the storage's.
  p.keyBits = p.valueBits = cache.isInt4() ? 4 : bitWidth(cache.getStorage());
  // fp8's per-head scales are one scalar per block: registers.
  p.scaled = cache.isInt8() || cache.isInt4();
  p.minima = cache.isInt4();
  p.kGroup = cache.getKGroup() > 0 ? cache.getKGroup() : cache.getPageSize();
  p.residual = cache.hasResidual();
  describeSparse(op, p);
  return p;
}

struct AttnPlanTilesPass
    : public attnc::impl::AttnPlanTilesBase<AttnPlanTilesPass> {
  using Base::Base;

  /// The largest block_q and block_kv FlashAttention-2 uses for this head
  /// size on sm_80/sm_90 (flash_fwd_launch_template.h): 128 x 128 up to 64,
  /// 128 x 64 up to 192, 64 x 64 beyond (256: H100's choice, two blocks per
  /// SM). Decode follows its split-KV kernel: 128 keys up to 128, else 64.
  static std::pair<int64_t, int64_t> caps(const TileProblem &p) {
    if (p.decode)
      return {128, p.headDim <= 128 ? 128 : 64};
    if (p.headDim <= 64)
      return {128, 128};
    if (p.headDim <= 192)
      return {128, 64};
    return {64, 64};
  }

  /// The candidates in order of preference: pipelined (stages >= 2) first,
  /// then larger block_q (fewer K/V loads per query), larger block_kv, and
  /// deeper pipelines last, so a third stage never costs a smaller tile.
  static SmallVector<Candidate> candidates(const TileProblem &p) {
    auto [capQ, capKV] = caps(p);
    // A query tile no larger than the rows there are (decode: all query
    // heads of one KV head), but at least one MMA's rows.
    if (p.maxRows) {
      int64_t need = std::max(*p.maxRows, kMinRows);
      for (int64_t size : llvm::reverse(kTileSizes))
        if (size >= need || size == kTileSizes[0]) {
          capQ = std::min(capQ, size);
          break;
        }
    }
    SmallVector<int64_t> qs, kvs;
    for (int64_t size : kTileSizes) {
      // A tile lies inside one block of a block-sparse mask: block_q divides
      // its rows (BQ tokens of all heads of the group), block_kv its keys.
      bool qOk = size <= capQ;
      bool kvOk = size <= capKV;
      if (p.sparseBlock) {
        qOk &= p.decode || (p.sparseBlock->first * p.groupSize) % size == 0;
        kvOk &= p.sparseBlock->second % size == 0;
      }
      if (qOk && (!p.decode || qs.empty()))
        qs.push_back(size);
      if (kvOk)
        kvs.push_back(size);
    }
    SmallVector<Candidate> list;
    for (bool pipelined : {true, false})
      for (int64_t q : qs)
        for (int64_t kv : kvs)
          for (int64_t stages : kStages)
            if ((stages >= 2) == pipelined)
              list.push_back({q, kv, stages});
    return list;
  }

  /// The target of `op`: the pass option, else the nearest `attn.target`.
  FailureOr<TargetAttr> targetOf(Operation *op, TargetAttr option) {
    if (option)
      return option;
    for (Operation *parent = op->getParentOp(); parent;
         parent = parent->getParentOp()) {
      Attribute attr = parent->getAttr("attn.target");
      if (!attr)
        continue;
      if (auto target = dyn_cast<TargetAttr>(attr))
        return target;
      return parent->emitError()
             << "attn.target must be an #attn.target, got " << attr;
    }
    return op->emitError()
           << "attn-plan-tiles needs a target: add attn.target = "
              "#attn.target<...> to the module (or the function), or pass "
              "target=<preset> ("
           << llvm::join(TargetAttr::getPresetNames(), ", ") << ")";
  }

  LogicalResult plan(Operation *op, const TileProblem &p, TargetAttr target) {
    SmallVector<Candidate> list = candidates(p);
    if (list.empty())
      return op->emitError()
             << "no kernel tile lies inside one block of the block-sparse "
                "mask (block_size = ["
             << p.sparseBlock->first << ", " << p.sparseBlock->second << "], "
             << p.groupSize
             << (p.groupSize == 1 ? " query head" : " query heads")
             << " per KV head): block_kv must divide the block's "
                "keys and block_q its rows, with tiles of 16 to 128; use "
                "block sizes that are multiples of 16";
    int64_t perBlock = target.getSmemPerBlock();
    int64_t perSm = target.getSmemPerSm();
    auto fits = [&](int64_t bytes) {
      return bytes <= perBlock && occupancy * bytes <= perSm;
    };
    for (const Candidate &c : list) {
      SmallVector<Buffer> buffers = buffersFor(p, c);
      int64_t total = totalBytes(buffers);
      if (!fits(total))
        continue;
      Builder b(op->getContext());
      SmallVector<Attribute> entries;
      for (const Buffer &buf : buffers)
        entries.push_back(b.getDictionaryAttr(
            {b.getNamedAttr("name", b.getStringAttr(buf.name)),
             b.getNamedAttr("bytes", b.getI64IntegerAttr(buf.bytes))}));
      op->setAttr(
          "attn.tile_plan",
          b.getDictionaryAttr(
              {b.getNamedAttr("block_q", b.getI64IntegerAttr(c.blockQ)),
               b.getNamedAttr("block_kv", b.getI64IntegerAttr(c.blockKV)),
               b.getNamedAttr("stages", b.getI64IntegerAttr(c.stages)),
               b.getNamedAttr("smem_bytes", b.getI64IntegerAttr(total)),
               b.getNamedAttr("buffers", b.getArrayAttr(entries))}));
      return success();
    }
    // The candidates are ordered by preference, not size: report the
    // smallest one, which needs the least shared memory of all.
    Candidate smallest = list.front();
    for (const Candidate &c : list)
      if (totalBytes(buffersFor(p, c)) < totalBytes(buffersFor(p, smallest)))
        smallest = c;
    SmallVector<Buffer> buffers = buffersFor(p, smallest);
    int64_t total = totalBytes(buffers);
    InFlightDiagnostic diag = op->emitError();
    diag << "no kernel tiles fit the target's shared memory: the smallest "
            "candidate (block_q = "
         << smallest.blockQ << ", block_kv = " << smallest.blockKV
         << ", stages = " << smallest.stages << ") needs ";
    llvm::interleaveComma(buffers, diag, [&](const Buffer &buf) {
      diag << buf.name << " " << buf.bytes << " B";
    });
    diag << " = " << total << " B";
    if (total > perBlock)
      diag << ", over smem_per_block = " << perBlock << " B";
    else
      diag << " per block, and " << int64_t(occupancy)
           << " blocks per SM (occupancy) need " << occupancy * total
           << " B, over smem_per_sm = " << perSm << " B";
    diag << "; use a smaller head_dim (" << p.headDim
         << " here) or a target with more shared memory";
    if (total <= perBlock)
      diag << ", or a lower occupancy";
    return diag;
  }

  void runOnOperation() override {
    if (occupancy < 1) {
      emitError(getOperation().getLoc())
          << "attn-plan-tiles: occupancy = " << int64_t(occupancy)
          << " must be at least 1 block per SM";
      return signalPassFailure();
    }
    TargetAttr option;
    if (!target.empty()) {
      option = TargetAttr::getPreset(&getContext(), target);
      if (!option) {
        emitError(getOperation().getLoc())
            << "attn-plan-tiles: unknown target preset '" << target
            << "'; known presets: "
            << llvm::join(TargetAttr::getPresetNames(), ", ");
        return signalPassFailure();
      }
    }
    bool failedAny = false;
    getOperation().walk([&](Operation *op) {
      if (!isa<AttentionOp, PagedAttentionOp>(op))
        return;
      FailureOr<TargetAttr> t = targetOf(op, option);
      if (failed(t)) {
        failedAny = true;
        return;
      }
      // The CPU has no software-managed shared memory: its tiles are
      // attn-lower-to-tiles's options, sized for the caches.
      if (!t->hasDevice())
        return;
      TileProblem p = isa<AttentionOp>(op)
                          ? describe(cast<AttentionOp>(op))
                          : describe(cast<PagedAttentionOp>(op));
      failedAny |= failed(plan(op, p, *t));
    });
    if (failedAny)
      signalPassFailure();
  }
};

} // namespace
