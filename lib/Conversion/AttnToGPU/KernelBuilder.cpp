//===- KernelBuilder.cpp - Builder helpers of the GPU kernels -------------===//

#include "KernelBuilder.h"

using namespace mlir;
using namespace attnc::gpu_kernels;

Value KernelBuilder::globalView(Value ptr, Type elemType,
                                ArrayRef<int64_t> shape,
                                ArrayRef<Value> sizes) {
  MLIRContext *ctx = b.getContext();
  int64_t rank = shape.size();
  Type i64 = b.getI64Type();
  auto arr = LLVM::LLVMArrayType::get(i64, rank);
  Type ptrTy = ptr.getType();
  auto descTy =
      LLVM::LLVMStructType::getLiteral(ctx, {ptrTy, ptrTy, i64, arr, arr});
  Value desc = LLVM::PoisonOp::create(b, descTy);
  desc = LLVM::InsertValueOp::create(b, desc, ptr, ArrayRef<int64_t>{0});
  desc = LLVM::InsertValueOp::create(b, desc, ptr, ArrayRef<int64_t>{1});
  auto c64 = [&](int64_t v) { return LLVM::ConstantOp::create(b, i64, v); };
  desc = LLVM::InsertValueOp::create(b, desc, c64(0), ArrayRef<int64_t>{2});
  SmallVector<Value> dims;
  for (int64_t i = 0, dyn = 0; i < rank; ++i)
    dims.push_back(
        ShapedType::isDynamic(shape[i])
            ? arith::IndexCastOp::create(b, i64, sizes[dyn++]).getResult()
            : c64(shape[i]));
  Value stride = c64(1);
  for (int64_t i = rank - 1; i >= 0; --i) {
    desc =
        LLVM::InsertValueOp::create(b, desc, dims[i], ArrayRef<int64_t>{3, i});
    desc =
        LLVM::InsertValueOp::create(b, desc, stride, ArrayRef<int64_t>{4, i});
    stride = LLVM::MulOp::create(b, stride, dims[i]);
  }
  auto type = MemRefType::get(
      shape, elemType, MemRefLayoutAttrInterface(),
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Global));
  return UnrealizedConversionCastOp::create(b, type, desc).getResult(0);
}

HeadMask KernelBuilder::headMask(ArrayRef<attn::MaskAttr> masks, Value kvHead) {
  HeadMask m;
  m.topLeft = masks.front().getTopLeft(); // the same for all (verifier)
  // The field's constant when every head agrees, else a select chain.
  auto field = [&](Type type, llvm::function_ref<int64_t(attn::MaskAttr)> get) {
    auto constant = [&](int64_t v) -> Value {
      if (type.isInteger(1))
        return arith::ConstantIntOp::create(b, type, v);
      return idx(v);
    };
    Value v = constant(get(masks.front()));
    for (size_t h = 1; h < masks.size(); ++h)
      if (get(masks[h]) != get(masks.front()))
        v = select(cmp(arith::CmpIPredicate::eq, kvHead, idx(h)),
                   constant(get(masks[h])), v);
    return v;
  };
  Type i1 = b.getI1Type(), index = b.getIndexType();
  for (attn::MaskAttr mask : masks) {
    m.anyUpper |= mask.hasUpperBound();
    m.anyWindow |= mask.hasWindow();
    m.anySinks |= mask.hasWindow() && mask.getSinks() > 0;
  }
  m.upper = field(i1, [](attn::MaskAttr k) { return k.hasUpperBound(); });
  m.hasWindow = field(i1, [](attn::MaskAttr k) { return k.hasWindow(); });
  m.window = field(index, [](attn::MaskAttr k) {
    return k.hasWindow() ? k.getWindow() : 0;
  });
  m.sinks = field(
      index, [](attn::MaskAttr k) { return k.hasWindow() ? k.getSinks() : 0; });
  return m;
}
