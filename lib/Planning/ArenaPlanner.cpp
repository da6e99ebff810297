//===- ArenaPlanner.cpp - offsets of buffers in one arena -----------------===//
//
// Greedy best-fit placement in the style of XLA's heap simulator
// (GlobalDecreasingSizeBestFitHeap) and TVM's unified static memory planner
// (greedy orderings, then a hill climb on the ordering). See
// docs/memory-planning.md.
//
//===----------------------------------------------------------------------===//

#include "attnc/Planning/ArenaPlanner.h"
#include "attnc/Planning/SplitMix.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <numeric>
#include <tuple>
#include <utility>

using namespace attnc;

namespace {

uint64_t roundUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

bool liveTogether(const ArenaBuffer &a, const ArenaBuffer &b) {
  return a.firstStep <= b.lastStep && b.firstStep <= a.lastStep;
}

uint64_t lifetime(const ArenaBuffer &b) {
  return static_cast<uint64_t>(b.lastStep - b.firstStep) + 1;
}

std::string quoted(const ArenaBuffer &b) { return "'" + b.name + "'"; }

std::string range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

std::string steps(int64_t first, int64_t last) {
  return first == last
             ? "step " + std::to_string(first)
             : "steps " + std::to_string(first) + ".." + std::to_string(last);
}

/// Places buffers one at a time in a given order. Keeps, per prefix of the
/// order, the offsets and the running peak, so a changed order is re-placed
/// only from its first changed position.
class Placer {
public:
  explicit Placer(const std::vector<ArenaBuffer> &buffers)
      : buffers(buffers), reserved(buffers.size()), conflicts(buffers.size()),
        offsets(buffers.size()), position(buffers.size()),
        prefixPeak(buffers.size() + 1) {
    for (size_t i = 0; i < buffers.size(); ++i)
      reserved[i] = reservedSize(buffers[i]);
    // Zero-size buffers take no space and constrain nobody.
    for (size_t i = 0; i < buffers.size(); ++i)
      for (size_t j = i + 1; j < buffers.size(); ++j)
        if (reserved[i] && reserved[j] &&
            liveTogether(buffers[i], buffers[j])) {
          conflicts[i].push_back(j);
          conflicts[j].push_back(i);
        }
  }

  /// Places order[from..] after order[..from), which must be placed already
  /// in this order. Returns the peak, or stops at the first placement whose
  /// end exceeds `limit` (the peak only grows) and returns that end.
  uint64_t place(const std::vector<size_t> &order, size_t from,
                 uint64_t limit = std::numeric_limits<uint64_t>::max()) {
    for (size_t k = from; k < order.size(); ++k)
      position[order[k]] = k;
    for (size_t k = from; k < order.size(); ++k) {
      size_t b = order[k];
      busy.clear();
      for (size_t o : conflicts[b])
        if (position[o] < k)
          busy.emplace_back(offsets[o], offsets[o] + reserved[o]);
      std::sort(busy.begin(), busy.end());
      offsets[b] = reserved[b] ? bestFit(b, prefixPeak[k]) : 0;
      prefixPeak[k + 1] = std::max(prefixPeak[k], offsets[b] + reserved[b]);
      if (prefixPeak[k + 1] > limit)
        return prefixPeak[k + 1];
    }
    return prefixPeak[order.size()];
  }

  /// What place() changes, to undo a rejected re-placement.
  struct Snapshot {
    std::vector<uint64_t> offsets, prefixPeak;
    std::vector<size_t> position;
  };
  void save(Snapshot &snapshot) const {
    snapshot.offsets = offsets;
    snapshot.prefixPeak = prefixPeak;
    snapshot.position = position;
  }
  void restore(Snapshot &snapshot) {
    offsets.swap(snapshot.offsets);
    prefixPeak.swap(snapshot.prefixPeak);
    position.swap(snapshot.position);
  }

