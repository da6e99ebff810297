//===- AttnDialect.cpp - the attn dialect ---------------------------------===//

#include "attn/AttnDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace attnc::attn;

#include "attn/AttnDialect.cpp.inc"
#include "attn/AttnEnums.cpp.inc"

void AttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "attn/AttnOps.cpp.inc"
      >();
  registerAttributes();
  registerTypes();
}
