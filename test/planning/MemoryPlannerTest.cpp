//===- MemoryPlannerTest.cpp - placement across tiers ---------------------===//
//
// Hand-written tiny schedules with known answers (in the spirit of XLA's
// memory-space-assignment tests: capacities of a few hundred bytes), the
// verifier against hand-broken plans, and a property test over random
// schedules.
//
//===----------------------------------------------------------------------===//

#include "attnc/Planning/MemoryPlanner.h"

#include "attnc/Planning/SplitMix.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

using namespace attnc;

namespace {

StepValue input(std::string name, uint64_t size, std::vector<int64_t> uses) {
  StepValue v;
  v.name = std::move(name);
  v.size = size;
  v.kind = StepValueKind::Input;
  v.useSteps = std::move(uses);
  return v;
}

StepValue produced(std::string name, uint64_t size, StepValueKind kind,
                   int64_t def, std::vector<int64_t> uses = {}) {
  StepValue v;
  v.name = std::move(name);
  v.size = size;
  v.kind = kind;
  v.definingStep = def;
  v.useSteps = std::move(uses);
  return v;
}

MemoryPlanProblem problem(int kernels, double seconds, uint64_t device,
                          double link) {
  MemoryPlanProblem p;
  for (int i = 0; i < kernels; ++i)
    p.kernels.push_back({"k" + std::to_string(i), seconds});
  p.deviceCapacity = device;
  p.hostCapacity = 1 << 20;
  p.linkBandwidth = link;
  return p;
}

MemoryPlan planOrFail(const MemoryPlanProblem &p) {
  auto result = planMemory(p);
  if (auto *err = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << *err;
    return {};
  }
  MemoryPlan plan = std::get<MemoryPlan>(result);
  std::optional<std::string> bad = verifyMemoryPlan(p, plan);
  EXPECT_FALSE(bad) << *bad;
  return plan;
}

std::string errorOf(const MemoryPlanProblem &p) {
  auto result = planMemory(p);
  if (auto *err = std::get_if<std::string>(&result))
    return *err;
  return "planned";
}

const PlacedBuffer &home(const MemoryPlan &plan, int value) {
  for (const PlacedBuffer &b : plan.buffers)
    if (b.value == value && b.home)
      return b;
  static PlacedBuffer none;
  ADD_FAILURE() << "no home for value " << value;
  return none;
}

// Everything fits: no copies, one device buffer per value, the step time is
// the kernels' sum.
TEST(MemoryPlanner, EverythingResident) {
  MemoryPlanProblem p = problem(3, 1e-3, 1024, 1e6);
  p.values = {input("a", 64, {0}), input("b", 64, {1}),
              produced("o", 64, StepValueKind::Output, 2)};
  MemoryPlan plan = planOrFail(p);
  EXPECT_TRUE(plan.copies.empty());
  ASSERT_EQ(plan.tiers.size(), 2u);
  // a is consumed at step 0, so o reuses its bytes.
  EXPECT_EQ(plan.tiers[0].peak, 128u);
  EXPECT_EQ(plan.tiers[0].lowerBound, 128u);
  EXPECT_EQ(plan.tiers[1].peak, 0u);
  EXPECT_DOUBLE_EQ(plan.stepSeconds, 3e-3);
  EXPECT_DOUBLE_EQ(plan.noOffloadSeconds, 3e-3);
}

// Three 64-byte inputs read at steps 0, 1, 2 with room for two: the one read
// last goes to the host (Belady) and is prefetched while step 1 runs (a is
// consumed by then); the link moves 64 B in 1 ms, exactly a kernel's time,
// so nothing is exposed.
TEST(MemoryPlanner, PrefetchHidesTheTransfer) {
  MemoryPlanProblem p = problem(3, 1e-3, 128, 64e3);
  p.values = {input("a", 64, {0}), input("b", 64, {1}), input("c", 64, {2})};
  MemoryPlan plan = planOrFail(p);
  EXPECT_EQ(home(plan, 0).tier, PlanTier::Device);
  EXPECT_EQ(home(plan, 1).tier, PlanTier::Device);
  EXPECT_EQ(home(plan, 2).tier, PlanTier::Host);
  ASSERT_EQ(plan.copies.size(), 1u);
  const PlannedCopy &c = plan.copies[0];
  EXPECT_TRUE(c.prefetch);
  EXPECT_EQ(c.value, 2);
  EXPECT_EQ(c.issue, 1);
  EXPECT_EQ(c.wait, 2);
  EXPECT_DOUBLE_EQ(c.exposedSeconds, 0);
  EXPECT_DOUBLE_EQ(plan.stepSeconds, 3e-3);
  EXPECT_EQ(plan.tiers[0].peak, 128u);
  EXPECT_EQ(plan.bytesMoved, 64u);
}

// With half the room, the copy cannot start before a's kernel finishes: it
// is issued and waited right before its use, and fully exposed.
TEST(MemoryPlanner, NoRoomToOverlap) {
  MemoryPlanProblem p = problem(2, 1e-3, 128, 64e3);
  p.values = {input("a", 64, {0}), input("b", 64, {0}), input("c", 64, {1})};
  MemoryPlan plan = planOrFail(p);
  ASSERT_EQ(plan.copies.size(), 1u);
  EXPECT_EQ(plan.copies[0].value, 2);
  EXPECT_EQ(plan.copies[0].issue, 1);
  EXPECT_EQ(plan.copies[0].wait, 1);
  EXPECT_DOUBLE_EQ(plan.copies[0].exposedSeconds, 1e-3);
  EXPECT_DOUBLE_EQ(plan.stepSeconds, 3e-3);
}

// A slow link (each transfer takes two kernels' time): prefetches start as
// early as the room allows and the exposed time is what remains.
TEST(MemoryPlanner, PrefetchOverlapsEarlierKernels) {
  MemoryPlanProblem p = problem(4, 1e-3, 192, 32e3);
  p.values = {input("a", 64, {0}), input("b", 64, {1}), input("c", 64, {2}),
              input("d", 64, {3})};
  MemoryPlan plan = planOrFail(p);
  ASSERT_FALSE(plan.copies.empty());
  double exposed = 0;
  for (const PlannedCopy &c : plan.copies) {
    EXPECT_TRUE(c.prefetch);
    exposed += c.exposedSeconds;
  }
  EXPECT_DOUBLE_EQ(plan.stepSeconds, plan.noOffloadSeconds + exposed);
  EXPECT_LT(plan.stepSeconds, 4e-3 + 2e-3 * plan.copies.size());
}

// An output that does not fit beside later steps' operands is offloaded
// right after its kernel and waited when the transfer is predicted done (a
// kernel later), which frees its device bytes for step 2.
TEST(MemoryPlanner, OutputIsOffloaded) {
  MemoryPlanProblem p = problem(3, 1e-3, 128, 64e3);
  p.values = {produced("o", 64, StepValueKind::Output, 0),
              produced("t1", 64, StepValueKind::Temp, 1, {2}),
              produced("t2", 64, StepValueKind::Temp, 2)};
  MemoryPlan plan = planOrFail(p);
  EXPECT_EQ(home(plan, 0).tier, PlanTier::Host);
  ASSERT_EQ(plan.copies.size(), 1u);
  EXPECT_FALSE(plan.copies[0].prefetch);
  EXPECT_EQ(plan.copies[0].issue, 1);
  EXPECT_EQ(plan.copies[0].wait, 2);
  EXPECT_DOUBLE_EQ(plan.copies[0].exposedSeconds, 0);
  EXPECT_EQ(plan.buffers[plan.defBuffer[0]].tier, PlanTier::Device);
}

/// A cache written at step 0 and read at step 2 that cannot stay on the
/// device in between (steps 1 and 3 fill it).
MemoryPlanProblem stateRoundTrip() {
  MemoryPlanProblem p = problem(4, 1e-3, 128, 64e3);
  StepValue cache = input("cache", 64, {0, 2});
  cache.kind = StepValueKind::State;
  cache.writeSteps = {0};
  p.values = {cache, input("x", 64, {1}), input("y", 64, {1}),
              input("z", 64, {3})};
  return p;
}

// A cache written at step 0 and read at step 2 that must leave the device
// in between: prefetched, written, offloaded, prefetched again.
TEST(MemoryPlanner, StateGoesBackToItsHome) {
  MemoryPlanProblem p = stateRoundTrip();
  MemoryPlan plan = planOrFail(p);
  int prefetches = 0, offloads = 0;
  for (const PlannedCopy &c : plan.copies)
    if (c.value == 0)
      (c.prefetch ? prefetches : offloads) += 1;
  EXPECT_EQ(home(plan, 0).tier, PlanTier::Host);
  EXPECT_EQ(prefetches, 2);
  EXPECT_EQ(offloads, 1);
}

// A kernel whose operands alone exceed the device: the error names them.
TEST(MemoryPlanner, KernelOperandsDoNotFit) {
  MemoryPlanProblem p = problem(2, 1e-3, 128, 1e6);
  p.values = {input("q", 64, {0}), input("k", 64, {0}), input("v", 64, {0}),
              input("r", 64, {1})};
  EXPECT_EQ(errorOf(p),
            "the device tier (128 B) cannot hold what kernel 'k0' (step 0) "
            "needs at once: 192 B in 'v' (64 B), 'q' (64 B), 'k' (64 B); "
            "kernels read and write only the device tier, so give a target "
            "with more device memory or split the kernel's operands");
}

TEST(MemoryPlanner, HostTooSmall) {
  MemoryPlanProblem p = problem(2, 1e-3, 64, 1e6);
  p.hostCapacity = 32;
  p.values = {input("a", 64, {0}), input("b", 64, {1}), input("c", 64, {0})};
  p.deviceCapacity = 128;
  EXPECT_EQ(errorOf(p), "the host tier (32 B) cannot hold the buffers placed "
                        "in it: the plan needs 64 B (at least 64 B live at "
                        "once)");
}

TEST(MemoryPlanner, HostOnlyTargetHasOneTier) {
  MemoryPlanProblem p = problem(2, 1e-3, 0, 0);
  p.hasDevice = false;
  p.values = {input("a", 100, {0}),
              produced("o", 10, StepValueKind::Output, 1)};
  MemoryPlan plan = planOrFail(p);
  ASSERT_EQ(plan.tiers.size(), 1u);
  EXPECT_EQ(plan.tiers[0].peak, 128u); // a (100 B, reserving 128) is consumed
  EXPECT_EQ(plan.buffers[plan.defBuffer[1]].offset, 0u);
  EXPECT_TRUE(plan.copies.empty());
}

TEST(MemoryPlanner, RejectsMalformedProblems) {
  MemoryPlanProblem p = problem(2, 1e-3, 128, 1e6);
  p.values = {input("a", 8, {1, 0})};
  EXPECT_EQ(errorOf(p),
            "value 'a': its use steps are not ascending and distinct");
  p.values = {produced("t", 8, StepValueKind::Temp, 1, {1})};
  EXPECT_EQ(errorOf(p), "value 't': used at step 1, not after its definition "
                        "at step 1");
  p.values = {input("a", 8, {0})};
  p.values[0].writeSteps = {0};
  EXPECT_EQ(errorOf(p), "value 'a': only state values are written in place");
}

// The verifier catches broken plans.
TEST(MemoryPlanner, VerifierRejectsBrokenPlans) {
  MemoryPlanProblem p = problem(3, 1e-3, 128, 64e3);
  p.values = {input("a", 64, {0}), input("b", 64, {1}), input("c", 64, {2})};
  MemoryPlan good = planOrFail(p);
  ASSERT_EQ(good.copies.size(), 1u);
  auto expectError = [&](MemoryPlan plan, const std::string &part) {
    std::optional<std::string> err = verifyMemoryPlan(p, plan);
    ASSERT_TRUE(err) << "expected: " << part;
    EXPECT_NE(err->find(part), std::string::npos) << *err;
  };
  {
    MemoryPlan bad = good; // read before the prefetch is waited
    bad.copies[0].wait = 3;
    expectError(bad, "reads 'c' before its prefetch is waited");
  }
  {
    MemoryPlan bad = good; // the kernel reads the host home
    int hostHome = bad.copies[0].source;
    bad.useBuffer[2][0] = hostHome;
    expectError(bad, "reads 'c' from the host tier");
  }
  {
    MemoryPlan bad = good; // two device buffers overlap
    for (PlacedBuffer &b : bad.buffers)
      if (b.tier == PlanTier::Device)
        b.offset = 0;
    expectError(bad, "overlap while both are live");
  }
  {
    MemoryPlan bad = good; // over capacity
    bad.tiers[0].capacity = 100;
    expectError(bad, "exceeds the capacity 100");
  }
  {
    MemoryPlan bad = good; // the copy nobody fills
    bad.copies.clear();
    expectError(bad, "reads a copy of 'c' that nothing fills");
  }
  {
    MemoryPlan bad = good;
    bad.buffers[0].offset = 8;
    expectError(bad, "is not 64-byte aligned");
  }
}

TEST(MemoryPlanner, VerifierRequiresTheOffloadOfWrites) {
  MemoryPlanProblem p = stateRoundTrip();
  MemoryPlan plan = planOrFail(p);
  plan.copies.erase(std::remove_if(plan.copies.begin(), plan.copies.end(),
                                   [](const PlannedCopy &c) {
                                     return c.value == 0 && !c.prefetch;
                                   }),
                    plan.copies.end());
  std::optional<std::string> err = verifyMemoryPlan(p, plan);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("never offloaded to its home"), std::string::npos)
      << *err;
}

