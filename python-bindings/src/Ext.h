//===- Ext.h - shared pieces of the attnc._attnc extension ------*- C++ -*-===//
//
// The extension binds two C/C++ APIs: the compiler library
// (attnc/Driver/Compiler.h) and the runtime attnrt (attnrt.h,
// attnrt_cache.h). Errors become Python exceptions of the classes created
// in attnc_ext.cpp, carrying attnrt's or the compiler's message unchanged.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PYTHON_EXT_H
#define ATTNC_PYTHON_EXT_H

#include "attnrt/attnrt.h"

#include <nanobind/nanobind.h>

#include <string>
#include <utility>
#include <vector>

namespace attnc_py {

namespace nb = nanobind;

/// The exception classes of the module (created once at import).
struct ErrorClasses {
  nb::handle compileError;    // CompileError(Exception)
  nb::handle internalError;   // InternalCompilerError(CompileError)
  nb::handle attnrtError;     // AttnrtError(RuntimeError)
  nb::handle validationError; // ValidationError(AttnrtError, ValueError)
  nb::handle dtypeError;      // DTypeError(ValidationError, TypeError)
  nb::handle notFoundError;   // KernelNotFoundError(AttnrtError, KeyError)
  nb::handle outOfPagesError; // OutOfPagesError(AttnrtError)
};
ErrorClasses &errorClasses();

/// Raises `cls(message)` with the given attributes set on the instance.
[[noreturn]] void
raise(nb::handle cls, const std::string &message,
      const std::vector<std::pair<const char *, nb::object>> &attrs = {});

/// Raises the AttnrtError subclass for `status` with attnrt's message.
[[noreturn]] void raiseAttnrt(attnrt_status status, const std::string &message);

/// Raises for a failing attnrt call (message from attnrt_last_error()).
inline void check(attnrt_status status) {
  if (status != ATTNRT_OK)
    raiseAttnrt(status, attnrt_last_error());
}

void bindCompiler(nb::module_ &m);
void bindRuntime(nb::module_ &m);

} // namespace attnc_py

#endif // ATTNC_PYTHON_EXT_H
