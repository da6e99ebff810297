//===- AttnAttrs.td - attn dialect attributes --------------*- tablegen -*-===//

#ifndef ATTN_ATTRS_TD
#define ATTN_ATTRS_TD

include "attn/AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"

def Attn_MaskAttr : AttrDef<Attn_Dialect, "Mask"> {
  let mnemonic = "mask";
  let summary = "Which keys each query may see";
  let description = [{
    A structured mask, applied per sequence. Positions are aligned
    bottom-right by default (query `i` of `Lq` against `Lk` keys sits at
    `i + Lk - Lq`), or top-left (`i`) with `top_left`.

    - `causal`: key `j` visible when `j <= pos`.
    - `window = w`: also `j >= pos - w` (implies the causal upper edge).
    - `sinks = s`: keys `j < s` stay visible below the window (needs
      `window`).

    ```mlir
    #attn.mask<none>
    #attn.mask<causal>
    #attn.mask<causal, top_left>
    #attn.mask<window = 4096, sinks = 4>
    ```

    Lowering turns the mask into a *block* predicate (which KV tiles run
    at all) and an *element* predicate (applied only on partial tiles).
  }];
  let parameters = (ins "bool":$causal, "int64_t":$window, "int64_t":$sinks,
                        "bool":$topLeft);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True when keys after the query position are hidden.
    bool hasUpperBound() const { return getCausal() || hasWindow(); }
    bool hasWindow() const { return getWindow() >= 0; }
    bool isNone() const { return !hasUpperBound(); }
  }];
}

#endif // ATTN_ATTRS_TD
