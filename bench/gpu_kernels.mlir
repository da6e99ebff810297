// The attnc kernels of bench/gpu_compare.py: compile with
//   attnc bench/gpu_kernels.mlir --target=sm_90 -o build-gpu-bench
// Llama-3-8B attention: 32 query heads over 8 KV heads, head size 128, bf16.
func.func @prefill(%q: tensor<?x?x32x128xbf16>, %k: tensor<?x?x8x128xbf16>,
                   %v: tensor<?x?x8x128xbf16>) -> tensor<?x?x32x128xbf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x32x128xbf16>, tensor<?x?x8x128xbf16>, tensor<?x?x8x128xbf16>)
      -> tensor<?x?x32x128xbf16>
  return %o : tensor<?x?x32x128xbf16>
}

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = bf16>
func.func @decode_bf16(%q: tensor<?x32x128xbf16>, %cache: !cache, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// int8 pages, per-channel K scales per 16-token group, per-token V scales.
!i8cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16>
func.func @decode_i8(%q: tensor<?x32x128xbf16>, %cache: !i8cache, %indptr: tensor<?xi32>,
                     %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !i8cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}
