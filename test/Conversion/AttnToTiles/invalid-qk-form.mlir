// RUN: attn-opt %s --attn-lower-to-tiles=qk-form=columns -verify-diagnostics

func.func @unknown_form(%q: tensor<1x?x1x8xf32>) -> tensor<1x?x1x8xf32> {
  // expected-error @+1 {{unknown qk-form 'columns'; expected auto, dot or transposed}}
  %o = attn.attention %q, %q, %q
      : (tensor<1x?x1x8xf32>, tensor<1x?x1x8xf32>, tensor<1x?x1x8xf32>) -> tensor<1x?x1x8xf32>
  return %o : tensor<1x?x1x8xf32>
}
