//===- AttnToTiles.cpp - attn.attention to the tiled algorithm ------------===//
//
// Lowers attn.attention to the target-neutral tile level: an scf.parallel
// over (batch, KV head, query tile), and inside it an scf.for over KV tiles
// running online softmax in the log2 domain. Passes.td describes the output.
//
//===----------------------------------------------------------------------===//

#include "Lowerings.h"
#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <thread>

namespace attnc {
#define GEN_PASS_DEF_ATTNLOWERTOTILES
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

namespace {

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;
constexpr double kInf = std::numeric_limits<double>::infinity();
/// The window of a head without one, in the mixed per-head case: wider than
/// any sequence, small enough that position - window stays in i32.
constexpr int64_t kNoWindow = int64_t(1) << 30;

/// One attention computation, from attn.attention or attn.paged_attention.
struct AttentionProblem {
  Value query, key, value, cuQ, cuK;        // tensors; key/value unless paged
  Value kvIndptr, kvIndices, kvLastPageLen; // tensors, paged only
  Value kvRings;                       // tensor, paged with a residual window
  KVCacheType cache;                   // paged only
  llvm::StringMap<Value> cacheBuffers; // component role -> memref
  bool ragged = false;                 // Q and O are [tokens, heads, head_dim]
  bool paged = false;
  bool decode = false; // paged with one query per sequence: Q [batch, ...]
  SmallVector<MaskAttr> headMasks; // per KV head
  // Block-sparse mask (docs/sparsity.md section 2); offsets null without.
  Value blockOffsets, blockIndices, blockFull; // tensors
  int64_t blockRows = 0, blockCols = 0;        // BQ, BK in tokens
  // Instrumented kernels: the global of the tile counters (attn-count-tiles).
  FlatSymbolRefAttr tileStats;
  int64_t groupSize = 1, headDim = 0, numKVHeads = 0;
  double scale = 1;
  std::optional<double> softcap;
  Type outputType, lseType; // lseType null without an LSE result
};

struct TileConfig {
  int64_t blockQ;  // query tokens per tile
  int64_t blockKV; // keys per KV tile
  int64_t chunk;   // head_dim elements per vector op
  // Q.K^T form. Transposed: K staged as [head_dim, block_kv] so a row's
  // scores are broadcast-FMAs over a vector of keys (no reductions); pays
  // a transpose per tile, worth it when many rows share the tile. Dot: one
  // reduction per (row, key), for decode-shaped tiles with few rows.
  bool transposeK;
  // Emit both forms and pick per work item by its row count (a dynamic
  // query length: the same kernel serves prefill and decode).
  bool chooseAtRunTime;
  // Split-KV (paged decode): at most this many partitions of each
  // sequence's KV tiles, merged in a second phase; 0 = no split.
  int64_t maxSplits = 0;
  // With maxSplits: a fixed partition count (0 = chosen at run time from
  // the batch, the KV heads and threadsHint).
  int64_t forcedSplits = 0;
  int64_t threadsHint = 1;
};

/// Rows above which the transposed form pays for its transpose.
constexpr int64_t kTransposeMinRows = 16;

/// Per-work-item values: which sequence, where its tokens start, how many.
struct WorkItem {
  Value batch, kvHead;
  Value qStart, qLen, kStart, kLen; // in tokens
  Value firstQuery;                 // first query of the tile, in the sequence
  Value numQueries;                 // queries of this tile (<= blockQ)
  Value numRows;                    // numQueries * G
  Value firstHead;                  // first query head: kvHead * G
  Value pageBegin; // paged: first entry of the sequence in kv_indices
  Value ring;      // paged with a residual window: the sequence's ring
  Value split;     // split-KV: which partition of the KV tiles
  // Positions (DESIGN.md section 4) of the tile's first and last query, and
  // the offset from query index to position (bottom-right: Lk - Lq).
  Value posOffset, firstPos, lastPos;
  // The KV head's mask where heads differ (docs/sparsity.md section 1):
  // `noUpper` (i1: the head sees keys after its position) null when every
  // head agrees; `window`, `sinks` (index) null when no head has one.
  Value noUpper, window, sinks;
  Value blockHead; // block-sparse: the head of the block lists
};

/// The KV tiles a work item visits: `numSink` tiles from 0, then the tiles
/// from `mainBegin` on, `numTiles` in all (the block predicate).
struct KVRange {
  Value numSink, mainBegin, mainEnd, numTiles;
  Value stepBegin, stepEnd; // the steps [0, numTiles) this item runs
  // Block-sparse: step s runs kernel tile s % tilesPerBlock of the block
  // listed at entry listBegin + s / tilesPerBlock; null without.
  Value listBegin;
};

/// What the per-head masks have in common: code for a rule is emitted only
/// when some head uses it.
struct MaskSummary {
  bool anyUpper = false, allUpper = true, anyWindow = false, anySinks = false;
  bool topLeft = false;
  explicit MaskSummary(ArrayRef<MaskAttr> masks) {
    for (MaskAttr m : masks) {
      anyUpper |= m.hasUpperBound();
      allUpper &= m.hasUpperBound();
      anyWindow |= m.hasWindow();
      anySinks |= m.hasWindow() && m.getSinks() > 0;
      topLeft = m.getTopLeft();
    }
  }
};

/// The attn.merge combine as a parallel loop over (token, head):
/// o = sum_p 2^(l_p - m) o_p / sum_p 2^(l_p - m) in the log2 domain, with m
/// the largest partial LSE. Partials at -inf weigh 0; all at -inf give zeros
/// and -inf. `partialO` [P, T, H, D], `partialLse` [P, H, T] (nats),
/// `output` [T, H, D], `lse` [H, T] or null.
static void emitMerge(ImplicitLocOpBuilder &b, Value partialO, Value partialLse,
                      Value numParts, Value numTokens, Value output, Value lse,
                      int64_t chunk) {
  auto oType = cast<MemRefType>(partialO.getType());
  int64_t heads = oType.getDimSize(2), headDim = oType.getDimSize(3);
  Type f32 = b.getF32Type();
  Type inElem = oType.getElementType();
  Type outElem = cast<MemRefType>(output.getType()).getElementType();
  auto vecType = VectorType::get({chunk}, f32);
  // Constants first, outside the loop they are used in.
  auto f32c = [&](double v) -> Value {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  };
  Value zero = arith::ConstantIndexOp::create(b, 0);
  Value one = arith::ConstantIndexOp::create(b, 1);
  Value negInf = f32c(-kInf), zeroF = f32c(0.0), oneF = f32c(1.0),
        log2e = f32c(kLog2e), ln2 = f32c(kLn2);
  Value zeroVec = arith::ConstantOp::create(
      b, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0).getValue()));
  SmallVector<Value> offsets;
  for (int64_t d = 0; d < headDim; d += chunk)
    offsets.push_back(arith::ConstantIndexOp::create(b, d));

  scf::ParallelOp::create(
      b, ValueRange{zero, zero},
      ValueRange{numTokens, arith::ConstantIndexOp::create(b, heads)},
      ValueRange{one, one}, [&](OpBuilder &nb, Location loc, ValueRange ivs) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value t = ivs[0], h = ivs[1];
        auto loadLse = [&](ImplicitLocOpBuilder &jb, Value part) -> Value {
          return memref::LoadOp::create(jb, partialLse, ValueRange{part, h, t});
        };
        auto maxLoop = scf::ForOp::create(
            ib, zero, numParts, one, ValueRange{negInf},
            [&](OpBuilder &lb, Location l, Value part, ValueRange m) {
              ImplicitLocOpBuilder jb(l, lb);
              scf::YieldOp::create(jb, ValueRange{arith::MaximumFOp::create(
                                           jb, loadLse(jb, part), m[0])});
            });
        Value m = maxLoop.getResult(0);
        Value empty =
            arith::CmpFOp::create(ib, arith::CmpFPredicate::OEQ, m, negInf);
        Value base = arith::SelectOp::create(ib, empty, zeroF, m);
        SmallVector<Value> init{zeroF};
        init.append(offsets.size(), zeroVec);
        auto sumLoop = scf::ForOp::create(
            ib, zero, numParts, one, init,
            [&](OpBuilder &lb, Location l, Value part, ValueRange carried) {
              ImplicitLocOpBuilder jb(l, lb);
              Value weight = math::Exp2Op::create(
                  jb,
                  arith::MulFOp::create(
                      jb, arith::SubFOp::create(jb, loadLse(jb, part), base),
                      log2e));
              SmallVector<Value> next{
                  arith::AddFOp::create(jb, carried[0], weight)};
              Value w = vector::BroadcastOp::create(jb, vecType, weight);
              for (auto [i, d] : llvm::enumerate(offsets)) {
                Value o =
                    vector::LoadOp::create(jb, VectorType::get({chunk}, inElem),
                                           partialO, ValueRange{part, t, h, d});
                if (inElem != f32)
                  o = arith::ExtFOp::create(jb, vecType, o);
                next.push_back(vector::FMAOp::create(jb, w, o, carried[i + 1]));
              }
              scf::YieldOp::create(jb, next);
            });
        Value sum = sumLoop.getResult(0);
        Value positive =
            arith::CmpFOp::create(ib, arith::CmpFPredicate::OGT, sum, zeroF);
        Value inv = arith::SelectOp::create(
            ib, positive, arith::DivFOp::create(ib, oneF, sum), zeroF);
        Value invVec = vector::BroadcastOp::create(ib, vecType, inv);
        for (auto [i, d] : llvm::enumerate(offsets)) {
          Value o = arith::MulFOp::create(ib, sumLoop.getResult(i + 1), invVec);
          if (outElem != f32)
            o = arith::TruncFOp::create(ib, VectorType::get({chunk}, outElem),
                                        o);
          vector::StoreOp::create(ib, o, output, ValueRange{t, h, d});
        }
        if (lse) {
          Value nats = arith::AddFOp::create(
              ib, base,
              arith::MulFOp::create(ib, math::Log2Op::create(ib, sum), ln2));
          memref::StoreOp::create(
              ib, arith::SelectOp::create(ib, empty, negInf, nats), lse,
              ValueRange{h, t});
        }
      });
}

