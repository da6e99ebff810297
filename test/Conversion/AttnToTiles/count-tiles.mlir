// RUN: attn-opt %s --attn-count-tiles --attn-lower-to-tiles --canonicalize | FileCheck %s

// The counters: [2] per work item, [0] per KV tile run, [1] per tile that
// applies the element predicate.
// CHECK: memref.global "public" @causal__tile_stats : memref<3xi64> = dense<0>
// CHECK-LABEL: func.func @causal
// CHECK-SAME: attn.instrumented = ["tile_stats"]
// CHECK-SAME: attn.tile_stats = @causal__tile_stats
// CHECK: %[[STATS:.*]] = memref.get_global @causal__tile_stats
// CHECK: scf.parallel
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[STATS]][%c2]
// CHECK: scf.for
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[STATS]][%c0]
// CHECK: %[[FULL:.*]] = arith.andi
// CHECK-NEXT: %[[PARTIAL:.*]] = arith.xori %[[FULL]], %true
// CHECK-NEXT: scf.if %[[PARTIAL]] {
// CHECK-NEXT: memref.atomic_rmw addi %{{.*}}, %[[STATS]][%c1]
func.func @causal(%q: tensor<1x?x4x64xf32>, %k: tensor<1x?x4x64xf32>,
                  %v: tensor<1x?x4x64xf32>) -> tensor<1x?x4x64xf32> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<1x?x4x64xf32>, tensor<1x?x4x64xf32>, tensor<1x?x4x64xf32>)
      -> tensor<1x?x4x64xf32>
  return %o : tensor<1x?x4x64xf32>
}

// Functions without attention get no counters.
// CHECK-LABEL: func.func @other
// CHECK-NOT: attn.tile_stats
func.func @other() {
  return
}
