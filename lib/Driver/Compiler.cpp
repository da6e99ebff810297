//===- Compiler.cpp - attnc as a library: source in, artifacts out --------===//
//
// The driver's pipeline: parse, verify, collect the kernels' signatures,
// lower level by level, and stop at the requested level or write the
// artifacts. A failed pass with an error diagnostic is the input's fault
// (status 1); a failure without one is attnc's (status 2).
//
//===----------------------------------------------------------------------===//

#include "attnc/Driver/Compiler.h"

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Planning/OutlineSteps.h"
#include "attnc/Planning/PlanReport.h"
#include "attnc/Planning/StepPlan.h"
#include "attnc/Target/GPUBinary.h"
#include "attnc/Target/HostLibrary.h"
#include "attnc/Target/Manifest.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <mutex>
#include <set>

using namespace mlir;
using namespace attnc;

namespace {

/// Writes to two streams: the caller's (live printing) and the result's.
class TeeStream : public llvm::raw_ostream {
public:
  TeeStream(llvm::raw_ostream &first, llvm::raw_ostream *second)
      : first(first), second(second) {
    SetUnbuffered();
  }

private:
  void write_impl(const char *ptr, size_t size) override {
    first.write(ptr, size);
    if (second)
      second->write(ptr, size);
    pos += size;
  }
  uint64_t current_pos() const override { return pos; }

  llvm::raw_ostream &first;
  llvm::raw_ostream *second;
  uint64_t pos = 0;
};

/// One compilation's context, diagnostics and result.
class Compilation {
public:
  Compilation(const CompileOptions &options, CompileResult &result,
              llvm::raw_ostream *diagStream);

  void run(StringRef source, StringRef bufferName);

private:
  /// An error without a source location, printed and recorded.
  void reportUnlocated(const Twine &message);
  /// An error in the options or files (status 1).
  void userError(const Twine &message);
  /// A failure the input did not cause: reported so it is never silent.
  CompileStatus internalError(const Twine &message);
  CompileStatus runPipeline(ModuleOp module,
                            function_ref<LogicalResult(OpPassManager &)> build);
  void recordDiagnostic(Diagnostic &diag);
  /// Plans, verifies and outlines the step functions (docs/memory-planning.md):
  /// `steps` gets their manifest entries and `planJSON` the plan report.
  CompileStatus planSteps(ModuleOp module,
                          std::optional<llvm::json::Array> &steps,
                          std::string &planJSON);
  /// Writes `text` to DIR/NAME, creating DIR.
  CompileStatus writeFile(StringRef dir, StringRef name, StringRef text);
  CompileStatus writeArtifacts(ModuleOp module,
                               const std::vector<KernelInfo> &kernels,
                               StringRef stem, const llvm::json::Array *steps,
                               StringRef planJSON);
  /// The kernel library's file name in the output directory.
  std::string libraryName(StringRef stem) const;
  /// The GPU target (docs/gpu.md): FlashAttention-2 kernels as PTX for the
  /// lowest of `archs` and a cubin per arch through ptxas.
  CompileStatus compileForGPU(ModuleOp module, std::vector<KernelInfo> &kernels,
                              StringRef stem,
                              const std::vector<std::string> &archs);

  const CompileOptions &options;
  CompileResult &result;
  llvm::raw_string_ostream printed;
  TeeStream tee;
  MLIRContext context;
  int errors = 0;
};

} // namespace

static DialectRegistry makeRegistry() {
  // Pipelines are built from text (parsePassPipeline), so every pass they
  // name must be registered; registration is global and done once.
  static std::once_flag once;
  std::call_once(once, [] {
    registerAllPasses();
    registerAttncConversionPasses();
    // applyPassManagerCLOptions fails unless these were registered; the
    // attnc tool registers them before parsing its command line, every
    // other user of the library (the Python bindings) gets their defaults.
    registerPassManagerCLOptions();
    registerDefaultTimingManagerCLOptions();
  });
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  // gpu-module-to-binary: GPU, NVVM and LLVM dialects to LLVM IR for NVPTX.
  registerAllToLLVMIRTranslations(registry);
  registry.insert<attn::AttnDialect>();
  return registry;
}

Compilation::Compilation(const CompileOptions &options, CompileResult &result,
                         llvm::raw_ostream *diagStream)
    : options(options), result(result), printed(result.diagnosticText),
      tee(printed, diagStream), context(makeRegistry()) {
  // Diagnostics speak in source locations; an IR dump would only bury them.
  context.printOpOnDiagnostic(false);
}

