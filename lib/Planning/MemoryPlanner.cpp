//===- MemoryPlanner.cpp - placement of a step's buffers across tiers -----===//
//
// After XLA's memory space assignment: every buffer starts in the device
// tier; while the live bytes at some step exceed the device capacity, either
// a step argument or output not used at that step moves to the host tier
// (the one whose next use is farthest, Belady's choice) and gets prefetch
// (and offload) copies around its uses, or an existing copy window that
// covers the step is shortened (the one needed latest). Copy windows start
// as early as the cost model says hides the transfer. The device and host
// intervals are then given offsets by the arena planner; if fragmentation
// pushes the device peak over the capacity, the live-byte budget of the
// steps where buffers end beyond it shrinks by the excess and the loop
// resumes.
//
//===----------------------------------------------------------------------===//

#include "attnc/Planning/MemoryPlanner.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <sstream>
#include <tuple>

namespace attnc {
namespace {

using Step = int64_t;

/// The uses of a host-homed value that share one device copy.
struct Window {
  Step firstUse = 0, lastUse = 0;
  Step lastWrite = -1;   // State: the last use that writes; -1: no offload
  Step prefetch = -1;    // issue position of the prefetch; -1: none (Output)
  Step offloadWait = -1; // wait position of the offload; -1: none
};

bool isArgument(StepValueKind k) {
  return k == StepValueKind::Input || k == StepValueKind::State;
}

bool mayLiveOnHost(StepValueKind k) {
  return isArgument(k) || k == StepValueKind::Output;
}

std::string formatBytes(uint64_t bytes) {
  std::ostringstream os;
  os << bytes << " B";
  return os.str();
}

/// How reduceAt trades a new host value against a shorter copy window.
enum class Policy {
  /// Move a value that alone frees the excess, else shorten a window. Keeps
  /// prefetches early: best when the link keeps up with the kernels.
  EvictFirst,
  /// Shorten windows while any can shrink, then move a value. Moves fewer
  /// bytes: best when the link is the bottleneck.
  ShrinkFirst,
};

class Planner {
public:
  Planner(const MemoryPlanProblem &p, Policy policy)
      : p(p), n(static_cast<Step>(p.kernels.size())), policy(policy) {}

  std::variant<MemoryPlan, std::string> run();

private:
  const MemoryPlanProblem &p;
  const Step n;
  const Policy policy;
  std::vector<bool> onHost;
  std::vector<std::vector<Window>> windows;
  /// Prefix sums of the kernels' predicted times.
  std::vector<double> timeBefore;
  /// Per value, the device intervals of its shortest copy windows.
  std::vector<std::vector<std::pair<Step, Step>>> shortestWindows;

  uint64_t reserved(const StepValue &v) const {
    return reservedSize({v.name, v.size, p.alignment, 0, 0});
  }
  Step clampStep(Step s) const { return std::min(s, n - 1); }
  double transferSeconds(uint64_t bytes) const {
    return double(bytes) / p.linkBandwidth;
  }
  /// The predicted compute time of kernels [from, to).
  double computeBetween(Step from, Step to) const {
    return timeBefore[to] - timeBefore[from];
  }

