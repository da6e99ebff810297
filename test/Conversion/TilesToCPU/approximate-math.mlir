// RUN: attn-opt %s --attn-cpu-approximate-math | FileCheck %s

// Vector exp2 and tanh become polynomial arithmetic (no per-lane libm calls).
// CHECK-LABEL: func.func @softmax_math
// CHECK-NOT: math.exp2
// CHECK-NOT: math.exp
// CHECK-NOT: math.tanh
// CHECK: math.fma
// CHECK: arith.bitcast %{{.*}} : vector<16xi32> to vector<16xf32>
// CHECK: arith.select
// CHECK: return
func.func @softmax_math(%x: vector<16xf32>) -> vector<16xf32> {
  %e = math.exp2 %x : vector<16xf32>
  %t = math.tanh %e : vector<16xf32>
  return %t : vector<16xf32>
}