static const char *severityName(DiagnosticSeverity severity) {
  switch (severity) {
  case DiagnosticSeverity::Error:
    return "error";
  case DiagnosticSeverity::Warning:
    return "warning";
  case DiagnosticSeverity::Note:
    return "note";
  case DiagnosticSeverity::Remark:
    return "remark";
  }
  llvm_unreachable("unknown severity");
}

void Compilation::recordDiagnostic(Diagnostic &diag) {
  auto record = [&](Diagnostic &d) {
    CompileDiagnostic entry;
    entry.severity = severityName(d.getSeverity());
    entry.message = d.str();
    if (auto loc = d.getLocation()->findInstanceOf<FileLineColLoc>()) {
      entry.file = loc.getFilename().str();
      entry.line = loc.getLine();
      entry.column = loc.getColumn();
    }
    result.diagnostics.push_back(std::move(entry));
  };
  record(diag);
  for (Diagnostic &note : diag.getNotes())
    record(note);
  if (diag.getSeverity() == DiagnosticSeverity::Error)
    ++errors;
}

void Compilation::reportUnlocated(const Twine &message) {
  CompileDiagnostic entry;
  entry.severity = "error";
  entry.message = message.str();
  tee << "attnc: error: " << entry.message << "\n";
  result.diagnostics.push_back(std::move(entry));
}

void Compilation::userError(const Twine &message) {
  reportUnlocated(message);
  result.status = kCompileUserError;
}

CompileStatus Compilation::internalError(const Twine &message) {
  reportUnlocated("internal error: " + message +
                  "; please report it with the input and the command");
  return kCompileInternalError;
}

CompileStatus
Compilation::runPipeline(ModuleOp module,
                         function_ref<LogicalResult(OpPassManager &)> build) {
  PassManager pm(module->getName());
  if (failed(applyPassManagerCLOptions(pm)))
    return internalError("MLIR's pass-manager options could not be applied");
  if (failed(build(pm)))
    return internalError("the pass pipeline could not be built");
  applyDefaultTimingPassManagerCLOptions(pm);
  int before = errors;
  if (succeeded(pm.run(module)))
    return kCompileOk;
  if (errors > before)
    return kCompileUserError;
  return internalError("a pass failed without a diagnostic");
}

static bool isGPUTarget(StringRef target) { return target.starts_with("sm_"); }

void Compilation::run(StringRef source, StringRef bufferName) {
  std::vector<std::string> archs;
  if (options.target != "host") {
    if (!isGPUTarget(options.target))
      return userError("unknown target '" + options.target +
                       "'; give --target=host or GPU architectures such as "
                       "--target=sm_80,sm_90");
    auto parsed = parseGPUArchs(options.target);
    if (auto *err = std::get_if<std::string>(&parsed))
      return userError(*err);
    archs = std::get<std::vector<std::string>>(parsed);
    if (options.emit == EmitKind::LLVMDialect ||
        options.emit == EmitKind::LLVMIR)
      return userError("--emit=llvm and --emit=llvm-ir print the host's "
                       "code; for a GPU target use --emit=tiles (the GPU "
                       "kernels' IR) or --emit=ptx");
    if (options.linkage == HostLinkage::Object)
      return userError("--linkage=object links host kernels into a "
                       "program; GPU kernels are PTX and cubins, loaded by "
                       "the CUDA driver");
  } else if (options.emit == EmitKind::PTX) {
    return userError("--emit=ptx needs a GPU target, e.g. --target=sm_80; "
                     "use --emit=llvm-ir for the host");
  }
  if (options.emit == EmitKind::Artifacts && options.outputDir.empty() &&
      !options.verifyPlan)
    return userError("no output directory; pass -o DIR, or "
                     "--emit=attn|manifest|tiles|llvm|llvm-ir|plan to print");
  std::string stem = options.stem.empty()
                         ? llvm::sys::path::stem(bufferName).str()
                         : options.stem;
  if (options.emit == EmitKind::Artifacts && stem.empty())
    return userError("the artifacts need a name: give the input a file name "
                     "or set the stem");

  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, bufferName), SMLoc());
  // Handlers run newest first: record, then let the source manager print.
  SourceMgrDiagnosticHandler printer(sourceMgr, &context, tee);
  context.getDiagEngine().registerHandler([this](Diagnostic &d) {
    recordDiagnostic(d);
    return failure();
  });

  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module) {
    result.status = kCompileUserError;
    return;
  }
  llvm::raw_string_ostream out(result.output);
  if (options.emit == EmitKind::Attn) {
    module->print(out);
    return;
  }

  // Step functions: planned (unless the input carries a plan), verified,
  // then outlined into kernels and a program for the manifest.
  std::optional<llvm::json::Array> steps;
  std::string planJSON;
  if (CompileStatus status = planSteps(*module, steps, planJSON)) {
    result.status = status;
    return;
  }
  if (options.emit == EmitKind::Plan || options.verifyPlan)
    return;

  FailureOr<std::vector<KernelInfo>> kernels = collectKernels(*module);
  if (failed(kernels)) {
    result.status = kCompileUserError;
    return;
  }
  if (!archs.empty()) {
    if (steps && !steps->empty())
      return userError("step functions run on the host runtime (attnrt's "
                       "steps); compile them with --target=host");
    result.status = compileForGPU(*module, *kernels, stem, archs);
    return;
  }
  if (options.emit == EmitKind::Manifest) {
    writeManifest(out, *kernels, "host", libraryName(stem), stem + ".h",
                  steps ? &*steps : nullptr);
    return;
  }

  TileOptions tiles = options.tiles;
  int64_t lanes = tiles.vectorWidth > 0 ? tiles.vectorWidth : hostVectorWidth();
  tiles.vectorWidth = lanes;
  if ((result.status = runPipeline(*module, [&](OpPassManager &pm) {
         return buildAttnToTilesPipeline(pm, tiles);
       })))
    return;
  if (failed(recordTiling(*module, *kernels, lanes))) {
    result.status = kCompileUserError;
    return;
  }
  if (options.emit == EmitKind::Tiles) {
    module->print(out);
    return;
  }

  if ((result.status = runPipeline(*module, buildTilesToHostLLVMPipeline)))
    return;
  if (options.emit == EmitKind::LLVMDialect) {
    module->print(out);
    return;
  }
  if (options.emit == EmitKind::LLVMIR) {
    // Its failures (no host target, translation) are attnc's, diagnosed.
    if (failed(printHostLLVMIR(*module, out)))
      result.status = errors ? kCompileInternalError
                             : internalError("translation to LLVM IR failed");
    return;
  }
  result.status = writeArtifacts(*module, *kernels, stem,
                                 steps ? &*steps : nullptr, planJSON);
}

