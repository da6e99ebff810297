//===- AttnToTiles.cpp - attn.attention to the tiled algorithm ------------===//
//
// Lowers attn.attention to the target-neutral tile level: an scf.parallel
// over (batch, KV head, query tile), and inside it an scf.for over KV tiles
// running online softmax in the log2 domain. Passes.td describes the output.
//
//===----------------------------------------------------------------------===//

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <limits>

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
  // Positions (DESIGN.md section 4) of the tile's first and last query, and
  // the offset from query index to position (bottom-right: Lk - Lq).
  Value posOffset, firstPos, lastPos;
};

/// The KV tiles a work item visits: `numSink` tiles from 0, then the tiles
/// from `mainBegin` on, `numTiles` in all (the block predicate).
struct KVRange {
  Value numSink, mainBegin, numTiles;
};

/// Builds the tiled loop nest for one attn.attention. Integer values are
/// `index` unless named *I32; vectors are f32.
class AttentionTiler {
public:
  AttentionTiler(AttentionOp op, TileConfig cfg, ImplicitLocOpBuilder &b)
      : op(op), cfg(cfg), b(b), ragged(op.isRagged()), mask(op.getMaskOrNone()),
        groupSize(op.getGroupSize()), headDim(op.getHeadDim()),
        numKVHeads(op.getNumKVHeads()), rows(cfg.blockQ * groupSize),
        f32(b.getF32Type()) {
    // Scores are computed in the log2 domain: fold scale * log2(e) into Q
    // (or scale / softcap when soft-capping, applied after tanh).
    double scale = op.getScaleOrDefault();
    if (auto cap = op.getSoftcapAttr())
      softcap = cap.getValueAsDouble();
    qScale = softcap ? scale / *softcap : scale * kLog2e;
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
  void emitWorkItem(Value batch, Value kvHead, Value qTile);
  void emitWorkspace();
  /// Q rows, pre-scaled, and a zeroed accumulator.
  void emitQueryTile(const WorkItem &w);
  /// Fills the positions of `w`; returns the KV tiles any row can see.
  KVRange emitBlockPredicate(WorkItem &w);
  /// The KV-tile loop carrying (row max, row sum), in one score form.
  ValueRange emitKVLoop(const WorkItem &w, const KVRange &range,
                        bool transposedForm);
  /// K and V of one tile to f32 in the workspace (dequantization fuses here).
  void emitTileLoad(const WorkItem &w, Value tileStart, Value numKeys);
  /// Whether every row sees every key of the tile (no element predicate).
  Value emitFullTileTest(const WorkItem &w, Value tileStart, Value numKeys);
  /// One row's online-softmax step over one tile; returns the new state.
  SmallVector<Value> emitRowUpdate(const WorkItem &w, Value r, ValueRange state,
                                   Value tileStart, Value numKeys, Value full);
  /// O = acc / l (zero for rows that saw no key), LSE in nats.
  void emitEpilogue(const WorkItem &w, Value rowMax, Value rowSum);
  Value emitElementPredicate(Value scores, Value tileStart, Value kLen,
                             Value queryPos);

  AttentionOp op;
  TileConfig cfg;
  ImplicitLocOpBuilder &b;
  bool ragged;
  MaskAttr mask;
  int64_t groupSize, headDim, numKVHeads, rows;
  Type f32;
  std::optional<double> softcap;
  double qScale;

  Value query, key, value, cuQ, cuK, output, lse;
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
    auto t = cast<RankedTensorType>(tensor.getType());
    return bufferization::ToBufferOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), tensor,
        /*read_only=*/true);
  };
  query = toBuffer(op.getQuery());
  key = toBuffer(op.getKey());
  value = toBuffer(op.getValue());
  if (ragged) {
    cuQ = toBuffer(op.getCuSeqlensQ());
    cuK = toBuffer(op.getCuSeqlensK());
  }

  // Results are fresh buffers; their dynamic sizes come from the query.
  auto allocLike = [&](RankedTensorType t,
                       ArrayRef<std::pair<int64_t, int64_t>> fromQueryDim) {
    SmallVector<Value> sizes;
    for (auto [resultDim, queryDim] : fromQueryDim)
      if (t.isDynamicDim(resultDim))
        sizes.push_back(dim(query, queryDim));
    return memref::AllocOp::create(
        b, MemRefType::get(t.getShape(), t.getElementType()), sizes);
  };
  auto outType = op.getOutput().getType();
  output = ragged ? allocLike(outType, {{0, 0}})
                  : allocLike(outType, {{0, 0}, {1, 1}});
  if (Value lseResult = op.getLse()) {
    auto t = cast<RankedTensorType>(lseResult.getType());
    lse = ragged ? allocLike(t, {{1, 0}}) : allocLike(t, {{0, 0}, {2, 1}});
  }

  // Number of query tiles: per sequence for dense batches, from the longest
  // sequence for ragged ones (shorter sequences finish early).
  Value numBatches, maxQLen;
  if (ragged) {
    numBatches = sub(dim(cuQ, 0), idx(1));
    auto scan = scf::ForOp::create(
        b, idx(0), numBatches, idx(1), ValueRange{idx(0)},
        [&](OpBuilder &nb, Location loc, Value i, ValueRange iter) {
          ImplicitLocOpBuilder ib(loc, nb);
          Value next = arith::AddIOp::create(
              ib, i, arith::ConstantIndexOp::create(ib, 1));
          Value len = arith::SubIOp::create(
              ib, memref::LoadOp::create(ib, cuQ, ValueRange{next}),
              memref::LoadOp::create(ib, cuQ, ValueRange{i}));
          Value lenIdx = arith::IndexCastOp::create(ib, ib.getIndexType(), len);
          scf::YieldOp::create(
              ib, ValueRange{arith::MaxSIOp::create(ib, lenIdx, iter[0])});
        });
    maxQLen = scan.getResult(0);
  } else {
    numBatches = dim(query, 0);
    maxQLen = dim(query, 1);
  }
  Value numQTiles = ceilDiv(maxQLen, cfg.blockQ);

  scf::ParallelOp::create(b, ValueRange{idx(0), idx(0), idx(0)},
                          ValueRange{numBatches, idx(numKVHeads), numQTiles},
                          ValueRange{idx(1), idx(1), idx(1)},
                          [&](OpBuilder &nb, Location loc, ValueRange ivs) {
                            OpBuilder::InsertionGuard guard(b);
                            b.setInsertionPoint(nb.getInsertionBlock(),
                                                nb.getInsertionPoint());
                            emitWorkItem(ivs[0], ivs[1], ivs[2]);
                          });

  auto toTensor = [&](Value buffer, Type tensorType) -> Value {
    return bufferization::ToTensorOp::create(b, tensorType, buffer,
                                             /*restrict=*/true,
                                             /*writable=*/true);
  };
  SmallVector<Value> results{toTensor(output, op.getOutput().getType())};
  if (lse)
    results.push_back(toTensor(lse, op.getLse().getType()));
  return results;
}