  const std::vector<uint64_t> &getOffsets() const { return offsets; }
  uint64_t getReserved(size_t b) const { return reserved[b]; }
  uint64_t end(size_t b) const { return offsets[b] + reserved[b]; }
  size_t positionOf(size_t b) const { return position[b]; }
  const std::vector<size_t> &getConflicts(size_t b) const {
    return conflicts[b];
  }

private:
  /// The lowest offset of the smallest gap that holds buffer `b` at its
  /// alignment. Gaps are the address ranges free at every step of b's
  /// interval (`busy`, sorted); the space between the highest busy range and
  /// the current peak is a gap too, since using it does not grow the arena.
  /// When nothing fits, b goes on top of the highest busy range.
  uint64_t bestFit(size_t b, uint64_t peak) const {
    uint64_t size = reserved[b], alignment = buffers[b].alignment;
    uint64_t best = 0, bestWaste = std::numeric_limits<uint64_t>::max();
    bool found = false;
    auto consider = [&](uint64_t begin, uint64_t end) {
      uint64_t start = roundUp(begin, alignment);
      if (start >= end || end - start < size)
        return;
      uint64_t waste = (end - begin) - size;
      if (!found || waste < bestWaste) {
        found = true;
        best = start;
        bestWaste = waste;
      }
    };
    uint64_t cursor = 0;
    for (const auto &[begin, end] : busy) {
      if (begin > cursor)
        consider(cursor, begin);
      cursor = std::max(cursor, end);
    }
    if (peak > cursor)
      consider(cursor, peak);
    return found ? best : roundUp(cursor, alignment);
  }

  const std::vector<ArenaBuffer> &buffers;
  std::vector<uint64_t> reserved;
  std::vector<std::vector<size_t>> conflicts;
  std::vector<uint64_t> offsets;
  std::vector<size_t> position;
  std::vector<uint64_t> prefixPeak;
  std::vector<std::pair<uint64_t, uint64_t>> busy;
};

/// The greedy orderings tried; the first is the classic one (decreasing size,
/// longer lifetime first) and wins ties.
std::vector<std::vector<size_t>>
greedyOrderings(const std::vector<ArenaBuffer> &buffers, const Placer &placer) {
  size_t n = buffers.size();
  std::vector<size_t> identity(n);
  std::iota(identity.begin(), identity.end(), 0);
  auto sorted = [&](auto key) {
    std::vector<size_t> order = identity;
    // Keys are tuples ending in the index, so the order is total.
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return key(a) > key(b); });
    return order;
  };
  auto size = [&](size_t i) { return placer.getReserved(i); };
  auto life = [&](size_t i) { return lifetime(buffers[i]); };
  auto minusIndex = [](size_t i) { return -static_cast<int64_t>(i); };

  // Conflict weight: the bytes live together with a buffer at some step.
  // Buffers under the most pressure go first (TVM's greedy-by-conflicts).
  std::vector<uint64_t> pressure(n);
  for (size_t i = 0; i < n; ++i) {
    pressure[i] = size(i);
    for (size_t o : placer.getConflicts(i))
      pressure[i] += size(o);
  }

  std::vector<std::vector<size_t>> orders;
  orders.push_back(sorted([&](size_t i) {
    return std::make_tuple(size(i), life(i), -buffers[i].firstStep,
                           minusIndex(i));
  }));
  // Area in bytes x steps; long double since the product can exceed 64 bits.
  orders.push_back(sorted([&](size_t i) {
    return std::make_tuple(static_cast<long double>(size(i)) * life(i), size(i),
                           minusIndex(i));
  }));
  orders.push_back(sorted([&](size_t i) {
    return std::make_tuple(life(i), size(i), -buffers[i].firstStep,
                           minusIndex(i));
  }));
  orders.push_back(sorted([&](size_t i) {
    return std::make_tuple(pressure[i], size(i), minusIndex(i));
  }));
  // By start, the way a linear scan allocator sees the buffers.
  orders.push_back(sorted([&](size_t i) {
    return std::make_tuple(-buffers[i].firstStep, size(i), minusIndex(i));
  }));
  return orders;
}

} // namespace

