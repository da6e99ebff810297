// Causal GQA prefill: 8 query heads share 2 KV heads (head size 64), f32,
// bottom-right aligned causal mask, with the log-sum-exp of every row.
func.func @gqa_prefill(%q: tensor<?x?x8x64xf32>, %k: tensor<?x?x2x64xf32>,
                       %v: tensor<?x?x2x64xf32>)
    -> (tensor<?x?x8x64xf32>, tensor<?x8x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xf32>, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>)
      -> (tensor<?x?x8x64xf32>, tensor<?x8x?xf32>)
  return %o, %lse : tensor<?x?x8x64xf32>, tensor<?x8x?xf32>
}
