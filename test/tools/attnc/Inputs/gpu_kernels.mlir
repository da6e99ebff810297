// Kernels of the GPU driver tests (gpu-target.test): a causal GQA prefill
// with dynamic sizes, and a static bf16 kernel with a window, sinks and LSE.
func.func @prefill(%q: tensor<?x?x8x128xf16> {attn.name = "query"}, %k: tensor<?x?x2x128xf16>,
                   %v: tensor<?x?x2x128xf16>) -> tensor<?x?x8x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x8x128xf16>, tensor<?x?x2x128xf16>, tensor<?x?x2x128xf16>)
      -> tensor<?x?x8x128xf16>
  return %o : tensor<?x?x8x128xf16>
}

func.func @window(%q: tensor<2x200x4x64xbf16>, %k: tensor<2x1000x4x64xbf16>,
                  %v: tensor<2x1000x4x64xbf16>)
    -> (tensor<2x200x4x64xbf16>, tensor<2x4x200xf32> {attn.name = "lse"}) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<window = 100, sinks = 4>}
      : (tensor<2x200x4x64xbf16>, tensor<2x1000x4x64xbf16>, tensor<2x1000x4x64xbf16>)
      -> (tensor<2x200x4x64xbf16>, tensor<2x4x200xf32>)
  return %o, %lse : tensor<2x200x4x64xbf16>, tensor<2x4x200xf32>
}
