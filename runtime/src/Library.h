//===- Library.h - kernel shared library loading ----------------*- C++ -*-===//

#ifndef ATTNRT_SRC_LIBRARY_H
#define ATTNRT_SRC_LIBRARY_H

#include <string>

namespace attnrt {

/// Owns a dlopen handle; symbols are resolved eagerly so a broken artifact
/// fails at open time, not in the middle of a run.
class Library {
public:
  /// Throws RuntimeError (ATTNRT_ERR_IO / ATTNRT_ERR_LIBRARY).
  explicit Library(const std::string &path);
  ~Library();
  Library(const Library &) = delete;
  Library &operator=(const Library &) = delete;

  /// Throws ATTNRT_ERR_LIBRARY naming `what` (e.g. the kernel) if absent.
  void *symbol(const std::string &name, const std::string &what) const;
  /// NULL if absent (optional symbols such as NAME__tile_stats).
  void *find(const std::string &name) const;

private:
  std::string path;
  void *handle = nullptr;
};

} // namespace attnrt

#endif // ATTNRT_SRC_LIBRARY_H
