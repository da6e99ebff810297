//===- Manifest.h - manifest.json model and parser --------------*- C++ -*-===//
//
// The in-memory form of an artifact's manifest.json (docs/artifacts.md). The
// C API hands out pointers into these structures, so strings live here and
// the attnrt_* views are rebuilt once after parsing.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_MANIFEST_H
#define ATTNRT_SRC_MANIFEST_H

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

struct KernelDesc {
  std::string name;
  std::string entryRun;
  std::string entryWorkItems;
  attnrt_attention_info attention{};
  std::vector<ArgDesc> args;
  std::vector<attnrt_arg_info> argViews; // C views of args
};

struct Manifest {
  int formatVersion = 0;
  std::string target;
  std::string library;
  std::string header;
  std::vector<KernelDesc> kernels;
};

/// Parses manifest text; `where` names the file in messages. Throws
/// RuntimeError (ATTNRT_ERR_MANIFEST / ATTNRT_ERR_UNSUPPORTED).
Manifest parseManifest(const std::string &text, const std::string &where);

/// Reads and parses DIR/manifest.json (ATTNRT_ERR_IO if unreadable).
Manifest loadManifest(const std::string &dir);

} // namespace attnrt

#endif // ATTNRT_SRC_MANIFEST_H
