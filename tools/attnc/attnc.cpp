//===- attnc.cpp - the attnc compiler driver ------------------------------===//
//
//   attnc IN.mlir --target=host -o DIR     writes DIR/libSTEM.so, STEM.h and
//                                          manifest.json
//   attnc IN.mlir --linkage=object -o DIR  writes DIR/STEM.o (static linking)
//   attnc IN.mlir --emit=attn|tiles|llvm|llvm-ir   prints one level and stops
//   attnc IN.mlir --emit=manifest          prints manifest.json of the input
//                                          level (no lowering)
//   attnc IN.mlir --emit=plan              prints the memory plan of the step
//                                          functions (-o DIR: DIR/plan.json)
//
// The work is attnc::compile (lib/Driver), shared with the Python bindings.
// Exit codes: 0 success, 1 error in the input or options (diagnosed with its
// location), 2 internal error (a failure attnc could not attribute to input).
//
//===----------------------------------------------------------------------===//

#include "attnc/Driver/Compiler.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace mlir;
using namespace attnc;
namespace cl = llvm::cl;

namespace {
cl::OptionCategory category("attnc options");
cl::OptionCategory mlirCategory(
    "MLIR options (pass manager, timing, IR printing)",
    "MLIR's standard options; --mlir-print-ir-after-all and --mlir-timing "
    "apply to every attnc pipeline");

cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input.mlir>"),
                               cl::Required, cl::cat(category));
cl::opt<std::string> outputDir("o", cl::desc("Output directory for artifacts"),
                               cl::value_desc("dir"), cl::cat(category));
cl::opt<std::string>
    target("target",
           cl::desc("Target: host (the CPU attnc runs on), or NVIDIA GPU "
                    "architectures, e.g. sm_80,sm_90 (PTX for the lowest, "
                    "a cubin for each through ptxas)"),
           cl::init("host"), cl::cat(category));
cl::opt<EmitKind> emit(
    "emit",
    cl::desc("Print one level of IR (or the manifest) to stdout instead of "
             "writing artifacts"),
    cl::values(clEnumValN(EmitKind::Attn, "attn", "verified attn-level input"),
               clEnumValN(EmitKind::Manifest, "manifest",
                          "manifest.json from the attn level alone, without "
                          "lowering: no tile sizes or workspace, 1 phase, no "
                          "scratch"),
               clEnumValN(EmitKind::Tiles, "tiles",
                          "tiled online-softmax level (GPU targets: the "
                          "gpu.module kernels)"),
               clEnumValN(EmitKind::LLVMDialect, "llvm", "LLVM dialect"),
               clEnumValN(EmitKind::LLVMIR, "llvm-ir", "optimized LLVM IR"),
               clEnumValN(EmitKind::PTX, "ptx",
                          "PTX of every kernel (GPU targets)"),
               clEnumValN(EmitKind::Plan, "plan",
                          "the memory plan of the step functions as a table "
                          "(with -o DIR, also DIR/plan.json)")),
    cl::init(EmitKind::Artifacts), cl::cat(category));
cl::opt<std::string> memoryTarget(
    "memory-target",
    cl::desc("The #attn.target preset step functions are planned for "
             "(h100-80gb, a100-80gb, h200, host); default: the module's "
             "attn.target attribute"),
    cl::value_desc("preset"), cl::cat(category));
cl::opt<bool> verifyPlan(
    "verify-plan",
    cl::desc("Check the step functions' memory plans (given in the input or "
             "computed) with the plan verifier, report, and stop"),
    cl::cat(category));
cl::opt<HostLinkage> linkage(
    "linkage", cl::desc("How host kernels are packaged (with -o)"),
    cl::values(clEnumValN(HostLinkage::Shared, "shared",
                          "libSTEM.so, loaded by attnrt_open(DIR)"),
               clEnumValN(HostLinkage::Object, "object",
                          "STEM.o for static linking, loaded by "
                          "attnrt_open_embedded with the header's symbols")),
    cl::init(HostLinkage::Shared), cl::cat(category));
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
} // namespace

/// MLIR's registered options (--mlir-*) join their own --help category;
/// LLVM's internal options stay hidden.
static void showMLIROptions() {
  for (auto &entry : cl::getRegisteredOptions())
    if (entry.first.starts_with("mlir-"))
      entry.second->addCategory(mlirCategory);
  cl::HideUnrelatedOptions({&category, &mlirCategory});
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  showMLIROptions();
  cl::ParseCommandLineOptions(
      argc, argv,
      "attnc: compiles attention in the attn dialect to kernels\n\n"
      "  attnc model.mlir --target=host -o build/kernels/\n"
      "  attnc model.mlir --linkage=object -o build/kernels/\n"
      "  attnc model.mlir --emit=tiles\n"
      "  attnc model.mlir --emit=manifest   (the kernels' signatures only)\n"
      "  attnc step.mlir --emit=plan --memory-target=h100-80gb\n\n"
      "Exit codes: 0 success, 1 error in the input or options (reported as "
      "file:line:col: error: ...), 2 internal error.\n");

  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> buffer = openInputFile(inputFile, &error);
  if (!buffer) {
    llvm::errs() << "attnc: error: " << error << "\n";
    return kCompileUserError;
  }
  CompileOptions options;
  options.target = target;
  options.emit = emit;
  options.linkage = linkage;
  options.outputDir = outputDir;
  options.memoryTarget = memoryTarget;
  options.verifyPlan = verifyPlan;
  options.tiles =
      TileOptions{blockQ,      blockKV,     vectorWidth, qkForm,
                  maxKVSplits, numKVSplits, numThreads,  countTiles};
  CompileResult result =
      compile(buffer->getBuffer(), inputFile, options, &llvm::errs());
  llvm::outs() << result.output;
  return result.status;
}
