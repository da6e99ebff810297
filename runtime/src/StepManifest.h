//===- StepManifest.h - manifest "steps": memory plans ----------*- C++ -*-===//
//
// The in-memory form of the manifest's "steps" section (docs/runtime.md,
// "Steps (memory plans)"): per step function its tiers, the buffers the
// caller reads and writes, and the program of copies and kernels. Parsing
// checks the whole plan against the kernels and the tier sizes, so a bad
// plan fails at attnrt_open and a run only re-checks tensor contents.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_STEPMANIFEST_H
#define ATTNRT_SRC_STEPMANIFEST_H

#include "attnrt/attnrt.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace attnrt {

struct KernelDesc;

struct StepTier {
  std::string name;
  int64_t capacity = 0;
  int64_t size = 0;
  bool device = false;
};

/// Bytes [offset, offset + bytes) of tier `tier`'s arena.
struct StepRange {
  int tier = 0;
  int64_t offset = 0;
  int64_t bytes = 0;
};

struct StepBuffer {
  std::string name;
  attnrt_dir dir = ATTNRT_DIR_IN;
  attnrt_dtype dtype = ATTNRT_DTYPE_F32;
  std::vector<int64_t> shape;
  StepRange range;
};

struct StepArg {
  StepRange range;
  std::vector<int64_t> shape;
};

struct StepOp {
  enum Kind { CopyStart, CopyDone, Kernel } kind = Kernel;
  /// copy_start / copy_done: the manifest's id, and the copy's position in
  /// issue order (the copy thread completes copies in that order).
  int64_t id = 0;
  int copy = 0;
  /// copy_start: source and destination (same number of bytes).
  StepRange from, to;
  /// kernel: index into the manifest's kernels, arguments in the kernel's
  /// argument order, and the planned scratch (empty: attnrt allocates it).
  size_t kernel = 0;
  std::vector<StepArg> args;
  std::vector<StepRange> scratch;
};

struct StepDesc {
  std::string name;
  std::vector<StepTier> tiers;
  std::vector<StepBuffer> buffers;
  std::vector<StepOp> program;
  int numCopies = 0;
};

/// Parses and checks root["steps"] (absent: none) against `kernels`; `where`
/// names the manifest in messages. Throws RuntimeError(ATTNRT_ERR_MANIFEST)
/// naming the step, the program entry and what is wrong.
std::vector<StepDesc> parseSteps(const nlohmann::json &root,
                                 const std::vector<KernelDesc> &kernels,
                                 const std::string &where);

} // namespace attnrt

#endif // ATTNRT_SRC_STEPMANIFEST_H