// A 32-layer decode step shaped like Llama-3-8B at 32k context, scaled down
// 1024 times (a 128 KiB cache and 8 KiB query and output per layer), with
// the device at a quarter of the working set: the caches stream in.
TEST(MemoryPlanner, LayeredDecodeStepStreamsCaches) {
  const int layers = 32;
  const uint64_t cache = 128 << 10, q = 8 << 10;
  MemoryPlanProblem p = problem(layers, 40e-6, 0, 64e9 / 1024);
  p.hostCapacity = uint64_t(1) << 30;
  uint64_t total = 0;
  for (int l = 0; l < layers; ++l) {
    StepValue c = input("cache" + std::to_string(l), cache, {l});
    p.values.push_back(c);
    p.values.push_back(input("q" + std::to_string(l), q, {l}));
    p.values.push_back(
        produced("o" + std::to_string(l), q, StepValueKind::Output, l));
    total += cache + 2 * q;
  }
  p.deviceCapacity = total / 4;
  MemoryPlan plan = planOrFail(p);
  EXPECT_LE(plan.tiers[0].peak, p.deviceCapacity);
  int prefetches = 0;
  for (const PlannedCopy &c : plan.copies)
    prefetches += c.prefetch;
  EXPECT_GT(prefetches, 16);
  EXPECT_GT(plan.stepSeconds, plan.noOffloadSeconds);
}

