// RUN: attn-opt %s --split-input-file --attn-lower-to-tiles -verify-diagnostics

// The cache argument was not expanded into its component buffers.
func.func @not_expanded(%k: tensor<?x2x16xf16>, %v: tensor<?x2x16xf16>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = i8>) {
  // expected-error @+1 {{'attn.kv_append' op cache is a !attn.kv_cache argument that is not expanded into its component buffers; run attn-expand-kv-cache first}}
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf16>, tensor<?x2x16xf16>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = i8>
  return
}

// -----

// A cache value that is not a function argument's buffers.
func.func @not_an_argument(%k: tensor<?x2x16xf16>, %v: tensor<?x2x16xf16>, %slots: tensor<?xi32>,
    %x: i64) {
  %cache = builtin.unrealized_conversion_cast %x : i64 to !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16>
  // expected-error @+1 {{'attn.kv_append' op cache must be a function argument (expanded into its component buffers by attn-expand-kv-cache); expected the buffers k_pages: memref<?x16x2x16xf16>, v_pages: memref<?x16x2x16xf16>}}
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf16>, tensor<?x2x16xf16>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16>
  return
}