WorkItem AttentionTiler::emitSequenceBounds(Value batch, Value kvHead,
                                            Value qTileIdx) {
  WorkItem w;
  w.batch = batch;
  w.kvHead = kvHead;
  if (ragged) {
    auto bounds = [&](Value cu, Value &start, Value &len) {
      Value s = memref::LoadOp::create(b, cu, ValueRange{batch});
      Value e = memref::LoadOp::create(b, cu, ValueRange{add(batch, idx(1))});
      start = castIndex(s, b.getIndexType());
      len = sub(castIndex(e, b.getIndexType()), start);
    };
    bounds(cuQ, w.qStart, w.qLen);
    bounds(cuK, w.kStart, w.kLen);
  } else {
    w.qStart = w.kStart = idx(0);
    w.qLen = dim(query, 1);
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

Value AttentionTiler::emitElementPredicate(Value scores, Value tileStart,
                                           Value kLen, Value queryPos) {
  int64_t bk = cfg.blockKV;
  Type i32 = b.getI32Type();
  VectorType vi32 = vec(bk, i32);
  SmallVector<int32_t> lanes(bk);
  for (int64_t i = 0; i < bk; ++i)
    lanes[i] = i;
  Value keyPos = arith::AddIOp::create(
      b, vector::BroadcastOp::create(b, vi32, castIndex(tileStart, i32)),
      arith::ConstantOp::create(b, DenseIntElementsAttr::get(vi32, lanes)));
  auto bcast = [&](Value scalarI32) {
    return vector::BroadcastOp::create(b, vi32, scalarI32);
  };
  auto vcmp = [&](arith::CmpIPredicate p, Value x, Value y) -> Value {
    return arith::CmpIOp::create(b, p, x, y);
  };
  Value posI32 = castIndex(queryPos, i32);
  // Keys past the end of the sequence (the tail tile) are never visible.
  Value visible =
      vcmp(arith::CmpIPredicate::slt, keyPos, bcast(castIndex(kLen, i32)));
  if (mask.hasUpperBound())
    visible = arith::AndIOp::create(
        b, visible, vcmp(arith::CmpIPredicate::sle, keyPos, bcast(posI32)));
  if (mask.hasWindow()) {
    Value lowest = arith::SubIOp::create(b, posI32, i32c(mask.getWindow()));
    Value inWindow = vcmp(arith::CmpIPredicate::sge, keyPos, bcast(lowest));
    if (mask.getSinks() > 0)
      inWindow = arith::OrIOp::create(b, inWindow,
                                      vcmp(arith::CmpIPredicate::slt, keyPos,
                                           bcast(i32c(mask.getSinks()))));
    visible = arith::AndIOp::create(b, visible, inWindow);
  }
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

KVRange AttentionTiler::emitBlockPredicate(WorkItem &w) {
  const int64_t bk = cfg.blockKV;
  w.posOffset = mask.getTopLeft() ? idx(0) : sub(w.kLen, w.qLen);
  w.firstPos = add(w.firstQuery, w.posOffset);
  w.lastPos = add(w.firstPos, sub(w.numQueries, idx(1)));
  Value endKey = w.kLen;
  if (mask.hasUpperBound())
    endKey = minS(w.kLen, maxS(idx(0), add(w.lastPos, idx(1))));
  Value beginKey = idx(0);
  if (mask.hasWindow())
    beginKey =
        minS(endKey, maxS(idx(0), sub(w.firstPos, idx(mask.getWindow()))));
  KVRange range;
  range.mainBegin = arith::DivSIOp::create(b, beginKey, idx(bk));
  Value numMain = maxS(idx(0), sub(ceilDiv(endKey, bk), range.mainBegin));
  // Sink tiles below the window run first, then the contiguous main range.
  range.numSink = idx(0);
  if (mask.hasWindow() && mask.getSinks() > 0)
    range.numSink =
        minS(ceilDiv(minS(idx(mask.getSinks()), w.kLen), bk), range.mainBegin);
  range.numTiles = add(range.numSink, numMain);
  return range;
}

void AttentionTiler::emitTileLoad(const WorkItem &w, Value tileStart,
                                  Value numKeys) {
  const int64_t bk = cfg.blockKV, chunk = cfg.chunk;
  auto storeK = [&](Value k, Value j, int64_t d) {
    if (transposed)
      storeColumn(k, j, d);
    else
      vector::StoreOp::create(b, k, kTile, ValueRange{j, idx(d)});
  };
  forEach(idx(0), idx(bk), 1, [&](Value j) {
    auto inRange = scf::IfOp::create(b, lt(j, numKeys),
                                     /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(inRange.thenBlock());
    Value token = add(w.kStart, add(tileStart, j));
    for (int64_t d = 0; d < headDim; d += chunk) {
      storeK(loadChunk(w, key, token, w.kvHead, idx(d)), j, d);
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
    // Past the sequence's end: zeros, so masked keys stay finite.
    b.setInsertionPointToStart(inRange.elseBlock());
    for (int64_t d = 0; d < headDim; d += chunk) {
      storeK(splat(chunk, 0.0), j, d);
      vector::StoreOp::create(b, splat(chunk, 0.0), vTile,
                              ValueRange{j, idx(d)});
    }
  });
}

Value AttentionTiler::emitFullTileTest(const WorkItem &w, Value tileStart,
                                       Value numKeys) {
  const int64_t bk = cfg.blockKV;
  Value full =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, numKeys, idx(bk));
  Value tileLast = add(tileStart, idx(bk - 1));
  if (mask.hasUpperBound())
    full = arith::AndIOp::create(b, full, le(tileLast, w.firstPos));
  if (mask.hasWindow()) {
    Value aboveWindow = le(sub(w.lastPos, idx(mask.getWindow())), tileStart);
    if (mask.getSinks() > 0)
      aboveWindow = arith::OrIOp::create(b, aboveWindow,
                                         lt(tileLast, idx(mask.getSinks())));
    full = arith::AndIOp::create(b, full, aboveWindow);
  }
  return full;
}

SmallVector<Value> AttentionTiler::emitRowUpdate(const WorkItem &w, Value r,
                                                 ValueRange state,
                                                 Value tileStart, Value numKeys,
                                                 Value full) {
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
    scf::YieldOp::create(b,
                         emitElementPredicate(scores, tileStart, w.kLen, pos));
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

ValueRange AttentionTiler::emitKVLoop(const WorkItem &w, const KVRange &range,
                                      bool transposedForm) {
  transposed = transposedForm;
  kTile = transposed ? kTileTransposed : kTileRows;
  Value init = splat(rows, 0.0), initMax = splat(rows, -kInf);
  auto kvLoop = scf::ForOp::create(
      b, idx(0), range.numTiles, idx(1), ValueRange{initMax, init},
      [&](OpBuilder &nb, Location loc, Value step, ValueRange carried) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        Value tile = arith::SelectOp::create(
            b, lt(step, range.numSink), step,
            add(sub(step, range.numSink), range.mainBegin));
        Value tileStart = mul(tile, idx(cfg.blockKV));
        Value numKeys = minS(idx(cfg.blockKV), sub(w.kLen, tileStart));
        emitTileLoad(w, tileStart, numKeys);
        Value full = emitFullTileTest(w, tileStart, numKeys);
        auto rowLoop = scf::ForOp::create(
            b, idx(0), w.numRows, idx(1), carried,
            [&](OpBuilder &rb, Location rloc, Value r, ValueRange state) {
              OpBuilder::InsertionGuard rowGuard(b);
              b.setInsertionPoint(rb.getInsertionBlock(),
                                  rb.getInsertionPoint());
              scf::YieldOp::create(
                  b, emitRowUpdate(w, r, state, tileStart, numKeys, full));
            });
        scf::YieldOp::create(b, rowLoop.getResults());
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
    for (int64_t d = 0; d < headDim; d += chunk) {
      Value o = arith::MulFOp::create(
          b,
          vector::LoadOp::create(b, vec(chunk), accTile, ValueRange{r, idx(d)}),
          invVec);
      if (outElem != f32)
        o = arith::TruncFOp::create(b, vec(chunk, outElem), o);
      vector::StoreOp::create(b, o, output,
                              tokenIndices(w, token, head, idx(d)));
    }
    if (lse) {
      Value nats = arith::MulFOp::create(
          b, arith::AddFOp::create(b, m, math::Log2Op::create(b, l)),
          f32c(kLn2));
      Value lseValue = arith::SelectOp::create(b, sawKey, nats, f32c(-kInf));
      SmallVector<Value> at = ragged
                                  ? SmallVector<Value>{head, token}
                                  : SmallVector<Value>{w.batch, head, queryIdx};
      memref::StoreOp::create(b, lseValue, lse, at);
    }
  });
}

void AttentionTiler::emitWorkItem(Value batch, Value kvHead, Value qTileIdx) {
  // Private workspace of the work item: fixed size, independent of Lq/Lk.
  emitWorkspace();
  WorkItem w = emitSequenceBounds(batch, kvHead, qTileIdx);
  auto hasRows = scf::IfOp::create(b, lt(idx(0), w.numQueries));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(hasRows.thenBlock());
  w.numRows = mul(w.numQueries, idx(groupSize));
  w.firstHead = mul(kvHead, idx(groupSize));

  emitQueryTile(w);
  KVRange range = emitBlockPredicate(w);
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

namespace {
struct AttnLowerToTilesPass
    : public attnc::impl::AttnLowerToTilesBase<AttnLowerToTilesPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<AttentionOp> ops;
    getOperation().walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops) {
      int64_t group = op.getGroupSize();
      TileConfig cfg;
      cfg.blockQ = blockQ > 0 ? blockQ : std::max<int64_t>(1, 64 / group);
      cfg.blockKV = blockKV;
      // Largest power of two up to 8 vectors that divides head_dim.
      cfg.chunk = 1;
      for (int64_t c = 8 * vectorWidth; c >= 1; c /= 2)
        if (op.getHeadDim() % c == 0) {
          cfg.chunk = c;
          break;
        }
      // A static query length shorter than the tile (decode) is the tile.
      auto qType = op.getQuery().getType();
      if (!op.isRagged() && !qType.isDynamicDim(1) && qType.getDimSize(1) > 0)
        cfg.blockQ = std::min(cfg.blockQ, qType.getDimSize(1));
      int64_t rowsPerTile = cfg.blockQ * group;
      cfg.chooseAtRunTime = false;
      if (qkForm == "auto") {
        // A dynamic query length may give tiles of any height up to rows.
        bool staticRows = op.isRagged() ? false : !qType.isDynamicDim(1);
        cfg.transposeK = rowsPerTile > kTransposeMinRows;
        cfg.chooseAtRunTime = cfg.transposeK && !staticRows;
      } else if (qkForm == "dot" || qkForm == "transposed") {
        cfg.transposeK = qkForm == "transposed";
      } else {
        op.emitError() << "unknown qk-form '" << qkForm
                       << "'; expected auto, dot or transposed";
        return signalPassFailure();
      }
      if (cfg.blockKV < 1 || cfg.blockQ < 1) {
        op.emitError() << "tile sizes must be positive (block-q = "
                       << cfg.blockQ << ", block-kv = " << cfg.blockKV << ")";
        return signalPassFailure();
      }
      ImplicitLocOpBuilder b(op.getLoc(), op);
      auto func = op->getParentOfType<func::FuncOp>();
      AttentionTiler tiler(op, cfg, b);
      SmallVector<Value> results = tiler.build();
      int64_t workspace = tiler.getWorkspaceBytes();
      // Record the tiling and the per-item workspace for the manifest.
      auto i64 = [&](int64_t v) { return b.getI64IntegerAttr(v); };
      func->setAttr(
          "attn.tile",
          b.getDictionaryAttr(
              {b.getNamedAttr("block_q", i64(cfg.blockQ)),
               b.getNamedAttr("block_kv", i64(cfg.blockKV)),
               b.getNamedAttr("head_dim_chunk", i64(cfg.chunk)),
               b.getNamedAttr("qk_form",
                              b.getStringAttr(cfg.chooseAtRunTime ? "by_rows"
                                              : cfg.transposeK    ? "transposed"
                                                                  : "dot")),
               b.getNamedAttr("workspace_bytes", i64(workspace))}));
      op->replaceAllUsesWith(results);
      op->erase();
    }
  }
};
} // namespace