// Where the link cannot hide any transfer (70B-like: each cache takes 50
// kernels' time to cross), the plan must move as few caches as the capacity
// allows, not stream all of them: 80 state caches, room for 37 and one copy.
TEST(MemoryPlanner, LinkBoundStepMovesOnlyWhatDoesNotFit) {
  const int layers = 80;
  const uint64_t cache = 1 << 20;
  MemoryPlanProblem p = problem(layers, 1e-3, 38 * cache, cache / 50e-3);
  p.hostCapacity = uint64_t(1) << 30;
  for (int l = 0; l < layers; ++l) {
    StepValue c = input("cache" + std::to_string(l), cache, {l});
    c.kind = StepValueKind::State;
    p.values.push_back(c);
  }
  MemoryPlan plan = planOrFail(p);
  // At least 43 caches cannot stay; one more makes room for the copies.
  EXPECT_LE(plan.copies.size(), 44u);
  EXPECT_GE(plan.copies.size(), 43u);
  EXPECT_EQ(plan.bytesMoved, plan.copies.size() * cache);
  EXPECT_LE(plan.tiers[0].peak, p.deviceCapacity);
}

MemoryPlanProblem randomProblem(Rng &rng) {
  int n = int(rng.between(2, 48));
  MemoryPlanProblem p;
  for (int i = 0; i < n; ++i)
    p.kernels.push_back(
        {"k" + std::to_string(i), double(rng.logUniform(10, 100000)) * 1e-9});
  p.linkBandwidth = double(rng.logUniform(1000, 100000000));
  p.hostCapacity = uint64_t(1) << 40;
  int values = int(rng.between(2, 96));
  for (int i = 0; i < values; ++i) {
    StepValue v;
    v.name = "v" + std::to_string(i);
    v.size = rng.logUniform(1, 1 << 20);
    int kind = int(rng.between(0, 9));
    if (kind < 4) { // an input or a state read a few times
      v.kind = kind == 3 ? StepValueKind::State : StepValueKind::Input;
      int uses = int(rng.between(1, 3));
      for (int u = 0; u < uses; ++u)
        v.useSteps.push_back(rng.between(0, n - 1));
    } else {
      v.kind = kind < 6   ? StepValueKind::Output
               : kind < 9 ? StepValueKind::Temp
                          : StepValueKind::Workspace;
      v.definingStep = rng.between(0, n - 1);
      int uses =
          v.kind == StepValueKind::Workspace ? 0 : int(rng.between(0, 2));
      for (int u = 0; u < uses && v.definingStep + 1 < n; ++u)
        v.useSteps.push_back(rng.between(v.definingStep + 1, n - 1));
    }
    std::sort(v.useSteps.begin(), v.useSteps.end());
    v.useSteps.erase(std::unique(v.useSteps.begin(), v.useSteps.end()),
                     v.useSteps.end());
    if (v.kind == StepValueKind::State && v.useSteps.empty())
      v.kind = StepValueKind::Input;
    if (v.kind == StepValueKind::State)
      v.writeSteps = {v.useSteps[rng.between(0, v.useSteps.size() - 1)]};
    if ((v.kind == StepValueKind::Input || v.kind == StepValueKind::State) &&
        v.useSteps.empty())
      v.useSteps = {rng.between(0, n - 1)};
    p.values.push_back(v);
  }
  // The device holds, at every step, what that step's kernel touches and the
  // temporaries live across it (what can never leave), times a random slack
  // from nothing to everything resident.
  uint64_t floor = 0, everything = 0;
  for (int s = 0; s < n; ++s) {
    uint64_t need = 0;
    for (const StepValue &v : p.values) {
      uint64_t r = reservedSize({v.name, v.size, p.alignment, 0, 0});
      bool touched =
          v.definingStep == s ||
          std::binary_search(v.useSteps.begin(), v.useSteps.end(), s);
      bool pinnedTemp =
          (v.kind == StepValueKind::Temp ||
           v.kind == StepValueKind::Workspace) &&
          v.definingStep <= s &&
          s <= (v.useSteps.empty() ? v.definingStep : v.useSteps.back());
      // An output or a written state keeps its device copy one step after
      // the write until its offload is waited.
      bool offloading =
          (v.kind == StepValueKind::Output && v.definingStep == s - 1) ||
          (v.kind == StepValueKind::State && !v.writeSteps.empty() &&
           v.writeSteps.back() == s - 1);
      if (touched || pinnedTemp || offloading)
        need += r;
    }
    floor = std::max(floor, need);
  }
  for (const StepValue &v : p.values)
    everything += reservedSize({v.name, v.size, p.alignment, 0, 0});
  double slack = double(rng.between(0, 1000)) / 1000.0;
  p.deviceCapacity = floor + uint64_t(slack * double(everything - floor));
  p.deviceCapacity += p.deviceCapacity / 8; // room for fragmentation
  return p;
}

