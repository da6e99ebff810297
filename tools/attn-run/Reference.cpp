//===- Reference.cpp - float64 attention reference ------------------------===//

#include "Reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace attnrun;

static int64_t position(const MaskSpec &mask, int64_t i, int64_t lq,
                        int64_t lk) {
  return mask.bottomRight ? i + (lk - lq) : i;
}

bool attnrun::isVisible(const MaskSpec &mask, int64_t i, int64_t j, int64_t lq,
                        int64_t lk) {
  bool windowed = mask.window >= 0;
  if (!mask.causal && !windowed)
    return true;
  int64_t pos = position(mask, i, lq, lk);
  if (j > pos)
    return false;
  // Sinks only relax the window's lower edge.
  if (windowed && j < pos - mask.window && j >= mask.sinks)
    return false;
  return true;
}

int64_t attnrun::countVisible(const MaskSpec &mask, int64_t i, int64_t lq,
                              int64_t lk) {
  if (!mask.causal && mask.window < 0)
    return lk;
  int64_t pos = position(mask, i, lq, lk);
  int64_t hi = std::min(pos, lk - 1);
  if (hi < 0)
    return 0;
  if (mask.window < 0)
    return hi + 1;
  int64_t lo = std::max<int64_t>(0, pos - mask.window);
  int64_t n = lo <= hi ? hi - lo + 1 : 0;
  // Sinks below the window: j < sinks, j < lo, j <= hi.
  return n + std::max<int64_t>(0, std::min({mask.sinks, lo, hi + 1}));
}

int64_t attnrun::countVisiblePairs(const MaskSpec &mask,
                                   const std::vector<Sequence> &seqs) {
  int64_t total = 0;
  for (const Sequence &s : seqs)
    for (int64_t i = 0; i < s.qLen; ++i)
      total += countVisible(mask, i, s.qLen, s.kLen);
  return total;
}

std::vector<Sequence> attnrun::denseSequences(int64_t batch, int64_t lq,
                                              int64_t lk) {
  std::vector<Sequence> seqs;
  for (int64_t b = 0; b < batch; ++b)
    seqs.push_back({b * lq, lq, b * lk, lk});
  return seqs;
}

std::vector<Sequence>
attnrun::raggedSequences(const std::vector<int64_t> &cuQ,
                         const std::vector<int64_t> &cuK) {
  std::vector<Sequence> seqs;
  for (size_t b = 0; b + 1 < cuQ.size() && b + 1 < cuK.size(); ++b)
    seqs.push_back({cuQ[b], cuQ[b + 1] - cuQ[b], cuK[b], cuK[b + 1] - cuK[b]});
  return seqs;
}

void attnrun::referenceAttention(const AttentionSpec &spec,
                                 const std::vector<Sequence> &seqs, bool ragged,
                                 const double *q, const double *k,
                                 const double *v, double *o, double *lse) {
  const int64_t hq = spec.numQHeads, hkv = spec.numKvHeads, d = spec.headDim;
  const int64_t group = hq / hkv;
  int64_t totalQ = 0;
  for (const Sequence &s : seqs)
    totalQ += s.qLen;
  std::vector<double> scores, acc(d);
  std::vector<int64_t> keys;
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Sequence &s = seqs[b];
    for (int64_t i = 0; i < s.qLen; ++i) {
      int64_t row = s.qBegin + i;
      keys.clear();
      for (int64_t j = 0; j < s.kLen; ++j)
        if (isVisible(spec.mask, i, j, s.qLen, s.kLen))
          keys.push_back(j);
      for (int64_t h = 0; h < hq; ++h) {
        int64_t kvh = h / group;
        const double *qr = q + (row * hq + h) * d;
        double *orow = o + (row * hq + h) * d;
        double rowLse = -std::numeric_limits<double>::infinity();
        std::fill(acc.begin(), acc.end(), 0.0);
        if (!keys.empty()) {
          scores.assign(keys.size(), 0.0);
          double maxScore = -std::numeric_limits<double>::infinity();
          for (size_t n = 0; n < keys.size(); ++n) {
            const double *kr = k + ((s.kBegin + keys[n]) * hkv + kvh) * d;
            double dot = 0;
            for (int64_t c = 0; c < d; ++c)
              dot += qr[c] * kr[c];
            double sc = spec.scale * dot;
            if (spec.softcap > 0)
              sc = spec.softcap * std::tanh(sc / spec.softcap);
            scores[n] = sc;
            maxScore = std::max(maxScore, sc);
          }
          double sum = 0;
          for (size_t n = 0; n < keys.size(); ++n) {
            double p = std::exp(scores[n] - maxScore);
            sum += p;
            const double *vr = v + ((s.kBegin + keys[n]) * hkv + kvh) * d;
            for (int64_t c = 0; c < d; ++c)
              acc[c] += p * vr[c];
          }
          for (int64_t c = 0; c < d; ++c)
            acc[c] /= sum;
          rowLse = maxScore + std::log(sum);
        }
        std::copy(acc.begin(), acc.end(), orow);
        if (lse)
          lse[ragged ? h * totalQ + row
                     : (static_cast<int64_t>(b) * hq + h) * s.qLen + i] =
              rowLse;
      }
    }
  }
}