/// Builds the tiled loop nest for one attn.attention. Integer values are
/// `index` unless named *I32; vectors are f32.
class AttentionTiler {
public:
  AttentionTiler(const AttentionProblem &p, TileConfig cfg,
                 ImplicitLocOpBuilder &b)
      : p(p), cfg(cfg), b(b), ragged(p.ragged), masks(p.headMasks),
        rules(p.headMasks), groupSize(p.groupSize), headDim(p.headDim),
        numKVHeads(p.numKVHeads), rows(cfg.blockQ * groupSize),
        f32(b.getF32Type()) {
    // Scores are computed in the log2 domain: fold scale * log2(e) into Q
    // (or scale / softcap when soft-capping, applied after tanh).
    softcap = p.softcap;
    qScale = softcap ? p.scale / *softcap : p.scale * kLog2e;
  }

  /// Emits the loops; returns the replacement values of op's results.
  SmallVector<Value> build();
  /// Bytes of the private workspace of one work item (after build()).
  int64_t getWorkspaceBytes() const { return workspaceBytes; }

private:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value i32c(int64_t v) { return arith::ConstantIntOp::create(b, v, 32); }
  Value f32c(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value splat(int64_t n, double v) {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(vec(n), b.getF32FloatAttr(v).getValue()));
  }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value minS(Value x, Value y) { return arith::MinSIOp::create(b, x, y); }
  Value maxS(Value x, Value y) { return arith::MaxSIOp::create(b, x, y); }
  Value lt(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::slt, x, y);
  }
  Value le(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::sle, x, y);
  }
  Value ceilDiv(Value x, int64_t d) {
    return arith::CeilDivSIOp::create(b, x, idx(d));
  }
  Value castIndex(Value v, Type to) {
    return arith::IndexCastOp::create(b, to, v);
  }
  VectorType vec(int64_t n, Type t = {}) {
    return VectorType::get({n}, t ? t : f32);
  }
  Value dim(Value buffer, int64_t d) {
    return memref::DimOp::create(b, buffer, d);
  }

  /// scf.for without carried values.
  void forEach(Value lb, Value ub, int64_t step,
               function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, lb, ub, idx(step));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  }

  /// Indices of element (token, head, d) of a Q/K/V/O buffer.
  SmallVector<Value> tokenIndices(const WorkItem &w, Value token, Value head,
                                  Value d) {
    if (ragged)
      return {token, head, d};
    return {w.batch, token, head, d};
  }
  /// `cfg.chunk` elements of one token's head as f32.
  Value loadChunk(const WorkItem &w, Value buffer, Value token, Value head,
                  Value d) {
    Type elem = cast<MemRefType>(buffer.getType()).getElementType();
    Value v = vector::LoadOp::create(b, vec(cfg.chunk, elem), buffer,
                                     tokenIndices(w, token, head, d));
    return elem == f32 ? v : arith::ExtFOp::create(b, vec(cfg.chunk), v);
  }

  /// Stores a chunk of one key at column `key` of the transposed K tile.
  void storeColumn(Value chunkValue, Value key, int64_t d0) {
    for (int64_t e = 0; e < cfg.chunk; ++e)
      memref::StoreOp::create(b, vector::ExtractOp::create(b, chunkValue, e),
                              kTile, ValueRange{idx(d0 + e), key});
  }
  /// S[r, :] = Q[r, :] . K^T for every key of the tile, as vector<block_kv>.
  Value emitScores(Value r);
  /// Row r of a tile is query firstQuery + r / G of query head
  /// kvHead * G + r % G: the G heads of one token are contiguous in memory.
  Value rowQuery(Value r) {
    return arith::DivUIOp::create(b, r, idx(groupSize));
  }
  Value rowHead(const WorkItem &w, Value r) {
    return add(w.firstHead, arith::RemUIOp::create(b, r, idx(groupSize)));
  }

  WorkItem emitSequenceBounds(Value batch, Value kvHead, Value qTile);
  void emitWorkItem(Value batch, Value kvHead, Value qTile, Value split);
  /// Longest sequence of a cumulative-length vector.
  Value emitMaxLength(Value cu, Value numBatches);
  /// Split-KV partitions per sequence for this call.
  Value emitSplitCount(Value numBatches);
  void emitPartialBuffers();
  /// K and V of key j of the tile, from a dense/ragged buffer or a paged
  /// cache (dequantized), into the tile.
  void emitDenseKeyLoad(const WorkItem &w, Value token, Value j);
  void storeKeyChunk(Value k, Value j, int64_t d);
  /// What the keys of one tile share when it lies inside one page (and one
  /// K scale group): looked up once per tile instead of once per key.
  struct PagedTile {
    Value page, firstOffset;                       // null: per key
    SmallVector<std::pair<Value, Value>> keyScale; // per chunk, or empty
  };
  PagedTile emitPagedTile(const WorkItem &w, Value tileStart);
  /// The physical page of a logical page of the item's sequence.
  Value emitPageLookup(const WorkItem &w, Value logicalPage);
  void emitPagedKeyLoad(const WorkItem &w, const PagedTile &tile,
                        Value position, Value j);
  /// The per-channel K scale (and minimum, for i4) chunk of one group.
  std::pair<Value, Value> loadKeyScaleChunk(Value page, Value group, Value head,
                                            int64_t d);
  /// `cfg.chunk` dequantized elements of one cached token's head.
  Value loadCachedChunk(bool isKey, Value page, Value offset, Value head,
                        int64_t d, std::pair<Value, Value> keyScale = {});
  void emitWorkspace();
  /// Q rows, pre-scaled, and a zeroed accumulator.
  void emitQueryTile(const WorkItem &w);
  /// The mask parameters of the work item's KV head.
  void emitHeadMask(WorkItem &w);
  /// Fills the positions of `w`; returns the KV tiles any row can see.
  KVRange emitBlockPredicate(WorkItem &w);
  /// Block-sparse: the steps become the entries of the item's block row.
  void emitBlockList(WorkItem &w, KVRange &range);
  /// One KV tile: load, scores, online softmax over the rows.
  SmallVector<Value> emitTileStep(const WorkItem &w, Value tile,
                                  Value listedFull, ValueRange state);
  /// Adds one to tile counter `counter` (instrumented kernels only).
  void emitCount(int64_t counter);
  /// The KV-tile loop carrying (row max, row sum), in one score form.
  ValueRange emitKVLoop(const WorkItem &w, const KVRange &range,
                        bool transposedForm);
  /// K and V of one tile to f32 in the workspace (dequantization fuses here).
  void emitTileLoad(const WorkItem &w, Value tileStart, Value numKeys);
  /// Whether every row sees every key of the tile (no element predicate).
  /// `listedFull`: a block-sparse entry flagged full (null: none).
  Value emitFullTileTest(const WorkItem &w, Value tileStart, Value numKeys,
                         Value listedFull);
  /// One row's online-softmax step over one tile; returns the new state.
  SmallVector<Value> emitRowUpdate(const WorkItem &w, Value r, ValueRange state,
                                   Value tileStart, Value numKeys, Value full,
                                   Value listedFull);
  /// O = acc / l (zero for rows that saw no key), LSE in nats.
  void emitEpilogue(const WorkItem &w, Value rowMax, Value rowSum);
  Value emitElementPredicate(const WorkItem &w, Value scores, Value tileStart,
                             Value queryPos, Value listedFull);

  const AttentionProblem &p;
  TileConfig cfg;
  ImplicitLocOpBuilder &b;
  bool ragged;
  ArrayRef<MaskAttr> masks;
  MaskSummary rules;
  int64_t groupSize, headDim, numKVHeads, rows;
  Type f32;
  std::optional<double> softcap;
  double qScale;

  Value query, key, value, cuQ, cuK, output, lse;
  Value kvIndptr, kvIndices, kvLastPageLen, kvRings;
  Value blockOffsets, blockIndices, blockFull, tileStats;
  Value numSplits, partialO, partialLse;
  // Per work item, fixed-size f32 workspace.
  Value qTile, kTile, vTile, scoreTile, probRow, accTile;
  // Both K layouts when the form is chosen at run time; `transposed` is the
  // form of the KV loop being emitted.
  Value kTileTransposed, kTileRows;
  bool transposed = false;
  int64_t workspaceBytes = 0;
};

} // namespace

