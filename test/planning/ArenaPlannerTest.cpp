//===- ArenaPlannerTest.cpp - the module-level arena planner --------------===//
//
// Tiny hand-written schedules with exact offsets (in the style of XLA's heap
// simulator tests), the verifier on hand-broken plans, and property tests on
// random schedules: every plan verifies and the peak stays within 5% of the
// lower bound on average.
//
//===----------------------------------------------------------------------===//

#include "attnc/Planning/ArenaPlanner.h"

#include "attnc/Planning/SplitMix.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

using namespace attnc;

namespace {

ArenaBuffer buf(std::string name, uint64_t size, int64_t first, int64_t last,
                uint64_t alignment = 1) {
  return ArenaBuffer{std::move(name), size, alignment, first, last};
}

std::vector<uint64_t> offsetsOf(const ArenaPlan &plan) { return plan.offsets; }

TEST(ArenaPlanner, Empty) {
  ArenaPlan plan = planArena({});
  EXPECT_TRUE(plan.offsets.empty());
  EXPECT_EQ(plan.peak, 0u);
  EXPECT_EQ(plan.lowerBound, 0u);
  EXPECT_EQ(verifyArenaPlan({}, plan, 0), std::nullopt);
}

TEST(ArenaPlanner, DisjointLifetimesShareAddresses) {
  // b starts the step after a ends: they are never live together.
  std::vector<ArenaBuffer> buffers = {buf("a", 100, 0, 1), buf("b", 100, 2, 3)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan), (std::vector<uint64_t>{0, 0}));
  EXPECT_EQ(plan.peak, 100u);
  EXPECT_EQ(plan.lowerBound, 100u);
}

TEST(ArenaPlanner, StacksOverlappingBuffersBySize) {
  // a goes first (largest); b and c tie on size and lifetime, so the earlier
  // start (b) goes next. All three are live at step 2.
  std::vector<ArenaBuffer> buffers = {buf("c", 32, 2, 4), buf("a", 64, 0, 2),
                                      buf("b", 32, 1, 3)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan), (std::vector<uint64_t>{96, 0, 64}));
  EXPECT_EQ(plan.peak, 128u);
  EXPECT_EQ(plan.lowerBound, 128u);
}

TEST(ArenaPlanner, LongerLifetimeFirstOnEqualSizes) {
  std::vector<ArenaBuffer> buffers = {buf("short", 64, 0, 1),
                                      buf("long", 64, 0, 5)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan), (std::vector<uint64_t>{64, 0}));
  EXPECT_EQ(plan.peak, 128u);
}

TEST(ArenaPlanner, BestFitAmongGapsWithAlignment) {
  // Step 0 stacks p q r s t (340 bytes, the lower bound). From step 1 on, q's
  // and s's slots are free: [100, 190) and [270, 310).
  //   u (35 B, steps 1..2) takes the tighter gap [270, 310) rather than the
  //     lower one: best fit, not first fit. (It is placed before t, when
  //     [270, 310) is the room between r and the peak: still no growth.)
  //   v (20 B aligned to 16, steps 2..3) fits only [100, 190), at 112.
  std::vector<ArenaBuffer> buffers = {buf("p", 100, 0, 4),   buf("q", 90, 0, 0),
                                      buf("r", 80, 0, 4),    buf("s", 40, 0, 0),
                                      buf("t", 30, 0, 4),    buf("u", 35, 1, 2),
                                      buf("v", 20, 2, 3, 16)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan),
            (std::vector<uint64_t>{0, 100, 190, 270, 310, 270, 112}));
  EXPECT_EQ(plan.peak, 340u);
  EXPECT_EQ(plan.lowerBound, 340u);
  EXPECT_EQ(verifyArenaPlan(buffers, plan, 340), std::nullopt);
}

TEST(ArenaPlanner, SizesAreReservedRoundedUpToTheAlignment) {
  // Each 10-byte buffer reserves 64 bytes, so the next one stays aligned.
  std::vector<ArenaBuffer> buffers = {buf("a", 10, 0, 1, 64),
                                      buf("b", 10, 1, 2, 64)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan), (std::vector<uint64_t>{0, 64}));
  EXPECT_EQ(plan.peak, 128u);
  EXPECT_EQ(plan.lowerBound, 128u);
  EXPECT_EQ(reservedSize(buffers[0]), 64u);
}

TEST(ArenaPlanner, ZeroSizeBuffersTakeNoSpace) {
  std::vector<ArenaBuffer> buffers = {buf("a", 48, 0, 3), buf("empty", 0, 1, 2),
                                      buf("b", 16, 2, 2)};
  ArenaPlan plan = planArena(buffers);
  EXPECT_EQ(offsetsOf(plan), (std::vector<uint64_t>{0, 0, 48}));
  EXPECT_EQ(plan.peak, 64u);
  EXPECT_EQ(plan.lowerBound, 64u);
}

