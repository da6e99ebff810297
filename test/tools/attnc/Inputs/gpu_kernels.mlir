// Kernels of the GPU driver tests (gpu-target.test): a causal GQA prefill
// with dynamic sizes, a static bf16 kernel with a window, sinks and LSE, and
// a paged bf16 decode.
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

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = bf16>
func.func @decode(%q: tensor<?x32x128xbf16>, %cache: !cache {attn.name = "kv"},
                  %indptr: tensor<?xi32>, %indices: tensor<?xi32>,
                  %last: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// The function's arguments in another order than the op's operands: the
// kernel's parameters are bound by role, so the manifest lists them in the
// kernel's order under the function's names.
!cache8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 64, layout = hnd, storage = f16>
func.func @reordered(%cache: !cache8, %indices: tensor<?xi32>, %q: tensor<?x8x64xf16>,
                     %indptr: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x8x64xf16>, !cache8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}
