//===- EntryPoints.cpp - packed C entry points of host kernels ------------===//
//
// For `_mlir_ciface_NAME` (the run function) and `_mlir_ciface_NAME__count`
// emits `NAME__run(ptr args, i64 phase, i64 begin, i64 end)` and
// `NAME__work_items(ptr args, i64 phase) -> i64`: args[i] points to the
// memref descriptor of argument i (arguments, results, then scratch), so the
// runtime calls any kernel the same way. The scalar parameters (phase and
// the work-item range) are passed through in order. Every other function
// gets internal linkage.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace attnc {
#define GEN_PASS_DEF_ATTNCPUENTRYPOINTS
#include "attnc/Conversion/Passes.h.inc"
} // namespace attnc

using namespace mlir;

namespace {

constexpr StringLiteral kCInterfacePrefix = "_mlir_ciface_";
constexpr StringLiteral kCountSuffix = "__count";

LLVM::LLVMFuncOp emitEntryPoint(ModuleOp module, LLVM::LLVMFuncOp target) {
  StringRef kernel = target.getSymName().drop_front(kCInterfacePrefix.size());
  bool isCount = kernel.ends_with(kCountSuffix);
  std::string name =
      isCount ? (kernel.drop_back(kCountSuffix.size()) + "__work_items").str()
              : (kernel + "__run").str();

  MLIRContext *ctx = module.getContext();
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  LLVM::LLVMFunctionType targetType = target.getFunctionType();
  SmallVector<Type> params{ptr};
  for (Type t : targetType.getParams())
    if (!isa<LLVM::LLVMPointerType>(t))
      params.push_back(t); // phase, then the work-item range
  auto type = LLVM::LLVMFunctionType::get(targetType.getReturnType(), params);

  ImplicitLocOpBuilder b(target.getLoc(), module.getBody(),
                         module.getBody()->end());
  auto fn = LLVM::LLVMFuncOp::create(b, name, type);
  b.setInsertionPointToStart(fn.addEntryBlock(b));
  Value args = fn.getArgument(0);
  SmallVector<Value> operands;
  int32_t descriptor = 0;
  unsigned scalar = 1;
  for (Type t : targetType.getParams()) {
    if (!isa<LLVM::LLVMPointerType>(t)) {
      operands.push_back(fn.getArgument(scalar++));
      continue;
    }
    Value slot = LLVM::GEPOp::create(b, ptr, ptr, args,
                                     ArrayRef<LLVM::GEPArg>{descriptor++});
    operands.push_back(LLVM::LoadOp::create(b, ptr, slot));
  }
  auto call = LLVM::CallOp::create(b, target, operands);
  LLVM::ReturnOp::create(b, call.getResults());
  return fn;
}

struct AttnCPUEntryPointsPass
    : public attnc::impl::AttnCPUEntryPointsBase<AttnCPUEntryPointsPass> {
  void runOnOperation() override {
    SmallVector<LLVM::LLVMFuncOp> targets;
    for (auto fn : getOperation().getOps<LLVM::LLVMFuncOp>())
      if (fn.getSymName().starts_with(kCInterfacePrefix) && !fn.isExternal())
        targets.push_back(fn);
    // Only the entry points are the library's interface. Everything else is
    // internal: a kernel named like a libc function (`select`, `read`) would
    // otherwise be interposed by it at load time.
    llvm::SmallPtrSet<Operation *, 8> entryPoints;
    for (LLVM::LLVMFuncOp fn : targets)
      entryPoints.insert(emitEntryPoint(getOperation(), fn));
    for (auto fn : getOperation().getOps<LLVM::LLVMFuncOp>())
      if (!fn.isExternal() && !entryPoints.contains(fn))
        fn.setLinkage(LLVM::Linkage::Internal);
  }
};

} // namespace
