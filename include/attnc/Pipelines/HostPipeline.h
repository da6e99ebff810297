//===- HostPipeline.h - the pass pipelines of the host target ---*- C++ -*-===//

#ifndef ATTNC_PIPELINES_HOSTPIPELINE_H
#define ATTNC_PIPELINES_HOSTPIPELINE_H

#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <string>

namespace attnc {

struct TileOptions {
  int64_t blockQ = 0; // 0: chosen from the GQA group size
  int64_t blockKV = 32;
  int64_t vectorWidth = 8; // f32 lanes
  std::string qkForm = "auto";
  int64_t maxKVSplits = 8; // split-KV of paged decode; sizes the scratch
  int64_t numKVSplits = 0; // 0: chosen per call
  int64_t numThreads = 0;  // threads the kernels run on (0: this machine's)
  bool countTiles = false; // instrument with tile counters (attn-count-tiles)
};

/// attn -> tile level (target-neutral).
mlir::LogicalResult buildAttnToTilesPipeline(mlir::OpPassManager &pm,
                                             const TileOptions &options);
/// Tile level -> LLVM dialect with the host work-item ABI and entry points.
mlir::LogicalResult buildTilesToHostLLVMPipeline(mlir::OpPassManager &pm);

/// Registers `attn-host-to-tiles` and `attn-host-to-llvm` for attn-opt.
void registerHostPipelines();

/// f32 lanes of the widest vector unit of the machine running this.
int64_t hostVectorWidth();

} // namespace attnc

#endif // ATTNC_PIPELINES_HOSTPIPELINE_H
