//===- Compile.cpp - attnc::compile for Python ----------------------------===//
//
// _attnc.compile(source, buffer_name, emit=..., target=..., options...)
// runs the whole driver in-process with the GIL released and returns a
// CompileOutput, or raises CompileError / InternalCompilerError whose str()
// is exactly what the attnc command line prints.
//
//===----------------------------------------------------------------------===//

#include "Ext.h"

#include "attnc/Driver/Compiler.h"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <mutex>
#include <optional>

namespace attnc_py {

namespace {

struct CompileOutput {
  std::string output;
  std::vector<std::string> files;
  std::vector<attnc::CompileDiagnostic> diagnostics;
  std::string diagnosticText;
};

const std::map<std::string, attnc::EmitKind> &emitKinds() {
  static const std::map<std::string, attnc::EmitKind> kinds = {
      {"artifacts", attnc::EmitKind::Artifacts},
      {"attn", attnc::EmitKind::Attn},
      {"manifest", attnc::EmitKind::Manifest},
      {"tiles", attnc::EmitKind::Tiles},
      {"llvm", attnc::EmitKind::LLVMDialect},
      {"llvm-ir", attnc::EmitKind::LLVMIR},
      {"ptx", attnc::EmitKind::PTX},
      {"plan", attnc::EmitKind::Plan},
  };
  return kinds;
}

std::string diagnosticString(const attnc::CompileDiagnostic &d) {
  std::string s;
  if (!d.file.empty())
    s += d.file + ":" + std::to_string(d.line) + ":" +
         std::to_string(d.column) + ": ";
  return s + d.severity + ": " + d.message;
}

template <typename T> void setIf(T &field, const std::optional<T> &value) {
  if (value)
    field = *value;
}

CompileOutput
compile(const std::string &source, const std::string &bufferName,
        const std::string &emit, const std::string &target,
        const std::string &outputDir, const std::string &stem,
        const std::string &linkage, std::optional<int64_t> blockQ,
        std::optional<int64_t> blockKV, std::optional<int64_t> vectorWidth,
        std::optional<std::string> qkForm, std::optional<int64_t> maxKVSplits,
        std::optional<int64_t> numKVSplits,
        std::optional<int64_t> kernelThreads, std::optional<bool> countTiles) {
  attnc::CompileOptions options;
  auto kind = emitKinds().find(emit);
  if (kind == emitKinds().end()) {
    std::string names;
    for (const auto &[name, _] : emitKinds())
      names += (names.empty() ? "" : ", ") + name;
    throw nb::value_error(
        ("unknown emit kind '" + emit + "'; one of " + names).c_str());
  }
  options.emit = kind->second;
  if (linkage == "shared")
    options.linkage = attnc::HostLinkage::Shared;
  else if (linkage == "object")
    options.linkage = attnc::HostLinkage::Object;
  else
    throw nb::value_error(
        ("unknown linkage '" + linkage + "'; shared or object").c_str());
  options.target = target;
  options.outputDir = outputDir;
  options.stem = stem;
  // Unset options keep CompileOptions' defaults (the command line's).
  setIf(options.tiles.blockQ, blockQ);
  setIf(options.tiles.blockKV, blockKV);
  setIf(options.tiles.vectorWidth, vectorWidth);
  setIf(options.tiles.qkForm, qkForm);
  setIf(options.tiles.maxKVSplits, maxKVSplits);
  setIf(options.tiles.numKVSplits, numKVSplits);
  setIf(options.tiles.numThreads, kernelThreads);
  setIf(options.tiles.countTiles, countTiles);

  attnc::CompileResult result;
  {
    nb::gil_scoped_release release;
    // One compilation at a time: the driver was written for a process that
    // compiles once, and LLVM's target setup is process-global.
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    result = attnc::compile(source, bufferName, options);
  }
  if (result.status != attnc::kCompileOk) {
    ErrorClasses &e = errorClasses();
    bool internal = result.status == attnc::kCompileInternalError;
    std::string text = result.diagnosticText;
    while (!text.empty() && text.back() == '\n')
      text.pop_back();
    if (text.empty())
      text = internal ? "attnc: internal error: the compilation failed "
                        "without a diagnostic (a bug in attnc)"
                      : "attnc: error: the compilation failed";
    raise(internal ? e.internalError : e.compileError, text,
          {{"status", nb::int_(static_cast<int>(result.status))},
           {"diagnostics", nb::cast(result.diagnostics)},
           {"text", nb::str(result.diagnosticText.c_str(),
                            result.diagnosticText.size())}});
  }
  return CompileOutput{std::move(result.output), std::move(result.files),
                       std::move(result.diagnostics),
                       std::move(result.diagnosticText)};
}

} // namespace

void bindCompiler(nb::module_ &m) {
  using namespace nb::literals;
  nb::class_<attnc::CompileDiagnostic>(
      m, "Diagnostic",
      "One compiler diagnostic. file is '' and line/column 0 for a "
      "diagnostic without a source location (options, output files).")
      .def_ro("severity", &attnc::CompileDiagnostic::severity,
              "'error', 'warning', 'note' or 'remark'")
      .def_ro("file", &attnc::CompileDiagnostic::file)
      .def_ro("line", &attnc::CompileDiagnostic::line)
      .def_ro("column", &attnc::CompileDiagnostic::column)
      .def_ro("message", &attnc::CompileDiagnostic::message)
      .def("__str__", &diagnosticString)
      .def("__repr__", [](const attnc::CompileDiagnostic &d) {
        return "<Diagnostic " + diagnosticString(d) + ">";
      });

  nb::class_<CompileOutput>(m, "CompileOutput",
                            "What a successful compilation produced.")
      .def_ro("output", &CompileOutput::output,
              "the emitted level's text ('' for artifacts)")
      .def_ro("files", &CompileOutput::files,
              "artifacts: the paths written (library, header, manifest.json)")
      .def_ro("diagnostics", &CompileOutput::diagnostics,
              "warnings, notes and remarks")
      .def_ro("diagnostic_text", &CompileOutput::diagnosticText,
              "the diagnostics as attnc prints them");

  m.def("compile", &compile, "source"_a, "buffer_name"_a,
        "emit"_a = "artifacts", "target"_a = "host", "output_dir"_a = "",
        "stem"_a = "", "linkage"_a = "shared", "block_q"_a = nb::none(),
        "block_kv"_a = nb::none(), "vector_width"_a = nb::none(),
        "qk_form"_a = nb::none(), "max_kv_splits"_a = nb::none(),
        "num_kv_splits"_a = nb::none(), "kernel_threads"_a = nb::none(),
        "count_tiles"_a = nb::none(),
        "Compiles MLIR text (named buffer_name in diagnostics) as the attnc "
        "command line does. emit: artifacts (into output_dir, named stem: "
        "libSTEM.so or STEM.o by linkage, STEM.h, manifest.json), attn, "
        "manifest, tiles, llvm or llvm-ir (the text in .output). Options "
        "left None keep attnc's defaults. Runs with the GIL released, one "
        "compilation at a time. Raises CompileError (status 1) or "
        "InternalCompilerError (status 2).");
}

} // namespace attnc_py
