//===- ExpandKVCache.cpp - kv_cache arguments to component buffers --------===//

#include "Lowerings.h"
#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNEXPANDKVCACHE
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;
using namespace attnc;
using namespace attnc::attn;

std::string attnc::cacheArgumentName(func::FuncOp func, unsigned argNo) {
  if (auto name = func.getArgAttrOfType<StringAttr>(argNo, "attn.name"))
    return name.str();
  unsigned ordinal = 0;
  for (unsigned i = 0; i < argNo; ++i)
    ordinal += isa<KVCacheType>(func.getArgument(i).getType());
  return ordinal == 0 ? "cache" : "cache" + std::to_string(ordinal);
}

FailureOr<llvm::StringMap<Value>> attnc::expandedCacheBuffers(Operation *op,
                                                              Value cache) {
  auto castOp = cache.getDefiningOp<UnrealizedConversionCastOp>();
  if (!castOp) {
    if (isa<BlockArgument>(cache))
      return op->emitOpError()
             << "cache is a !attn.kv_cache argument that is not expanded into "
                "its component buffers; run attn-expand-kv-cache first";
    return op->emitOpError() << "cache must be a function argument (expanded "
                                "into its component buffers by "
                                "attn-expand-kv-cache)";
  }
  auto type = cast<KVCacheType>(cache.getType());
  SmallVector<KVCacheType::Component> components = type.getComponents();
  ValueRange inputs = castOp.getInputs();
  auto matches = [](Value in, const KVCacheType::Component &comp) {
    auto t = dyn_cast<MemRefType>(in.getType());
    return t && t.getElementType() == comp.elementType &&
           t.getRank() == static_cast<int64_t>(comp.shape.size());
  };
  if (inputs.size() != components.size() ||
      !llvm::all_of(llvm::zip(inputs, components), [&](auto pair) {
        return matches(std::get<0>(pair), std::get<1>(pair));
      })) {
    InFlightDiagnostic diag = op->emitOpError()
                              << "cache must be a function argument (expanded "
                                 "into its component buffers by "
                                 "attn-expand-kv-cache); expected the buffers";
    StringRef sep = "";
    for (const KVCacheType::Component &comp : components) {
      std::string text;
      llvm::raw_string_ostream os(text);
      os << MemRefType::get(comp.shape, comp.elementType);
      diag << sep << " " << comp.role << ": " << text;
      sep = ",";
    }
    return diag;
  }
  llvm::StringMap<Value> buffers;
  for (auto [in, comp] : llvm::zip(inputs, components))
    buffers[comp.role] = in;
  return buffers;
}

namespace {
struct AttnExpandKVCachePass
    : public attnc::impl::AttnExpandKVCacheBase<AttnExpandKVCachePass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isDeclaration())
      return;
    MLIRContext *ctx = &getContext();
    // Names first: they depend on the positions of the other caches.
    SmallVector<std::pair<unsigned, std::string>> caches;
    for (BlockArgument arg : func.getArguments())
      if (isa<KVCacheType>(arg.getType()))
        caches.push_back(
            {arg.getArgNumber(), cacheArgumentName(func, arg.getArgNumber())});
    // Back to front, so earlier argument numbers stay valid.
    for (auto &[argNo, name] : llvm::reverse(caches)) {
      auto type = cast<KVCacheType>(func.getArgument(argNo).getType());
      Location loc = func.getArgument(argNo).getLoc();
      SmallVector<Value> buffers;
      unsigned at = argNo + 1;
      for (const KVCacheType::Component &c : type.getComponents()) {
        NamedAttrList attrs;
        attrs.set("attn.name", StringAttr::get(ctx, name + "_" + c.role.str()));
        attrs.set("attn.role", StringAttr::get(ctx, c.role));
        if (failed(func.insertArgument(at,
                                       MemRefType::get(c.shape, c.elementType),
                                       attrs.getDictionary(ctx), loc)))
          return signalPassFailure();
        buffers.push_back(func.getArgument(at++));
      }
      OpBuilder b = OpBuilder::atBlockBegin(&func.getBody().front());
      auto cast =
          UnrealizedConversionCastOp::create(b, loc, TypeRange{type}, buffers);
      func.getArgument(argNo).replaceAllUsesWith(cast.getResult(0));
      if (failed(func.eraseArgument(argNo)))
        return signalPassFailure();
    }
  }
};
} // namespace
