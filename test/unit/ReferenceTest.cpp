//===- ReferenceTest.cpp - float64 reference on hand-computed cases -------===//

#include "Reference.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace attnrun;

namespace {

AttentionSpec spec1(int64_t d, double scale = 1.0) {
  AttentionSpec s;
  s.headDim = d;
  s.scale = scale;
  return s;
}

TEST(Reference, SingleKeyOutputsValue) {
  AttentionSpec s = spec1(2);
  double q[] = {3, -1}, k[] = {0.5, 2}, v[] = {7, -4}, o[2], lse[1];
  referenceAttention(s, denseSequences(1, 1, 1), false, q, k, v, o, lse);
  EXPECT_DOUBLE_EQ(o[0], 7);
  EXPECT_DOUBLE_EQ(o[1], -4);
  EXPECT_DOUBLE_EQ(lse[0], 3 * 0.5 - 2); // the only score; log(1) = 0
}

TEST(Reference, EqualScoresGiveTheMean) {
  AttentionSpec s = spec1(1);
  double q[] = {1}, k[] = {2, 2}, v[] = {1, 4}, o[1], lse[1];
  referenceAttention(s, denseSequences(1, 1, 2), false, q, k, v, o, lse);
  EXPECT_DOUBLE_EQ(o[0], 2.5);
  EXPECT_NEAR(lse[0], 2 + std::log(2.0), 1e-15);
}

TEST(Reference, ScaleAndSoftcap) {
  AttentionSpec s = spec1(1, 0.5);
  s.softcap = 2.0;
  double q[] = {2}, k[] = {3, 0}, v[] = {1, 0}, o[1], lse[1];
  referenceAttention(s, denseSequences(1, 1, 2), false, q, k, v, o, lse);
  double s0 = 2.0 * std::tanh(0.5 * 6 / 2.0), s1 = 0;
  double p0 = std::exp(s0), p1 = std::exp(s1);
  EXPECT_NEAR(o[0], p0 / (p0 + p1), 1e-15);
  EXPECT_NEAR(lse[0], std::log(p0 + p1), 1e-15);
}

TEST(Reference, FullyMaskedRowIsZeroAndMinusInf) {
  // Causal top_left is fine; bottom_right with Lq > Lk hides the first rows.
  AttentionSpec s = spec1(1);
  s.mask.causal = true;
  double q[] = {1, 1, 1}, k[] = {1}, v[] = {5}, o[3], lse[3];
  referenceAttention(s, denseSequences(1, 3, 1), false, q, k, v, o, lse);
  EXPECT_EQ(o[0], 0);
  EXPECT_EQ(o[1], 0);
  EXPECT_TRUE(std::isinf(lse[0]) && lse[0] < 0);
  EXPECT_TRUE(std::isinf(lse[1]) && lse[1] < 0);
  EXPECT_DOUBLE_EQ(o[2], 5);
  EXPECT_DOUBLE_EQ(lse[2], 1);
}

TEST(Reference, GqaUsesTheSharedKvHead) {
  AttentionSpec s = spec1(1);
  s.numQHeads = 4;
  s.numKvHeads = 2;
  // One query row, heads 0..3; one key per KV head with distinct values.
  double q[] = {1, 1, 1, 1}, k[] = {0, 0}, v[] = {10, 20}, o[4];
  referenceAttention(s, denseSequences(1, 1, 1), false, q, k, v, o, nullptr);
  EXPECT_EQ(o[0], 10);
  EXPECT_EQ(o[1], 10);
  EXPECT_EQ(o[2], 20);
  EXPECT_EQ(o[3], 20);
}

TEST(Reference, RaggedLayoutAndEmptySequences) {
  AttentionSpec s = spec1(1);
  s.numQHeads = 2;
  // Sequences: (q 1 row, k 1 row), (q 0, k 2), (q 1, k 0).
  std::vector<int64_t> cuQ = {0, 1, 1, 2}, cuK = {0, 1, 3, 3};
  double q[] = {1, 1, 1, 1}, k[] = {2, 9, 9}, v[] = {3, 9, 9}, o[4], lse[4];
  referenceAttention(s, raggedSequences(cuQ, cuK), true, q, k, v, o, lse);
  EXPECT_EQ(o[0], 3); // row 0 head 0
  EXPECT_EQ(o[1], 3); // row 0 head 1
  EXPECT_EQ(o[2], 0); // row 1: its sequence has no keys
  EXPECT_EQ(o[3], 0);
  // lse is [Hq, Tq].
  EXPECT_EQ(lse[0], 2);
  EXPECT_TRUE(std::isinf(lse[1]));
  EXPECT_EQ(lse[2], 2);
  EXPECT_TRUE(std::isinf(lse[3]));
}

TEST(Reference, DenseLseLayout) {
  AttentionSpec s = spec1(1);
  s.numQHeads = 2;
  // B=1, Lq=2, Lk=1: lse is [B, Hq, Lq]; q values differ per (row, head).
  double q[] = {1, 2, 3, 4}, k[] = {1}, v[] = {0}, o[4], lse[4];
  referenceAttention(s, denseSequences(1, 2, 1), false, q, k, v, o, lse);
  EXPECT_EQ(lse[0], 1); // h0 i0
  EXPECT_EQ(lse[1], 3); // h0 i1
  EXPECT_EQ(lse[2], 2); // h1 i0
  EXPECT_EQ(lse[3], 4); // h1 i1
}

std::string table(const MaskSpec &m, int64_t lq, int64_t lk) {
  std::string t;
  for (int64_t i = 0; i < lq; ++i) {
    for (int64_t j = 0; j < lk; ++j)
      t += isVisible(m, i, j, lq, lk) ? '1' : '.';
    t += '\n';
  }
  return t;
}

TEST(Mask, VisibilityTables) {
  MaskSpec none;
  EXPECT_EQ(table(none, 2, 3), "111\n111\n");
  MaskSpec causal{true, true, -1, 0};
  EXPECT_EQ(table(causal, 2, 4), "111.\n1111\n"); // bottom_right
  MaskSpec topLeft{true, false, -1, 0};
  EXPECT_EQ(table(topLeft, 2, 4), "1...\n11..\n");
  MaskSpec window{false, false, 1, 0}; // window implies causal
  EXPECT_EQ(table(window, 4, 4), "1...\n11..\n.11.\n..11\n");
  MaskSpec sinks{true, false, 1, 1};
  EXPECT_EQ(table(sinks, 4, 4), "1...\n11..\n111.\n1.11\n");
  MaskSpec sinksOnly{false, false, -1, 2}; // sinks without window: no effect
  EXPECT_EQ(table(sinksOnly, 2, 3), "111\n111\n");
  MaskSpec moreQ{true, true, -1, 0}; // Lq > Lk, bottom_right
  EXPECT_EQ(table(moreQ, 3, 2), "..\n1.\n11\n");
}

TEST(Mask, CountMatchesBruteForce) {
  for (bool causal : {false, true})
    for (bool br : {false, true})
      for (int64_t w : {-1, 0, 1, 3})
        for (int64_t sinks : {0, 1, 2, 9})
          for (int64_t lq : {0, 1, 3, 7})
            for (int64_t lk : {0, 1, 4, 9}) {
              MaskSpec m{causal, br, w, sinks};
              for (int64_t i = 0; i < lq; ++i) {
                int64_t n = 0;
                for (int64_t j = 0; j < lk; ++j)
                  n += isVisible(m, i, j, lq, lk);
                ASSERT_EQ(countVisible(m, i, lq, lk), n)
                    << causal << br << " w" << w << " s" << sinks << " lq" << lq
                    << " lk" << lk << " i" << i;
              }
            }
}

} // namespace