uint64_t attnc::reservedSize(const ArenaBuffer &buffer) {
  return roundUp(buffer.size, buffer.alignment);
}

uint64_t attnc::arenaLowerBound(const std::vector<ArenaBuffer> &buffers) {
  // Sweep over interval ends: +size at firstStep, -size after lastStep.
  // Ends sort before starts at the same coordinate (lastStep + 1 is free).
  std::vector<std::tuple<int64_t, int, uint64_t>> sweep;
  sweep.reserve(2 * buffers.size());
  for (const ArenaBuffer &b : buffers) {
    uint64_t size = reservedSize(b);
    if (!size)
      continue;
    sweep.emplace_back(b.firstStep, 1, size);
    sweep.emplace_back(b.lastStep + 1, 0, size);
  }
  std::sort(sweep.begin(), sweep.end());
  uint64_t live = 0, peak = 0;
  for (const auto &[step, isStart, size] : sweep) {
    live = isStart ? live + size : live - size;
    peak = std::max(peak, live);
  }
  return peak;
}

std::optional<std::string>
attnc::checkArenaBuffers(const std::vector<ArenaBuffer> &buffers) {
  for (const ArenaBuffer &b : buffers) {
    if (b.alignment == 0)
      return "buffer " + quoted(b) + " has alignment 0";
    if (b.lastStep < b.firstStep)
      return "buffer " + quoted(b) + " ends at step " +
             std::to_string(b.lastStep) + " before it starts at step " +
             std::to_string(b.firstStep);
    if (b.lastStep == std::numeric_limits<int64_t>::max())
      return "buffer " + quoted(b) + " ends at the last representable step";
    if (b.size > std::numeric_limits<uint64_t>::max() - (b.alignment - 1))
      return "buffer " + quoted(b) + " of " + std::to_string(b.size) +
             " bytes overflows when rounded up to its alignment " +
             std::to_string(b.alignment);
  }
  return std::nullopt;
}

ArenaPlan attnc::planArena(const std::vector<ArenaBuffer> &buffers,
                           const ArenaPlannerOptions &options) {
  assert(!checkArenaBuffers(buffers) && "invalid buffers; checkArenaBuffers");
  ArenaPlan plan;
  plan.lowerBound = arenaLowerBound(buffers);
  if (buffers.empty())
    return plan;

  Placer placer(buffers);
  std::vector<size_t> bestOrder;
  uint64_t bestPeak = std::numeric_limits<uint64_t>::max();
  for (std::vector<size_t> &order : greedyOrderings(buffers, placer)) {
    uint64_t peak = placer.place(order, 0, bestPeak);
    if (peak < bestPeak) {
      bestPeak = peak;
      bestOrder = std::move(order);
    }
    if (bestPeak == plan.lowerBound)
      break;
  }

  // Hill climb on the ordering. A buffer that ends at the peak sits on top
  // of buffers placed before it and live with it: either move it to a random
  // earlier position, or move one of those buffers under it to a random later
  // one, and re-place from the first changed position. Equal peaks are
  // accepted too, to walk plateaus.
  placer.place(bestOrder, 0);
  std::vector<size_t> order = bestOrder;
  std::vector<size_t> atPeak, under;
  Placer::Snapshot snapshot;
  Rng rng{0x5eed0f4a11ea7e5ULL ^ buffers.size()};
  for (unsigned step = 0;
       step < options.improvementSteps && bestPeak > plan.lowerBound; ++step) {
    atPeak.clear();
    for (size_t k = 1; k < order.size(); ++k)
      if (placer.end(order[k]) == bestPeak)
        atPeak.push_back(k);
    if (atPeak.empty())
      break; // only the first buffer reaches the peak: nothing to move
    size_t top = atPeak[rng.below(atPeak.size())];
    under.clear();
    for (size_t o : placer.getConflicts(order[top]))
      if (placer.positionOf(o) < top)
        under.push_back(placer.positionOf(o));
    size_t first;
    placer.save(snapshot);
    if (under.empty() || rng.below(2)) {
      first = rng.below(top);
      std::rotate(order.begin() + first, order.begin() + top,
                  order.begin() + top + 1);
    } else {
      first = under[rng.below(under.size())];
      size_t to = first + 1 + rng.below(order.size() - first - 1);
      std::rotate(order.begin() + first, order.begin() + first + 1,
                  order.begin() + to + 1);
    }
    uint64_t peak = placer.place(order, first, bestPeak);
    if (peak <= bestPeak) {
      bestPeak = peak;
      bestOrder = order;
    } else {
      order = bestOrder;
      placer.restore(snapshot);
    }
  }

  plan.offsets = placer.getOffsets();
  plan.peak = bestPeak;
  return plan;
}

