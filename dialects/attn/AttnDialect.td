//===- AttnDialect.td - the attn dialect -------------------*- tablegen -*-===//
//
// The attn dialect describes *what* attention to compute: heads, masks,
// scaling, batch layout. It knows nothing about targets.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_TD
#define ATTN_DIALECT_TD

include "mlir/IR/OpBase.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::attnc::attn";
  let summary = "Memory-efficient attention: what to compute, not how";
  let description = [{
    The `attn` dialect expresses scaled dot-product attention (GQA/MQA,
    masks, soft-capping) over dense and ragged batches and over paged,
    possibly quantized KV caches. Passes lower it to a
    target-neutral tiled online-softmax algorithm, then to CPU or GPU code.
    The exact semantics every backend matches are in docs/semantics.md.
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // ATTN_DIALECT_TD
