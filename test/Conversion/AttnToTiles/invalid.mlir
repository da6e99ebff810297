// RUN: attn-opt %s --attn-lower-to-tiles=block-kv=0 -verify-diagnostics

func.func @zero_tile(%q: tensor<1x?x1x8xf32>) -> tensor<1x?x1x8xf32> {
  // expected-error @+1 {{tile sizes must be positive (block-q = 64, block-kv = 0)}}
  %o = attn.attention %q, %q, %q
      : (tensor<1x?x1x8xf32>, tensor<1x?x1x8xf32>, tensor<1x?x1x8xf32>) -> tensor<1x?x1x8xf32>
  return %o : tensor<1x?x1x8xf32>
}
