// RUN: attn-opt %s --split-input-file --attn-lower-to-tiles -verify-diagnostics

// The cache argument was not expanded into its component buffers.
!c = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16, summary = minmax>
func.func @not_expanded(%q: tensor<?x2x16xf16>, %cache: !c, %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>) {
  // expected-error @+1 {{'attn.select_pages' op cache is a !attn.kv_cache argument that is not expanded into its component buffers; run attn-expand-kv-cache first}}
  %o, %i = attn.select_pages %q, %cache, %indptr, %indices, %last {top_k = 4}
    : (tensor<?x2x16xf16>, !c, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return %o, %i : tensor<?x2x2xi32>, tensor<?x2x4xi32>
}

// -----

// A cache value that is not a function argument's buffers.
!c = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16, summary = minmax>
func.func @not_an_argument(%q: tensor<?x2x16xf16>, %x: i64, %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>) {
  %cache = builtin.unrealized_conversion_cast %x : i64 to !c
  // expected-error @+1 {{'attn.select_pages' op cache must be a function argument (expanded into its component buffers by attn-expand-kv-cache); expected the buffers k_pages: memref<?x16x2x16xf16>, v_pages: memref<?x16x2x16xf16>, k_page_max: memref<?x2x16xf16>, k_page_min: memref<?x2x16xf16>}}
  %o, %i = attn.select_pages %q, %cache, %indptr, %indices, %last {top_k = 4}
    : (tensor<?x2x16xf16>, !c, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return %o, %i : tensor<?x2x2xi32>, tensor<?x2x4xi32>
}