TEST(MemoryPlanner, PropertyRandomSchedules) {
  auto start = std::chrono::steady_clock::now();
  Rng rng{20261123};
  const int count = 2000;
  int planned = 0, withCopies = 0, worstIndex = -1;
  double ratioSum = 0, worst = 1;
  std::vector<std::string> failures;
  for (int i = 0; i < count; ++i) {
    MemoryPlanProblem p = randomProblem(rng);
    auto result = planMemory(p);
    if (auto *err = std::get_if<std::string>(&result)) {
      failures.push_back("schedule " + std::to_string(i) + ": " + *err);
      continue;
    }
    const MemoryPlan &plan = std::get<MemoryPlan>(result);
    std::optional<std::string> bad = verifyMemoryPlan(p, plan);
    ASSERT_FALSE(bad) << "schedule " << i << ": " << *bad;
    ++planned;
    withCopies += !plan.copies.empty();
    ASSERT_GE(plan.stepSeconds, plan.noOffloadSeconds * (1 - 1e-12));
    for (const TierSummary &t : plan.tiers) {
      ASSERT_LE(t.lowerBound, t.peak);
      ASSERT_LE(t.peak, t.capacity);
    }
    const TierSummary &device = plan.tiers[0];
    double ratio =
        device.lowerBound ? double(device.peak) / double(device.lowerBound) : 1;
    ratioSum += ratio;
    if (ratio > worst) {
      worst = ratio;
      worstIndex = i;
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  double average = ratioSum / planned;
  std::printf("memory planner on %d random schedules: %d planned (%d with "
              "copies), %zu refused; device peak/lower bound average %.4f, "
              "worst %.4f (schedule %d); %.1f s\n",
              count, planned, withCopies, failures.size(), average, worst,
              worstIndex, seconds);
  for (size_t i = 0; i < failures.size() && i < 5; ++i)
    std::printf("  refused: %s\n", failures[i].c_str());
  EXPECT_LE(average, 1.05);
  // Every capacity is at least what a step touches plus 1/8: the planner
  // must find a plan for almost all of them.
  EXPECT_LE(failures.size(), size_t(count / 100));
  EXPECT_GT(withCopies, count / 4);
}

} // namespace
