// RUN: attn-opt %s -split-input-file --attn-host-to-tiles --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" --attn-cpu-kernel-abi -verify-diagnostics

// expected-error @+1 {{kernel 'passthrough' result #1 is not computed by the kernel (it returns an argument or a view); return only attention results}}
func.func @passthrough(%q: tensor<1x1x1x8xf32>) -> (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) {
  %a = attn.attention %q, %q, %q : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return %a, %q : tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>
}
