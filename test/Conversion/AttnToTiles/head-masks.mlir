// RUN: attn-opt %s --attn-lower-to-tiles --canonicalize --cse | FileCheck %s

// Per-head policies (DuoAttention): KV head 0 is a full causal retrieval
// head, KV head 1 a streaming head with 4 sinks and a 252-token window. The
// mask parameters become values chosen by the work item's KV head, so the
// streaming head's loop bounds cover only its sink and window tiles.
// CHECK-LABEL: func.func @head_policies
// CHECK-DAG: %[[W:.*]] = arith.constant 252 : index
// CHECK-DAG: %[[NOWIN:.*]] = arith.constant 1073741824 : index
// CHECK: scf.parallel (%[[H:.*]], %{{.*}}) =
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[H]], %c1
// CHECK: %[[WINDOW:.*]] = arith.select %[[IS1]], %[[W]], %[[NOWIN]]
// CHECK: %[[SINKS:.*]] = arith.select %[[IS1]], %c4, %c0
// Main range from the window's lower edge, sink tiles below it.
// CHECK: %[[LOW:.*]] = arith.subi %{{.*}}, %[[WINDOW]]
// CHECK: %[[MAINBEGIN:.*]] = arith.divsi %{{.*}}, %c32
// CHECK: arith.minsi %[[SINKS]], %{{.*}}
// CHECK: scf.for %{{.*}} = %c0 to %[[STEPS:.*]] step %c1 iter_args
func.func @head_policies(%q: tensor<1x?x8x64xf16>, %k: tensor<1x?x2x64xf16>,
                         %v: tensor<1x?x2x64xf16>) -> tensor<1x?x8x64xf16> {
  %o = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>,
                                   #attn.mask<window = 252, sinks = 4>]}
      : (tensor<1x?x8x64xf16>, tensor<1x?x2x64xf16>, tensor<1x?x2x64xf16>)
      -> tensor<1x?x8x64xf16>
  return %o : tensor<1x?x8x64xf16>
}