std::optional<std::string>
attnc::verifyArenaPlan(const std::vector<ArenaBuffer> &buffers,
                       const ArenaPlan &plan,
                       std::optional<uint64_t> capacity) {
  if (plan.offsets.size() != buffers.size())
    return "the plan has " + std::to_string(plan.offsets.size()) +
           " offsets for " + std::to_string(buffers.size()) + " buffers";
  if (std::optional<std::string> error = checkArenaBuffers(buffers))
    return error;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const ArenaBuffer &b = buffers[i];
    uint64_t offset = plan.offsets[i];
    if (offset % b.alignment)
      return "buffer " + quoted(b) + " at offset " + std::to_string(offset) +
             " is not aligned to " + std::to_string(b.alignment);
    if (offset > plan.peak || plan.peak - offset < b.size)
      return "buffer " + quoted(b) + " at " + range(offset, offset + b.size) +
             " (" + steps(b.firstStep, b.lastStep) + ") ends beyond the peak " +
             std::to_string(plan.peak);
  }
  // Sorted by offset, each buffer need only be compared with the later ones
  // that start before it ends.
  std::vector<size_t> byOffset;
  for (size_t i = 0; i < buffers.size(); ++i)
    if (buffers[i].size)
      byOffset.push_back(i);
  std::sort(byOffset.begin(), byOffset.end(), [&](size_t a, size_t b) {
    return std::make_pair(plan.offsets[a], a) <
           std::make_pair(plan.offsets[b], b);
  });
  for (size_t x = 0; x < byOffset.size(); ++x) {
    const ArenaBuffer &a = buffers[byOffset[x]];
    uint64_t aBegin = plan.offsets[byOffset[x]], aEnd = aBegin + a.size;
    for (size_t y = x + 1; y < byOffset.size(); ++y) {
      const ArenaBuffer &b = buffers[byOffset[y]];
      uint64_t bBegin = plan.offsets[byOffset[y]];
      if (bBegin >= aEnd)
        break;
      if (liveTogether(a, b))
        return "buffers " + quoted(a) + " at " + range(aBegin, aEnd) + " and " +
               quoted(b) + " at " + range(bBegin, bBegin + b.size) +
               " overlap while both are live (" +
               steps(std::max(a.firstStep, b.firstStep),
                     std::min(a.lastStep, b.lastStep)) +
               ")";
    }
  }
  if (capacity && plan.peak > *capacity) {
    // Name the buffer reaching highest, when a buffer (not padding) is over.
    size_t top = 0;
    for (size_t i = 1; i < buffers.size(); ++i)
      if (plan.offsets[i] + buffers[i].size >
          plan.offsets[top] + buffers[top].size)
        top = i;
    std::string peak = "the arena's peak " + std::to_string(plan.peak) +
                       " exceeds the capacity " + std::to_string(*capacity);
    if (buffers.empty() || plan.offsets[top] + buffers[top].size <= *capacity)
      return peak;
    const ArenaBuffer &b = buffers[top];
    uint64_t end = plan.offsets[top] + b.size;
    return peak + ": buffer " + quoted(b) + " at " +
           range(plan.offsets[top], end) + " (" +
           steps(b.firstStep, b.lastStep) + ") is beyond it";
  }
  return std::nullopt;
}
