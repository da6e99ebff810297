// RUN: attn-opt %s --attn-count-tiles -verify-diagnostics

memref.global "private" @k__tile_stats : memref<3xi64>

// expected-error @+1 {{attn-count-tiles: symbol 'k__tile_stats' already exists; rename the kernel}}
func.func @k(%q: tensor<1x?x4x64xf32>, %k: tensor<1x?x4x64xf32>,
             %v: tensor<1x?x4x64xf32>) -> tensor<1x?x4x64xf32> {
  %o = attn.attention %q, %k, %v : (tensor<1x?x4x64xf32>, tensor<1x?x4x64xf32>,
                                    tensor<1x?x4x64xf32>) -> tensor<1x?x4x64xf32>
  return %o : tensor<1x?x4x64xf32>
}
