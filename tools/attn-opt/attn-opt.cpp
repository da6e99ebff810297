//===- attn-opt.cpp - mlir-opt with the attn dialect and passes -----------===//

#include "attn/AttnDialect.h"
#include "attnc/Conversion/Passes.h"
#include "attnc/Pipelines/HostPipeline.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  attnc::registerAttncConversionPasses();
  attnc::registerHostPipelines();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary translates GPU modules to LLVM IR (NVPTX).
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<attnc::attn::AttnDialect>();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "attn-opt: the attn dialect's pass driver\n", registry));
}
