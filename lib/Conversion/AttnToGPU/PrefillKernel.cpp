//===- PrefillKernel.cpp - the FlashAttention-2 prefill kernel -----------===//
//
// The prefill kernel, in the FlashAttention-2 shape for sm_80 and newer, of
// a dense or ragged (cu_seqlens) `attn.attention` and of a paged
// `attn.paged_attention` with qo_indptr (append/prefill over f16, bf16,
// int8, int4 or fp8 pages):
//
//   - one thread block of 4 warps per (query tile of 64 rows, KV head,
//     sequence): the G = Hq / Hkv query heads sharing a KV head are packed
//     into the rows (row r is position r / G of query head r % G of the
//     group, as FlashInfer packs them), so each K/V tile staged serves the
//     whole group and a short append (G x Lq <= 64) fills one block
//     instead of G mostly empty ones; each warp owns 16 rows. Dense: grid
//     (ceil(G Lq / 64), Hkv, B). Ragged and paged: grid (ceil(G total_q /
//     64), Hkv), and block x takes the tiles x, x + gridDim.x, ... of all
//     sequences' tiles in order, finding each one's sequence with a warp
//     scan of the sequences' tile counts (at most G total_q / 64 + B tiles,
//     so a block rarely takes two);
//   - Q, then K/V tiles of 64 keys staged in dynamic shared memory with
//     cp.async (16-byte copies, zero-filled past the sequence's end; paged
//     K/V rows found through the page table), K/V double-buffered so the
//     next tile loads while this one is computed; quantized pages (int8,
//     int4, fp8) are loaded into registers (at D = 64 before this tile's
//     tensor-core work, at D = 128 after it), dequantized and stored into
//     the other stage as f16/bf16 (PagedKV.cpp);
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
#include <numeric>
#include <tuple>

using namespace mlir;
using namespace attnc::attn;
using namespace attnc::gpu_kernels;

namespace {

constexpr int64_t kBlockQ = 64, kWarps = 4, kThreads = 128;
constexpr int64_t kWarpRows = kBlockQ / kWarps; // 16: one mma tile of rows
constexpr int64_t kChunk = 8;                   // f16/bf16 per 16 bytes

/// One query tile of one sequence and where that sequence's rows are.
struct SeqTile {
  /// The tile's index among the sequence's tiles of 64 packed rows, and the
  /// sequence's query and key lengths (positions).
  Value seq, qTile, lq, lk;
  /// Ragged and paged: the sequence's first row of q and o.
  Value qStart;
  /// Ragged: its first row of k and v. Paged: its first kv_indices entry.
  Value kStart;
};

class PrefillKernelBuilder : KernelBuilder {
public:
  PrefillKernelBuilder(Location loc, Type elem, const PrefillSpec &spec,
                       gpu::GPUFuncOp func)
      : KernelBuilder(loc, elem), spec(spec), func(func), hq(spec.numQHeads),
        hkv(spec.numKVHeads), group(hq / hkv), d(spec.headDim),
        blockKV(spec.blockKV) {}

  void build();

private:
  using Frag = SmallVector<Value>;
  using Layout = PrefillSpec::Layout;
  /// The indices of element `col` of row `row` of a K/V or Q/O view.
  using RowIndex = llvm::function_ref<SmallVector<Value>(Value row, Value col)>;

  void processTile(const SeqTile &tile);
  /// Quantized pages: this thread's chunks (16 channels of K and V of one
  /// key) of K/V tile rows [row0, row0 + block_kv) as stored, then stored
  /// dequantized (zeros past the sequence's end) into a shared stage.
  struct RawChunk {
    Value k, v, page, slot, valid, row, col;
  };
  SmallVector<RawChunk> fetchQuantizedTile(const SeqTile &tile, Value row0);
  void storeQuantizedTile(ArrayRef<RawChunk> chunks, Value stage);
  /// The number of tiles (of 64 packed rows) of the sequences before the
  /// first one whose tiles reach past `t` (its index), and those tiles'
  /// count: a warp scan over the sequences' query lengths (`ptr`, [B + 1]).
  std::pair<Value, Value> locateTile(Value ptr, Value batch, Value t);
  Value loadIndex(Value memref, Value i) {
    Value v = memref::LoadOp::create(b, memref, ValueRange{i});
    return arith::IndexCastOp::create(b, b.getIndexType(), v);
  }

