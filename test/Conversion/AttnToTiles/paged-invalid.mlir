// RUN: attn-opt %s --attn-lower-to-tiles -split-input-file -verify-diagnostics

!c = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>

// Without attn-expand-kv-cache the cache has no buffers to read.
func.func @not_expanded(%q: tensor<?x4x64xf16>, %cache: !c, %i: tensor<?xi32>) -> tensor<?x4x64xf16> {
  // expected-error @+1 {{cache is a !attn.kv_cache argument that is not expanded into its component buffers; run attn-expand-kv-cache first}}
  %o = attn.paged_attention %q, %cache, %i, %i, %i : (tensor<?x4x64xf16>, !c, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}
