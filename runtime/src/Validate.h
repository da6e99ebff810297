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

#include <map>
#include <string>
#include <vector>

namespace attnrt {

/// Memref descriptors {allocated, aligned, offset, sizes[R], strides[R]} as
/// int64 words, plus the void** array the entry points take: the arguments,
/// then (after bindScratch) the scratch buffers.
struct Descriptors {
  std::vector<std::vector<int64_t>> words;
  std::vector<void *> pointers;
  /// Scratch buffers: sizes (elements, per dim) and byte offsets into one
  /// block of scratchBytes bytes; every offset is a multiple of 64.
  std::vector<std::vector<int64_t>> scratchSizes;
  std::vector<size_t> scratchOffsets;
  size_t scratchBytes = 0;
};

/// Alignment of every scratch buffer (and of the block holding them).
constexpr size_t kScratchAlign = 64;

/// Throws RuntimeError(ATTNRT_ERR_VALIDATION or _INVALID_ARGUMENT) on the
/// first problem. Fills `out` when non-null (argument descriptors and the
/// scratch layout).
void validateArgs(const KernelDesc &kernel, const attnrt_tensor *args,
                  int numArgs, Descriptors *out);

/// The checks of validateArgs that read no tensor data, for tensors in
/// device memory: count, dtype, rank, sizes and symbols, non-NULL data,
/// contiguous strides, written arguments overlapping no other, and the
/// lengths of cu_seqlens_q/_k. Returns the symbols' values.
std::map<std::string, int64_t> validateDeviceArgs(const KernelDesc &kernel,
                                                  const attnrt_tensor *args,
                                                  int numArgs);

/// Appends the scratch descriptors, placing the buffers in `block`
/// (kScratchAlign-aligned, at least out.scratchBytes bytes).
void bindScratch(Descriptors &out, void *block);

} // namespace attnrt

#endif // ATTNRT_SRC_VALIDATE_H
