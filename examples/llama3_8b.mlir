// Llama-3-8B attention: 32 query heads sharing 8 KV heads (GQA 4), head size
// 128, causal, f16. One prefill kernel (dense batch, any lengths) and one
// decode kernel (a single new token per sequence against its whole cache).

func.func @llama3_8b_prefill(%q: tensor<?x?x32x128xf16>,
                             %k: tensor<?x?x8x128xf16>,
                             %v: tensor<?x?x8x128xf16>)
    -> tensor<?x?x32x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
      -> tensor<?x?x32x128xf16>
  return %o : tensor<?x?x32x128xf16>
}

func.func @llama3_8b_decode(%q: tensor<?x1x32x128xf16>,
                            %k: tensor<?x?x8x128xf16>,
                            %v: tensor<?x?x8x128xf16>)
    -> (tensor<?x1x32x128xf16>, tensor<?x32x1xf32>) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x1x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
      -> (tensor<?x1x32x128xf16>, tensor<?x32x1xf32>)
  return %o, %lse : tensor<?x1x32x128xf16>, tensor<?x32x1xf32>
}
