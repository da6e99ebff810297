// Decode over a paged int8 KV cache: pages of 16 tokens, 2 KV heads of size
// 64, K scaled per channel over groups of 16 tokens, V per token
// (docs/kv-cache.md). kv_append quantizes new tokens into their slots;
// kv_decode attends one query token per sequence (8 query heads) to its
// whole cache.
!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64,
                        layout = nhd, storage = i8, k_group = 16>

func.func @kv_append(%k: tensor<?x2x64xf32>, %v: tensor<?x2x64xf32>,
                     %slots: tensor<?xi32>, %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x64xf32>, tensor<?x2x64xf32>, tensor<?xi32>, !cache
  return
}

func.func @kv_decode(%q: tensor<?x8x64xf32>, %cache: !cache,
                     %kv_indptr: tensor<?xi32>, %kv_indices: tensor<?xi32>,
                     %kv_last_page_len: tensor<?xi32>)
    -> (tensor<?x8x64xf32>, tensor<8x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %kv_indptr, %kv_indices,
      %kv_last_page_len {mask = #attn.mask<causal>}
      : (tensor<?x8x64xf32>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x8x64xf32>, tensor<8x?xf32>)
  return %o, %lse : tensor<?x8x64xf32>, tensor<8x?xf32>
}