SmallVector<Value> AttentionTiler::build() {
  auto toBuffer = [&](Value tensor) -> Value {
    if (!tensor)
      return {};
    auto t = cast<RankedTensorType>(tensor.getType());
    return bufferization::ToBufferOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), tensor,
        /*read_only=*/true);
  };
  query = toBuffer(p.query);
  key = toBuffer(p.key);
  value = toBuffer(p.value);
  cuQ = toBuffer(p.cuQ);
  cuK = toBuffer(p.cuK);
  kvIndptr = toBuffer(p.kvIndptr);
  kvIndices = toBuffer(p.kvIndices);
  kvLastPageLen = toBuffer(p.kvLastPageLen);
  kvRings = toBuffer(p.kvRings);
  blockOffsets = toBuffer(p.blockOffsets);
  blockIndices = toBuffer(p.blockIndices);
  blockFull = toBuffer(p.blockFull);
  if (p.tileStats)
    tileStats = memref::GetGlobalOp::create(
        b, MemRefType::get({3}, b.getI64Type()), p.tileStats.getValue());

  // Results are fresh buffers; their dynamic sizes come from the query.
  auto allocLike = [&](Type type,
                       ArrayRef<std::pair<int64_t, int64_t>> fromQueryDim) {
    auto t = cast<RankedTensorType>(type);
    SmallVector<Value> sizes;
    for (auto [resultDim, queryDim] : fromQueryDim)
      if (t.isDynamicDim(resultDim))
        sizes.push_back(dim(query, queryDim));
    return memref::AllocOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), sizes);
  };
  output = ragged ? allocLike(p.outputType, {{0, 0}})
                  : allocLike(p.outputType, {{0, 0}, {1, 1}});
  if (p.lseType)
    lse = ragged ? allocLike(p.lseType, {{1, 0}})
                 : allocLike(p.lseType, {{0, 0}, {2, 1}});

  // Number of query tiles: per sequence for dense batches, from the longest
  // sequence for ragged ones (shorter sequences finish early).
  Value numBatches, maxQLen;
  if (p.paged)
    numBatches = sub(dim(kvIndptr, 0), idx(1));
  else if (ragged)
    numBatches = sub(dim(cuQ, 0), idx(1));
  else
    numBatches = dim(query, 0);
  if (p.decode)
    maxQLen = idx(1);
  else if (ragged)
    maxQLen = emitMaxLength(cuQ, numBatches);
  else
    maxQLen = dim(query, 1);
  Value numQTiles = ceilDiv(maxQLen, cfg.blockQ);

  SmallVector<Value> upper{numBatches, idx(numKVHeads), numQTiles};
  if (cfg.maxSplits > 0) {
    numSplits = emitSplitCount(numBatches);
    upper.push_back(numSplits);
    emitPartialBuffers();
  }
  SmallVector<Value> zeros(upper.size(), idx(0)), ones(upper.size(), idx(1));
  scf::ParallelOp::create(
      b, zeros, upper, ones, [&](OpBuilder &nb, Location loc, ValueRange ivs) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        emitWorkItem(ivs[0], ivs[1], ivs[2], ivs.size() > 3 ? ivs[3] : Value());
      });
  if (cfg.maxSplits > 0) {
    // Phase 2: combine the partitions (nothing to do with one partition:
    // its items wrote the results directly).
    Value tokens = arith::SelectOp::create(b, lt(idx(1), numSplits),
                                           dim(query, 0), idx(0));
    emitMerge(b, partialO, partialLse, numSplits, tokens, output, lse,
              cfg.chunk);
  }

  auto toTensor = [&](Value buffer, Type tensorType) -> Value {
    return bufferization::ToTensorOp::create(b, tensorType, buffer,
                                             /*restrict=*/true,
                                             /*writable=*/true);
  };
  SmallVector<Value> results{toTensor(output, p.outputType)};
  if (lse)
    results.push_back(toTensor(lse, p.lseType));
  return results;
}

Value AttentionTiler::emitMaxLength(Value cu, Value numBatches) {
  auto scan = scf::ForOp::create(
      b, idx(0), numBatches, idx(1), ValueRange{idx(0)},
      [&](OpBuilder &nb, Location loc, Value i, ValueRange iter) {
        ImplicitLocOpBuilder ib(loc, nb);
        Value next =
            arith::AddIOp::create(ib, i, arith::ConstantIndexOp::create(ib, 1));
        Value len = arith::SubIOp::create(
            ib, memref::LoadOp::create(ib, cu, ValueRange{next}),
            memref::LoadOp::create(ib, cu, ValueRange{i}));
        Value lenIdx = arith::IndexCastOp::create(ib, ib.getIndexType(), len);
        scf::YieldOp::create(
            ib, ValueRange{arith::MaxSIOp::create(ib, lenIdx, iter[0])});
      });
  return scan.getResult(0);
}

Value AttentionTiler::emitSplitCount(Value numBatches) {
  if (cfg.forcedSplits > 0)
    return idx(cfg.forcedSplits);
  // Enough items for two per thread, never more partitions than KV tiles
  // of the longest sequence allow (each partition gets >= 2 tiles).
  Value items = maxS(idx(1), mul(numBatches, idx(numKVHeads)));
  Value wanted = arith::CeilDivSIOp::create(b, idx(2 * cfg.threadsHint), items);
  Value maxPages = idx(0);
  {
    auto scan = scf::ForOp::create(
        b, idx(0), numBatches, idx(1), ValueRange{idx(0)},
        [&](OpBuilder &nb, Location loc, Value i, ValueRange iter) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          Value pages =
              sub(castIndex(memref::LoadOp::create(b, kvIndptr,
                                                   ValueRange{add(i, idx(1))}),
                            b.getIndexType()),
                  castIndex(memref::LoadOp::create(b, kvIndptr, ValueRange{i}),
                            b.getIndexType()));
          scf::YieldOp::create(b, ValueRange{maxS(pages, iter[0])});
        });
    maxPages = scan.getResult(0);
  }
  Value maxTiles =
      ceilDiv(mul(maxPages, idx(p.cache.getPageSize())), cfg.blockKV);
  Value byLength = maxS(idx(1), arith::DivSIOp::create(b, maxTiles, idx(2)));
  return maxS(idx(1), minS(idx(cfg.maxSplits), minS(wanted, byLength)));
}

void AttentionTiler::emitPartialBuffers() {
  // Scratch the runtime provides (manifest `scratch`): each partition's
  // normalized output and LSE, merged in phase 2.
  int64_t hq = numKVHeads * groupSize;
  Value tokens = dim(query, 0);
  partialO = memref::AllocOp::create(
      b,
      MemRefType::get({cfg.maxSplits, ShapedType::kDynamic, hq, headDim}, f32),
      ValueRange{tokens});
  partialLse = memref::AllocOp::create(
      b, MemRefType::get({cfg.maxSplits, hq, ShapedType::kDynamic}, f32),
      ValueRange{tokens});
}

WorkItem AttentionTiler::emitSequenceBounds(Value batch, Value kvHead,
                                            Value qTileIdx) {
  WorkItem w;
  w.batch = batch;
  w.kvHead = kvHead;
  auto bounds = [&](Value cu, Value &start, Value &len) {
    Value s = memref::LoadOp::create(b, cu, ValueRange{batch});
    Value e = memref::LoadOp::create(b, cu, ValueRange{add(batch, idx(1))});
    start = castIndex(s, b.getIndexType());
    len = sub(castIndex(e, b.getIndexType()), start);
  };
  if (p.decode) {
    w.qStart = batch;
    w.qLen = idx(1);
  } else if (ragged) {
    bounds(cuQ, w.qStart, w.qLen);
  } else {
    w.qStart = idx(0);
    w.qLen = dim(query, 1);
  }
  if (p.paged) {
    // Length = full pages before the last one + the last page's tokens.
    Value numPages;
    bounds(kvIndptr, w.pageBegin, numPages);
    Value last =
        castIndex(memref::LoadOp::create(b, kvLastPageLen, ValueRange{batch}),
                  b.getIndexType());
    Value full =
        mul(maxS(idx(0), sub(numPages, idx(1))), idx(p.cache.getPageSize()));
    w.kLen = arith::SelectOp::create(b, lt(idx(0), numPages), add(full, last),
                                     idx(0));
    w.kStart = idx(0);
    if (kvRings)
      w.ring = castIndex(memref::LoadOp::create(b, kvRings, ValueRange{batch}),
                         b.getIndexType());
  } else if (ragged) {
    bounds(cuK, w.kStart, w.kLen);
  } else {
    w.kStart = idx(0);
    w.kLen = dim(key, 1);
  }
  w.firstQuery = mul(qTileIdx, idx(cfg.blockQ));
  w.numQueries = minS(idx(cfg.blockQ), sub(w.qLen, w.firstQuery));
  return w;
}

