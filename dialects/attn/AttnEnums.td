//===- AttnEnums.td - attn dialect enums -------------------*- tablegen -*-===//

#ifndef ATTN_ENUMS_TD
#define ATTN_ENUMS_TD

include "attn/AttnDialect.td"
include "mlir/IR/EnumAttr.td"

def Attn_MemoryTier : I32Enum<"MemoryTier",
    "A memory tier of the target (#attn.target)", [
      I32EnumCase<"HBM", 0, "hbm">,
      I32EnumCase<"Host", 1, "host">
    ]> {
  let cppNamespace = "::attnc::attn";
}

#endif // ATTN_ENUMS_TD
