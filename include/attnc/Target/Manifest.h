//===- Manifest.h - kernel signatures, manifest.json and C header -*- C++ -*-//
//
// Describes each kernel of a level-1 module in the user's terms (kind,
// argument names, roles, directions, dtypes, shapes with symbolic sizes, KV
// cache parameters) for manifest.json (format_version 2) and the generated C
// header. See docs/artifacts.md and docs/kv-cache.md.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TARGET_MANIFEST_H
#define ATTNC_TARGET_MANIFEST_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace attnc {

/// A static size or the symbol of a dynamic one (`batch`, `batch+1`, ...).
using ShapeDim = std::variant<int64_t, std::string>;

struct KernelArg {
  std::string name, role, dtype;
  std::string dir = "in"; // "in", "out" or "inout"
  std::vector<ShapeDim> shape;
};

/// A buffer the runtime allocates per call; its descriptor follows the
/// arguments in args[].
struct ScratchBuffer {
  std::string name, dtype;
  std::vector<ShapeDim> shape;
};

/// The `kv_cache` object of kernels with a `!attn.kv_cache` argument.
struct KVCacheInfo {
  std::string name; // the prefix of its component arguments
  int64_t pageSize = 0, numKVHeads = 0, headDim = 0;
  std::string layout;   // "nhd" or "hnd"
  std::string storage;  // "f16", "bf16", "f8e4m3fn", "f8e5m2", "i8" or "i4"
  int64_t kGroup = 0;   // 0 unless i8 or i4
  int64_t residual = 0; // tokens kept unquantized per sequence; 0 = none
  bool summary = false; // per-page key minima and maxima (summary = minmax)
  double bytesPerToken = 0;
};

/// One structured mask (`mask`, or an entry of `head_masks`).
struct MaskInfo {
  bool causal = false, topLeft = false;
  int64_t window = -1, sinks = 0;
};

struct KernelInfo {
  std::string name;
  /// "attention", "paged_attention", "kv_append", "merge" or
  /// "select_pages".
  std::string kind;
  /// Attention parameters (kinds attention and paged_attention only).
  bool hasAttention = false;
  std::string layout;  // "dense", "ragged" or "paged"
  bool ragged = false; // attention: cu_seqlens; paged: qo_indptr
  int64_t numQueryHeads = 0, numKVHeads = 0, headDim = 0;
  std::string dtype;
  double scale = 0, softcap = 0;
  bool causal = false, topLeft = false;
  int64_t window = -1, sinks = 0;
  bool hasLse = false;
  /// One mask per KV head (`head_masks`); empty when the op has one mask.
  std::vector<MaskInfo> headMasks;
  /// Block-sparse mask operands (docs/sparsity.md section 2): block sizes
  /// in tokens and the static head dimension (1 or num_kv_heads).
  struct BlockSparse {
    int64_t blockQ = 0, blockKV = 0, heads = 0;
  };
  std::optional<BlockSparse> blockSparse;
  /// Kind select_pages (docs/sparsity.md section 3).
  struct SelectPages {
    int64_t topK = 0, sinkPages = 0, recentPages = 0;
  };
  std::optional<SelectPages> selectPages;
  /// The function's `attn.instrumented` strings (e.g. "tile_stats").
  std::vector<std::string> instrumented;
  std::optional<KVCacheInfo> kvCache;
  /// From the lowered function (recordTiling); tile fields only when it has
  /// an `attn.tile` attribute.
  bool hasTile = false;
  int64_t blockQ = 0, blockKV = 0, headDimChunk = 0, vectorWidth = 0;
  std::string qkForm; // "dot", "transposed" or "by_rows" (docs/passes.md)
  std::optional<int64_t> workspaceBytes;
  /// The op's `attn.tile_plan` (attn-plan-tiles): the GPU kernel's tiles and
  /// its shared-memory buffers, bytes over all pipeline stages.
  struct TilePlan {
    int64_t blockQ = 0, blockKV = 0, stages = 0, smemBytes = 0;
    std::vector<std::pair<std::string, int64_t>> buffers;
  };
  std::optional<TilePlan> tilePlan;
  int64_t phases = 1;
  std::vector<ScratchBuffer> scratch;
  /// Inputs in function order (a cache as its components), then outputs.
  std::vector<KernelArg> args;
  /// Symbols with a static use, by name without `+N`: they are that size
  /// everywhere (in scratch shapes too).
  std::map<std::string, int64_t> staticSymbols;
  /// GPU targets: the manifest's `gpu` object (docs/gpu-artifacts.md).
  std::optional<llvm::json::Object> gpu;
};

/// Reads the kernels of a verified level-1 module. Emits a diagnostic at the
/// offending location and fails for functions the host ABI cannot express.
mlir::FailureOr<std::vector<KernelInfo>> collectKernels(mlir::ModuleOp module);

/// Fills tile sizes and workspace from the `attn.tile` attribute, the phase
/// count from `attn.phases` (default 1) and the scratch buffers from
/// `attn.scratch` that attn-lower-to-tiles leaves on each kernel function.
/// Fails (with a diagnostic) when a scratch buffer's name is not a C
/// identifier or clashes with an argument.
mlir::LogicalResult recordTiling(mlir::ModuleOp tiled,
                                 std::vector<KernelInfo> &kernels,
                                 int64_t vectorWidth);

/// Sets `k.scratch` from a list of {name, dtype, shape} (`attn.scratch`, or
/// a GPU kernel's attn.launch); a diagnostic at `at` when an entry is
/// malformed, not a C identifier or clashes with an argument.
mlir::LogicalResult recordScratch(mlir::Operation *at, mlir::ArrayAttr list,
                                  KernelInfo &k);

/// `steps`: the manifest entries of outlined step functions (outlineSteps),
/// written as `steps` when there are any. Target "cuda" (with `archs`)
/// writes GPU kernels: no library and no host entry points, a `gpu` object
/// per kernel.
void writeManifest(llvm::raw_ostream &os,
                   const std::vector<KernelInfo> &kernels,
                   llvm::StringRef target, llvm::StringRef library,
                   llvm::StringRef header,
                   const llvm::json::Array *steps = nullptr,
                   const std::vector<std::string> *archs = nullptr);

/// The C header of a GPU artifact: per kernel, its launch geometry (grid,
/// block, dynamic shared memory) computed from the sizes.
void writeGPUHeader(llvm::raw_ostream &os,
                    const std::vector<KernelInfo> &kernels,
                    llvm::StringRef stem);

/// The C header of an artifact: memref descriptors, each kernel's entry
/// points and signature, and the embedding (the manifest's symbol and
/// attnc_<id>_symbol, the lookup attnrt_open_embedded takes).
void writeHeader(llvm::raw_ostream &os, const std::vector<KernelInfo> &kernels,
                 llvm::StringRef stem);

/// `stem` as a C identifier: every character other than [A-Za-z0-9_]
/// becomes '_', and a leading digit gets a '_' prefix.
std::string cIdentifier(llvm::StringRef stem);

/// The symbol of the manifest text every artifact defines:
/// attnc_<cIdentifier(stem)>_manifest.
std::string embeddedManifestSymbol(llvm::StringRef stem);

} // namespace attnc

#endif // ATTNC_TARGET_MANIFEST_H
