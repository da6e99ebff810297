//===- Reference.h - float64 attention reference ----------------*- C++ -*-===//
//
// A direct transcription of docs/semantics.md, in double precision, one query
// row at a time (memory O(Lk), never O(Lq * Lk)).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRUN_REFERENCE_H
#define ATTNRUN_REFERENCE_H

#include <cstdint>
#include <vector>

namespace attnrun {

struct MaskSpec {
  bool causal = false;
  bool bottomRight = true; // align bottom_right (else top_left)
  int64_t window = -1;     // -1 = no sliding window
  int64_t sinks = 0;
};

struct AttentionSpec {
  int64_t numQHeads = 1;
  int64_t numKvHeads = 1;
  int64_t headDim = 1;
  double scale = 1.0;
  double softcap = 0.0; // 0 = none
  MaskSpec mask;
};

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

std::vector<Sequence> denseSequences(int64_t batch, int64_t lq, int64_t lk);
/// cu arrays must already be validated (start at 0, non-decreasing).
std::vector<Sequence> raggedSequences(const std::vector<int64_t> &cuQ,
                                      const std::vector<int64_t> &cuK);

/// q is [rows, Hq, D], k and v [rows, Hkv, D], o [rows, Hq, D] (dense
/// [B, L, H, D] is the same memory with row = b * L + i). lse (optional) is
/// [B, Hq, Lq] when dense, [Hq, Tq] when ragged. Empty rows: o = 0,
/// lse = -inf.
void referenceAttention(const AttentionSpec &spec,
                        const std::vector<Sequence> &seqs, bool ragged,
                        const double *q, const double *k, const double *v,
                        double *o, double *lse);

} // namespace attnrun

#endif // ATTNRUN_REFERENCE_H
