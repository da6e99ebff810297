//===- MemoryPlanner.h - placement of a step's buffers across tiers -*- C++
//-*-//
//
// The module-level memory planner (DESIGN.md section 5, issue 6): for one
// step (a straight-line schedule of kernels) it decides which tier every
// buffer lives in, at which offset, and when it moves. Kernels read and write
// the device tier; buffers that do not fit there live in the host tier and
// are prefetched before their uses (and offloaded after their last write)
// by asynchronous copies placed so that transfers overlap the kernels before
// them. Pure C++17 like the arena planner. See docs/memory-planning.md.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PLANNING_MEMORYPLANNER_H
#define ATTNC_PLANNING_MEMORYPLANNER_H

#include "attnc/Planning/ArenaPlanner.h"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace attnc {

/// What a value is to the step; decides its lifetime and whether it may live
/// in the host tier.
enum class StepValueKind {
  Input,     // a step argument the kernels only read; consumed by the step
  State,     // a step argument kept for the next step (a KV cache)
  Output,    // a value the step returns
  Temp,      // produced and consumed inside the step
  Workspace, // a kernel's internal scratch, live during that kernel only
};

struct StepValue {
  std::string name;
  uint64_t size = 0;
  StepValueKind kind = StepValueKind::Input;
  /// The step producing it (Output, Temp, Workspace); -1 for arguments.
  int64_t definingStep = -1;
  /// Steps whose kernel reads or writes it, ascending, without duplicates.
  std::vector<int64_t> useSteps;
  /// The subset of useSteps that write it in place (State only).
  std::vector<int64_t> writeSteps;
};

struct StepKernel {
  std::string name;
  /// Predicted time with every operand resident in the device tier.
  double seconds = 0;
};

struct MemoryPlanProblem {
  std::vector<StepKernel> kernels; // the steps, in order
  std::vector<StepValue> values;
  /// False: one tier (host) that kernels read directly, no copies.
  bool hasDevice = true;
  uint64_t deviceCapacity = 0;
  uint64_t hostCapacity = 0;
  double linkBandwidth = 0; // bytes per second, host <-> device
  uint64_t alignment = 64;  // of every offset
};

/// Tier indices in MemoryPlan: the device tier is 0 when there is one.
enum class PlanTier { Device, Host };

/// One instance of a value in one tier, live over [firstStep, lastStep].
struct PlacedBuffer {
  int value = 0;
  PlanTier tier = PlanTier::Device;
  uint64_t offset = 0;
  int64_t firstStep = 0, lastStep = 0;
  /// The value's home (where the user reads and writes it, or where it is
  /// produced) rather than a copy made for some uses.
  bool home = true;
};

/// A copy between two instances of a value. It is issued at position
/// `issue` and waited at position `wait`, where position p is "just before
/// kernel p" and position N (the kernel count) is "after the last kernel".
struct PlannedCopy {
  int value = 0;
  bool prefetch = true; // host -> device; false: device -> host (offload)
  int source = 0, destination = 0; // indices into MemoryPlan::buffers
  int64_t issue = 0, wait = 0;
  double transferSeconds = 0;
  /// The stall this copy's wait is predicted to cause.
  double exposedSeconds = 0;
};

struct TierSummary {
  uint64_t capacity = 0, peak = 0, lowerBound = 0;
};

struct MemoryPlan {
  std::vector<PlacedBuffer> buffers;
  /// In program order: by issue position, offloads before prefetches (the
  /// copy stream is FIFO, so a prefetch may reuse bytes an offload at the
  /// same position frees), then by wait position.
  std::vector<PlannedCopy> copies;
  /// buffers in kernel-reading order for each use: use[v][k] is the buffer
  /// value v's k-th use step reads (an index into buffers).
  std::vector<std::vector<int>> useBuffer;
  /// The buffer the defining kernel writes, per value (-1 for arguments).
  std::vector<int> defBuffer;
  /// [0] device (when there is one), then host.
  std::vector<TierSummary> tiers;
  double stepSeconds = 0;      // predicted, with the copies
  double noOffloadSeconds = 0; // every buffer resident: the kernels' sum
  uint64_t bytesMoved = 0;
};

/// Plans `problem`, or says why it cannot (a value used by a kernel that
/// cannot fit in the device tier together with that kernel's other
/// operands; a host tier too small; a malformed problem).
std::variant<MemoryPlan, std::string>
planMemory(const MemoryPlanProblem &problem);

/// Checks a plan against its problem: per tier no two buffers live at a
/// common step share a byte, and the peak is within capacity; every use of
/// every value reads an instance in the tier kernels read that is live at
/// that step and, for a copy, waited at or before it; a state value written
/// in a copy is offloaded back to its home; outputs end in their home; every
/// offset is aligned. Returns the first violation or nullopt.
std::optional<std::string> verifyMemoryPlan(const MemoryPlanProblem &problem,
                                            const MemoryPlan &plan);

/// The predicted timeline of a plan: kernels in order on one stream, copies
/// in program order on another, a kernel starting when the previous one has
/// finished and every copy waited before it is done. Fills stepSeconds,
/// noOffloadSeconds and each copy's exposedSeconds.
void predictStepTime(const MemoryPlanProblem &problem, MemoryPlan &plan);

} // namespace attnc

#endif // ATTNC_PLANNING_MEMORYPLANNER_H