  std::optional<std::string> checkProblem() const;
  std::vector<Window> makeWindows(int v, bool minimal) const;
  std::vector<std::pair<Step, Step>>
  windowIntervals(const std::vector<Window> &ws) const;
  /// The device intervals value v occupies under the current decisions.
  std::vector<std::pair<Step, Step>> deviceIntervals(int v) const;
  std::vector<std::pair<Step, Step>> hostIntervals(int v) const;
  std::vector<uint64_t> deviceProfile() const;
  bool reduceAt(Step t);
  bool shrinkWindowAt(Step t);
  /// Live device bytes at t beyond its budget.
  uint64_t excessAt(Step t) const { return excess[t]; }
  std::vector<uint64_t> excess;
  std::string cannotFit(Step t, const std::vector<uint64_t> &profile) const;
  std::string fragmented(Step t, uint64_t live) const;
  MemoryPlan assemble() const;
};

std::optional<std::string> Planner::checkProblem() const {
  if (p.alignment == 0 || (p.alignment & (p.alignment - 1)))
    return "the alignment " + std::to_string(p.alignment) +
           " is not a power of two";
  if (p.hasDevice && !(p.linkBandwidth > 0))
    return std::string("a device target needs a positive link bandwidth");
  for (const StepKernel &k : p.kernels)
    if (!(k.seconds >= 0))
      return "kernel '" + k.name + "' has a negative or unknown time";
  for (const StepValue &v : p.values) {
    auto where = "value '" + v.name + "'";
    if (!std::is_sorted(v.useSteps.begin(), v.useSteps.end()) ||
        std::adjacent_find(v.useSteps.begin(), v.useSteps.end()) !=
            v.useSteps.end())
      return where + ": its use steps are not ascending and distinct";
    for (Step u : v.useSteps)
      if (u < 0 || u >= n)
        return where + ": use step " + std::to_string(u) +
               " is outside the schedule";
    for (Step w : v.writeSteps)
      if (!std::binary_search(v.useSteps.begin(), v.useSteps.end(), w))
        return where + ": write step " + std::to_string(w) +
               " is not among its use steps";
    if (!v.writeSteps.empty() && v.kind != StepValueKind::State)
      return where + ": only state values are written in place";
    if (isArgument(v.kind) ? v.definingStep != -1
                           : v.definingStep < 0 || v.definingStep >= n)
      return where + ": bad defining step " + std::to_string(v.definingStep);
    for (Step u : v.useSteps)
      if (!isArgument(v.kind) && u <= v.definingStep)
        return where + ": used at step " + std::to_string(u) +
               ", not after its definition at step " +
               std::to_string(v.definingStep);
    if (v.kind == StepValueKind::Workspace && !v.useSteps.empty())
      return where + ": a workspace is used only by its own kernel";
    if (reserved(v) < v.size)
      return where + ": its size overflows when aligned";
  }
  return std::nullopt;
}

/// Splits v's uses into windows (a gap of more than one step starts a new
/// one). With `minimal`, every copy is issued right before its use and
/// waited right after it is issued; otherwise each copy gets the lead that
/// hides its transfer by the cost model, which reduceAt shortens when
/// memory is short.
std::vector<Window> Planner::makeWindows(int vi, bool minimal) const {
  const StepValue &v = p.values[vi];
  std::vector<Window> ws;
  double xfer = transferSeconds(v.size);
  // An output's first window is its kernel's, which writes it and has
  // nothing to prefetch; later uses read it back from the host.
  if (v.kind == StepValueKind::Output)
    ws.push_back({v.definingStep, v.definingStep, v.definingStep, -1, -1});
  for (Step u : v.useSteps) {
    if (ws.empty() || u > ws.back().lastUse + 1)
      ws.push_back({u, u, -1, u, -1});
    ws.back().lastUse = u;
    if (std::binary_search(v.writeSteps.begin(), v.writeSteps.end(), u))
      ws.back().lastWrite = u;
  }
  Step earliest = 0; // a prefetch reads the home after earlier offloads
  for (size_t i = 0; i < ws.size(); ++i) {
    Window &w = ws[i];
    if (w.prefetch >= 0) {
      Step issue = w.firstUse;
      while (!minimal && issue > earliest &&
             computeBetween(issue, w.firstUse) < xfer)
        --issue;
      w.prefetch = issue;
    }
    if (w.lastWrite >= 0) {
      // The next window's prefetch reads what this offload writes.
      Step latest = i + 1 < ws.size() ? ws[i + 1].firstUse : n;
      Step issue = w.lastWrite + 1, wait = issue;
      while (!minimal && wait < latest && computeBetween(issue, wait) < xfer)
        ++wait;
      w.offloadWait = wait;
      earliest = wait;
    }
  }
  return ws;
}

std::vector<std::pair<Step, Step>>
Planner::windowIntervals(const std::vector<Window> &ws) const {
  std::vector<std::pair<Step, Step>> out;
  for (const Window &w : ws) {
    Step first = w.prefetch >= 0 ? w.prefetch : w.firstUse;
    Step last = w.lastUse;
    // An offload's source stays until the kernel before its wait: copies
    // run in program order on one stream, so a later copy into these bytes
    // starts after it, and a kernel only after the wait.
    if (w.offloadWait >= 0)
      last = std::max(last, w.offloadWait - 1);
    out.push_back({clampStep(first), last});
  }
  return out;
}

std::vector<std::pair<Step, Step>> Planner::deviceIntervals(int vi) const {
  const StepValue &v = p.values[vi];
  Step lastUse = v.useSteps.empty() ? v.definingStep : v.useSteps.back();
  if (!onHost[vi]) {
    switch (v.kind) {
    case StepValueKind::Input: // consumed by the step
      return {{0, lastUse}};
    case StepValueKind::State: // kept for the next step
      return {{0, n - 1}};
    case StepValueKind::Output:
      return {{v.definingStep, n - 1}};
    case StepValueKind::Temp:
    case StepValueKind::Workspace:
      return {{v.definingStep, std::max(v.definingStep, lastUse)}};
    }
  }
  return windowIntervals(windows[vi]);
}

std::vector<std::pair<Step, Step>> Planner::hostIntervals(int vi) const {
  const StepValue &v = p.values[vi];
  if (!onHost[vi])
    return {};
  if (v.kind == StepValueKind::Output)
    return {{clampStep(v.definingStep + 1), n - 1}};
  if (v.kind == StepValueKind::Input)
    return {{0, v.useSteps.back()}};
  return {{0, n - 1}};
}

std::vector<uint64_t> Planner::deviceProfile() const {
  std::vector<uint64_t> live(n + 1, 0);
  std::vector<int64_t> delta(n + 1, 0);
  for (size_t vi = 0; vi < p.values.size(); ++vi) {
    uint64_t size = reserved(p.values[vi]);
    for (auto [first, last] : deviceIntervals(vi)) {
      delta[first] += size;
      delta[last + 1] -= size;
    }
  }
  int64_t acc = 0;
  for (Step s = 0; s < n; ++s)
    live[s] = acc += delta[s];
  live.pop_back();
  return live;
}

/// Frees device memory at step t: moves a value to the host, else shortens
/// a copy window. False when nothing live at t can leave it.
bool Planner::reduceAt(Step t) {
  auto covers = [&](const std::vector<std::pair<Step, Step>> &intervals) {
    return std::any_of(intervals.begin(), intervals.end(),
                       [&](auto i) { return i.first <= t && t <= i.second; });
  };
  auto nextUse = [&](int vi) {
    const StepValue &v = p.values[vi];
    auto it = std::upper_bound(v.useSteps.begin(), v.useSteps.end(), t);
    return it == v.useSteps.end() ? std::numeric_limits<Step>::max() : *it;
  };
  // Among the device-homed values live at t that a host home with the
  // shortest copy windows would take off step t: one that alone frees
  // enough if there is one, the one needed farthest in the future (Belady),
  // then the larger; else the one with the most bytes times steps to its
  // next use (size-aware Belady: a small value needed late frees little).
  uint64_t excess = excessAt(t);
  auto enough = [&](int vi) { return reserved(p.values[vi]) >= excess; };
  auto score = [&](int vi) {
    Step next = nextUse(vi);
    double distance = next == std::numeric_limits<Step>::max()
                          ? std::numeric_limits<double>::infinity()
                          : double(next - t);
    return distance * double(p.values[vi].size);
  };
  auto better = [&](int a, int b) {
    if (enough(a) != enough(b))
      return enough(a);
    if (!enough(a) && score(a) != score(b))
      return score(a) > score(b);
    if (nextUse(a) != nextUse(b))
      return nextUse(a) > nextUse(b);
    return p.values[a].size > p.values[b].size;
  };
  int best = -1;
  for (size_t vi = 0; vi < p.values.size(); ++vi) {
    int v = static_cast<int>(vi);
    if (onHost[vi] || !mayLiveOnHost(p.values[vi].kind) ||
        !covers(deviceIntervals(v)) || covers(shortestWindows[vi]))
      continue;
    if (best < 0 || better(v, best))
      best = v;
  }
  if (best >= 0 && (policy == Policy::ShrinkFirst || !enough(best)) &&
      shrinkWindowAt(t))
    return true;
  if (best >= 0) {
    onHost[best] = true;
    windows[best] = makeWindows(best, /*minimal=*/false);
    // ShrinkFirst moves a value to free step t: a copy window that would
    // still cover it (a prefetch whose lead reaches back to t, an offload
    // still running) starts after it or ends at it. EvictFirst keeps the
    // lead and shrinks it later, which overlaps more but, where transfers
    // are too long to hide, moves value after value off step t.
    for (Window &w : windows[best]) {
      if (policy != Policy::ShrinkFirst)
        break;
      if (w.prefetch >= 0 && w.firstUse > t)
        w.prefetch = std::max(w.prefetch, t + 1);
      if (w.offloadWait >= 0 && w.lastUse < t)
        w.offloadWait = std::min(w.offloadWait, t);
    }
    return true;
  }
  return shrinkWindowAt(t);
}

/// Shortens a copy window covering t: an offload's tail first (nothing
/// waits on it), else the prefetch needed latest.
bool Planner::shrinkWindowAt(Step t) {
  Window *prefetch = nullptr;
  for (size_t vi = 0; vi < p.values.size(); ++vi) {
    if (!onHost[vi])
      continue;
    for (Window &w : windows[vi]) {
      if (w.offloadWait >= 0 && w.lastUse < t && t <= w.offloadWait - 1) {
        w.offloadWait = t;
        return true;
      }
      if (w.prefetch >= 0 && w.prefetch <= t && t < w.firstUse &&
          (!prefetch || w.firstUse > prefetch->firstUse))
        prefetch = &w;
    }
  }
  if (!prefetch)
    return false;
  prefetch->prefetch = t + 1;
  return true;
}

std::string Planner::fragmented(Step t, uint64_t live) const {
  std::ostringstream os;
  os << "the device tier (" << formatBytes(p.deviceCapacity) << ") holds the "
     << formatBytes(live) << " that kernel '" << p.kernels[t].name << "' (step "
     << t
     << ") needs at once, but the planner found no offsets for them next to "
        "the buffers of the neighbouring steps; give a target with more "
        "device memory";
  return os.str();
}

std::string Planner::cannotFit(Step t,
                               const std::vector<uint64_t> &profile) const {
  std::vector<std::pair<uint64_t, std::string>> live;
  for (size_t vi = 0; vi < p.values.size(); ++vi)
    for (auto [first, last] : deviceIntervals(vi))
      if (first <= t && t <= last)
        live.push_back({p.values[vi].size, p.values[vi].name});
  std::sort(live.begin(), live.end(), std::greater<>());
  std::ostringstream os;
  os << "the device tier (" << formatBytes(p.deviceCapacity)
     << ") cannot hold what kernel '" << p.kernels[t].name << "' (step " << t
     << ") needs at once: " << formatBytes(profile[t]) << " in";
  for (size_t i = 0; i < live.size() && i < 8; ++i)
    os << (i ? ", '" : " '") << live[i].second << "' ("
       << formatBytes(live[i].first) << ")";
  if (live.size() > 8)
    os << " and " << live.size() - 8 << " more";
  os << "; kernels read and write only the device tier, so give a target "
        "with more device memory or split the kernel's operands";
  return os.str();
}

MemoryPlan Planner::assemble() const {
  MemoryPlan plan;
  plan.useBuffer.resize(p.values.size());
  plan.defBuffer.assign(p.values.size(), -1);
  PlanTier kernelTier = p.hasDevice ? PlanTier::Device : PlanTier::Host;
  auto add = [&](int vi, PlanTier tier, std::pair<Step, Step> live, bool home) {
    plan.buffers.push_back({vi, tier, 0, live.first, live.second, home});
    return static_cast<int>(plan.buffers.size()) - 1;
  };
  for (size_t vi = 0; vi < p.values.size(); ++vi) {
    const StepValue &v = p.values[vi];
    int def = -1;
    if (!onHost[vi]) {
      std::pair<Step, Step> live = deviceIntervals(vi).front();
      int b = add(vi, kernelTier, live, true);
      plan.useBuffer[vi].assign(v.useSteps.size(), b);
      if (!isArgument(v.kind))
        def = b;
      plan.defBuffer[vi] = def;
      continue;
    }
    int home = add(vi, PlanTier::Host, hostIntervals(vi).front(), true);
    plan.useBuffer[vi].assign(v.useSteps.size(), -1);
    std::vector<std::pair<Step, Step>> dev = deviceIntervals(vi);
    for (size_t wi = 0; wi < windows[vi].size(); ++wi) {
      const Window &w = windows[vi][wi];
      int copy = add(vi, PlanTier::Device, dev[wi], false);
      for (size_t k = 0; k < v.useSteps.size(); ++k)
        if (v.useSteps[k] >= w.firstUse && v.useSteps[k] <= w.lastUse)
          plan.useBuffer[vi][k] = copy;
      if (v.kind == StepValueKind::Output && wi == 0)
        def = copy;
      if (w.prefetch >= 0)
        plan.copies.push_back({static_cast<int>(vi), true, home, copy,
                               w.prefetch, w.firstUse, transferSeconds(v.size),
                               0});
      if (w.offloadWait >= 0)
        plan.copies.push_back({static_cast<int>(vi), false, copy, home,
                               w.lastWrite + 1, w.offloadWait,
                               transferSeconds(v.size), 0});
    }
    plan.defBuffer[vi] = def;
  }
  // Program order. At one position offloads go first: the copy stream is
  // FIFO, so a prefetch into bytes an offload frees there runs after it.
  std::stable_sort(plan.copies.begin(), plan.copies.end(),
                   [](const PlannedCopy &a, const PlannedCopy &b) {
                     return std::make_tuple(a.issue, a.prefetch, a.wait) <
                            std::make_tuple(b.issue, b.prefetch, b.wait);
                   });
  for (const PlannedCopy &c : plan.copies)
    plan.bytesMoved += p.values[c.value].size;
  return plan;
}

/// Offsets for the buffers of one tier; returns the tier's summary.
TierSummary placeTier(const MemoryPlanProblem &p, MemoryPlan &plan,
                      PlanTier tier, uint64_t capacity) {
  std::vector<ArenaBuffer> arena;
  std::vector<int> index;
  for (size_t i = 0; i < plan.buffers.size(); ++i) {
    const PlacedBuffer &b = plan.buffers[i];
    if (b.tier != tier)
      continue;
    arena.push_back({p.values[b.value].name, p.values[b.value].size,
                     p.alignment, b.firstStep, b.lastStep});
    index.push_back(static_cast<int>(i));
  }
  ArenaPlan placed = planArena(arena);
  for (size_t i = 0; i < index.size(); ++i)
    plan.buffers[index[i]].offset = placed.offsets[i];
  return {capacity, placed.peak, placed.lowerBound};
}

std::variant<MemoryPlan, std::string> Planner::run() {
  if (std::optional<std::string> err = checkProblem())
    return *err;
  onHost.assign(p.values.size(), false);
  windows.assign(p.values.size(), {});
  timeBefore.assign(n + 1, 0);
  for (Step s = 0; s < n; ++s)
    timeBefore[s + 1] = timeBefore[s] + p.kernels[s].seconds;
  for (size_t vi = 0; vi < p.values.size(); ++vi)
    shortestWindows.push_back(
        windowIntervals(makeWindows(int(vi), /*minimal=*/true)));

  MemoryPlan plan;
  if (p.hasDevice) {
    // Live bytes allowed per step; lowered where offsets do not fit.
    std::vector<uint64_t> budget(n, p.deviceCapacity);
    std::vector<bool> stuck(n, false);
    for (;;) {
      std::vector<uint64_t> profile = deviceProfile();
      Step t = 0;
      while (t < n && profile[t] <= budget[t])
        ++t;
      if (t < n) {
        excess.assign(n, 0);
        excess[t] = profile[t] - budget[t];
        if (reduceAt(t))
          continue;
        if (budget[t] == p.deviceCapacity)
          return cannotFit(t, profile);
        // Nothing more can leave this step: leave its offsets to the other
        // steps' reductions.
        stuck[t] = true;
        budget[t] = p.deviceCapacity;
        continue;
      }
      plan = assemble();
      TierSummary device =
          placeTier(p, plan, PlanTier::Device, p.deviceCapacity);
      if (device.peak <= p.deviceCapacity) {
        plan.tiers.push_back(device);
        break;
      }
      // Fragmentation: the live bytes fit but the offsets do not. Lower the
      // budget by the excess at the steps where a buffer ends beyond the
      // capacity, and free more there.
      uint64_t excess = device.peak - p.deviceCapacity;
      Step lowered = -1, beyond = 0;
      for (const PlacedBuffer &b : plan.buffers)
        if (b.tier == PlanTier::Device &&
            b.offset + p.values[b.value].size > p.deviceCapacity)
          for (Step s = b.firstStep; s <= b.lastStep; ++s) {
            beyond = s;
            if (stuck[s] ||
                budget[s] <= profile[s] - std::min(excess, profile[s]))
              continue;
            budget[s] = profile[s] - std::min(excess, profile[s]);
            lowered = s;
          }
      if (lowered < 0)
        return fragmented(beyond, profile[beyond]);
    }
  } else {
    plan = assemble();
  }

  plan.tiers.push_back(placeTier(p, plan, PlanTier::Host, p.hostCapacity));
  if (plan.tiers.back().peak > p.hostCapacity)
    return "the host tier (" + formatBytes(p.hostCapacity) +
           ") cannot hold the buffers placed in it: the plan needs " +
           formatBytes(plan.tiers.back().peak) + " (at least " +
           formatBytes(plan.tiers.back().lowerBound) + " live at once)";
  predictStepTime(p, plan);
  return plan;
}

} // namespace

std::variant<MemoryPlan, std::string>
planMemory(const MemoryPlanProblem &problem) {
  // Both policies, and the plan predicted fastest (then moving fewer bytes).
  // Where one fails the other cannot succeed by more than its luck with
  // fragmentation, so the first failure is the answer only if both fail.
  std::variant<MemoryPlan, std::string> best =
      Planner(problem, Policy::EvictFirst).run();
  if (!problem.hasDevice)
    return best;
  std::variant<MemoryPlan, std::string> other =
      Planner(problem, Policy::ShrinkFirst).run();
  auto *a = std::get_if<MemoryPlan>(&best);
  auto *b = std::get_if<MemoryPlan>(&other);
  if (b && (!a || std::make_pair(b->stepSeconds, b->bytesMoved) <
                      std::make_pair(a->stepSeconds, a->bytesMoved)))
    return other;
  return best;
}

void predictStepTime(const MemoryPlanProblem &p, MemoryPlan &plan) {
  const Step n = static_cast<Step>(p.kernels.size());
  std::vector<double> copyEnd(plan.copies.size(), 0);
  double streamFree = 0, kernelsEnd = 0, sum = 0;
  size_t next = 0; // copies are in program order
  for (Step pos = 0; pos <= n; ++pos) {
    // Copies issued here start when the program reaches this position.
    for (; next < plan.copies.size() && plan.copies[next].issue == pos;
         ++next) {
      double start = std::max(kernelsEnd, streamFree);
      copyEnd[next] = streamFree = start + plan.copies[next].transferSeconds;
    }
    std::vector<size_t> waited;
    for (size_t c = 0; c < plan.copies.size(); ++c)
      if (plan.copies[c].wait == pos)
        waited.push_back(c);
    std::sort(waited.begin(), waited.end(),
              [&](size_t a, size_t b) { return copyEnd[a] < copyEnd[b]; });
    double ready = kernelsEnd;
    for (size_t c : waited) {
      plan.copies[c].exposedSeconds = std::max(0.0, copyEnd[c] - ready);
      ready = std::max(ready, copyEnd[c]);
    }
    if (pos < n) {
      kernelsEnd = ready + p.kernels[pos].seconds;
      sum += p.kernels[pos].seconds;
    } else {
      kernelsEnd = ready;
    }
  }
  plan.stepSeconds = kernelsEnd;
  plan.noOffloadSeconds = sum;
}

std::optional<std::string> verifyMemoryPlan(const MemoryPlanProblem &p,
                                            const MemoryPlan &plan) {
  const Step n = static_cast<Step>(p.kernels.size());
  const size_t numTiers = p.hasDevice ? 2 : 1;
  if (plan.tiers.size() != numTiers)
    return "the plan has " + std::to_string(plan.tiers.size()) +
           " tiers, expected " + std::to_string(numTiers);
  if (plan.useBuffer.size() != p.values.size() ||
      plan.defBuffer.size() != p.values.size())
    return std::string("the plan does not map every value's uses");
  auto tierIndex = [&](PlanTier t) {
    return p.hasDevice && t == PlanTier::Host ? 1 : 0;
  };
  auto tierName = [&](PlanTier t) {
    return t == PlanTier::Device ? std::string("device") : std::string("host");
  };
  PlanTier kernelTier = p.hasDevice ? PlanTier::Device : PlanTier::Host;
  for (const PlacedBuffer &b : plan.buffers) {
    if (b.value < 0 || size_t(b.value) >= p.values.size())
      return std::string("a buffer names no value");
    if (!p.hasDevice && b.tier == PlanTier::Device)
      return "buffer of '" + p.values[b.value].name +
             "' is in the device tier of a host-only target";
    if (b.offset % p.alignment)
      return "buffer of '" + p.values[b.value].name + "' at offset " +
             std::to_string(b.offset) + " is not " +
             std::to_string(p.alignment) + "-byte aligned";
    if (b.firstStep < 0 || b.lastStep >= n || b.lastStep < b.firstStep)
      return "buffer of '" + p.values[b.value].name +
             "' has a bad live interval";
  }
  // 1. Per tier: no overlap while live, within capacity.
  for (PlanTier tier : {PlanTier::Device, PlanTier::Host}) {
    if (tier == PlanTier::Device && !p.hasDevice)
      continue;
    std::vector<ArenaBuffer> arena;
    ArenaPlan offsets;
    for (const PlacedBuffer &b : plan.buffers)
      if (b.tier == tier) {
        arena.push_back({p.values[b.value].name + " (" + tierName(tier) + ")",
                         p.values[b.value].size, p.alignment, b.firstStep,
                         b.lastStep});
        offsets.offsets.push_back(b.offset);
      }
    const TierSummary &summary = plan.tiers[tierIndex(tier)];
    offsets.peak = summary.peak;
    if (std::optional<std::string> err =
            verifyArenaPlan(arena, offsets, summary.capacity))
      return tierName(tier) + " tier: " + *err;
  }
  auto liveAt = [&](int b, Step s) {
    return plan.buffers[b].firstStep <= s && s <= plan.buffers[b].lastStep;
  };
  auto copyInto = [&](int b) -> const PlannedCopy * {
    for (const PlannedCopy &c : plan.copies)
      if (c.destination == b)
        return &c;
    return nullptr;
  };
  // Copies: between two instances of their value, in order, sources live
  // while the copy runs and destinations from its issue on.
  for (const PlannedCopy &c : plan.copies) {
    const std::string &name = p.values[c.value].name;
    if (c.source < 0 || c.destination < 0 ||
        size_t(c.source) >= plan.buffers.size() ||
        size_t(c.destination) >= plan.buffers.size() ||
        plan.buffers[c.source].value != c.value ||
        plan.buffers[c.destination].value != c.value ||
        plan.buffers[c.source].tier == plan.buffers[c.destination].tier)
      return "a copy of '" + name + "' does not join two tiers of that value";
    if (c.issue < 0 || c.wait < c.issue || c.wait > n)
      return "the copy of '" + name + "' is issued at " +
             std::to_string(c.issue) + " and waited at " +
             std::to_string(c.wait);
    Step first = std::min(c.issue, n - 1);
    if (c.wait > c.issue &&
        (!liveAt(c.source, c.issue) || !liveAt(c.source, c.wait - 1)))
      return "the source of the copy of '" + name +
             "' is not live while the copy runs (steps " +
             std::to_string(c.issue) + ".." + std::to_string(c.wait - 1) + ")";
    if (!liveAt(c.destination, first))
      return "the destination of the copy of '" + name +
             "' is not live when the copy is issued (" +
             std::to_string(c.issue) + ")";
  }
  // 2. Every use reads a live instance in the kernels' tier, copied in
  // before it.
  for (size_t vi = 0; vi < p.values.size(); ++vi) {
    const StepValue &v = p.values[vi];
    if (plan.useBuffer[vi].size() != v.useSteps.size())
      return "the uses of '" + v.name + "' are not mapped to buffers";
    std::vector<std::pair<Step, int>> accesses;
    if (plan.defBuffer[vi] >= 0)
      accesses.push_back({v.definingStep, plan.defBuffer[vi]});
    else if (!isArgument(v.kind))
      return "the kernel defining '" + v.name + "' writes no buffer";
    for (size_t k = 0; k < v.useSteps.size(); ++k)
      accesses.push_back({v.useSteps[k], plan.useBuffer[vi][k]});
    for (auto [s, b] : accesses) {
      if (b < 0 || size_t(b) >= plan.buffers.size() ||
          plan.buffers[b].value != int(vi))
        return "step " + std::to_string(s) + " reads no buffer of '" + v.name +
               "'";
      if (plan.buffers[b].tier != kernelTier)
        return "kernel '" + p.kernels[s].name + "' (step " + std::to_string(s) +
               ") reads '" + v.name + "' from the " +
               tierName(plan.buffers[b].tier) + " tier; kernels read the " +
               tierName(kernelTier) + " tier";
      if (!liveAt(b, s))
        return "kernel '" + p.kernels[s].name + "' (step " + std::to_string(s) +
               ") reads '" + v.name + "' outside that buffer's live interval";
      if (const PlannedCopy *c = copyInto(b); c && c->wait > s)
        return "kernel '" + p.kernels[s].name + "' (step " + std::to_string(s) +
               ") reads '" + v.name +
               "' before its prefetch is waited (position " +
               std::to_string(c->wait) + ")";
      if (!plan.buffers[b].home && !copyInto(b) && b != plan.defBuffer[vi])
        return "kernel '" + p.kernels[s].name + "' reads a copy of '" + v.name +
               "' that nothing fills";
    }
    // 3. What a kernel writes outside the home goes back to the home.
    int home = -1;
    for (size_t b = 0; b < plan.buffers.size(); ++b)
      if (plan.buffers[b].value == int(vi) && plan.buffers[b].home)
        home = home < 0 ? int(b) : -2;
    if (home < 0)
      return "'" + v.name + "' has " +
             std::string(home == -1 ? "no home" : "two homes");
    std::vector<std::pair<Step, int>> writes;
    if (v.kind == StepValueKind::Output)
      writes.push_back({v.definingStep, plan.defBuffer[vi]});
    for (Step w : v.writeSteps)
      for (size_t k = 0; k < v.useSteps.size(); ++k)
        if (v.useSteps[k] == w)
          writes.push_back({w, plan.useBuffer[vi][k]});
    for (auto [s, b] : writes) {
      if (b == home)
        continue;
      bool back = false;
      for (const PlannedCopy &c : plan.copies)
        back |= c.source == b && c.destination == home && c.issue > s;
      if (!back)
        return "'" + v.name + "' is written at step " + std::to_string(s) +
               " in a copy that is never offloaded to its home";
    }
    // A prefetch reads the home only after earlier offloads reached it.
    for (const PlannedCopy &pre : plan.copies) {
      if (pre.value != int(vi) || !pre.prefetch)
        continue;
      for (const PlannedCopy &off : plan.copies)
        if (off.value == int(vi) && !off.prefetch && off.issue <= pre.issue &&
            off.wait > pre.issue)
          return "the prefetch of '" + v.name + "' at " +
                 std::to_string(pre.issue) +
                 " reads the home before the offload waited at " +
                 std::to_string(off.wait) + " completes";
    }
  }
  return std::nullopt;
}

} // namespace attnc
