// Sparse attention for Llama-3-8B shapes (32 query heads over 8 KV heads,
// head size 128, f16); docs/sparsity.md. Each kernel visits only the KV tiles
// its mask leaves visible (compile with --count-tiles and run attn-run --stats
// to count them).

// StreamingLLM: 4 attention sinks and a 1020-token sliding window.
func.func @llama3_8b_streaming_prefill(%q: tensor<1x?x32x128xf16>,
                                       %k: tensor<1x?x8x128xf16>,
                                       %v: tensor<1x?x8x128xf16>)
    -> tensor<1x?x32x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<window = 1020, sinks = 4>}
      : (tensor<1x?x32x128xf16>, tensor<1x?x8x128xf16>, tensor<1x?x8x128xf16>)
      -> tensor<1x?x32x128xf16>
  return %o : tensor<1x?x32x128xf16>
}

// DuoAttention: KV heads 0-3 are full causal retrieval heads, 4-7 streaming
// heads (4 sinks + a 1020-token window).
func.func @llama3_8b_duo_prefill(%q: tensor<1x?x32x128xf16>,
                                 %k: tensor<1x?x8x128xf16>,
                                 %v: tensor<1x?x8x128xf16>)
    -> tensor<1x?x32x128xf16> {
  %o = attn.attention %q, %k, %v {head_masks = [
          #attn.mask<causal>, #attn.mask<causal>, #attn.mask<causal>,
          #attn.mask<causal>, #attn.mask<window = 1020, sinks = 4>,
          #attn.mask<window = 1020, sinks = 4>,
          #attn.mask<window = 1020, sinks = 4>,
          #attn.mask<window = 1020, sinks = 4>]}
      : (tensor<1x?x32x128xf16>, tensor<1x?x8x128xf16>, tensor<1x?x8x128xf16>)
      -> tensor<1x?x32x128xf16>
  return %o : tensor<1x?x32x128xf16>
}

// FlexAttention-style block mask: per KV head, the visible 128 x 128 blocks
// of each query block; listed blocks flagged full skip the causal predicate.
func.func @llama3_8b_block_sparse_prefill(%q: tensor<1x?x32x128xf16>,
                                          %k: tensor<1x?x8x128xf16>,
                                          %v: tensor<1x?x8x128xf16>,
                                          %offsets: tensor<1x8x?xi32>,
                                          %indices: tensor<1x8x?xi32>,
                                          %full: tensor<1x8x?xi8>)
    -> tensor<1x?x32x128xf16> {
  %o = attn.attention %q, %k, %v block_sparse(%offsets, %indices)
      block_full(%full)
      {block_size = array<i64: 128, 128>, mask = #attn.mask<causal>}
      : (tensor<1x?x32x128xf16>, tensor<1x?x8x128xf16>, tensor<1x?x8x128xf16>,
         tensor<1x8x?xi32>, tensor<1x8x?xi32>, tensor<1x8x?xi8>)
      -> tensor<1x?x32x128xf16>
  return %o : tensor<1x?x32x128xf16>
}
