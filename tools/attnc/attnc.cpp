//===- attnc.cpp - the attnc compiler driver ------------------------------===//
//
//   attnc IN.mlir --target=host -o DIR     writes DIR/libSTEM.so, STEM.h and
//                                          manifest.json
//   attnc IN.mlir --emit=attn|tiles|llvm|llvm-ir   prints one level and stops
//   attnc IN.mlir --emit=manifest          prints manifest.json of the input
//                                          level (no lowering)
//
// Exit codes: 0 success, 1 error in the input or options (diagnosed with its
// location), 2 internal error (a failure attnc could not attribute to input).
//
//===----------------------------------------------------------------------===//

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Pipelines/HostPipeline.h"
#include "attnc/Target/HostLibrary.h"
#include "attnc/Target/Manifest.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

namespace {
enum ExitCode { kOk = 0, kUserError = 1, kInternalError = 2 };
enum class Emit { Artifacts, Attn, Manifest, Tiles, LLVMDialect, LLVMIR };

cl::OptionCategory category("attnc options");
cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input.mlir>"),
                               cl::Required, cl::cat(category));
cl::opt<std::string> outputDir("o", cl::desc("Output directory for artifacts"),
                               cl::value_desc("dir"), cl::cat(category));
cl::opt<std::string> target("target",
                            cl::desc("Target: host (the CPU attnc runs on)"),
                            cl::init("host"), cl::cat(category));
cl::opt<Emit> emit(
    "emit",
    cl::desc("Print one level of IR (or the manifest) to stdout instead of "
             "writing artifacts"),
    cl::values(clEnumValN(Emit::Attn, "attn", "verified attn-level input"),
               clEnumValN(Emit::Manifest, "manifest",
                          "manifest.json from the attn level alone, without "
                          "lowering: no tile sizes or workspace, 1 phase, no "
                          "scratch"),
               clEnumValN(Emit::Tiles, "tiles", "tiled online-softmax level"),
               clEnumValN(Emit::LLVMDialect, "llvm", "LLVM dialect"),
               clEnumValN(Emit::LLVMIR, "llvm-ir", "optimized LLVM IR")),
    cl::init(Emit::Artifacts), cl::cat(category));
cl::opt<int64_t> blockQ("block-q",
                        cl::desc("Query tokens per tile (0: automatic)"),
                        cl::init(0), cl::cat(category));
cl::opt<int64_t> blockKV("block-kv", cl::desc("Keys per KV tile"), cl::init(32),
                         cl::cat(category));
cl::opt<std::string>
    qkForm("qk-form",
           cl::desc("Q.K^T form: auto, dot or transposed (see docs/passes.md)"),
           cl::init("auto"), cl::cat(category));
cl::opt<int64_t> maxKVSplits(
    "max-kv-splits",
    cl::desc("Paged decode: at most this many split-KV partitions per "
             "sequence (sizes the scratch; 1 disables split-KV)"),
    cl::init(8), cl::cat(category));
cl::opt<int64_t> numKVSplits(
    "num-kv-splits",
    cl::desc("Paged decode: a fixed number of split-KV partitions (0: chosen "
             "per call from the batch, the KV heads and --kernel-threads)"),
    cl::init(0), cl::cat(category));
cl::opt<int64_t> numThreads(
    "kernel-threads",
    cl::desc("Threads the kernels will run on, for the split-KV choice (0: "
             "this machine's cores)"),
    cl::init(0), cl::cat(category));