Value AttentionTiler::emitScores(Value r) {
  int64_t bk = cfg.blockKV, chunk = cfg.chunk;
  if (transposed) {
    auto loop = scf::ForOp::create(
        b, idx(0), idx(headDim), idx(1), ValueRange{splat(bk, 0.0)},
        [&](OpBuilder &nb, Location loc, Value d, ValueRange acc) {
          ImplicitLocOpBuilder ib(loc, nb);
          Value q = memref::LoadOp::create(ib, qTile, ValueRange{r, d});
          Value k =
              vector::LoadOp::create(ib, vec(bk), kTile, ValueRange{d, idx(0)});
          Value qb = vector::BroadcastOp::create(ib, vec(bk), q);
          scf::YieldOp::create(
              ib, ValueRange{vector::FMAOp::create(ib, qb, k, acc[0])});
        });
    return loop.getResult(0);
  }
  forEach(idx(0), idx(bk), 1, [&](Value j) {
    Value dot = splat(chunk, 0.0);
    for (int64_t d = 0; d < headDim; d += chunk) {
      Value q =
          vector::LoadOp::create(b, vec(chunk), qTile, ValueRange{r, idx(d)});
      Value k =
          vector::LoadOp::create(b, vec(chunk), kTile, ValueRange{j, idx(d)});
      dot = vector::FMAOp::create(b, q, k, dot);
    }
    Value s = vector::ReductionOp::create(b, vector::CombiningKind::ADD, dot);
    memref::StoreOp::create(b, s, scoreTile, ValueRange{r, j});
  });
  return vector::LoadOp::create(b, vec(bk), scoreTile, ValueRange{r, idx(0)});
}

Value AttentionTiler::emitElementPredicate(const WorkItem &w, Value scores,
                                           Value tileStart, Value queryPos,
                                           Value listedFull) {
  int64_t bk = cfg.blockKV;
  Type i32 = b.getI32Type();
  VectorType vi32 = vec(bk, i32);
  SmallVector<int32_t> lanes(bk);
  for (int64_t i = 0; i < bk; ++i)
    lanes[i] = i;
  Value keyPos = arith::AddIOp::create(
      b, vector::BroadcastOp::create(b, vi32, castIndex(tileStart, i32)),
      arith::ConstantOp::create(b, DenseIntElementsAttr::get(vi32, lanes)));
  auto bcast = [&](Value scalar) {
    return vector::BroadcastOp::create(
        b, VectorType::get({bk}, scalar.getType()), scalar);
  };
  auto vcmp = [&](arith::CmpIPredicate p, Value x, Value y) -> Value {
    return arith::CmpIOp::create(b, p, x, y);
  };
  auto vor = [&](Value x, Value y) -> Value {
    return arith::OrIOp::create(b, x, y);
  };
  Value posI32 = castIndex(queryPos, i32);
  // The structured mask of the item's head.
  Value allowed;
  auto require = [&](Value rule) {
    allowed = allowed ? arith::AndIOp::create(b, allowed, rule) : rule;
  };
  if (rules.anyUpper) {
    Value below = vcmp(arith::CmpIPredicate::sle, keyPos, bcast(posI32));
    if (w.noUpper)
      below = vor(below, bcast(w.noUpper));
    require(below);
  }
  if (rules.anyWindow) {
    Value lowest = arith::SubIOp::create(b, posI32, castIndex(w.window, i32));
    Value inWindow = vcmp(arith::CmpIPredicate::sge, keyPos, bcast(lowest));
    if (rules.anySinks)
      inWindow = vor(inWindow, vcmp(arith::CmpIPredicate::slt, keyPos,
                                    bcast(castIndex(w.sinks, i32))));
    require(inWindow);
  }
  // A block-sparse entry flagged full skips the structured mask.
  if (allowed && listedFull)
    allowed = vor(allowed, bcast(listedFull));
  // Keys past the end of the sequence (the tail tile) are never visible.
  Value visible =
      vcmp(arith::CmpIPredicate::slt, keyPos, bcast(castIndex(w.kLen, i32)));
  if (allowed)
    visible = arith::AndIOp::create(b, visible, allowed);
  return arith::SelectOp::create(b, visible, scores, splat(bk, -kInf));
}

void AttentionTiler::emitWorkspace() {
  const int64_t bk = cfg.blockKV;
  auto ws = [&](ArrayRef<int64_t> shape) -> Value {
    auto type = MemRefType::get(shape, f32);
    workspaceBytes += type.getNumElements() * 4;
    return memref::AllocaOp::create(b, type);
  };
  bool needTransposed = cfg.transposeK || cfg.chooseAtRunTime;
  bool needRows = !cfg.transposeK || cfg.chooseAtRunTime;
  qTile = ws({rows, headDim});
  if (needTransposed)
    kTileTransposed = ws({headDim, bk});
  if (needRows)
    kTileRows = ws({bk, headDim});
  vTile = ws({bk, headDim});
  if (needRows)
    scoreTile = ws({rows, bk});
  // P of the current row, in memory: P.V reads it one key at a time, and a
  // dynamic extract from a register vector would spill the vector per key.
  probRow = ws({bk});
  accTile = ws({rows, headDim});
}

void AttentionTiler::emitQueryTile(const WorkItem &w) {
  const int64_t chunk = cfg.chunk;
  forEach(idx(0), w.numRows, 1, [&](Value r) {
    Value token = add(w.qStart, add(w.firstQuery, rowQuery(r)));
    Value head = rowHead(w, r);
    for (int64_t d = 0; d < headDim; d += chunk) {
      Value q = loadChunk(w, query, token, head, idx(d));
      q = arith::MulFOp::create(b, q, splat(chunk, qScale));
      vector::StoreOp::create(b, q, qTile, ValueRange{r, idx(d)});
      vector::StoreOp::create(b, splat(chunk, 0.0), accTile,
                              ValueRange{r, idx(d)});
    }
  });
}

void AttentionTiler::emitHeadMask(WorkItem &w) {
  // A constant when every head agrees, else a select over the KV head.
  auto perHead = [&](function_ref<int64_t(MaskAttr)> field) -> Value {
    Value v = idx(field(masks[0]));
    for (auto [h, m] : llvm::enumerate(masks))
      if (field(m) != field(masks[0]))
        v = arith::SelectOp::create(
            b,
            arith::CmpIOp::create(b, arith::CmpIPredicate::eq, w.kvHead,
                                  idx(h)),
            idx(field(m)), v);
    return v;
  };
  if (rules.anyUpper && !rules.allUpper)
    w.noUpper = arith::CmpIOp::create(
        b, arith::CmpIPredicate::eq,
        perHead([](MaskAttr m) -> int64_t { return m.hasUpperBound(); }),
        idx(0));
  if (rules.anyWindow)
    w.window = perHead(
        [](MaskAttr m) { return m.hasWindow() ? m.getWindow() : kNoWindow; });
  if (rules.anySinks)
    w.sinks = perHead(
        [](MaskAttr m) -> int64_t { return m.hasWindow() ? m.getSinks() : 0; });
}

KVRange AttentionTiler::emitBlockPredicate(WorkItem &w) {
  const int64_t bk = cfg.blockKV;
  emitHeadMask(w);
  w.posOffset = rules.topLeft ? idx(0) : sub(w.kLen, w.qLen);
  w.firstPos = add(w.firstQuery, w.posOffset);
  w.lastPos = add(w.firstPos, sub(w.numQueries, idx(1)));
  Value endKey = w.kLen;
  if (rules.anyUpper) {
    endKey = minS(w.kLen, maxS(idx(0), add(w.lastPos, idx(1))));
    if (w.noUpper)
      endKey = arith::SelectOp::create(b, w.noUpper, w.kLen, endKey);
  }
  Value beginKey = idx(0);
  if (rules.anyWindow)
    beginKey = minS(endKey, maxS(idx(0), sub(w.firstPos, w.window)));
  KVRange range;
  range.mainBegin = arith::DivSIOp::create(b, beginKey, idx(bk));
  range.mainEnd = maxS(range.mainBegin, ceilDiv(endKey, bk));
  // A window's lower edge past the last key leaves no visible key: no tile,
  // even when beginKey is not tile-aligned.
  if (rules.anyWindow)
    range.mainEnd = arith::SelectOp::create(b, lt(beginKey, endKey),
                                            range.mainEnd, range.mainBegin);
  // Sink tiles below the window run first, then the contiguous main range.
  // Sinks are keys below min(sinks, endKey); their tiles stop where a
  // non-empty main range starts.
  range.numSink = idx(0);
  if (rules.anySinks) {
    Value sinkTiles = ceilDiv(minS(w.sinks, endKey), bk);
    range.numSink =
        arith::SelectOp::create(b, lt(range.mainBegin, range.mainEnd),
                                minS(sinkTiles, range.mainBegin), sinkTiles);
  }
  range.numTiles = add(range.numSink, sub(range.mainEnd, range.mainBegin));
  return range;
}

void AttentionTiler::emitBlockList(WorkItem &w, KVRange &range) {
  // The item's query block; block_q divides BQ, so the tile lies in it.
  w.blockHead = cast<MemRefType>(blockOffsets.getType()).getDimSize(1) == 1
                    ? idx(0)
                    : w.kvHead;
  Value row = arith::DivUIOp::create(b, w.firstQuery, idx(p.blockRows));
  auto offset = [&](Value at) {
    return castIndex(memref::LoadOp::create(
                         b, blockOffsets, ValueRange{w.batch, w.blockHead, at}),
                     b.getIndexType());
  };
  range.listBegin = offset(row);
  Value listEnd = offset(add(row, idx(1)));
  range.numTiles = mul(maxS(idx(0), sub(listEnd, range.listBegin)),
                       idx(p.blockCols / cfg.blockKV));
}

