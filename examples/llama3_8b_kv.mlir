// Llama-3-8B attention over a paged int8 KV cache (one layer): 32 query heads
// sharing 8 KV heads, head size 128, pages of 64 tokens; K scaled per channel
// over groups of 64 tokens, V per token (docs/kv-cache.md).
//   - append: write the new tokens' K/V by slot, quantizing on write;
//   - decode: one new token per sequence against its cache (split-KV);
//   - prefill: the new tokens of each sequence (ragged, qo_indptr) against
//     everything cached, causal.

!cache = !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128,
                        layout = nhd, storage = i8, k_group = 64>

func.func @llama3_8b_kv_append(%k: tensor<?x8x128xf16>, %v: tensor<?x8x128xf16>,
                               %slots: tensor<?xi32>, %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !cache
  return
}

func.func @llama3_8b_kv_decode(%q: tensor<?x32x128xf16>, %cache: !cache,
                               %kv_indptr: tensor<?xi32>,
                               %kv_indices: tensor<?xi32>,
                               %kv_last_page_len: tensor<?xi32>)
    -> (tensor<?x32x128xf16>, tensor<32x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %kv_indptr, %kv_indices,
      %kv_last_page_len {mask = #attn.mask<causal>}
      : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
  return %o, %lse : tensor<?x32x128xf16>, tensor<32x?xf32>
}

func.func @llama3_8b_kv_prefill(%q: tensor<?x32x128xf16>, %cache: !cache,
                                %kv_indptr: tensor<?xi32>,
                                %kv_indices: tensor<?xi32>,
                                %kv_last_page_len: tensor<?xi32>,
                                %qo_indptr: tensor<?xi32>)
    -> tensor<?x32x128xf16> {
  %o = attn.paged_attention %q, %cache, %kv_indptr, %kv_indices,
      %kv_last_page_len qo_indptr(%qo_indptr) {mask = #attn.mask<causal>}
      : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf16>
  return %o : tensor<?x32x128xf16>
}