  /// The swizzled column of element column `col` (a multiple of 8) in row
  /// `row` of a shared tile: 16-byte chunk index XOR (row % 8).
  Value swizzle(Value row, Value col) {
    Value chunk = div(col, kChunk);
    Value x = arith::XOrIOp::create(b, chunk, rem(row, 8));
    return mul(x, idx(kChunk));
  }
  /// cp.async of rows [row0, row0 + 64) of each (source, shared tile)
  /// pair (element `col` of row r of a source at `at(r, col)`, computed
  /// once for K and V) into its tile ([64, D], swizzled); rows at or past
  /// `len` are zero-filled.
  void loadTile(ArrayRef<std::pair<Value, Value>> copies, int64_t rows,
                RowIndex at, Value row0, Value len, ValueRange dstPrefix);
  Frag ldmatrix(Value tile, ValueRange prefix, Value row, Value col,
                int numTiles, bool transpose);
  /// D += A * B for one m16n8k16 tile: a = 4, b = 2 registers, c = 4 f32.
  Frag mma(ArrayRef<Value> a, ArrayRef<Value> bReg, ArrayRef<Value> c);
  Value pack(Value lo, Value hi) {
    Value v = vector::FromElementsOp::create(
        b, VectorType::get({2}, b.getF32Type()), ValueRange{lo, hi});
    return arith::TruncFOp::create(b, VectorType::get({2}, elem), v);
  }

  const PrefillSpec &spec;
  gpu::GPUFuncOp func;
  /// Query heads per KV head: the rows a query position takes in a tile.
  int64_t hq, hkv, group, d, blockKV;
  Value tid, lane, warp, kvHead;
  /// The mask of this block's KV head.
  HeadMask mask;
  /// Global views: q, k (or K pages), v (or V pages), o, lse (or null), and
  /// the paged kernel's kv_indices; shared: the Q, K and V tiles.
  Value q, k, v, o, lseView, kvIndices;
  /// Quantized pages and their scales.
  PagedKV quantizedPages;
  Value qs, ks, vs;
};

void PrefillKernelBuilder::loadTile(ArrayRef<std::pair<Value, Value>> copies,
                                    int64_t rows, RowIndex at, Value row0,
                                    Value len, ValueRange dstPrefix) {
  int64_t chunksPerRow = d / kChunk;
  int64_t perThread = rows * chunksPerRow / kThreads;
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
    SmallVector<Value> srcIdx = at(srcRow, col);
    for (auto [src, dst] : copies)
      nvgpu::DeviceAsyncCopyOp::create(
          b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), dst, dstIdx, src,
          srcIdx, b.getIndexAttr(kChunk), srcElems,
          /*bypassL1=*/b.getUnitAttr());
  }
}

SmallVector<PrefillKernelBuilder::RawChunk>
PrefillKernelBuilder::fetchQuantizedTile(const SeqTile &tile, Value row0) {
  const PagedKV &kv = quantizedPages;
  int64_t chunksPerRow = d / kv.vec;
  int64_t perThread = blockKV * chunksPerRow / kThreads;
  Value last = maxIdx(sub(tile.lk, idx(1)), idx(0));
  SmallVector<RawChunk> chunks;
  for (int64_t i = 0; i < perThread; ++i) {
    RawChunk c;
    Value n = add(tid, idx(i * kThreads));
    c.row = div(n, chunksPerRow);
    c.col = mul(rem(n, chunksPerRow), idx(kv.vec));
    Value key = add(row0, c.row);
    c.valid = cmp(arith::CmpIPredicate::slt, key, tile.lk);
    // Past the end: a key that exists, replaced by zeros when stored.
    key = minIdx(key, last);
    c.page = loadIndex(kvIndices, add(tile.kStart, div(key, spec.pageSize)));
    c.slot = rem(key, spec.pageSize);
    std::tie(c.k, c.v) = loadRawKV(kv, c.page, c.slot, kvHead, c.col);
    chunks.push_back(c);
  }
  return chunks;
}

