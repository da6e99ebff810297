//===- CountTiles.cpp - tile counters for attention kernels ---------------===//
//
// The work measurement of docs/sparsity.md section 4: one global of three
// counters per kernel, which the tile lowering increments.
//
//===----------------------------------------------------------------------===//

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNCOUNTTILES
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc::attn;

namespace {
struct AttnCountTilesPass
    : public attnc::impl::AttnCountTilesBase<AttnCountTilesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToStart(module.getBody());
    auto type = MemRefType::get({3}, b.getI64Type());
    auto zeros = DenseElementsAttr::get(
        RankedTensorType::get({3}, b.getI64Type()), b.getI64IntegerAttr(0));
    for (auto func : module.getOps<func::FuncOp>()) {
      bool attention = false;
      func.walk([&](Operation *op) {
        attention |= isa<AttentionOp, PagedAttentionOp>(op);
      });
      if (!attention)
        continue;
      std::string name = (func.getSymName() + "__tile_stats").str();
      if (module.lookupSymbol(name)) {
        func.emitError() << "attn-count-tiles: symbol '" << name
                         << "' already exists; rename the kernel";
        return signalPassFailure();
      }
      memref::GlobalOp::create(b, func.getLoc(), name,
                               b.getStringAttr("public"), type, zeros,
                               /*constant=*/false, /*alignment=*/nullptr);
      func->setAttr("attn.tile_stats",
                    FlatSymbolRefAttr::get(b.getContext(), name));
      func->setAttr("attn.instrumented", b.getStrArrayAttr({"tile_stats"}));
    }
  }
};
} // namespace