void AttentionTiler::emitTileLoad(const WorkItem &w, Value tileStart,
                                  Value numKeys) {
  const int64_t bk = cfg.blockKV, chunk = cfg.chunk;
  PagedTile pagedTile;
  if (p.paged)
    pagedTile = emitPagedTile(w, tileStart);
  forEach(idx(0), idx(bk), 1, [&](Value j) {
    auto inRange = scf::IfOp::create(b, lt(j, numKeys),
                                     /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(inRange.thenBlock());
    if (p.paged)
      emitPagedKeyLoad(w, pagedTile, add(tileStart, j), j);
    else
      emitDenseKeyLoad(w, add(w.kStart, add(tileStart, j)), j);
    // Past the sequence's end: zeros, so masked keys stay finite.
    b.setInsertionPointToStart(inRange.elseBlock());
    for (int64_t d = 0; d < headDim; d += chunk) {
      storeKeyChunk(splat(chunk, 0.0), j, d);
      vector::StoreOp::create(b, splat(chunk, 0.0), vTile,
                              ValueRange{j, idx(d)});
    }
  });
}

void AttentionTiler::storeKeyChunk(Value k, Value j, int64_t d) {
  if (transposed)
    storeColumn(k, j, d);
  else
    vector::StoreOp::create(b, k, kTile, ValueRange{j, idx(d)});
}

void AttentionTiler::emitDenseKeyLoad(const WorkItem &w, Value token, Value j) {
  const int64_t bk = cfg.blockKV, chunk = cfg.chunk;
  for (int64_t d = 0; d < headDim; d += chunk) {
    storeKeyChunk(loadChunk(w, key, token, w.kvHead, idx(d)), j, d);
    vector::StoreOp::create(b, loadChunk(w, value, token, w.kvHead, idx(d)),
                            vTile, ValueRange{j, idx(d)});
  }
  // The same key one tile ahead: one head's rows are a whole token apart,
  // so few share a page and the hardware prefetcher (which stays inside a
  // page) cannot stream them.
  Value ahead = minS(add(token, idx(bk)), sub(add(w.kStart, w.kLen), idx(1)));
  for (Value buffer : {key, value}) {
    auto type = cast<MemRefType>(buffer.getType());
    int64_t lineElems =
        std::max<int64_t>(1, 512 / type.getElementTypeBitWidth());
    for (int64_t d = 0; d < headDim; d += lineElems)
      memref::PrefetchOp::create(b, buffer,
                                 tokenIndices(w, ahead, w.kvHead, idx(d)),
                                 /*isWrite=*/false, /*localityHint=*/3,
                                 /*isDataCache=*/true);
  }
}

Value AttentionTiler::emitPageLookup(const WorkItem &w, Value logicalPage) {
  Value page =
      castIndex(memref::LoadOp::create(
                    b, kvIndices, ValueRange{add(w.pageBegin, logicalPage)}),
                b.getIndexType());
  // A trimmed page (-1, docs/sparsity.md section 1) is never visible; page 0
  // keeps its masked keys' loads in bounds.
  return maxS(page, idx(0));
}

AttentionTiler::PagedTile AttentionTiler::emitPagedTile(const WorkItem &w,
                                                        Value tileStart) {
  const int64_t pageSize = p.cache.getPageSize(), bk = cfg.blockKV;
  PagedTile tile;
  // Tiles start at multiples of block_kv, so one divides the other's
  // multiple: the tile sits inside one page (and one K group).
  if (pageSize % bk != 0)
    return tile;
  Value slot = arith::DivUIOp::create(b, tileStart, idx(pageSize));
  tile.page = emitPageLookup(w, slot);
  tile.firstOffset = arith::RemUIOp::create(b, tileStart, idx(pageSize));
  if ((p.cache.isInt8() || p.cache.isInt4()) && p.cache.getKGroup() % bk == 0) {
    Value group =
        arith::DivUIOp::create(b, tile.firstOffset, idx(p.cache.getKGroup()));
    for (int64_t d = 0; d < headDim; d += cfg.chunk)
      tile.keyScale.push_back(loadKeyScaleChunk(tile.page, group, w.kvHead, d));
  }
  return tile;
}

void AttentionTiler::emitPagedKeyLoad(const WorkItem &w, const PagedTile &tile,
                                      Value position, Value j) {
  const int64_t pageSize = p.cache.getPageSize();
  auto emitFromPages = [&]() {
    Value page = tile.page, offset;
    if (page) {
      offset = add(tile.firstOffset, j);
    } else {
      page =
          emitPageLookup(w, arith::DivUIOp::create(b, position, idx(pageSize)));
      offset = arith::RemUIOp::create(b, position, idx(pageSize));
    }
    for (auto [i, at] :
         llvm::enumerate(llvm::seq<int64_t>(0, headDim / cfg.chunk))) {
      int64_t d = at * cfg.chunk;
      std::pair<Value, Value> keyScale;
      if (!tile.keyScale.empty())
        keyScale = tile.keyScale[i];
      storeKeyChunk(
          loadCachedChunk(/*isKey=*/true, page, offset, w.kvHead, d, keyScale),
          j, d);
      vector::StoreOp::create(
          b, loadCachedChunk(/*isKey=*/false, page, offset, w.kvHead, d), vTile,
          ValueRange{j, idx(d)});
    }
  };
  if (!p.cache.hasResidual()) {
    emitFromPages();
  } else {
    // The sequence's last `residual` keys come unquantized from its ring.
    const int64_t residual = p.cache.getResidual();
    auto inRing = scf::IfOp::create(b, le(sub(w.kLen, idx(residual)), position),
                                    /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(inRing.thenBlock());
    Value at = arith::RemUIOp::create(b, position, idx(residual));
    for (int64_t d = 0; d < headDim; d += cfg.chunk) {
      auto load = [&](StringRef role) -> Value {
        Value half = vector::LoadOp::create(
            b, vec(cfg.chunk, b.getF16Type()), p.cacheBuffers.lookup(role),
            ValueRange{w.ring, at, w.kvHead, idx(d)});
        return arith::ExtFOp::create(b, vec(cfg.chunk), half);
      };
      storeKeyChunk(load("k_recent"), j, d);
      vector::StoreOp::create(b, load("v_recent"), vTile,
                              ValueRange{j, idx(d)});
    }
    b.setInsertionPointToStart(inRing.elseBlock());
    emitFromPages();
  }
  // The same key one tile ahead, as for dense K/V: consecutive tokens of a
  // head are a page row apart, too far for the hardware prefetcher.
  Value ahead = minS(add(position, idx(cfg.blockKV)), sub(w.kLen, idx(1)));
  Value aheadPage =
      emitPageLookup(w, arith::DivUIOp::create(b, ahead, idx(pageSize)));
  Value aheadOffset = arith::RemUIOp::create(b, ahead, idx(pageSize));
  for (StringRef role : {"k_pages", "v_pages"}) {
    Value pages = p.cacheBuffers.lookup(role);
    auto type = cast<MemRefType>(pages.getType());
    int64_t rowElems = type.getDimSize(3);
    int64_t lineElems =
        std::max<int64_t>(1, 512 / type.getElementTypeBitWidth());
    for (int64_t d = 0; d < rowElems; d += lineElems) {
      SmallVector<Value> at =
          p.cache.getHeadMajor()
              ? SmallVector<Value>{aheadPage, w.kvHead, aheadOffset, idx(d)}
              : SmallVector<Value>{aheadPage, aheadOffset, w.kvHead, idx(d)};
      memref::PrefetchOp::create(b, pages, at, /*isWrite=*/false,
                                 /*localityHint=*/3, /*isDataCache=*/true);
    }
  }
}

std::pair<Value, Value> AttentionTiler::loadKeyScaleChunk(Value page,
                                                          Value group,
                                                          Value head,
                                                          int64_t d) {
  Type f16 = b.getF16Type();
  SmallVector<Value> at{page, group, head, idx(d)};
  auto load = [&](StringRef role) -> Value {
    Value half = vector::LoadOp::create(b, vec(cfg.chunk, f16),
                                        p.cacheBuffers.lookup(role), at);
    return arith::ExtFOp::create(b, vec(cfg.chunk), half);
  };
  return {load("k_scale"), p.cache.isInt4() ? load("k_min") : Value()};
}

Value AttentionTiler::loadCachedChunk(bool isKey, Value page, Value offset,
                                      Value head, int64_t d,
                                      std::pair<Value, Value> keyScale) {
  const int64_t chunk = cfg.chunk;
  KVCacheType cache = p.cache;
  auto buffer = [&](StringRef role) {
    return p.cacheBuffers.lookup((isKey ? "k_" : "v_") + role.str());
  };
  Value pages = buffer("pages");
  auto at = [&](Value dIndex) -> SmallVector<Value> {
    if (cache.getHeadMajor())
      return {page, head, offset, dIndex};
    return {page, offset, head, dIndex};
  };
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  auto i32Splat = [&](int64_t n, int64_t v) -> Value {
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(vec(n, i32), APInt(32, v)));
  };
  auto f16ToF32 = [&](Value v) {
    return arith::ExtFOp::create(
        b, isa<VectorType>(v.getType()) ? Type(vec(chunk)) : f32, v);
  };

  if (!cache.isFloat8() && !cache.isInt8() && !cache.isInt4()) {
    Value v = vector::LoadOp::create(b, vec(chunk, cache.getStorage()), pages,
                                     at(idx(d)));
    return arith::ExtFOp::create(b, vec(chunk), v);
  }
  if (cache.isFloat8()) {
    // The fp8 magnitude bits shifted under the f32 exponent/mantissa read as
    // 2^-(bias difference) times the value, subnormals included; the sign
    // moves to bit 31. One multiply applies the bias and the head's scale.
    bool e4m3 = isa<Float8E4M3FNType>(cache.getStorage());
    Value bits = arith::ExtUIOp::create(
        b, vec(chunk, i32),
        vector::LoadOp::create(b, vec(chunk, i8), pages, at(idx(d))));
    Value magnitude = arith::ShLIOp::create(
        b, arith::AndIOp::create(b, bits, i32Splat(chunk, 0x7F)),
        i32Splat(chunk, e4m3 ? 20 : 21));
    Value sign = arith::ShLIOp::create(
        b, arith::AndIOp::create(b, bits, i32Splat(chunk, 0x80)),
        i32Splat(chunk, 24));
    Value x = arith::BitcastOp::create(
        b, vec(chunk), arith::OrIOp::create(b, magnitude, sign));
    Value headScale = memref::LoadOp::create(b, buffer("scale"), head);
    Value factor = arith::MulFOp::create(
        b, headScale, f32c(e4m3 ? std::ldexp(1.0, 120) : std::ldexp(1.0, 112)));
    return arith::MulFOp::create(
        b, x, vector::BroadcastOp::create(b, vec(chunk), factor));
  }

  // Integer formats: K scales per channel of the token's group, V scales
  // per token.
  Value scale, minimum;
  if (isKey) {
    if (!keyScale.first)
      keyScale = loadKeyScaleChunk(
          page, arith::DivUIOp::create(b, offset, idx(cache.getKGroup())), head,
          d);
    std::tie(scale, minimum) = keyScale;
  } else {
    SmallVector<Value> sAt{page, offset, head};
    scale = vector::BroadcastOp::create(
        b, vec(chunk),
        f16ToF32(memref::LoadOp::create(b, buffer("scale"), sAt)));
    if (cache.isInt4())
      minimum = vector::BroadcastOp::create(
          b, vec(chunk),
          f16ToF32(memref::LoadOp::create(b, buffer("min"), sAt)));
  }
  if (cache.isInt8()) {
    Value q = arith::SIToFPOp::create(
        b, vec(chunk),
        vector::LoadOp::create(b, vec(chunk, i8), pages, at(idx(d))));
    return arith::MulFOp::create(b, q, scale);
  }
  // i4: byte i holds channels 2i (low nibble) and 2i + 1 (high nibble).
  Value bytes =
      vector::LoadOp::create(b, vec(chunk / 2, i8), pages, at(idx(d / 2)));
  return vector::FMAOp::create(b, unpackInt4(b, bytes), scale, minimum);
}

Value AttentionTiler::emitFullTileTest(const WorkItem &w, Value tileStart,
                                       Value numKeys, Value listedFull) {
  const int64_t bk = cfg.blockKV;
  Value inSequence =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, numKeys, idx(bk));
  Value tileLast = add(tileStart, idx(bk - 1));
  Value interior;
  auto require = [&](Value rule) {
    interior = interior ? arith::AndIOp::create(b, interior, rule) : rule;
  };
  if (rules.anyUpper) {
    Value below = le(tileLast, w.firstPos);
    if (w.noUpper)
      below = arith::OrIOp::create(b, below, w.noUpper);
    require(below);
  }
  if (rules.anyWindow) {
    Value aboveWindow = le(sub(w.lastPos, w.window), tileStart);
    if (rules.anySinks)
      aboveWindow = arith::OrIOp::create(b, aboveWindow, lt(tileLast, w.sinks));
    require(aboveWindow);
  }
  if (!interior)
    return inSequence;
  if (listedFull)
    interior = arith::OrIOp::create(b, interior, listedFull);
  return arith::AndIOp::create(b, inSequence, interior);
}