void PrefillKernelBuilder::storeQuantizedTile(ArrayRef<RawChunk> chunks,
                                              Value stage) {
  const PagedKV &kv = quantizedPages;
  auto f32Vec = VectorType::get({kv.vec}, b.getF32Type());
  Value zeros = arith::ConstantOp::create(
      b, f32Vec, DenseElementsAttr::get(f32Vec, APFloat(0.0f)));
  for (const RawChunk &c : chunks) {
    auto [kf, vf] = dequantizeKV(kv, c.k, c.v, c.page, c.slot, kvHead, c.col);
    for (auto [x, tileBuf] : {std::pair{kf, ks}, std::pair{vf, vs}}) {
      Value h = arith::TruncFOp::create(b, VectorType::get({kv.vec}, elem),
                                        select(c.valid, x, zeros));
      // 16 bytes at a time: the swizzle permutes 8-element chunks.
      for (int64_t part = 0; part < kv.vec / kChunk; ++part) {
        SmallVector<int64_t> lanes(kChunk);
        std::iota(lanes.begin(), lanes.end(), part * kChunk);
        Value piece = vector::ShuffleOp::create(b, h, h, lanes);
        Value col = add(c.col, idx(part * kChunk));
        vector::StoreOp::create(b, piece, tileBuf,
                                ValueRange{stage, c.row, swizzle(c.row, col)},
                                /*nontemporal=*/false, llvm::MaybeAlign(16));
      }
    }
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

void PrefillKernelBuilder::build() {
  MLIRContext *ctx = b.getContext();
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  bool dense = spec.layout == Layout::Dense;
  bool paged = spec.layout == Layout::Paged;
  int64_t dyn = ShapedType::kDynamic;

  // Parameters (attn-lower-to-gpu declares them in this order), then the
  // dynamic sizes as i32:
  //   dense:  q, k, v, o, [lse]; batch, seqlen_q, seqlen_k where dynamic;
  //   ragged: q, k, v, cu_seqlens_q, cu_seqlens_k, o, [lse]; total_q,
  //           total_k, batch;
  //   paged:  q, k_pages, v_pages, [k_scale, v_scale, [k_min, v_min]],
  //           kv_indptr, kv_indices, kv_last_page_len, qo_indptr, o,
  //           [lse]; total_q, batch, num_pages, num_page_refs.
  unsigned p = 0;
  auto next = [&] { return entry.getArgument(p++); };
  Value qPtr = next(), kPtr = next(), vPtr = next();
  Type storage = paged ? spec.cache.getStorage() : elem;
  bool quantized = storage.getIntOrFloatBitWidth() <= 8;
  Value kScalePtr = quantized ? next() : Value();
  Value vScalePtr = quantized ? next() : Value();
  Value kMinPtr = storage.isInteger(4) ? next() : Value();
  Value vMinPtr = storage.isInteger(4) ? next() : Value();
  Value ptrA, ptrB, lastPtr, qoPtr;
  if (!dense) {
    ptrA = next(); // cu_seqlens_q or kv_indptr
    ptrB = next(); // cu_seqlens_k or kv_indices
  }
  if (paged) {
    lastPtr = next();
    qoPtr = next();
  }
  Value oPtr = next();
  Value lsePtr = spec.hasLse ? next() : Value();
  auto size = [&](int64_t staticSize) -> Value {
    if (!ShapedType::isDynamic(staticSize))
      return idx(staticSize);
    return arith::IndexCastOp::create(b, b.getIndexType(), next());
  };

  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = rem(tid, 32);
  warp = div(tid, 32);
  kvHead = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  mask = headMask(spec.masks, kvHead);
  Type i32Type = b.getI32Type(), f32Type = b.getF32Type();

  // Shared memory: Q [64, D], K [2, block_kv, D], V [2, block_kv, D].
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  int64_t qBytes = kBlockQ * d * 2, kvBytes = blockKV * d * 2;
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface(), wg));
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape) {
    return memref::ViewOp::create(
        b, MemRefType::get(shape, elem, MemRefLayoutAttrInterface(), wg), smem,
        idx(offset), ValueRange{});
  };
  qs = view(0, {kBlockQ, d});
  ks = view(qBytes, {2, blockKV, d});
  vs = view(qBytes + 2 * kvBytes, {2, blockKV, d});

  if (dense) {
    ArrayRef<int64_t> qShape = spec.qShape, kShape = spec.kShape;
    Value batchN = size(qShape[0]);
    Value lq = size(qShape[1]);
    Value lk = size(kShape[1]);
    auto sizes = [&](ArrayRef<int64_t> shape, Value l) {
      SmallVector<Value> s;
      if (ShapedType::isDynamic(shape[0]))
        s.push_back(batchN);
      if (ShapedType::isDynamic(shape[1]))
        s.push_back(l);
      return s;
    };
    q = globalView(qPtr, elem, qShape, sizes(qShape, lq));
    k = globalView(kPtr, elem, kShape, sizes(kShape, lk));
    v = globalView(vPtr, elem, kShape, sizes(kShape, lk));
    o = globalView(oPtr, elem, qShape, sizes(qShape, lq));
    if (lsePtr)
      lseView = globalView(lsePtr, f32Type, {qShape[0], hq, qShape[1]},
                           sizes(qShape, lq));
    processTile({gpu::BlockIdOp::create(b, gpu::Dimension::z),
                 gpu::BlockIdOp::create(b, gpu::Dimension::x), lq, lk, Value(),
                 Value()});
    gpu::ReturnOp::create(b);
    return;
  }

  Value totalQ = size(spec.qShape[0]);
  Value totalK = paged ? Value() : size(spec.kShape[0]);
  Value batch = size(spec.batch);
  q = globalView(qPtr, elem, {dyn, hq, d}, {totalQ});
  o = globalView(oPtr, elem, {dyn, hq, d}, {totalQ});
  if (lsePtr)
    lseView = globalView(lsePtr, f32Type, {hq, dyn}, {totalQ});
  Value bounds = globalView(ptrA, i32Type, {dyn}, {add(batch, idx(1))});
  Value qBounds = bounds, lastLen;
  if (paged) {
    Value numPages = size(dyn), numRefs = size(spec.numPageRefs);
    int64_t ps = spec.pageSize;
    SmallVector<int64_t> pageShape =
        spec.headMajor ? SmallVector<int64_t>{dyn, hkv, ps, d}
                       : SmallVector<int64_t>{dyn, ps, hkv, d};
    if (quantized) {
      quantizedPages = pagedKV(spec.cache, kPtr, vPtr, kScalePtr, vScalePtr,
                               kMinPtr, vMinPtr, numPages, kvHead);
    } else {
      k = globalView(kPtr, elem, pageShape, {numPages});
      v = globalView(vPtr, elem, pageShape, {numPages});
    }
    kvIndices = globalView(ptrB, i32Type, {dyn}, {numRefs});
    lastLen = globalView(lastPtr, i32Type, {dyn}, {batch});
    qBounds = globalView(qoPtr, i32Type, {dyn}, {add(batch, idx(1))});
  } else {
    k = globalView(kPtr, elem, {dyn, hkv, d}, {totalK});
    v = globalView(vPtr, elem, {dyn, hkv, d}, {totalK});
  }
  Value kBounds =
      paged ? Value() : globalView(ptrB, i32Type, {dyn}, {add(batch, idx(1))});

  // This block's tiles: x, x + gridDim.x, ... below the sequences' total.
  Value numTiles = locateTile(qBounds, batch, idx(INT32_MAX)).second;
  Value first = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value stride = gpu::GridDimOp::create(b, gpu::Dimension::x);
  auto tiles = scf::ForOp::create(b, first, numTiles, stride);
  b.setInsertionPointToStart(tiles.getBody());
  // No warp may still read the shared tiles of the previous tile (a tile
  // without keys ends without the KV loop's barrier) when its Q is loaded.
  gpu::BarrierOp::create(b);
  auto [seq, before] = locateTile(qBounds, batch, tiles.getInductionVar());
  SeqTile tile;
  tile.seq = seq;
  tile.qTile = sub(tiles.getInductionVar(), before);
  tile.qStart = loadIndex(qBounds, seq);
  tile.lq = sub(loadIndex(qBounds, add(seq, idx(1))), tile.qStart);
  if (paged) {
    // The sequence's pages and length, as the decode kernel reads them.
    tile.kStart = loadIndex(bounds, seq);
    Value pages = sub(loadIndex(bounds, add(seq, idx(1))), tile.kStart);
    Value last = loadIndex(lastLen, seq);
    Value hasPages = cmp(arith::CmpIPredicate::sgt, pages, idx(0));
    tile.lk =
        select(hasPages, add(mul(sub(pages, idx(1)), idx(spec.pageSize)), last),
               idx(0));
  } else {
    tile.kStart = loadIndex(kBounds, seq);
    tile.lk = sub(loadIndex(kBounds, add(seq, idx(1))), tile.kStart);
  }
  processTile(tile);
  b.setInsertionPointAfter(tiles);
  gpu::ReturnOp::create(b);
}

