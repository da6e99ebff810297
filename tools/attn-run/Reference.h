//===- Reference.h - float64 attention reference ----------------*- C++ -*-===//
//
// A direct transcription of docs/semantics.md and docs/sparsity.md (per-head
// masks, block-sparse masks, tile counts), in double precision, one query row
// at a time (memory O(Lk), never O(Lq * Lk)).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRUN_REFERENCE_H
#define ATTNRUN_REFERENCE_H

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace attnrun {

struct MaskSpec {
  bool causal = false;
  bool bottomRight = true; // align bottom_right (else top_left)
  int64_t window = -1;     // -1 = no sliding window
  int64_t sinks = 0;
};

/// A block-sparse mask in BSR form (docs/sparsity.md section 2), per
/// (batch, head) with `heads` = 1 (one pattern for every KV head) or
/// kv_heads. Query block r of sequence b, KV head h, lists the KV blocks
/// indices[b, hb, n] for n in [offsets[b, hb, r], offsets[b, hb, r + 1]),
/// hb = heads > 1 ? h : 0; a listed block is full when full[b, hb, n] != 0.
struct BlockSparse {
  int64_t blockQ = 1;  // BQ: query tokens per query block
  int64_t blockKv = 1; // BK: keys per KV block
  int64_t batch = 0, heads = 1, numQBlocks = 0, maxBlocks = 0;
  std::vector<int64_t> offsets; // [batch, heads, numQBlocks + 1]
  std::vector<int64_t> indices; // [batch, heads, maxBlocks]
  std::vector<uint8_t> full;    // [batch, heads, maxBlocks]; empty: none

  int64_t headOf(int64_t kvHead) const { return heads > 1 ? kvHead : 0; }
  /// The entries [begin, end) of `indices` listed for query block r of
  /// (b, kvHead); empty past numQBlocks.
  std::pair<int64_t, int64_t> row(int64_t b, int64_t kvHead, int64_t r) const;
  bool isFull(int64_t entry) const { return !full.empty() && full[entry]; }
};

struct AttentionSpec {
  int64_t numQHeads = 1;
  int64_t numKvHeads = 1;
  int64_t headDim = 1;
  double scale = 1.0;
  double softcap = 0.0; // 0 = none
  MaskSpec mask;
  /// Per-KV-head masks (head_masks): numKvHeads entries replacing `mask`, or
  /// empty.
  std::vector<MaskSpec> headMasks;
  /// The block-sparse mask, or null.
  std::shared_ptr<const BlockSparse> blockSparse;

  const MaskSpec &kvHeadMask(int64_t kvHead) const {
    return headMasks.empty() ? mask : headMasks[kvHead];
  }
};

/// A half-open key interval [first, second).
using Interval = std::pair<int64_t, int64_t>;

/// Query rows [qBegin, qBegin+qLen) attend to key rows [kBegin, kBegin+kLen).
struct Sequence {
  int64_t qBegin, qLen, kBegin, kLen;
};

/// Whether key j is visible to query i in a sequence of lq queries, lk keys.
bool isVisible(const MaskSpec &mask, int64_t i, int64_t j, int64_t lq,
               int64_t lk);
/// Number of keys visible to query i (closed form, O(1)).
int64_t countVisible(const MaskSpec &mask, int64_t i, int64_t lq, int64_t lk);
/// Visible (query, key) pairs summed over all sequences (one head).
int64_t countVisiblePairs(const MaskSpec &mask,
                          const std::vector<Sequence> &seqs);

/// Keys visible from at least one query with position in [posLo, posHi]
/// under the structured mask alone, as at most two sorted disjoint intervals
/// appended to `out` (closed form).
void maskIntervals(const MaskSpec &mask, int64_t posLo, int64_t posHi,
                   int64_t lk, std::vector<Interval> &out);
/// Keys visible from at least one query of [iLo, iHi] (inclusive) of
/// sequence b (lq queries, lk keys) for KV head kvHead under the spec's mask
/// and block-sparse mask: sorted, disjoint, non-empty intervals (replaces
/// `out`). With iLo == iHi, exactly the visible keys of that query.
void visibleIntervals(const AttentionSpec &spec, int64_t b, int64_t kvHead,
                      int64_t iLo, int64_t iHi, int64_t lq, int64_t lk,
                      std::vector<Interval> &out);
/// Visible (query, key) pairs summed over sequences and query heads.
int64_t countVisiblePairs(const AttentionSpec &spec,
                          const std::vector<Sequence> &seqs);

/// KV tiles of a kernel tiling (tileQ queries of all G query heads of one KV
/// head per work item, tileKv keys per tile), summed over (sequence, KV head,
/// query tile): `visible` when at least one (query, key) pair of the tile is
/// visible (what the block predicate must run), `dense` every tile of
/// [0, Lk). From per-query-tile key intervals: O(tiles + listed blocks).
struct TileCounts {
  int64_t visible = 0;
  int64_t dense = 0;
};
TileCounts countTiles(const AttentionSpec &spec,
                      const std::vector<Sequence> &seqs, int64_t tileQ,
                      int64_t tileKv);

std::vector<Sequence> denseSequences(int64_t batch, int64_t lq, int64_t lk);
/// cu arrays must already be validated (start at 0, non-decreasing).
std::vector<Sequence> raggedSequences(const std::vector<int64_t> &cuQ,
                                      const std::vector<int64_t> &cuK);

/// q is [rows, Hq, D], k and v [rows, Hkv, D], o [rows, Hq, D] (dense
/// [B, L, H, D] is the same memory with row = b * L + i). lse (optional) is
/// [B, Hq, Lq] when dense, [Hq, Tq] when ragged. Empty rows: o = 0,
/// lse = -inf. Sequence b is batch entry b of the block-sparse mask.
void referenceAttention(const AttentionSpec &spec,
                        const std::vector<Sequence> &seqs, bool ragged,
                        const double *q, const double *k, const double *v,
                        double *o, double *lse);

} // namespace attnrun

#endif // ATTNRUN_REFERENCE_H
