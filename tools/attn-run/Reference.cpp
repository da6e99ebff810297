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

std::pair<int64_t, int64_t> BlockSparse::row(int64_t b, int64_t kvHead,
                                             int64_t r) const {
  if (r < 0 || r >= numQBlocks)
    return {0, 0};
  int64_t base = (b * heads + headOf(kvHead)) * (numQBlocks + 1) + r;
  int64_t rowBase = (b * heads + headOf(kvHead)) * maxBlocks;
  return {rowBase + offsets[base], rowBase + offsets[base + 1]};
}

/// Sorts and merges intervals in place, dropping empty ones.
static void mergeIntervals(std::vector<Interval> &iv) {
  iv.erase(
      std::remove_if(iv.begin(), iv.end(),
                     [](const Interval &x) { return x.first >= x.second; }),
      iv.end());
  std::sort(iv.begin(), iv.end());
  size_t n = 0;
  for (const Interval &x : iv) {
    if (n && x.first <= iv[n - 1].second)
      iv[n - 1].second = std::max(iv[n - 1].second, x.second);
    else
      iv[n++] = x;
  }
  iv.resize(n);
}

void attnrun::maskIntervals(const MaskSpec &mask, int64_t posLo, int64_t posHi,
                            int64_t lk, std::vector<Interval> &out) {
  if (lk <= 0 || posLo > posHi)
    return;
  if (!mask.causal && mask.window < 0) {
    out.push_back({0, lk});
    return;
  }
  // A query at position p < 0 sees nothing.
  if (posHi < 0)
    return;
  int64_t hi = std::min(posHi, lk - 1); // inclusive
  if (mask.window < 0) {
    out.push_back({0, hi + 1});
    return;
  }
  // The windows [p - w, min(p, Lk - 1)] of consecutive positions overlap:
  // their union is one interval. The sinks add [0, min(s, posHi + 1, Lk)).
  int64_t lo = std::max<int64_t>(0, std::max<int64_t>(posLo, 0) - mask.window);
  int64_t sinkEnd = std::min({mask.sinks, posHi + 1, lk});
  if (sinkEnd > 0 && sinkEnd >= lo) {
    out.push_back({0, std::max(sinkEnd, hi + 1)});
    return;
  }
  if (sinkEnd > 0)
    out.push_back({0, sinkEnd});
  if (lo <= hi)
    out.push_back({lo, hi + 1});
}

void attnrun::visibleIntervals(const AttentionSpec &spec, int64_t b,
                               int64_t kvHead, int64_t iLo, int64_t iHi,
                               int64_t lq, int64_t lk,
                               std::vector<Interval> &out) {
  out.clear();
  iLo = std::max<int64_t>(iLo, 0);
  iHi = std::min(iHi, lq - 1);
  if (iLo > iHi || lk <= 0)
    return;
  const MaskSpec &mask = spec.kvHeadMask(kvHead);
  const BlockSparse *bs = spec.blockSparse.get();
  if (!bs) {
    maskIntervals(mask, position(mask, iLo, lq, lk),
                  position(mask, iHi, lq, lk), lk, out);
    return;
  }
  Interval m[2];
  std::vector<Interval> tmp;
  for (int64_t r = iLo / bs->blockQ; r <= iHi / bs->blockQ; ++r) {
    // The queries of this range in query block r share its block list.
    int64_t sLo = std::max(iLo, r * bs->blockQ);
    int64_t sHi = std::min(iHi, (r + 1) * bs->blockQ - 1);
    tmp.clear();
    maskIntervals(mask, position(mask, sLo, lq, lk),
                  position(mask, sHi, lq, lk), lk, tmp);
    size_t nm = tmp.size();
    std::copy(tmp.begin(), tmp.end(), m);
    auto [begin, end] = bs->row(b, kvHead, r);
    for (int64_t n = begin; n < end; ++n) {
      int64_t c = bs->indices[n];
      int64_t a = c * bs->blockKv, e = std::min((c + 1) * bs->blockKv, lk);
      if (c < 0 || a >= e)
        continue;
      if (bs->isFull(n)) {
        out.push_back({a, e});
        continue;
      }
      for (size_t x = 0; x < nm; ++x)
        out.push_back({std::max(a, m[x].first), std::min(e, m[x].second)});
    }
  }
  mergeIntervals(out);
}

int64_t attnrun::countVisiblePairs(const AttentionSpec &spec,
                                   const std::vector<Sequence> &seqs) {
  int64_t group = spec.numQHeads / spec.numKvHeads, total = 0;
  std::vector<Interval> iv;
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Sequence &s = seqs[b];
    for (int64_t h = 0; h < spec.numKvHeads; ++h) {
      if (!spec.blockSparse) {
        // Closed form per query.
        for (int64_t i = 0; i < s.qLen; ++i)
          total += group * countVisible(spec.kvHeadMask(h), i, s.qLen, s.kLen);
        continue;
      }
      for (int64_t i = 0; i < s.qLen; ++i) {
        visibleIntervals(spec, b, h, i, i, s.qLen, s.kLen, iv);
        for (const Interval &x : iv)
          total += group * (x.second - x.first);
      }
    }
  }
  return total;
}

TileCounts attnrun::countTiles(const AttentionSpec &spec,
                               const std::vector<Sequence> &seqs, int64_t tileQ,
                               int64_t tileKv) {
  TileCounts counts;
  std::vector<Interval> iv;
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Sequence &s = seqs[b];
    int64_t qTiles = (s.qLen + tileQ - 1) / tileQ;
    int64_t kvTiles = (s.kLen + tileKv - 1) / tileKv;
    counts.dense += spec.numKvHeads * qTiles * kvTiles;
    for (int64_t h = 0; h < spec.numKvHeads; ++h) {
      for (int64_t t = 0; t < qTiles; ++t) {
        visibleIntervals(spec, b, h, t * tileQ,
                         std::min(s.qLen, (t + 1) * tileQ) - 1, s.qLen, s.kLen,
                         iv);
        // Key intervals to tile ranges; neighbours may share a tile.
        for (Interval &x : iv)
          x = {x.first / tileKv, (x.second - 1) / tileKv + 1};
        mergeIntervals(iv);
        for (const Interval &x : iv)
          counts.visible += x.second - x.first;
      }
    }
  }
  return counts;
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
  std::vector<Interval> iv;
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Sequence &s = seqs[b];
    for (int64_t i = 0; i < s.qLen; ++i) {
      int64_t row = s.qBegin + i;
      for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        keys.clear();
        if (spec.blockSparse) {
          visibleIntervals(spec, b, kvh, i, i, s.qLen, s.kLen, iv);
          for (const Interval &x : iv)
            for (int64_t j = x.first; j < x.second; ++j)
              keys.push_back(j);
        } else {
          const MaskSpec &mask = spec.kvHeadMask(kvh);
          for (int64_t j = 0; j < s.kLen; ++j)
            if (isVisible(mask, i, j, s.qLen, s.kLen))
              keys.push_back(j);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
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
}
