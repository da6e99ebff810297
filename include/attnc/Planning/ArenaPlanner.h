//===- ArenaPlanner.h - offsets of buffers in one arena -----------*- C++ -*-//
//
// The module-level arena allocator core of the memory planner (DESIGN.md
// section 5, issue 6): given buffers with a size, an alignment and a live
// interval in a schedule of steps, it gives every buffer an offset in one
// arena so that buffers live at the same step never share an address. Pure
// C++17 without LLVM/MLIR so that the runtime can use it too. See
// docs/memory-planning.md.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_ARENAPLANNER_H
#define ATTNC_PLANNING_ARENAPLANNER_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnc {

/// A buffer to place: live from step `firstStep` to step `lastStep`, both
/// inclusive. Every buffer reserves its size rounded up to its alignment
/// (`reservedSize`), so that the lower bound is exact for the planner's model.
struct ArenaBuffer {
  std::string name;
  uint64_t size = 0;      // bytes; 0 is allowed and occupies nothing
  uint64_t alignment = 1; // bytes, >= 1; the offset is a multiple of it
  int64_t firstStep = 0;
  int64_t lastStep = 0;
};

/// The result of planArena: `offsets[i]` belongs to `buffers[i]`.
struct ArenaPlan {
  std::vector<uint64_t> offsets;
  /// The arena's size: the end of the highest reserved range.
  uint64_t peak = 0;
  /// The maximum over steps of the sum of the live buffers' reserved sizes;
  /// no plan of these buffers can have a smaller peak.
  uint64_t lowerBound = 0;
};

struct ArenaPlannerOptions {
  /// Re-placements tried by the improvement pass after the greedy orderings
  /// (0 keeps the best greedy plan). Each costs at most one greedy placement.
  unsigned improvementSteps = 256;
};

/// `size` rounded up to `alignment`: what a buffer occupies in the plan.
uint64_t reservedSize(const ArenaBuffer &buffer);

/// The maximum over steps of the sum of the live buffers' reserved sizes.
uint64_t arenaLowerBound(const std::vector<ArenaBuffer> &buffers);

/// Why `buffers` cannot be planned (alignment 0, lastStep < firstStep, a size
/// that overflows when rounded up), or nullopt when they can.
std::optional<std::string>
checkArenaBuffers(const std::vector<ArenaBuffer> &buffers);

/// Places `buffers` in one arena. Greedy by size (ties: longer lifetime first)
/// with best fit among the gaps free over a buffer's whole interval, repeated
/// for other orderings, then a hill climb on the best ordering that moves a
/// buffer at the peak earlier or a buffer under it later; the best plan wins.
/// Deterministic. The buffers must pass checkArenaBuffers.
ArenaPlan planArena(const std::vector<ArenaBuffer> &buffers,
                    const ArenaPlannerOptions &options = {});

/// Checks `plan` against `buffers`: one offset per buffer; every offset a
/// multiple of its buffer's alignment; every buffer within `plan.peak`; no two
/// buffers live at a common step share a byte; `plan.peak <= *capacity` when
/// given. Returns the first violation, naming the buffers and steps, or
/// nullopt. Checks the real byte ranges [offset, offset + size), so it also
/// accepts plans that do not reserve the padding.
std::optional<std::string>
verifyArenaPlan(const std::vector<ArenaBuffer> &buffers, const ArenaPlan &plan,
                std::optional<uint64_t> capacity = std::nullopt);

} // namespace attnc

#endif // ATTNC_PLANNING_ARENAPLANNER_H