TEST(ArenaPlanner, ImprovementReachesTheLowerBound) {
  // Lower bound 128 (steps 1 and 3). Every greedy ordering puts c and d at 0
  // (never live together) and stacks b then a on them: a lands at 128 over b
  // (step 2) and d (step 3). Moving b first puts it at 0, c over it at 32 and
  // a in the room beside d: b [0, 32), c [32, 128), d [0, 96), a [96, 128).
  std::vector<ArenaBuffer> buffers = {buf("a", 32, 2, 4), buf("b", 32, 0, 2),
                                      buf("c", 96, 1, 1), buf("d", 96, 3, 3)};
  ArenaPlan greedy = planArena(buffers, {/*improvementSteps=*/0});
  EXPECT_EQ(offsetsOf(greedy), (std::vector<uint64_t>{128, 96, 0, 0}));
  EXPECT_EQ(greedy.peak, 160u);
  ArenaPlan improved = planArena(buffers);
  EXPECT_EQ(improved.peak, 128u);
  EXPECT_EQ(improved.lowerBound, 128u);
  EXPECT_EQ(verifyArenaPlan(buffers, improved, 128), std::nullopt);
}

TEST(ArenaPlanner, LowerBoundCountsOnlyBuffersLiveTogether) {
  std::vector<ArenaBuffer> buffers = {buf("a", 10, 0, 2), buf("b", 20, 3, 5),
                                      buf("c", 5, 2, 3), buf("d", 1, -4, -1)};
  // Step 2: a + c = 15; step 3: b + c = 25.
  EXPECT_EQ(arenaLowerBound(buffers), 25u);
}

TEST(ArenaPlanner, CheckRejectsBadBuffers) {
  EXPECT_EQ(checkArenaBuffers({buf("a", 8, 3, 2)}),
            "buffer 'a' ends at step 2 before it starts at step 3");
  EXPECT_EQ(checkArenaBuffers({buf("a", 8, 0, 2, 0)}),
            "buffer 'a' has alignment 0");
  EXPECT_EQ(checkArenaBuffers({buf("a", ~uint64_t(0), 0, 2, 16)}),
            "buffer 'a' of 18446744073709551615 bytes overflows when rounded "
            "up to its alignment 16");
  EXPECT_EQ(checkArenaBuffers({buf("a", 8, 0, 2, 8)}), std::nullopt);
}

TEST(ArenaPlanner, Deterministic) {
  std::vector<ArenaBuffer> buffers;
  for (int i = 0; i < 60; ++i)
    buffers.push_back(buf("b" + std::to_string(i), 1 + (i * 7919) % 1000,
                          i % 13, i % 13 + i % 5, 1u << (i % 4)));
  ArenaPlan first = planArena(buffers), second = planArena(buffers);
  EXPECT_EQ(first.offsets, second.offsets);
  EXPECT_EQ(first.peak, second.peak);
}

//===----------------------------------------------------------------------===//
// The verifier on hand-broken plans
//===----------------------------------------------------------------------===//

class VerifyArenaPlan : public ::testing::Test {
protected:
  // a and b are live together at steps 1..2; c only after both.
  std::vector<ArenaBuffer> buffers = {buf("a", 64, 0, 2), buf("b", 64, 1, 3),
                                      buf("c", 32, 4, 4, 16)};
  ArenaPlan plan = {{0, 64, 0}, 128, 128};
};

TEST_F(VerifyArenaPlan, AcceptsAValidPlan) {
  EXPECT_EQ(verifyArenaPlan(buffers, plan), std::nullopt);
  EXPECT_EQ(verifyArenaPlan(buffers, plan, 128), std::nullopt);
}

TEST_F(VerifyArenaPlan, RejectsOverlapAtACommonStep) {
  plan.offsets[1] = 32;
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "buffers 'a' at [0, 64) and 'b' at [32, 96) overlap while both "
            "are live (steps 1..2)");
}

TEST_F(VerifyArenaPlan, NamesTheSingleCommonStep) {
  buffers[1].firstStep = 2;
  plan.offsets[1] = 63;
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "buffers 'a' at [0, 64) and 'b' at [63, 127) overlap while both "
            "are live (step 2)");
}

TEST_F(VerifyArenaPlan, AcceptsSharedAddressesAtDisjointSteps) {
  plan.offsets[2] = 48; // over a and b, which are dead at step 4
  EXPECT_EQ(verifyArenaPlan(buffers, plan), std::nullopt);
}

TEST_F(VerifyArenaPlan, RejectsMisalignment) {
  plan.offsets[2] = 40;
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "buffer 'c' at offset 40 is not aligned to 16");
}