CompileStatus Compilation::planSteps(ModuleOp module,
                                     std::optional<llvm::json::Array> &steps,
                                     std::string &planJSON) {
  SmallVector<func::FuncOp> stepFuncs;
  for (auto fn : module.getOps<func::FuncOp>())
    if (fn->hasAttr("attn.step"))
      stepFuncs.push_back(fn);
  if (stepFuncs.empty()) {
    if (options.emit != EmitKind::Plan && !options.verifyPlan)
      return kCompileOk;
    userError("the input has no step function to plan: mark a func.func "
              "holding a whole step with the attribute attn.step "
              "(docs/memory-planning.md)");
    return kCompileUserError;
  }
  bool planned = llvm::all_of(
      stepFuncs, [](func::FuncOp fn) { return fn->hasAttr("attn.plan"); });
  if (!planned) {
    std::string pipeline =
        "attn-plan-memory{target=" + options.memoryTarget + "}";
    if (CompileStatus status = runPipeline(module, [&](OpPassManager &pm) {
          return parsePassPipeline(pipeline, pm);
        }))
      return status;
  }
  for (func::FuncOp fn : stepFuncs)
    if (failed(verifyStepPlan(fn)))
      return kCompileUserError;
  llvm::raw_string_ostream out(result.output);
  if (options.verifyPlan) {
    for (func::FuncOp fn : stepFuncs)
      out << "attnc: the memory plan of step '" << fn.getSymName()
          << "' verifies\n";
    return kCompileOk;
  }
  planJSON = planReportJSON(module);
  if (options.emit == EmitKind::Plan) {
    out << planReportTable(module);
    if (options.outputDir.empty())
      return kCompileOk;
    return writeFile(options.outputDir, "plan.json", planJSON);
  }
  FailureOr<llvm::json::Array> outlined = outlineSteps(module);
  if (failed(outlined))
    return kCompileUserError;
  steps = std::move(*outlined);
  return kCompileOk;
}

static CompileStatus writeTextFile(StringRef path,
                                   function_ref<void(raw_ostream &)> body,
                                   std::string &error) {
  auto file = openOutputFile(path, &error);
  if (!file)
    return kCompileUserError;
  body(file->os());
  file->keep();
  return kCompileOk;
}

