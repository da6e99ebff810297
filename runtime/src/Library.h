//===- Library.h - kernel symbols: dlopen'ed or linked in -------*- C++ -*-===//

#ifndef ATTNRT_SRC_LIBRARY_H
#define ATTNRT_SRC_LIBRARY_H

#include <string>

namespace attnrt {

/// Where a module's kernel symbols come from: a shared library it dlopen()s
/// (attnrt_open) or a lookup function over kernels linked into the program
/// (attnrt_open_embedded). Symbols are resolved eagerly either way, so a
/// broken artifact fails at open time, not in the middle of a run.
class Library {
public:
  using Lookup = void *(*)(const char *name);

  /// dlopen()s `path`. Throws RuntimeError (ATTNRT_ERR_IO /
  /// ATTNRT_ERR_LIBRARY).
  explicit Library(const std::string &path);
  /// Resolves through `lookup` (the artifact header's attnc_<id>_symbol);
  /// `name` describes the module in messages.
  Library(Lookup lookup, const std::string &name);
  ~Library();
  Library(const Library &) = delete;
  Library &operator=(const Library &) = delete;

  /// Throws ATTNRT_ERR_LIBRARY naming `what` (e.g. the kernel) if absent.
  void *symbol(const std::string &name, const std::string &what) const;
  /// NULL if absent (optional symbols such as NAME__tile_stats).
  void *find(const std::string &name) const;

private:
  std::string path; // the file, or the embedded module's description
  void *handle = nullptr;
  Lookup lookup = nullptr;
};

} // namespace attnrt

#endif // ATTNRT_SRC_LIBRARY_H