std::pair<Value, Value> PrefillKernelBuilder::locateTile(Value ptr, Value batch,
                                                         Value t) {
  // Lane l of each warp takes sequence base + l of each chunk of 32: its
  // tile count, the inclusive scan of the chunk's counts, then over the
  // warp the sequences and tiles wholly at or before t.
  auto toI32 = [&](Value x) {
    return arith::IndexCastOp::create(b, b.getI32Type(), x).getResult();
  };
  Value laneI = toI32(lane), t32 = toI32(minIdx(t, idx(INT32_MAX)));
  auto sum = [&](Value x) {
    for (int64_t off = 16; off >= 1; off /= 2)
      x = arith::AddIOp::create(b, x, shuffleXor(x, off));
    return x;
  };
  Value zero = i32(0);
  auto chunks = scf::ForOp::create(b, idx(0), batch, idx(32),
                                   ValueRange{zero, zero, zero});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(chunks.getBody());
    ValueRange acc = chunks.getRegionIterArgs(); // sequences, tiles, scanned
    Value i = add(chunks.getInductionVar(), lane);
    Value inBatch = cmp(arith::CmpIPredicate::slt, i, batch);
    Value ic = minIdx(i, sub(batch, idx(1)));
    Value len = sub(loadIndex(ptr, add(ic, idx(1))), loadIndex(ptr, ic));
    Value tilesHere =
        toI32(select(inBatch, ceilDiv(mul(len, idx(group)), kBlockQ), idx(0)));
    Value incl = tilesHere;
    for (int64_t off = 1; off < 32; off *= 2) {
      Value up = gpu::ShuffleOp::create(b, incl, i32(off), i32(32),
                                        gpu::ShuffleMode::UP)
                     .getShuffleResult();
      Value has =
          arith::CmpIOp::create(b, arith::CmpIPredicate::sge, laneI, i32(off));
      incl = select(has, arith::AddIOp::create(b, incl, up), incl);
    }
    Value chunkTiles =
        gpu::ShuffleOp::create(b, incl, i32(31), i32(32), gpu::ShuffleMode::IDX)
            .getShuffleResult();
    Value below =
        arith::CmpIOp::create(b, arith::CmpIPredicate::sle,
                              arith::AddIOp::create(b, acc[2], incl), t32);
    Value seqs = sum(select(below, i32(1), zero));
    Value tilesBelow = sum(select(below, tilesHere, zero));
    scf::YieldOp::create(
        b, ValueRange{arith::AddIOp::create(b, acc[0], seqs),
                      arith::AddIOp::create(b, acc[1], tilesBelow),
                      arith::AddIOp::create(b, acc[2], chunkTiles)});
  }
  auto toIndex = [&](Value x) {
    return arith::IndexCastOp::create(b, b.getIndexType(), x).getResult();
  };
  return {toIndex(chunks.getResult(0)), toIndex(chunks.getResult(1))};
}

