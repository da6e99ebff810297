//===- Compiler.h - attnc as a library: source in, artifacts out -*- C++
//-*-===//
//
// The whole driver pipeline behind one call, shared by the attnc command
// line tool and the Python bindings: parse, verify, lower to the requested
// level, and either return that level's text or write the artifacts. Every
// diagnostic is collected with its location (and also printed to a stream
// when the caller gives one).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_DRIVER_COMPILER_H
#define ATTNC_DRIVER_COMPILER_H

#include "attnc/Pipelines/HostPipeline.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

namespace attnc {

/// What a compilation produces.
enum class EmitKind {
  Artifacts,   // kernel library, header and manifest.json in outputDir
  Attn,        // the verified attn-level input (text)
  Manifest,    // manifest.json of the attn level, no lowering (text)
  Tiles,       // the tiled online-softmax level (text)
  LLVMDialect, // the LLVM dialect (text)
  LLVMIR,      // optimized LLVM IR for the host (text)
  PTX,         // GPU targets only (not in this build: a user error)
  Plan,        // the memory plan of the step functions: a table (text)
};

/// How host kernels are packaged when emitting artifacts.
enum class HostLinkage {
  Shared, // libSTEM.so, opened by attnrt_open(dir)
  Object, // STEM.o for static linking; attnrt_open_embedded(header's symbols)
};

struct CompileOptions {
  std::string target = "host";
  EmitKind emit = EmitKind::Artifacts;
  HostLinkage linkage = HostLinkage::Shared;
  /// Artifacts only: the directory written (created when missing).
  std::string outputDir;
  /// Names the library and header files and (as a C identifier) the
  /// embedded symbols; defaults to the buffer name's stem.
  std::string stem;
  /// The `#attn.target` preset step functions are planned for; empty: the
  /// module's `attn.target` attribute.
  std::string memoryTarget;
  /// Verify the step functions' plans (computed or given), report each and
  /// stop.
  bool verifyPlan = false;
  /// vectorWidth 0 = the host's widest vector unit.
  TileOptions tiles{0, 32, 0, "auto", 8, 0, 0, false};
};

struct CompileDiagnostic {
  std::string severity; // "error", "warning", "note" or "remark"
  std::string file;     // empty when the diagnostic has no file location
  unsigned line = 0, column = 0;
  std::string message;
};

/// Also the attnc tool's exit codes.
enum CompileStatus {
  kCompileOk = 0,
  kCompileUserError = 1,    // the input or options (diagnosed)
  kCompileInternalError = 2 // a failure attnc cannot attribute to the input
};

struct CompileResult {
  CompileStatus status = kCompileOk;
  /// The emitted level's text (every EmitKind but Artifacts).
  std::string output;
  /// Paths written (Artifacts): library or object, header, manifest.json.
  std::vector<std::string> files;
  std::vector<CompileDiagnostic> diagnostics;
  /// Every diagnostic as the command line prints it (file:line:col: error:
  /// message, the source line and a caret).
  std::string diagnosticText;
};

/// Compiles `source` (MLIR text; `bufferName` is its file name in
/// diagnostics). When `diagStream` is set, diagnostics are also printed to
/// it as they occur. MLIR's pass-manager command-line options
/// (--mlir-print-ir-after-all, --mlir-timing, ...) apply when the process
/// registered them.
CompileResult compile(llvm::StringRef source, llvm::StringRef bufferName,
                      const CompileOptions &options,
                      llvm::raw_ostream *diagStream = nullptr);

} // namespace attnc

#endif // ATTNC_DRIVER_COMPILER_H