TEST_F(VerifyArenaPlan, RejectsABufferBeyondThePeak) {
  plan.peak = 100;
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "buffer 'b' at [64, 128) (steps 1..3) ends beyond the peak 100");
}

TEST_F(VerifyArenaPlan, RejectsAPeakOverCapacity) {
  EXPECT_EQ(verifyArenaPlan(buffers, plan, 100),
            "the arena's peak 128 exceeds the capacity 100: buffer 'b' at "
            "[64, 128) (steps 1..3) is beyond it");
  // Only padding above the capacity: no buffer to name.
  buffers[1].size = 36;
  EXPECT_EQ(verifyArenaPlan(buffers, plan, 100),
            "the arena's peak 128 exceeds the capacity 100");
}

TEST_F(VerifyArenaPlan, RejectsAWrongNumberOfOffsets) {
  plan.offsets.pop_back();
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "the plan has 2 offsets for 3 buffers");
}

TEST_F(VerifyArenaPlan, RejectsInvalidBuffers) {
  buffers[2].lastStep = 3;
  EXPECT_EQ(verifyArenaPlan(buffers, plan),
            "buffer 'c' ends at step 3 before it starts at step 4");
}

//===----------------------------------------------------------------------===//
// Property tests on random schedules
//===----------------------------------------------------------------------===//

/// A schedule of 8..128 steps with 4..160 buffers: sizes log-uniform over
/// 1 B..1 MiB, mixed alignments, mostly short-lived buffers (1..3 steps), some
/// of medium length and a few live over almost the whole schedule.
std::vector<ArenaBuffer> randomSchedule(Rng &rng) {
  static const uint64_t alignments[] = {1, 1, 4, 8, 16, 64, 256, 4096};
  int64_t steps = rng.between(8, 128);
  size_t count = rng.between(4, 160);
  std::vector<ArenaBuffer> buffers;
  for (size_t i = 0; i < count; ++i) {
    uint64_t octave = rng.below(21);
    uint64_t size = (uint64_t(1) << octave) + rng.below(uint64_t(1) << octave);
    size = std::min<uint64_t>(size, 1 << 20);
    uint64_t alignment = alignments[rng.below(std::size(alignments))];
    int64_t first, last;
    uint64_t shape = rng.below(100);
    if (shape < 65) { // short-lived: an activation, a split-KV partial
      first = rng.between(0, steps - 1);
      last = std::min(steps - 1, first + rng.between(0, 2));
    } else if (shape < 93) { // medium: a layer's workspace
      first = rng.between(0, steps - 1);
      last = std::min(steps - 1, first + rng.between(0, steps / 3));
    } else { // long-lived: a cache, the weights of the whole step
      first = rng.between(0, steps / 8);
      last = rng.between(steps - 1 - steps / 8, steps - 1);
    }
    buffers.push_back(
        buf("b" + std::to_string(i), size, first, last, alignment));
  }
  return buffers;
}

TEST(ArenaPlannerProperty, RandomSchedulesVerifyAndStayNearTheLowerBound) {
  constexpr int kSchedules = 2000;
  Rng rng{20240601};
  double sum = 0, greedySum = 0, worst = 0;
  int optimal = 0, worstIndex = -1;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kSchedules; ++i) {
    std::vector<ArenaBuffer> buffers = randomSchedule(rng);
    ASSERT_EQ(checkArenaBuffers(buffers), std::nullopt);
    ArenaPlan plan = planArena(buffers);
    ASSERT_EQ(verifyArenaPlan(buffers, plan, plan.peak), std::nullopt)
        << "schedule " << i;
    ASSERT_EQ(plan.lowerBound, arenaLowerBound(buffers));
    ASSERT_GE(plan.peak, plan.lowerBound) << "schedule " << i;
    ArenaPlan greedy = planArena(buffers, {/*improvementSteps=*/0});
    ASSERT_EQ(verifyArenaPlan(buffers, greedy), std::nullopt)
        << "schedule " << i;
    ASSERT_LE(plan.peak, greedy.peak) << "schedule " << i;

    double ratio = double(plan.peak) / double(plan.lowerBound);
    sum += ratio;
    greedySum += double(greedy.peak) / double(greedy.lowerBound);
    optimal += plan.peak == plan.lowerBound;
    if (ratio > worst) {
      worst = ratio;
      worstIndex = i;
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  double average = sum / kSchedules;
  std::printf("arena planner on %d random schedules: peak/lower bound average "
              "%.4f, worst %.4f (schedule %d), at the lower bound %d; greedy "
              "orderings alone: average %.4f; %.1f s\n",
              kSchedules, average, worst, worstIndex, optimal,
              greedySum / kSchedules, seconds);
  EXPECT_LE(average, 1.05);
}

} // namespace