std::string Compilation::libraryName(StringRef stem) const {
  return options.linkage == HostLinkage::Object ? (stem + ".o").str()
                                                : ("lib" + stem + ".so").str();
}

CompileStatus Compilation::writeFile(StringRef dir, StringRef name,
                                     StringRef text) {
  if (std::error_code ec = llvm::sys::fs::create_directories(dir)) {
    userError("cannot create '" + dir + "': " + ec.message());
    return kCompileUserError;
  }
  SmallString<256> path(dir);
  llvm::sys::path::append(path, name);
  std::string error;
  if (writeTextFile(
          path, [&](raw_ostream &os) { os << text; }, error)) {
    userError("cannot write '" + path + "': " + error);
    return kCompileUserError;
  }
  result.files.push_back(std::string(path));
  return kCompileOk;
}

CompileStatus Compilation::writeArtifacts(
    ModuleOp module, const std::vector<KernelInfo> &kernels, StringRef stem,
    const llvm::json::Array *steps, StringRef planJSON) {
  if (std::error_code ec =
          llvm::sys::fs::create_directories(options.outputDir)) {
    userError("cannot create '" + options.outputDir + "': " + ec.message());
    return kCompileUserError;
  }
  auto inDir = [&](StringRef name) {
    SmallString<256> path(options.outputDir);
    llvm::sys::path::append(path, name);
    return std::string(path);
  };
  bool object = options.linkage == HostLinkage::Object;
  std::string library = libraryName(stem);
  std::string header = (stem + ".h").str();
  std::string manifest;
  {
    llvm::raw_string_ostream os(manifest);
    writeManifest(os, kernels, "host", library, header, steps);
  }
  std::string objectPath = inDir(stem.str() + ".o");
  HostArtifact artifact{objectPath,
                        object ? "" : inDir(library),
                        {{embeddedManifestSymbol(stem), manifest}}};
  if (failed(emitHostArtifact(module, artifact)))
    return errors ? kCompileUserError
                  : internalError("code generation failed without a "
                                  "diagnostic");
  result.files.push_back(inDir(library));

  std::string error;
  if (writeTextFile(
          inDir(header),
          [&](raw_ostream &os) { writeHeader(os, kernels, stem); }, error) ||
      writeTextFile(
          inDir("manifest.json"), [&](raw_ostream &os) { os << manifest; },
          error)) {
    userError(error);
    return kCompileUserError;
  }
  result.files.push_back(inDir(header));
  result.files.push_back(inDir("manifest.json"));
  if (!planJSON.empty())
    return writeFile(options.outputDir, "plan.json", planJSON);
  return kCompileOk;
}