SmallVector<Value> AttentionTiler::emitRowUpdate(const WorkItem &w, Value r,
                                                 ValueRange state,
                                                 Value tileStart, Value numKeys,
                                                 Value full, Value listedFull) {
  const int64_t bk = cfg.blockKV, chunk = cfg.chunk;
  Value scores = emitScores(r);
  if (softcap)
    scores = arith::MulFOp::create(b, math::TanhOp::create(b, scores),
                                   splat(bk, *softcap * kLog2e));
  // Partial tiles (mask edges, the sequence tail) apply the element
  // predicate; full tiles skip it.
  Value pos = add(add(w.firstQuery, rowQuery(r)), w.posOffset);
  auto partial = scf::IfOp::create(b, TypeRange{vec(bk)}, full,
                                   /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(partial.thenBlock());
    scf::YieldOp::create(b, scores);
    b.setInsertionPointToStart(partial.elseBlock());
    scf::YieldOp::create(
        b, emitElementPredicate(w, scores, tileStart, pos, listedFull));
  }
  scores = partial.getResult(0);

  // Online softmax: new running max, rescale by 2^(old - new).
  Value oldMax = vector::ExtractOp::create(b, state[0], r);
  Value oldSum = vector::ExtractOp::create(b, state[1], r);
  Value tileMax =
      vector::ReductionOp::create(b, vector::CombiningKind::MAXIMUMF, scores);
  Value newMax = arith::MaximumFOp::create(b, oldMax, tileMax);
  // While a row has seen no key its max is -inf: subtract 0 instead.
  Value noKeyYet =
      arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, newMax, f32c(-kInf));
  Value base = arith::SelectOp::create(b, noKeyYet, f32c(0.0), newMax);
  Value probs = math::Exp2Op::create(
      b, arith::SubFOp::create(b, scores,
                               vector::BroadcastOp::create(b, vec(bk), base)));
  Value alpha = math::Exp2Op::create(b, arith::SubFOp::create(b, oldMax, base));
  Value newSum = arith::AddFOp::create(
      b, arith::MulFOp::create(b, oldSum, alpha),
      vector::ReductionOp::create(b, vector::CombiningKind::ADD, probs));

  // acc[r, :] = alpha * acc[r, :] + P[r, :] . V, over the tile's keys only.
  vector::StoreOp::create(b, probs, probRow, ValueRange{idx(0)});
  Value alphaVec = vector::BroadcastOp::create(b, vec(chunk), alpha);
  for (int64_t d = 0; d < headDim; d += chunk) {
    Value acc = arith::MulFOp::create(
        b,
        vector::LoadOp::create(b, vec(chunk), accTile, ValueRange{r, idx(d)}),
        alphaVec);
    auto pv = scf::ForOp::create(
        b, idx(0), numKeys, idx(1), ValueRange{acc},
        [&](OpBuilder &nb, Location loc, Value j, ValueRange carried) {
          ImplicitLocOpBuilder ib(loc, nb);
          Value p = vector::BroadcastOp::create(
              ib, vec(chunk), memref::LoadOp::create(ib, probRow, j));
          Value v = vector::LoadOp::create(ib, vec(chunk), vTile,
                                           ValueRange{j, idx(d)});
          scf::YieldOp::create(
              ib, ValueRange{vector::FMAOp::create(ib, p, v, carried[0])});
        });
    vector::StoreOp::create(b, pv.getResult(0), accTile, ValueRange{r, idx(d)});
  }
  return {vector::InsertOp::create(b, newMax, state[0], r),
          vector::InsertOp::create(b, newSum, state[1], r)};
}

void AttentionTiler::emitCount(int64_t counter) {
  if (!tileStats)
    return;
  memref::AtomicRMWOp::create(b, arith::AtomicRMWKind::addi,
                              arith::ConstantIntOp::create(b, 1, 64), tileStats,
                              ValueRange{idx(counter)});
}

SmallVector<Value> AttentionTiler::emitTileStep(const WorkItem &w, Value tile,
                                                Value listedFull,
                                                ValueRange state) {
  Value tileStart = mul(tile, idx(cfg.blockKV));
  Value numKeys = minS(idx(cfg.blockKV), sub(w.kLen, tileStart));
  emitCount(0);
  emitTileLoad(w, tileStart, numKeys);
  Value full = emitFullTileTest(w, tileStart, numKeys, listedFull);
  if (tileStats) {
    auto partial = scf::IfOp::create(
        b,
        arith::XOrIOp::create(b, full, arith::ConstantIntOp::create(b, 1, 1)));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(partial.thenBlock());
    emitCount(1);
  }
  auto rowLoop = scf::ForOp::create(
      b, idx(0), w.numRows, idx(1), state,
      [&](OpBuilder &rb, Location rloc, Value r, ValueRange rowState) {
        OpBuilder::InsertionGuard rowGuard(b);
        b.setInsertionPoint(rb.getInsertionBlock(), rb.getInsertionPoint());
        scf::YieldOp::create(b, emitRowUpdate(w, r, rowState, tileStart,
                                              numKeys, full, listedFull));
      });
  return rowLoop.getResults();
}