void PrefillKernelBuilder::processTile(const SeqTile &tile) {
  bool dense = spec.layout == Layout::Dense;
  bool paged = spec.layout == Layout::Paged;
  Value seq = tile.seq, lq = tile.lq, lk = tile.lk;
  // Packed row r: position r / G of the group's query head r % G.
  Value rows = mul(lq, idx(group));
  Value q0 = mul(tile.qTile, idx(kBlockQ));
  auto qHead = [&](Value row) {
    return add(mul(kvHead, idx(group)), rem(row, group));
  };
  // Element `col` of packed row `row` (q, o) and of key row `key` (k, v).
  auto qAt = [&](Value row, Value col) -> SmallVector<Value> {
    if (dense)
      return {seq, div(row, group), qHead(row), col};
    return {add(tile.qStart, div(row, group)), qHead(row), col};
  };
  auto kvAt = [&](Value key, Value col) -> SmallVector<Value> {
    if (dense)
      return {seq, key, kvHead, col};
    if (!paged)
      return {add(tile.kStart, key), kvHead, col};
    Value page =
        loadIndex(kvIndices, add(tile.kStart, div(key, spec.pageSize)));
    Value slot = rem(key, spec.pageSize);
    if (spec.headMajor)
      return {page, kvHead, slot, col};
    return {page, slot, kvHead, col};
  };

  // The block predicate. pos(i) = i + (Lk - Lq) (bottom-right) or i for
  // query position i = row / G. With per-head masks each bound is selected
  // by the head's flags.
  Value offset = mask.topLeft ? idx(0) : sub(lk, lq);
  Value lastRow = minIdx(add(q0, idx(kBlockQ - 1)), sub(rows, idx(1)));
  Value firstPos = add(div(q0, group), offset);
  Value lastPos = add(div(lastRow, group), offset);
  Value numTiles = ceilDiv(lk, blockKV);
  Value kvEnd = numTiles;
  if (mask.anyUpper) {
    Value visible = maxIdx(minIdx(add(lastPos, idx(1)), lk), idx(0));
    kvEnd = select(mask.upper, ceilDiv(visible, blockKV), numTiles);
  }
  Value kvBegin = idx(0), sinkTiles = idx(0);
  if (mask.anyWindow) {
    Value lo = maxIdx(sub(firstPos, mask.window), idx(0));
    kvBegin = select(mask.hasWindow, minIdx(div(lo, blockKV), kvEnd), idx(0));
    if (mask.anySinks)
      sinkTiles = minIdx(ceilDiv(minIdx(mask.sinks, lk), blockKV), kvBegin);
  }
  // Iterations: the sink tiles [0, sinkTiles), then [kvBegin, kvEnd).
  Value iters = add(sinkTiles, sub(kvEnd, kvBegin));
  auto tileOf = [&](Value i) {
    Value inSinks = cmp(arith::CmpIPredicate::ult, i, sinkTiles);
    return select(inSinks, i, add(sub(i, sinkTiles), kvBegin));
  };

  // Q and the first K/V tile, one cp.async group.
  loadTile({{q, qs}}, kBlockQ, qAt, q0, rows, {});
  Value haveTiles = cmp(arith::CmpIPredicate::sgt, iters, idx(0));
  bool quantized = bool(quantizedPages.kPages);
  emitIf(haveTiles, [&] {
    Value r0 = mul(tileOf(idx(0)), idx(blockKV));
    if (quantized)
      storeQuantizedTile(fetchQuantizedTile(tile, r0), idx(0));
    else
      loadTile({{k, ks}, {v, vs}}, blockKV, kvAt, r0, lk, {idx(0)});
  });
  NVVM::CpAsyncCommitGroupOp::create(b);
  NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(0));
  gpu::BarrierOp::create(b);

  // This warp's Q fragments, one per 16 columns of D, held in registers.
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
  double scale = spec.scale, scaleLog2 = scale * M_LOG2E;
  double softcap = spec.softcap;
  Value laneRow = div(lane, 4), quad = rem(lane, 4);
  Value rowA = add(add(q0, warpRow), laneRow); // rows rowA and rowA + 8

  auto loop = scf::ForOp::create(b, idx(0), iters, idx(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    ValueRange state = loop.getRegionIterArgs();
    Value t = tileOf(i);
    Value stage = rem(i, 2), other = sub(idx(1), stage);
    // Prefetch the next tile into the other stage.
    Value next = add(i, idx(1));
    Value hasNext = cmp(arith::CmpIPredicate::ult, next, iters);
    SmallVector<RawChunk> nextChunks;
    // Quantized, at D = 64: the next tile's loads are issued now (the last
    // iteration loads its own tile again) and land in registers while this
    // tile is computed (at D = 128 the registers cannot hold them, so they
    // follow the computation). The stage it goes to was last read before
    // the previous iteration's final barrier, and this tile's was written
    // before it.
    bool fetchEarly = quantized && d == 64;
    auto fetchNext = [&] {
      Value fetched = minIdx(next, sub(iters, idx(1)));
      return fetchQuantizedTile(tile, mul(tileOf(fetched), idx(blockKV)));
    };
    if (fetchEarly) {
      nextChunks = fetchNext();
    } else if (!quantized) {
      emitIf(hasNext, [&] {
        Value r0 = mul(tileOf(next), idx(blockKV));
        loadTile({{k, ks}, {v, vs}}, blockKV, kvAt, r0, lk, {other});
      });
      // An empty group when nothing was prefetched keeps the count uniform.
      NVVM::CpAsyncCommitGroupOp::create(b);
      NVVM::CpAsyncWaitGroupOp::create(b, uint32_t(1)); // all but the prefetch
      gpu::BarrierOp::create(b);
    }

    // S = Q K^T: block_kv / 8 tiles of 8 keys, each 4 f32 per lane, over
    // 32 columns of D (two Q fragments) at a time.
    SmallVector<Frag> s(blockKV / 8, Frag{f32(0), f32(0), f32(0), f32(0)});
    for (int64_t kk = 0; kk < d / 16; kk += 2) {
      const Frag &qa = qFrag[kk], &qb = qFrag[kk + 1];
      for (int64_t n = 0; n < blockKV / 8; ++n) {
        Frag kb =
            ldmatrix(ks, {stage}, add(idx(n * 8), rem(lane, 8)),
                     add(idx(kk * 16), mul(div(lane, 8), idx(8))), 4, false);
        s[n] = mma(qa, {kb[0], kb[1]}, s[n]);
        s[n] = mma(qb, {kb[2], kb[3]}, s[n]);
      }
    }
    for (Frag &acc : s)
      for (Value &x : acc)
        x = softcap > 0
                ? softcapLog2(arith::MulFOp::create(b, x, f32(scale)), softcap)
                : arith::MulFOp::create(b, x, f32(scaleLog2));

    // The element predicate, on partial tiles only.
    Value tileStart = mul(t, idx(blockKV));
    Value tileEnd = add(tileStart, idx(blockKV));
    Value full = cmp(arith::CmpIPredicate::sle, tileEnd, lk);
    if (mask.anyUpper)
      full =
          andI(full, unless(mask.upper, cmp(arith::CmpIPredicate::sle,
                                            sub(tileEnd, idx(1)), firstPos)));
    if (mask.anyWindow) {
      Value lower =
          cmp(arith::CmpIPredicate::sge, tileStart, sub(lastPos, mask.window));
      if (mask.anySinks)
        lower = orI(lower, cmp(arith::CmpIPredicate::sle, tileEnd, mask.sinks));
      full = andI(full, unless(mask.hasWindow, lower));
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
      for (int64_t n = 0; n < blockKV / 8; ++n)
        for (int64_t e = 0; e < 4; ++e) {
          Value key =
              add(add(tileStart, idx(n * 8 + (e % 2))), mul(quad, idx(2)));
          Value row = add(rowA, idx(8 * (e / 2)));
          Value pos = add(div(row, group), offset);
          Value ok = cmp(arith::CmpIPredicate::slt, key, lk);
          if (mask.anyUpper)
            ok = andI(ok, unless(mask.upper,
                                 cmp(arith::CmpIPredicate::sle, key, pos)));
          if (mask.anyWindow) {
            Value in =
                cmp(arith::CmpIPredicate::sge, key, sub(pos, mask.window));
            if (mask.anySinks)
              in = orI(in, cmp(arith::CmpIPredicate::slt, key, mask.sinks));
            ok = andI(ok, unless(mask.hasWindow, in));
          }
          out.push_back(select(ok, s[n][e], negInf));
        }
      scf::YieldOp::create(b, out);
    }
    for (int64_t n = 0; n < blockKV / 8; ++n)
      for (int64_t e = 0; e < 4; ++e)
        s[n][e] = masked.getResult(n * 4 + e);

    // Online softmax for rows g (half 0) and g + 8 (half 1).
    SmallVector<Value> newState(state.begin(), state.end());
    SmallVector<Value> alpha(2);
    for (int h = 0; h < 2; ++h) {
      Value mx = state[h];
      for (int64_t n = 0; n < blockKV / 8; ++n)
        for (int e = 0; e < 2; ++e)
          mx = arith::MaximumFOp::create(b, mx, s[n][2 * h + e]);
      mx = arith::MaximumFOp::create(b, mx, shuffleXor(mx, 1));
      mx = arith::MaximumFOp::create(b, mx, shuffleXor(mx, 2));
      Value isInf =
          arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mx, negInf);
      Value base = select(isInf, f32(0), mx);
      alpha[h] = exp2(arith::SubFOp::create(b, state[h], base));
      Value sum = f32(0);
      for (int64_t n = 0; n < blockKV / 8; ++n)
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
    for (int64_t kc = 0; kc < blockKV / 16; ++kc)
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
      for (int64_t kc = 0; kc < blockKV / 16; ++kc) {
        Frag vb = ldmatrix(vs, {stage}, add(idx(kc * 16), rem(lane, 16)),
                           mul(add(idx(dn), div(lane, 16)), idx(8)), 4, true);
        acc[0] = mma(pFrag[kc], {vb[0], vb[1]}, acc[0]);
        acc[1] = mma(pFrag[kc], {vb[2], vb[3]}, acc[1]);
      }
      for (int j = 0; j < 2; ++j)
        for (int e = 0; e < 4; ++e)
          newState[4 + (dn + j) * 4 + e] = acc[j][e];
    }
    if (quantized)
      emitIf(hasNext, [&] {
        storeQuantizedTile(fetchEarly ? nextChunks : fetchNext(), other);
      });
    // Every warp is done with this stage before the next prefetch into it
    // (and, quantized, the next tile is in the other stage).
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
    Value inRange = cmp(arith::CmpIPredicate::slt, row, rows);
    emitIf(inRange, [&] {
      for (int64_t dn = 0; dn < d / 8; ++dn) {
        Value lo = arith::MulFOp::create(b, fin[4 + dn * 4 + 2 * h], inv);
        Value hi = arith::MulFOp::create(b, fin[4 + dn * 4 + 2 * h + 1], inv);
        Value col = add(idx(dn * 8), mul(quad, idx(2)));
        vector::StoreOp::create(b, pack(lo, hi), o, qAt(row, col));
      }
      if (lseView) {
        // lse = (m + log2 l) * ln 2, -inf for a row with no visible key.
        Value first = cmp(arith::CmpIPredicate::eq, quad, idx(0));
        emitIf(first, [&] {
          Value lse = arith::MulFOp::create(
              b, arith::AddFOp::create(b, fin[h], log2(l)), f32(M_LN2));
          lse = select(empty, negInf, lse);
          Value pos = div(row, group);
          SmallVector<Value> at = {seq, qHead(row), pos};
          if (!dense)
            at = {qHead(row), add(tile.qStart, pos)};
          memref::StoreOp::create(b, lse, lseView, at);
        });
      }
    });
  }
}

} // namespace

void attnc::gpu_kernels::buildPrefillKernel(Location loc, Type elem,
                                            const PrefillSpec &spec,
                                            gpu::GPUFuncOp func) {
  PrefillKernelBuilder(loc, elem, spec, func).build();
}
