//===- AttnDialect.h - the attn dialect -------------------------*- C++ -*-===//
//
// Single include for users of the dialect: the dialect, its enums,
// attributes, types and operations.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_ATTNDIALECT_H
#define ATTN_ATTNDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "attn/AttnDialect.h.inc"

#include "attn/AttnEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "attn/AttnAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "attn/AttnTypes.h.inc"

#define GET_OP_CLASSES
#include "attn/AttnOps.h.inc"

#endif // ATTN_ATTNDIALECT_H
