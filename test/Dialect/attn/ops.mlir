// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s
// RUN: attn-opt %s --mlir-print-op-generic | attn-opt | FileCheck %s

// CHECK-LABEL: func @dense_gqa
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} {mask = #attn.mask<causal>}
func.func @dense_gqa(%q: tensor<?x?x32x128xf16>, %k: tensor<?x?x8x128xf16>,
                     %v: tensor<?x?x8x128xf16>) -> tensor<?x?x32x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
      -> tensor<?x?x32x128xf16>
  return %o : tensor<?x?x32x128xf16>
}

// CHECK-LABEL: func @with_lse
// CHECK: %{{.*}}, %{{.*}} = attn.attention
// CHECK-SAME: scale = 1.250000e-01 : f32, softcap = 5.000000e+01 : f32
// CHECK-SAME: -> (tensor<2x7x4x64xbf16>, tensor<2x4x7xf32>)
func.func @with_lse(%q: tensor<2x7x4x64xbf16>, %k: tensor<2x9x1x64xbf16>,
                    %v: tensor<2x9x1x64xbf16>)
    -> (tensor<2x7x4x64xbf16>, tensor<2x4x7xf32>) {
  %o, %lse = attn.attention %q, %k, %v {scale = 0.125 : f32, softcap = 50.0 : f32}
      : (tensor<2x7x4x64xbf16>, tensor<2x9x1x64xbf16>, tensor<2x9x1x64xbf16>)
      -> (tensor<2x7x4x64xbf16>, tensor<2x4x7xf32>)
  return %o, %lse : tensor<2x7x4x64xbf16>, tensor<2x4x7xf32>
}

// CHECK-LABEL: func @ragged
// CHECK: attn.attention %{{.*}} cu_seqlens(%{{.*}}) {mask = #attn.mask<causal, window = 16, sinks = 2, top_left>}
func.func @ragged(%q: tensor<?x4x64xf32>, %k: tensor<?x4x64xf32>,
                  %v: tensor<?x4x64xf32>, %cq: tensor<?xi32>,
                  %ck: tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cq, %ck)
      {mask = #attn.mask<top_left, sinks = 2, causal, window = 16>}
      : (tensor<?x4x64xf32>, tensor<?x4x64xf32>, tensor<?x4x64xf32>,
         tensor<?xi32>, tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x64xf32>, tensor<4x?xf32>
}

// CHECK-LABEL: func @masks
// CHECK: mask = #attn.mask<none>
// CHECK: mask = #attn.mask<window = 128>
// CHECK: mask = #attn.mask<causal>
func.func @masks(%q: tensor<1x1x1x8xf32>) {
  %a = attn.attention %q, %q, %q {mask = #attn.mask<none>}
      : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  %b = attn.attention %q, %q, %q {mask = #attn.mask<window = 128, bottom_right>}
      : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  %c = attn.attention %q, %q, %q {mask = #attn.mask<causal, bottom_right>}
      : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}