CompileStatus
Compilation::compileForGPU(ModuleOp module, std::vector<KernelInfo> &kernels,
                           StringRef stem,
                           const std::vector<std::string> &archs) {
  llvm::raw_string_ostream out(result.output);
  if (CompileStatus status = runPipeline(module, [](OpPassManager &pm) {
        return parsePassPipeline("attn-lower-to-gpu,canonicalize,cse", pm);
      }))
    return status;
  std::map<std::string, llvm::json::Object> launches =
      collectGPULaunches(module);
  for (KernelInfo &k : kernels) {
    auto it = launches.find(k.name);
    if (it == launches.end())
      return internalError("attn-lower-to-gpu left no kernel for '" + k.name +
                           "'");
    k.gpu = std::move(it->second);
    // The kernels name their pointers by role; the manifest names the
    // arguments (attn.name or the defaults), in the function's order, which
    // need not be the kernel's.
    std::map<std::string, std::string> byRole;
    for (const KernelArg &a : k.args)
      byRole[a.role] = a.name;
    std::set<std::string> bound;
    auto bind = [&](llvm::json::Object &launch) {
      for (llvm::json::Value &p : *launch.getArray("params")) {
        llvm::json::Object &param = *p.getAsObject();
        std::optional<StringRef> role = param.getString("arg");
        if (!role)
          continue;
        auto named = byRole.find(role->str());
        if (named == byRole.end())
          return false;
        bound.insert(named->second);
        param["arg"] = named->second;
      }
      return true;
    };
    if (!bind(*k.gpu) ||
        (k.gpu->getObject("merge") && !bind(*k.gpu->getObject("merge"))) ||
        bound.size() != k.args.size())
      return internalError("the GPU kernel '" + k.name +
                           "' does not take each argument's role once");
  }
  // Split-KV kernels' scratch (the partials) is the manifest's scratch.
  WalkResult scratch = module.walk([&](gpu::GPUFuncOp func) {
    auto launch = func->getAttrOfType<DictionaryAttr>("attn.launch");
    auto list = launch ? launch.getAs<ArrayAttr>("scratch") : ArrayAttr();
    if (!list)
      return WalkResult::advance();
    for (KernelInfo &k : kernels)
      if (k.name == func.getName() && failed(recordScratch(func, list, k)))
        return WalkResult::interrupt();
    return WalkResult::advance();
  });
  if (scratch.wasInterrupted())
    return kCompileUserError;
  if (options.emit == EmitKind::Tiles) {
    module->print(out);
    return kCompileOk;
  }
  if (options.emit == EmitKind::Manifest) {
    writeManifest(out, kernels, "cuda", "", (stem + ".h").str(), nullptr,
                  &archs);
    return kCompileOk;
  }
  // PTX for the lowest architecture: the driver JIT-compiles it for newer
  // GPUs. PTX ISA 8.0 (CUDA 12.0) covers sm_80 and sm_90.
  std::string pipeline =
      "gpu-lower-to-nvvm-pipeline{cubin-chip=" + archs.front() +
      " cubin-features=+ptx80 cubin-format=isa opt-level=3}";
  if (CompileStatus status = runPipeline(module, [&](OpPassManager &pm) {
        return parsePassPipeline(pipeline, pm);
      }))
    return status;
  std::map<std::string, std::string> ptx = collectPTX(module);
  for (const KernelInfo &k : kernels)
    if (!ptx.count(k.name))
      return internalError("the NVPTX back-end wrote no PTX for '" + k.name +
                           "'");
  if (options.emit == EmitKind::PTX) {
    for (const KernelInfo &k : kernels)
      out << "// kernel " << k.name << " (" << archs.front() << ")\n"
          << ptx[k.name];
    return kCompileOk;
  }

  std::optional<std::string> ptxas = findPtxas();
  if (!ptxas)
    module.emitWarning()
        << "no ptxas (the CUDA toolkit's) was found: writing PTX only, no "
           "cubins; set ATTNC_PTXAS or install the toolkit";
  for (KernelInfo &k : kernels) {
    std::string ptxName = k.name + ".ptx";
    if (CompileStatus status =
            writeFile(options.outputDir, ptxName, ptx[k.name]))
      return status;
    llvm::json::Object cubins, reports, mergeReports;
    llvm::json::Object *merge = k.gpu->getObject("merge");
    std::string mergeEntry =
        merge ? merge->getString("entry").value_or("").str() : "";
    SmallVector<StringRef, 2> entries{k.name};
    if (merge)
      entries.push_back(mergeEntry);
    for (const std::string &arch : archs) {
      if (!ptxas)
        break;
      std::string cubin = k.name + "." + arch + ".cubin";
      SmallString<256> ptxPath(options.outputDir), cubinPath(options.outputDir);
      llvm::sys::path::append(ptxPath, ptxName);
      llvm::sys::path::append(cubinPath, cubin);
      auto report = runPtxas(*ptxas, ptxPath, arch, cubinPath, entries);
      if (auto *err = std::get_if<std::string>(&report))
        return internalError("ptxas rejected the PTX of kernel '" + k.name +
                             "': " + *err);
      auto &byEntry = std::get<std::map<std::string, PtxasReport>>(report);
      result.files.push_back(std::string(cubinPath));
      cubins[arch] = cubin;
      reports[arch] = toJSON(byEntry.at(k.name));
      if (merge)
        mergeReports[arch] = toJSON(byEntry.at(mergeEntry));
    }
    (*k.gpu)["ptx"] = ptxName;
    (*k.gpu)["ptx_arch"] = archs.front();
    (*k.gpu)["cubins"] = std::move(cubins);
    (*k.gpu)["ptxas"] = std::move(reports);
    if (merge)
      (*merge)["ptxas"] = std::move(mergeReports);
  }
  std::string manifest, header;
  {
    llvm::raw_string_ostream os(manifest);
    writeManifest(os, kernels, "cuda", "", (stem + ".h").str(), nullptr,
                  &archs);
  }
  {
    llvm::raw_string_ostream os(header);
    writeGPUHeader(os, kernels, stem);
  }
  if (CompileStatus status =
          writeFile(options.outputDir, (stem + ".h").str(), header))
    return status;
  return writeFile(options.outputDir, "manifest.json", manifest);
}

CompileResult attnc::compile(StringRef source, StringRef bufferName,
                             const CompileOptions &options,
                             llvm::raw_ostream *diagStream) {
  CompileResult result;
  Compilation(options, result, diagStream).run(source, bufferName);
  return result;
}
