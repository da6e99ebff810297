//===- SelectPagesToTiles.cpp - attn.select_pages to the tile level -------===//
//
// Quest-style query-aware page selection (docs/sparsity.md section 3).
//
//===----------------------------------------------------------------------===//

#include "Lowerings.h"

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

LogicalResult attnc::lowerSelectPages(SelectPagesOp op, int64_t vectorWidth) {
  return op.emitOpError() << "has no lowering yet";
}
