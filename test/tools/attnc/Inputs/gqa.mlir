// Shared input of the driver tests: GQA 4/1, head size 64, f16, with LSE.
func.func @gqa_decode(%q: tensor<?x1x4x64xf16> {attn.name = "query"},
                      %k: tensor<?x?x1x64xf16>, %v: tensor<?x?x1x64xf16>)
    -> (tensor<?x1x4x64xf16>, tensor<?x4x1xf32> {attn.name = "log_sum_exp"}) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x1x4x64xf16>, tensor<?x?x1x64xf16>, tensor<?x?x1x64xf16>)
      -> (tensor<?x1x4x64xf16>, tensor<?x4x1xf32>)
  return %o, %lse : tensor<?x1x4x64xf16>, tensor<?x4x1xf32>
}

func.func @varlen(%q: tensor<?x8x128xbf16>, %k: tensor<?x2x128xbf16>,
                  %v: tensor<?x2x128xbf16>, %cq: tensor<?xi32>,
                  %ck: tensor<?xi32>) -> tensor<?x8x128xbf16> {
  %o = attn.attention %q, %k, %v cu_seqlens(%cq, %ck)
      {mask = #attn.mask<window = 256, sinks = 4>, softcap = 50.0 : f32}
      : (tensor<?x8x128xbf16>, tensor<?x2x128xbf16>, tensor<?x2x128xbf16>,
         tensor<?xi32>, tensor<?xi32>) -> tensor<?x8x128xbf16>
  return %o : tensor<?x8x128xbf16>
}
