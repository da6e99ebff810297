//===- HostLibrary.cpp - LLVM dialect to a host shared library ------------===//
//
// Code generation runs in-process for the machine attnc runs on (its CPU name
// and features); only the final link calls an external driver (clang), found
// at configure time and overridable with $ATTNC_LINKER.
//
//===----------------------------------------------------------------------===//

#include "attnc/Target/HostLibrary.h"

#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/GlobalVariable.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

using namespace mlir;

static std::unique_ptr<llvm::TargetMachine> createHostTargetMachine() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getProcessTriple());
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  llvm::SubtargetFeatures features;
  for (const auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
    features.AddFeature(name, enabled);
  return std::unique_ptr<llvm::TargetMachine>(target->createTargetMachine(
      triple, llvm::sys::getHostCPUName(), features.getString(), {},
      llvm::Reloc::PIC_, std::nullopt, llvm::CodeGenOptLevel::Aggressive));
}

static std::unique_ptr<llvm::Module>
translateAndOptimize(ModuleOp module, llvm::LLVMContext &ctx,
                     llvm::TargetMachine &tm) {
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, ctx);
  if (!llvmModule) {
    module.emitError("translation to LLVM IR failed");
    return nullptr;
  }
  llvmModule->setTargetTriple(tm.getTargetTriple());
  llvmModule->setDataLayout(tm.createDataLayout());

  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3)
      .run(*llvmModule, mam);
  return llvmModule;
}

/// The module as LLVM IR optimized for this host, and the host's target
/// machine (for code generation).
static LogicalResult lowerForHost(ModuleOp module, llvm::LLVMContext &ctx,
                                  std::unique_ptr<llvm::TargetMachine> &tm,
                                  std::unique_ptr<llvm::Module> &llvmModule) {
  tm = createHostTargetMachine();
  if (!tm)
    return module.emitError("no LLVM target for this host");
  llvmModule = translateAndOptimize(module, ctx, *tm);
  return success(llvmModule != nullptr);
}

LogicalResult attnc::printHostLLVMIR(ModuleOp module, llvm::raw_ostream &os) {
  llvm::LLVMContext ctx;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::unique_ptr<llvm::Module> llvmModule;
  if (failed(lowerForHost(module, ctx, tm, llvmModule)))
    return failure();
  llvmModule->print(os, nullptr);
  return success();
}

LogicalResult attnc::emitHostArtifact(ModuleOp module,
                                      const HostArtifact &artifact) {
  llvm::LLVMContext ctx;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::unique_ptr<llvm::Module> llvmModule;
  if (failed(lowerForHost(module, ctx, tm, llvmModule)))
    return failure();
  for (const auto &[name, text] : artifact.strings) {
    llvm::Constant *init = llvm::ConstantDataArray::getString(ctx, text);
    new llvm::GlobalVariable(*llvmModule, init->getType(), /*isConstant=*/true,
                             llvm::GlobalValue::ExternalLinkage, init, name);
  }
  StringRef objectPath = artifact.objectPath;
  StringRef sharedLibPath = artifact.sharedLibPath;

  {
    std::error_code ec;
    llvm::ToolOutputFile object(objectPath, ec, llvm::sys::fs::OF_None);
    if (ec)
      return module.emitError()
             << "cannot write " << objectPath << ": " << ec.message();
    llvm::legacy::PassManager codegen;
    if (tm->addPassesToEmitFile(codegen, object.os(), nullptr,
                                llvm::CodeGenFileType::ObjectFile))
      return module.emitError("the host target cannot emit object files");
    codegen.run(*llvmModule);
    object.keep();
  }
  if (sharedLibPath.empty())
    return success();

  std::string linker = ATTNC_HOST_LINKER;
  if (const char *env = std::getenv("ATTNC_LINKER"))
    linker = env;
  auto program = llvm::sys::findProgramByName(linker);
  if (!program)
    return module.emitError() << "linker '" << linker
                              << "' not found; install clang-22 "
                                 "(scripts/setup) or set ATTNC_LINKER";
  SmallVector<StringRef> argv{*program,      "-shared",  "-o",
                              sharedLibPath, objectPath, "-lm"};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*program, argv, std::nullopt, {}, 0, 0,
                                     &message);
  llvm::sys::fs::remove(objectPath);
  if (rc != 0)
    return module.emitError()
           << "linking " << sharedLibPath << " with " << *program
           << " failed (exit " << rc << ") " << message;
  return success();
}
