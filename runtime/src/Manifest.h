//===- Manifest.h - manifest.json model and parser --------------*- C++ -*-===//
//
// The in-memory form of an artifact's manifest.json (docs/artifacts.md). The
// C API hands out pointers into these structures, so strings live here and
// the attnrt_* views are rebuilt once after parsing.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_MANIFEST_H
#define ATTNRT_SRC_MANIFEST_H

#include "GpuManifest.h"
#include "StepManifest.h"
#include "attnrt/attnrt.h"

#include <string>
#include <vector>

namespace attnrt {

struct DimDesc {
  std::string symbol;     // empty when static
  std::string symbolName; // symbol without "+N"
  int64_t value = 0;      // static size, or the symbol's offset
};

struct ArgDesc {
  std::string name;
  attnrt_role role = ATTNRT_ROLE_QUERY;
  attnrt_dir dir = ATTNRT_DIR_IN;
  attnrt_dtype dtype = ATTNRT_DTYPE_F32;
  std::vector<DimDesc> shape;
  std::vector<attnrt_dim> dimViews; // C views of shape
};

struct KvCacheDesc {
  std::string name;
  std::string layout;  // "nhd" | "hnd"
  std::string storage; // "f16" | "bf16" | "f8e4m3fn" | "f8e5m2" | "i8" | "i4"
  attnrt_kv_cache_info view{}; // C view; strings point into this struct
};

struct KernelDesc {
  std::string name;
  // attention | paged_attention | kv_append | merge | select_pages
  std::string kind;
  int phases = 1;
  std::string entryRun;
  std::string entryWorkItems;
  bool hasAttention = false;
  attnrt_attention_info attention{};
  std::vector<attnrt_mask_info> headMasks; // empty: one mask (attention)
  bool hasKvCache = false;
  KvCacheDesc kvCache;
  bool hasBlockSparse = false;
  attnrt_block_sparse_info blockSparse{};
  bool hasSelectPages = false;
  attnrt_select_pages_info selectPages{};
  std::vector<std::string> instrumented; // e.g. "tile_stats"
  bool tileStats = false;                // instrumented holds "tile_stats"
  std::vector<ArgDesc> args;
  std::vector<ArgDesc> scratch;          // allocated by the runtime, after args
  std::vector<attnrt_arg_info> argViews; // C views of args
  std::vector<attnrt_arg_info> scratchViews; // C views of scratch
  bool hasGpu = false;                       // a kernel of a "cuda" manifest
  GpuKernelDesc gpu;

  /// Index of the first argument with `role`, or -1.
  int findRole(attnrt_role role) const {
    for (size_t i = 0; i < args.size(); ++i)
      if (args[i].role == role)
        return static_cast<int>(i);
    return -1;
  }
};

/// The artifacts attnrt opens: attnrt_open (host libraries) and
/// attnrt_gpu_open (CUDA images); each refuses the other's manifests.
enum class ArtifactTarget { Host, Cuda };

struct Manifest {
  int formatVersion = 0;
  std::string target;
  std::string library; // host only
  std::string header;
  std::vector<std::string> archs; // cuda only: sm_XY, ascending
  std::vector<KernelDesc> kernels;
  std::vector<StepDesc> steps; // memory plans; kernels referred to by index
};

/// Parses manifest text; `where` names the file in messages. Throws
/// RuntimeError (ATTNRT_ERR_MANIFEST / ATTNRT_ERR_UNSUPPORTED, the latter
/// also when the target is not `expected`, saying which API opens it).
/// Embedded modules (attnrt_open_embedded) load no file, so for them
/// 'library' is optional and unchecked (needLibrary = false).
Manifest parseManifest(const std::string &text, const std::string &where,
                       ArtifactTarget expected, bool needLibrary = true);

/// Reads and parses DIR/manifest.json (ATTNRT_ERR_IO if unreadable).
Manifest loadManifest(const std::string &dir, ArtifactTarget expected);

/// The "target" of DIR/manifest.json ("host", "cuda"), after checking
/// format_version; nothing else is read.
std::string loadManifestTarget(const std::string &dir);

/// Builds the C views (attnrt_arg_info, attnrt_dim, attnrt_kv_cache_info,
/// the head masks of attnrt_attention_info) into `k`; call again whenever
/// `k` has moved.
void linkViews(KernelDesc &k);

} // namespace attnrt

#endif // ATTNRT_SRC_MANIFEST_H
