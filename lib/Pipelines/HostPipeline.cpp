//===- HostPipeline.cpp - the pass pipelines of the host target -----------===//

#include "attnc/Pipelines/HostPipeline.h"

#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;

namespace attnc {

LogicalResult buildAttnToTilesPipeline(OpPassManager &pm,
                                       const TileOptions &o) {
  // The pass manager is anchored on the module: the text omits it. Cache
  // arguments become their component buffers first (the kernel ABI).
  std::string text = o.countTiles ? "attn-count-tiles," : "";
  text += "func.func(attn-expand-kv-cache,attn-lower-to-tiles{block-q=" +
          std::to_string(o.blockQ) + " block-kv=" + std::to_string(o.blockKV) +
          " vector-width=" + std::to_string(o.vectorWidth) +
          " qk-form=" + o.qkForm +
          " max-kv-splits=" + std::to_string(o.maxKVSplits) +
          " num-kv-splits=" + std::to_string(o.numKVSplits) +
          " num-threads=" + std::to_string(o.numThreads) +
          "},canonicalize,cse)";
  return parsePassPipeline(text, pm);
}

LogicalResult buildTilesToHostLLVMPipeline(OpPassManager &pm) {
  // Function boundaries get identity layouts: the runtime passes
  // contiguous row-major tensors only (it checks strides).
  return parsePassPipeline(
      "one-shot-bufferize{bufferize-function-boundaries "
      "function-boundary-type-conversion=identity-layout-map},"
      "canonicalize,attn-cpu-kernel-abi,canonicalize,cse,"
      "func.func(attn-cpu-approximate-math),"
      "convert-scf-to-cf,arith-expand{include-bf16=true},"
      "convert-vector-to-llvm{reassociate-fp-reductions=true},"
      "expand-strided-metadata,finalize-memref-to-llvm,"
      "convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,"
      "convert-func-to-llvm,convert-cf-to-llvm,reconcile-unrealized-casts,"
      "attn-cpu-entry-points,canonicalize",
      pm);
}

void registerHostPipelines() {
  PassPipelineRegistration<>(
      "attn-host-to-tiles", "Lower attn ops to the tile level (defaults)",
      [](OpPassManager &pm) {
        (void)buildAttnToTilesPipeline(pm, TileOptions{});
      });
  PassPipelineRegistration<>(
      "attn-host-to-llvm",
      "Lower the tile level to the LLVM dialect with the host kernel ABI",
      [](OpPassManager &pm) { (void)buildTilesToHostLLVMPipeline(pm); });
}

int64_t hostVectorWidth() {
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  if (features.lookup("avx512f"))
    return 16;
  if (features.lookup("avx"))
    return 8;
  return 4;
}

} // namespace attnc