ValueRange AttentionTiler::emitKVLoop(const WorkItem &w, const KVRange &range,
                                      bool transposedForm) {
  transposed = transposedForm;
  kTile = transposed ? kTileTransposed : kTileRows;
  Value init = splat(rows, 0.0), initMax = splat(rows, -kInf);
  auto kvLoop = scf::ForOp::create(
      b, range.stepBegin, range.stepEnd, idx(1), ValueRange{initMax, init},
      [&](OpBuilder &nb, Location loc, Value step, ValueRange carried) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        if (!range.listBegin) {
          // The block predicate is the loop's bounds: every step runs.
          Value tile = arith::SelectOp::create(
              b, lt(step, range.numSink), step,
              add(sub(step, range.numSink), range.mainBegin));
          scf::YieldOp::create(b, emitTileStep(w, tile, Value(), carried));
          return;
        }
        // Block-sparse: the listed block's tile, skipped when the
        // structured mask hides all of it (unless flagged full) or it lies
        // past the sequence's end.
        int64_t perBlock = p.blockCols / cfg.blockKV;
        Value entry = add(range.listBegin,
                          arith::DivUIOp::create(b, step, idx(perBlock)));
        SmallVector<Value> at{w.batch, w.blockHead, entry};
        Value block = castIndex(memref::LoadOp::create(b, blockIndices, at),
                                b.getIndexType());
        Value tile = add(mul(block, idx(perBlock)),
                         arith::RemUIOp::create(b, step, idx(perBlock)));
        Value listedFull;
        if (blockFull)
          listedFull =
              arith::CmpIOp::create(b, arith::CmpIPredicate::ne,
                                    memref::LoadOp::create(b, blockFull, at),
                                    arith::ConstantIntOp::create(b, 0, 8));
        Value inRange = arith::OrIOp::create(
            b, lt(tile, range.numSink),
            arith::AndIOp::create(b, le(range.mainBegin, tile),
                                  lt(tile, range.mainEnd)));
        if (listedFull)
          inRange = arith::OrIOp::create(b, inRange, listedFull);
        Value runs = arith::AndIOp::create(
            b, inRange, lt(mul(tile, idx(cfg.blockKV)), w.kLen));
        auto ifRuns = scf::IfOp::create(b, carried.getTypes(), runs,
                                        /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard ifGuard(b);
          b.setInsertionPointToStart(ifRuns.thenBlock());
          scf::YieldOp::create(b, emitTileStep(w, tile, listedFull, carried));
          b.setInsertionPointToStart(ifRuns.elseBlock());
          scf::YieldOp::create(b, carried);
        }
        scf::YieldOp::create(b, ifRuns.getResults());
      });
  return kvLoop.getResults();
}

void AttentionTiler::emitEpilogue(const WorkItem &w, Value rowMax,
                                  Value rowSum) {
  const int64_t chunk = cfg.chunk;
  Type outElem = cast<MemRefType>(output.getType()).getElementType();
  forEach(idx(0), w.numRows, 1, [&](Value r) {
    Value m = vector::ExtractOp::create(b, rowMax, r);
    Value l = vector::ExtractOp::create(b, rowSum, r);
    Value sawKey =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, l, f32c(0.0));
    Value inv = arith::SelectOp::create(
        b, sawKey, arith::DivFOp::create(b, f32c(1.0), l), f32c(0.0));
    Value invVec = vector::BroadcastOp::create(b, vec(chunk), inv);
    Value queryIdx = add(w.firstQuery, rowQuery(r));
    Value head = rowHead(w, r);
    Value token = add(w.qStart, queryIdx);
    SmallVector<Value> o;
    for (int64_t d = 0; d < headDim; d += chunk)
      o.push_back(arith::MulFOp::create(
          b,
          vector::LoadOp::create(b, vec(chunk), accTile, ValueRange{r, idx(d)}),
          invVec));
    Value nats = arith::MulFOp::create(
        b, arith::AddFOp::create(b, m, math::Log2Op::create(b, l)), f32c(kLn2));
    Value lseValue = arith::SelectOp::create(b, sawKey, nats, f32c(-kInf));

    auto storeResults = [&]() {
      for (auto [i, chunkValue] : llvm::enumerate(o)) {
        Value v = chunkValue;
        if (outElem != f32)
          v = arith::TruncFOp::create(b, vec(chunk, outElem), v);
        vector::StoreOp::create(b, v, output,
                                tokenIndices(w, token, head, idx(i * chunk)));
      }
      if (lse) {
        SmallVector<Value> at =
            ragged ? SmallVector<Value>{head, token}
                   : SmallVector<Value>{w.batch, head, queryIdx};
        memref::StoreOp::create(b, lseValue, lse, at);
      }
    };
    if (!w.split) {
      storeResults();
      return;
    }
    // Several partitions: this one's normalized output and LSE go to the
    // scratch for the merge phase.
    auto several = scf::IfOp::create(b, lt(idx(1), numSplits),
                                     /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(several.thenBlock());
    for (auto [i, chunkValue] : llvm::enumerate(o))
      vector::StoreOp::create(b, chunkValue, partialO,
                              ValueRange{w.split, token, head, idx(i * chunk)});
    memref::StoreOp::create(b, lseValue, partialLse,
                            ValueRange{w.split, head, token});
    b.setInsertionPointToStart(several.elseBlock());
    storeResults();
  });
}

void AttentionTiler::emitWorkItem(Value batch, Value kvHead, Value qTileIdx,
                                  Value split) {
  // Private workspace of the work item: fixed size, independent of Lq/Lk.
  emitWorkspace();
  WorkItem w = emitSequenceBounds(batch, kvHead, qTileIdx);
  w.split = split;
  auto hasRows = scf::IfOp::create(b, lt(idx(0), w.numQueries));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(hasRows.thenBlock());
  w.numRows = mul(w.numQueries, idx(groupSize));
  w.firstHead = mul(kvHead, idx(groupSize));

  emitCount(2);
  emitQueryTile(w);
  KVRange range = emitBlockPredicate(w);
  if (blockOffsets)
    emitBlockList(w, range);
  range.stepBegin = idx(0);
  range.stepEnd = range.numTiles;
  if (split) {
    // Partition `split` of numSplits runs an equal share of the steps.
    Value share = arith::CeilDivSIOp::create(b, range.numTiles, numSplits);
    range.stepBegin = minS(mul(split, share), range.numTiles);
    range.stepEnd = minS(add(range.stepBegin, share), range.numTiles);
  }
  ValueRange state;
  if (cfg.chooseAtRunTime) {
    auto choice = scf::IfOp::create(b, TypeRange{vec(rows), vec(rows)},
                                    lt(idx(kTransposeMinRows), w.numRows),
                                    /*withElseRegion=*/true);
    OpBuilder::InsertionGuard choiceGuard(b);
    b.setInsertionPointToStart(choice.thenBlock());
    scf::YieldOp::create(b, emitKVLoop(w, range, /*transposedForm=*/true));
    b.setInsertionPointToStart(choice.elseBlock());
    scf::YieldOp::create(b, emitKVLoop(w, range, /*transposedForm=*/false));
    state = choice.getResults();
  } else {
    state = emitKVLoop(w, range, cfg.transposeK);
  }
  emitEpilogue(w, state[0], state[1]);
}

/// What attn.attention and attn.paged_attention have in common.
template <typename OpTy> static AttentionProblem describeScores(OpTy op) {
  AttentionProblem p;
  p.query = op.getQuery();
  p.headMasks = op.getKVHeadMasks();
  if (op.isBlockSparse()) {
    p.blockOffsets = op.getBlockOffsets();
    p.blockIndices = op.getBlockIndices();
    p.blockFull = op.getBlockFull();
    p.blockRows = op.getBlockSize()->front();
    p.blockCols = op.getBlockSize()->back();
  }
  if (auto func = op->template getParentOfType<func::FuncOp>())
    p.tileStats =
        func->template getAttrOfType<FlatSymbolRefAttr>("attn.tile_stats");
  p.groupSize = op.getGroupSize();
  p.headDim = op.getHeadDim();
  p.numKVHeads = op.getNumKVHeads();
  p.scale = op.getScaleOrDefault();
  if (auto cap = op.getSoftcapAttr())
    p.softcap = cap.getValueAsDouble();
  p.outputType = op.getOutput().getType();
  if (Value lse = op.getLse())
    p.lseType = lse.getType();
  return p;
}

static AttentionProblem describe(AttentionOp op) {
  AttentionProblem p = describeScores(op);
  p.key = op.getKey();
  p.value = op.getValue();
  p.cuQ = op.getCuSeqlensQ();
  p.cuK = op.getCuSeqlensK();
  p.ragged = op.isRagged();
  return p;
}

