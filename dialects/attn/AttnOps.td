//===- AttnOps.td - attn dialect operations ----------------*- tablegen -*-===//

#ifndef ATTN_OPS_TD
#define ATTN_OPS_TD

include "attn/AttnDialect.td"
include "attn/AttnAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Attn_AttentionOp : Attn_Op<"attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "Scaled dot-product attention over a dense or ragged batch";
  let description = [{
    Computes `softmax(mask(softcap(scale * Q K^T))) V` per query head, with
    query head `h` reading KV head `h / (Hq / Hkv)` (GQA; MQA is `Hkv = 1`).

    Dense form: `query` is `[batch, seq_q, q_heads, head_dim]`, `key` and
    `value` are `[batch, seq_k, kv_heads, head_dim]`. Ragged form (with
    `cu_seqlens`): `query` is `[total_q, q_heads, head_dim]`, `key`/`value`
    `[total_k, kv_heads, head_dim]`, and the two `i32` cumulative-length
    vectors of size `batch + 1` delimit each sequence.

    The result has the query's type. The optional second result is the
    log-sum-exp (natural log, f32): `[batch, q_heads, seq_q]` dense or
    `[q_heads, total_q]` ragged; a row with no visible key gives `-inf` and
    an output of zeros.

    `scale` defaults to `1/sqrt(head_dim)`; `softcap = c > 0` applies
    `c * tanh(s / c)` after scaling.

    ```mlir
    %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
        : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>,
           tensor<?x?x8x128xf16>)
        -> (tensor<?x?x32x128xf16>, tensor<?x32x?xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$query, AnyRankedTensor:$key,
                       AnyRankedTensor:$value,
                       Optional<AnyRankedTensor>:$cuSeqlensQ,
                       Optional<AnyRankedTensor>:$cuSeqlensK,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<F32Attr>:$softcap,
                       OptionalAttr<Attn_MaskAttr>:$mask);
  let results = (outs AnyRankedTensor:$output,
                      Optional<AnyRankedTensor>:$lse);
  let assemblyFormat = [{
    $query `,` $key `,` $value
    (`cu_seqlens` `(` $cuSeqlensQ^ `,` $cuSeqlensK `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool isRagged() { return getCuSeqlensQ() != nullptr; }
    int64_t getNumQueryHeads();
    int64_t getNumKVHeads();
    int64_t getHeadDim();
    /// Query heads sharing one KV head.
    int64_t getGroupSize() { return getNumQueryHeads() / getNumKVHeads(); }
    /// The scale with its default resolved.
    double getScaleOrDefault();
    /// The mask with `none` standing for an absent attribute.
    MaskAttr getMaskOrNone();
    ::mlir::Type getElementType() {
      return getQuery().getType().getElementType();
    }
  }];
}

#endif // ATTN_OPS_TD
