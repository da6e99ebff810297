//===- attnc_ext.cpp - the attnc._attnc module ----------------------------===//
//
// Module init: the exception hierarchy, then the compiler and runtime
// bindings. The public API is the Python layer in attnc/ (which adds
// argument handling, output allocation and NumPy dtypes); this module is
// its native half.
//
//===----------------------------------------------------------------------===//

#include "Ext.h"

namespace attnc_py {

ErrorClasses &errorClasses() {
  static ErrorClasses classes;
  return classes;
}

void raise(nb::handle cls, const std::string &message,
           const std::vector<std::pair<const char *, nb::object>> &attrs) {
  nb::object exc = cls(nb::str(message.c_str(), message.size()));
  for (const auto &[name, value] : attrs)
    nb::setattr(exc, name, value);
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw nb::python_error();
}

static const char *statusName(attnrt_status status) {
  switch (status) {
  case ATTNRT_OK:
    return "ok";
  case ATTNRT_ERR_INVALID_ARGUMENT:
    return "invalid_argument";
  case ATTNRT_ERR_IO:
    return "io";
  case ATTNRT_ERR_MANIFEST:
    return "manifest";
  case ATTNRT_ERR_UNSUPPORTED:
    return "unsupported";
  case ATTNRT_ERR_LIBRARY:
    return "library";
  case ATTNRT_ERR_NOT_FOUND:
    return "not_found";
  case ATTNRT_ERR_VALIDATION:
    return "validation";
  case ATTNRT_ERR_OUT_OF_PAGES:
    return "out_of_pages";
  }
  return "unknown";
}

void raiseAttnrt(attnrt_status status, const std::string &message) {
  ErrorClasses &e = errorClasses();
  nb::handle cls = e.attnrtError;
  if (status == ATTNRT_ERR_VALIDATION)
    // attnrt checks dtypes first and says so ("argument 'q' (#0): dtype is
    // f32 but the kernel expects f16"): that one is also a TypeError.
    cls = message.find("): dtype is ") != std::string::npos ? e.dtypeError
                                                            : e.validationError;
  else if (status == ATTNRT_ERR_NOT_FOUND)
    cls = e.notFoundError;
  else if (status == ATTNRT_ERR_OUT_OF_PAGES)
    cls = e.outOfPagesError;
  raise(cls, message,
        {{"status", nb::int_(static_cast<int>(status))},
         {"status_name", nb::str(statusName(status))},
         {"message", nb::str(message.c_str(), message.size())}});
}

static nb::handle newException(nb::module_ &m, const char *name,
                               const char *doc,
                               std::initializer_list<nb::handle> bases) {
  nb::list baseList;
  for (nb::handle b : bases)
    baseList.append(b);
  std::string qualified = std::string("attnc._attnc.") + name;
  PyObject *cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc,
                                            nb::tuple(baseList).ptr(), nullptr);
  if (!cls)
    throw nb::python_error();
  m.attr(name) = nb::steal(cls);
  return cls; // the module's attribute keeps it alive
}

} // namespace attnc_py

using namespace attnc_py;

NB_MODULE(_attnc, m) {
  m.doc() = "Native half of the attnc package: the attnc compiler library "
            "and the attnrt runtime. Use the `attnc` package.";
  ErrorClasses &e = errorClasses();
  e.compileError = newException(
      m, "CompileError",
      "attnc rejected the input: str() is the diagnostics as attnc prints "
      "them (file:line:col: error: ...), .diagnostics the structured list, "
      ".status 1 (error in the input or options).",
      {PyExc_Exception});
  e.internalError =
      newException(m, "InternalCompilerError",
                   "attnc failed on input it accepted (.status 2): a bug in "
                   "attnc, not in the input.",
                   {e.compileError});
  e.attnrtError = newException(
      m, "AttnrtError",
      "A failing attnrt call: .status (attnrt_status), .status_name and "
      ".message (attnrt's one-line message, also str()).",
      {PyExc_RuntimeError});
  e.validationError = newException(
      m, "ValidationError",
      "Arguments that do not match the kernel's manifest (shape, symbol "
      "sizes, contiguity, index ranges, a read-only output, a non-CPU "
      "tensor); nothing was run.",
      {e.attnrtError, PyExc_ValueError});
  e.dtypeError =
      newException(m, "DTypeError", "An argument of the wrong element type.",
                   {e.validationError, PyExc_TypeError});
  e.notFoundError = newException(m, "KernelNotFoundError",
                                 "No kernel of that name in the module.",
                                 {e.attnrtError, PyExc_KeyError});
  e.outOfPagesError =
      newException(m, "OutOfPagesError",
                   "A KV-cache page pool (or its rings) is full; the call "
                   "changed nothing.",
                   {e.attnrtError});
  bindCompiler(m);
  bindRuntime(m);
}
