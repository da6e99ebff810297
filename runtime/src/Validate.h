//===- Validate.h - caller tensors vs. the manifest -------------*- C++ -*-===//
//
// The kernel library checks nothing (docs/artifacts.md), so every property it
// relies on is checked here before a call, then the tensors are turned into
// MLIR memref descriptors.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_VALIDATE_H
#define ATTNRT_SRC_VALIDATE_H

#include "Manifest.h"

#include <vector>

namespace attnrt {

/// Memref descriptors {allocated, aligned, offset, sizes[R], strides[R]} as
/// int64 words, plus the void** array the entry points take.
struct Descriptors {
  std::vector<std::vector<int64_t>> words;
  std::vector<void *> pointers;
};

/// Throws RuntimeError(ATTNRT_ERR_VALIDATION or _INVALID_ARGUMENT) on the
/// first problem. Fills `out` when non-null.
void validateArgs(const KernelDesc &kernel, const attnrt_tensor *args,
                  int numArgs, Descriptors *out);

} // namespace attnrt

#endif // ATTNRT_SRC_VALIDATE_H
