//===- Error.h - attnrt error reporting -------------------------*- C++ -*-===//
//
// Internal code throws RuntimeError; every C entry point catches it (and any
// other exception) and turns it into a status plus the thread-local message,
// so no exception ever crosses the C boundary.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNRT_SRC_ERROR_H
#define ATTNRT_SRC_ERROR_H

#include "attnrt/attnrt.h"

#include <stdexcept>
#include <string>

namespace attnrt {

class RuntimeError : public std::runtime_error {
public:
  RuntimeError(attnrt_status status, const std::string &message)
      : std::runtime_error(message), status(status) {}
  attnrt_status status;
};

[[noreturn]] inline void fail(attnrt_status status, const std::string &msg) {
  throw RuntimeError(status, msg);
}

/// Records the message for attnrt_last_error() and returns the status.
attnrt_status setError(attnrt_status status, const std::string &message);
void clearError();

/// Runs Body, mapping exceptions to a status. Body returns nothing.
template <typename Fn> attnrt_status guard(Fn &&body) {
  try {
    body();
    clearError();
    return ATTNRT_OK;
  } catch (const RuntimeError &e) {
    return setError(e.status, e.what());
  } catch (const std::bad_alloc &) {
    return setError(ATTNRT_ERR_INVALID_ARGUMENT,
                    "attnrt: out of memory; reduce the problem size");
  } catch (const std::exception &e) {
    return setError(ATTNRT_ERR_INVALID_ARGUMENT,
                    std::string("attnrt: internal error: ") + e.what());
  }
}

} // namespace attnrt

#endif // ATTNRT_SRC_ERROR_H
