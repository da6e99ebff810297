//===- Lowerings.h - attn ops to the tile level -----------------*- C++ -*-===//
//
// Private to the attn-lower-to-tiles pass: the lowerings of the cache ops,
// each in its own file.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_LIB_CONVERSION_ATTNTOTILES_LOWERINGS_H
#define ATTNC_LIB_CONVERSION_ATTNTOTILES_LOWERINGS_H

#include "attn/AttnDialect.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Support/LLVM.h"

#include "llvm/ADT/StringMap.h"

namespace attnc {

/// The component buffers (by role: `k_pages`, ...) behind a cache operand:
/// the `unrealized_conversion_cast` that attn-expand-kv-cache makes of a
/// cache argument. Otherwise emits an error on `op` saying how to fix it.
mlir::FailureOr<llvm::StringMap<mlir::Value>>
expandedCacheBuffers(mlir::Operation *op, mlir::Value cache);

/// Replaces `op` by an scf.parallel over KV heads that quantizes and writes
/// the new tokens in order (docs/kv-cache.md). The cache operand must be the
/// `unrealized_conversion_cast` of its component buffers that
/// attn-expand-kv-cache makes of a cache argument; otherwise emits an error
/// on `op` and fails. `vectorWidth` is the target's f32 lanes (head_dim is
/// processed in chunks of up to 8 vectors).
mlir::LogicalResult lowerKVAppend(attn::KVAppendOp op, int64_t vectorWidth);

/// Replaces `op` by the Quest page scoring and top-k selection of
/// docs/sparsity.md section 3: an scf.parallel over (sequence, KV head)
/// writing the block-sparse offsets and indices. The cache operand must be
/// expanded as for lowerKVAppend.
mlir::LogicalResult lowerSelectPages(attn::SelectPagesOp op,
                                     int64_t vectorWidth);

/// The int4 codes of packed bytes (`vector<n x i8>`, channel 2i in the low
/// nibble of byte i) as `vector<2n x f32>` in channel order.
mlir::Value unpackInt4(mlir::ImplicitLocOpBuilder &b, mlir::Value bytes);

} // namespace attnc

#endif // ATTNC_LIB_CONVERSION_ATTNTOTILES_LOWERINGS_H
