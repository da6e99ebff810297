// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles="max-kv-splits=4 num-kv-splits=5" -verify-diagnostics

!c = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>

func.func @too_many_splits(%q: tensor<?x4x64xf16>, %cache: !c, %i: tensor<?xi32>) -> tensor<?x4x64xf16> {
  // expected-error @+1 {{num-kv-splits = 5 must be 0 (automatic) to max-kv-splits = 4}}
  %o = attn.paged_attention %q, %cache, %i, %i, %i : (tensor<?x4x64xf16>, !c, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}