static FailureOr<AttentionProblem> describe(PagedAttentionOp op) {
  AttentionProblem p = describeScores(op);
  p.cuQ = op.getQoIndptr();
  p.kvIndptr = op.getKvIndptr();
  p.kvIndices = op.getKvIndices();
  p.kvLastPageLen = op.getKvLastPageLen();
  p.kvRings = op.getKvRings();
  p.cache = op.getCacheType();
  FailureOr<llvm::StringMap<Value>> buffers =
      expandedCacheBuffers(op, op.getCache());
  if (failed(buffers))
    return failure();
  p.cacheBuffers = std::move(*buffers);
  p.ragged = true;
  p.paged = true;
  p.decode = !op.isRagged();
  return p;
}

/// Largest power of two up to 8 vectors that divides head_dim.
static int64_t chunkFor(int64_t headDim, int64_t vectorWidth) {
  for (int64_t c = 8 * vectorWidth; c > 1; c /= 2)
    if (headDim % c == 0)
      return c;
  return 1;
}

namespace {
struct AttnLowerToTilesPass
    : public attnc::impl::AttnLowerToTilesBase<AttnLowerToTilesPass> {
  using Base::Base;

  /// Tile sizes and score form for one problem; fails with a diagnostic.
  FailureOr<TileConfig> configure(Operation *op, const AttentionProblem &p) {
    auto qType = cast<RankedTensorType>(p.query.getType());
    TileConfig cfg;
    cfg.blockQ = blockQ > 0 ? blockQ : std::max<int64_t>(1, 64 / p.groupSize);
    cfg.blockKV = blockKV;
    cfg.chunk = chunkFor(p.headDim, vectorWidth);
    // A static query length shorter than the tile (decode) is the tile.
    if (p.decode)
      cfg.blockQ = 1;
    else if (!p.ragged && !qType.isDynamicDim(1) && qType.getDimSize(1) > 0)
      cfg.blockQ = std::min(cfg.blockQ, qType.getDimSize(1));
    // A kernel tile must lie inside one block of a block-sparse mask.
    if (p.blockOffsets && cfg.blockKV > 0 && cfg.blockQ > 0) {
      cfg.blockKV = std::gcd(cfg.blockKV, p.blockCols);
      cfg.blockQ = std::gcd(cfg.blockQ, p.blockRows);
    }
    int64_t rowsPerTile = cfg.blockQ * p.groupSize;
    cfg.chooseAtRunTime = false;
    if (qkForm == "auto") {
      // A dynamic query length may give tiles of any height up to rows.
      bool staticRows = p.decode || (!p.ragged && !qType.isDynamicDim(1));
      cfg.transposeK = rowsPerTile > kTransposeMinRows;
      cfg.chooseAtRunTime = cfg.transposeK && !staticRows;
    } else if (qkForm == "dot" || qkForm == "transposed") {
      cfg.transposeK = qkForm == "transposed";
    } else {
      return op->emitError() << "unknown qk-form '" << qkForm
                             << "'; expected auto, dot or transposed";
    }
    if (cfg.blockKV < 1 || cfg.blockQ < 1)
      return op->emitError()
             << "tile sizes must be positive (block-q = " << cfg.blockQ
             << ", block-kv = " << cfg.blockKV << ")";
    // Split-KV for paged decode over a dynamic batch: the partition count is
    // a run-time choice, and the scratch is sized by the batch.
    // (One forced partition is no split: nothing to merge.)
    if (p.decode && qType.isDynamicDim(0) && maxKVSplits > 1 &&
        numKVSplits != 1) {
      if (numKVSplits < 0 || numKVSplits > maxKVSplits)
        return op->emitError() << "num-kv-splits = " << int64_t(numKVSplits)
                               << " must be 0 (automatic) to max-kv-splits = "
                               << int64_t(maxKVSplits);
      cfg.maxSplits = numKVSplits > 0 ? numKVSplits : maxKVSplits;
      cfg.forcedSplits = numKVSplits;
      cfg.threadsHint =
          numThreads > 0
              ? numThreads
              : std::max<int64_t>(1, std::thread::hardware_concurrency());
    }
    return cfg;
  }

  LogicalResult lower(Operation *op, const AttentionProblem &p) {
    FailureOr<TileConfig> cfg = configure(op, p);
    if (failed(cfg))
      return failure();
    ImplicitLocOpBuilder b(op->getLoc(), op);
    auto func = op->getParentOfType<func::FuncOp>();
    AttentionTiler tiler(p, *cfg, b);
    SmallVector<Value> results = tiler.build();
    // Record the tiling and the per-item workspace for the manifest.
    auto i64 = [&](int64_t v) { return b.getI64IntegerAttr(v); };
    SmallVector<NamedAttribute> tile{
        b.getNamedAttr("block_q", i64(cfg->blockQ)),
        b.getNamedAttr("block_kv", i64(cfg->blockKV)),
        b.getNamedAttr("head_dim_chunk", i64(cfg->chunk)),
        b.getNamedAttr("qk_form",
                       b.getStringAttr(cfg->chooseAtRunTime ? "by_rows"
                                       : cfg->transposeK    ? "transposed"
                                                            : "dot")),
        b.getNamedAttr("workspace_bytes", i64(tiler.getWorkspaceBytes()))};
    if (cfg->maxSplits > 0) {
      tile.push_back(b.getNamedAttr("max_kv_splits", i64(cfg->maxSplits)));
      func->setAttr("attn.phases", i64(2));
      int64_t hq = p.numKVHeads * p.groupSize;
      auto scratch = [&](StringRef name, ArrayRef<Attribute> shape) {
        return b.getDictionaryAttr(
            {b.getNamedAttr("name", b.getStringAttr(name)),
             b.getNamedAttr("dtype", b.getStringAttr("f32")),
             b.getNamedAttr("shape", b.getArrayAttr(shape))});
      };
      Attribute batch = b.getStringAttr("batch");
      func->setAttr(
          "attn.scratch",
          b.getArrayAttr(
              {scratch("partial_o",
                       {i64(cfg->maxSplits), batch, i64(hq), i64(p.headDim)}),
               scratch("partial_lse", {i64(cfg->maxSplits), i64(hq), batch})}));
    }
    func->setAttr("attn.tile", b.getDictionaryAttr(tile));
    op->replaceAllUsesWith(results);
    op->erase();
    return success();
  }

  LogicalResult lowerMerge(MergeOp op) {
    ImplicitLocOpBuilder b(op.getLoc(), op);
    auto toBuffer = [&](Value tensor) -> Value {
      auto t = cast<RankedTensorType>(tensor.getType());
      return bufferization::ToBufferOp::create(
          b, MemRefType::get(t.getShape(), t.getElementType()), tensor,
          /*read_only=*/true);
    };
    Value partialO = toBuffer(op.getPartialOutput());
    Value partialLse = toBuffer(op.getPartialLse());
    Value numParts = memref::DimOp::create(b, partialO, 0);
    Value numTokens = memref::DimOp::create(b, partialO, 1);
    auto alloc = [&](Type type) -> Value {
      auto t = cast<RankedTensorType>(type);
      SmallVector<Value> sizes;
      if (t.isDynamicDim(t.getRank() == 3 ? 0 : 1))
        sizes.push_back(numTokens);
      return memref::AllocOp::create(
          b, MemRefType::get(t.getShape(), t.getElementType()), sizes);
    };
    Value output = alloc(op.getOutput().getType());
    Value lse = op.getLse() ? alloc(op.getLse().getType()) : Value();
    auto oType = cast<RankedTensorType>(op.getPartialOutput().getType());
    emitMerge(b, partialO, partialLse, numParts, numTokens, output, lse,
              chunkFor(oType.getDimSize(3), vectorWidth));
    SmallVector<Value> results{bufferization::ToTensorOp::create(
        b, op.getOutput().getType(), output, /*restrict=*/true,
        /*writable=*/true)};
    if (lse)
      results.push_back(bufferization::ToTensorOp::create(
          b, op.getLse().getType(), lse, /*restrict=*/true,
          /*writable=*/true));
    op->replaceAllUsesWith(results);
    op->erase();
    return success();
  }

  void runOnOperation() override {
    SmallVector<KVAppendOp> appends;
    getOperation().walk([&](KVAppendOp op) { appends.push_back(op); });
    for (KVAppendOp op : appends)
      if (failed(lowerKVAppend(op, vectorWidth)))
        return signalPassFailure();
    SmallVector<SelectPagesOp> selections;
    getOperation().walk([&](SelectPagesOp op) { selections.push_back(op); });
    for (SelectPagesOp op : selections)
      if (failed(lowerSelectPages(op, vectorWidth)))
        return signalPassFailure();
    SmallVector<Operation *> ops;
    getOperation().walk([&](Operation *op) {
      if (isa<AttentionOp, PagedAttentionOp, MergeOp>(op))
        ops.push_back(op);
    });
    for (Operation *op : ops) {
      LogicalResult result = success();
      if (auto attention = dyn_cast<AttentionOp>(op)) {
        result = lower(op, describe(attention));
      } else if (auto paged = dyn_cast<PagedAttentionOp>(op)) {
        FailureOr<AttentionProblem> p = describe(paged);
        result = failed(p) ? failure() : lower(op, *p);
      } else {
        result = lowerMerge(cast<MergeOp>(op));
      }
      if (failed(result))
        return signalPassFailure();
    }
  }
};
} // namespace