cl::opt<bool> countTiles(
    "count-tiles",
    cl::desc("Instrument attention kernels with tile counters (KV tiles run, "
             "tiles with the element predicate, work items; attn-run "
             "--stats); costs an atomic add per tile"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t>
    vectorWidth("vector-width",
                cl::desc("f32 lanes per vector (0: the host's widest unit)"),
                cl::init(0), cl::cat(category));

/// Counts error diagnostics so pass failures can be told apart: diagnosed
/// (user error) or silent (internal error).
struct ErrorCounter {
  explicit ErrorCounter(MLIRContext &ctx) {
    ctx.getDiagEngine().registerHandler([this](Diagnostic &d) {
      if (d.getSeverity() == DiagnosticSeverity::Error)
        ++errors;
      return failure(); // let the source manager handler print it
    });
  }
  int errors = 0;
};
} // namespace

static int writeFile(StringRef path, function_ref<void(raw_ostream &)> body) {
  std::string error;
  auto file = openOutputFile(path, &error);
  if (!file) {
    llvm::errs() << "attnc: error: " << error << "\n";
    return kUserError;
  }
  body(file->os());
  file->keep();
  return kOk;
}

static int runPipeline(ModuleOp module, ErrorCounter &counter,
                       function_ref<LogicalResult(OpPassManager &)> build) {
  PassManager pm(module->getName());
  if (failed(applyPassManagerCLOptions(pm)) || failed(build(pm)))
    return kInternalError;
  applyDefaultTimingPassManagerCLOptions(pm);
  int before = counter.errors;
  if (succeeded(pm.run(module)))
    return kOk;
  return counter.errors > before ? kUserError : kInternalError;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "attnc: compiles attention in the attn dialect to kernels\n\n"
      "  attnc model.mlir --target=host -o build/kernels/\n"
      "  attnc model.mlir --emit=tiles\n"
      "  attnc model.mlir --emit=manifest   (the kernels' signatures only)\n\n"
      "Exit codes: 0 success, 1 error in the input or options, 2 internal "
      "error.\n");

  if (target != "host") {
    llvm::errs() << "attnc: error: unknown target '" << target
                 << "'; this build supports --target=host (GPU targets sm_80 "
                    "and sm_90 are not implemented yet)\n";
    return kUserError;
  }
  if (emit == Emit::Artifacts && outputDir.empty()) {
    llvm::errs()
        << "attnc: error: no output directory; pass -o DIR, or "
           "--emit=attn|manifest|tiles|llvm|llvm-ir to print to stdout\n";
    return kUserError;
  }
  int64_t lanes =
      vectorWidth > 0 ? vectorWidth.getValue() : attnc::hostVectorWidth();

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registry.insert<attnc::attn::AttnDialect>();
  registerAllPasses();
  attnc::registerAttncConversionPasses();
  MLIRContext context(registry);
  // Diagnostics speak in source locations; an IR dump would only bury them.
  context.printOpOnDiagnostic(false);

  llvm::SourceMgr sourceMgr;
  std::string error;
  auto buffer = openInputFile(inputFile, &error);
  if (!buffer) {
    llvm::errs() << "attnc: error: " << error << "\n";
    return kUserError;
  }
  sourceMgr.AddNewSourceBuffer(std::move(buffer), SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  ErrorCounter counter(context);

  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return kUserError;
  if (emit == Emit::Attn) {
    module->print(llvm::outs());
    return kOk;
  }

  FailureOr<std::vector<attnc::KernelInfo>> kernels =
      attnc::collectKernels(*module);
  if (failed(kernels))
    return kUserError;
  StringRef stem = llvm::sys::path::stem(inputFile);
  std::string library = ("lib" + stem + ".so").str();
  std::string header = (stem + ".h").str();
  if (emit == Emit::Manifest) {
    attnc::writeManifest(llvm::outs(), *kernels, "host", library, header);
    return kOk;
  }

  attnc::TileOptions tiles{blockQ,      blockKV,     lanes,      qkForm,
                           maxKVSplits, numKVSplits, numThreads, countTiles};
  if (int rc = runPipeline(*module, counter, [&](OpPassManager &pm) {
        return attnc::buildAttnToTilesPipeline(pm, tiles);
      }))
    return rc;
  if (failed(attnc::recordTiling(*module, *kernels, lanes)))
    return kUserError;
  if (emit == Emit::Tiles) {
    module->print(llvm::outs());
    return kOk;
  }

  if (int rc =
          runPipeline(*module, counter, attnc::buildTilesToHostLLVMPipeline))
    return rc;
  if (emit == Emit::LLVMDialect) {
    module->print(llvm::outs());
    return kOk;
  }
  if (emit == Emit::LLVMIR)
    return succeeded(attnc::printHostLLVMIR(*module, llvm::outs()))
               ? kOk
               : kInternalError;

  if (std::error_code ec = llvm::sys::fs::create_directories(outputDir)) {
    llvm::errs() << "attnc: error: cannot create '" << outputDir
                 << "': " << ec.message() << "\n";
    return kUserError;
  }
  auto inDir = [&](StringRef name) {
    SmallString<256> path(outputDir);
    llvm::sys::path::append(path, name);
    return std::string(path);
  };
  if (failed(attnc::emitHostLibrary(*module, inDir(stem.str() + ".o"),
                                    inDir(library))))
    return kUserError;
  if (int rc = writeFile(inDir(header), [&](raw_ostream &os) {
        attnc::writeHeader(os, *kernels, stem);
      }))
    return rc;
  return writeFile(inDir("manifest.json"), [&](raw_ostream &os) {
    attnc::writeManifest(os, *kernels, "host", library, header);
  });
}
