// RUN: attn-opt %s --attn-cpu-kernel-abi | FileCheck %s

// Two phases communicating through a scratch buffer (the split-KV shape:
// partial results per split, then a combine). The returned allocation
// becomes the out-parameter; the two others, listed by attn.scratch in
// program order, become trailing scratch parameters. Each top-level
// scf.parallel is one phase: its loop runs over [begin, end) when `phase`
// selects it; the code before the loops is shared.

// CHECK-LABEL: func.func @split(
// CHECK-SAME: %[[X:[a-z0-9]+]]: memref<?x4xf32>, %[[OUT:[a-z0-9]+]]: memref<?x4xf32>,
// CHECK-SAME: %[[PARTIAL:[a-z0-9]+]]: memref<2x?x4xf32>, %[[COUNT:[a-z0-9]+]]: memref<?xi32>,
// CHECK-SAME: %[[PHASE:[a-z0-9]+]]: index, %[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index)
// CHECK-SAME: llvm.emit_c_interface
// CHECK-NOT: attn.scratch
// CHECK-NOT: attn.phases
// CHECK-NOT: memref.alloc(
// CHECK: %[[N:.*]] = memref.dim %[[X]], %c0
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[PHASE]], %{{.*}}
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK: scf.for %[[ITEM:.*]] = %[[BEGIN]] to %[[END]] step
// CHECK-NEXT: %[[I:.*]] = arith.remui %[[ITEM]], %[[N]]
// CHECK-NEXT: %[[S:.*]] = arith.divui %[[ITEM]], %[[N]]
// CHECK: memref.load %[[X]][%[[I]], %c0]
// CHECK: memref.store %{{.*}}, %[[PARTIAL]][%[[S]], %[[I]], %c0]
// CHECK: memref.store %{{.*}}, %[[COUNT]][%[[I]]]
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[PHASE]], %{{.*}}
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: scf.for %[[ITEM1:.*]] = %[[BEGIN]] to %[[END]] step
// CHECK-NOT: arith.remui
// CHECK: memref.load %[[PARTIAL]][%c0, %[[ITEM1]], %c0]
// CHECK: memref.load %[[PARTIAL]][%c1, %[[ITEM1]], %c0]
// CHECK: memref.store %{{.*}}, %[[OUT]][%[[ITEM1]], %c0]
// CHECK: return
// CHECK-NEXT: }

// The count takes the phase too: 2 * n items in phase 0, n in phase 1, 0
// otherwise. Nothing of the work remains.
// CHECK-LABEL: func.func @split__count(
// CHECK-SAME: %[[CX:[a-z0-9]+]]: memref<?x4xf32>, %{{.*}}: memref<?x4xf32>, %{{.*}}: memref<2x?x4xf32>, %{{.*}}: memref<?xi32>,
// CHECK-SAME: %[[CPHASE:[a-z0-9]+]]: index) -> index
// CHECK-NOT: memref.load
// CHECK-NOT: memref.store
// CHECK-NOT: scf.
// CHECK-DAG: %[[CN:.*]] = memref.dim %[[CX]], %c0
// CHECK-DAG: %[[T0A:.*]] = arith.muli %{{.*}}, %c2
// CHECK-DAG: %[[T0:.*]] = arith.muli %[[T0A]], %[[CN]]
// CHECK-DAG: %[[T1:.*]] = arith.muli %{{.*}}, %[[CN]]
// CHECK-DAG: %[[P0:.*]] = arith.cmpi eq, %[[CPHASE]], %{{.*}}
// CHECK: %[[R0:.*]] = arith.select %[[P0]], %[[T0]], %{{.*}}
// CHECK: %[[P1:.*]] = arith.cmpi eq, %[[CPHASE]], %{{.*}}
// CHECK: %[[R1:.*]] = arith.select %[[P1]], %[[T1]], %[[R0]]
// CHECK: return %[[R1]] : index
func.func @split(%x: memref<?x4xf32>) -> memref<?x4xf32>
    attributes {attn.phases = 2 : i64,
                attn.scratch = [{name = "partial", dtype = "f32", shape = [2, "n", 4]},
                                {name = "count", dtype = "i32", shape = ["n"]}]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %n = memref.dim %x, %c0 : memref<?x4xf32>
  %partial = memref.alloc(%n) : memref<2x?x4xf32>
  %out = memref.alloc(%n) : memref<?x4xf32>
  %count = memref.alloc(%n) : memref<?xi32>
  scf.parallel (%s, %i) = (%c0, %c0) to (%c2, %n) step (%c1, %c1) {
    %a = memref.load %x[%i, %c0] : memref<?x4xf32>
    memref.store %a, %partial[%s, %i, %c0] : memref<2x?x4xf32>
    %one = arith.constant 1 : i32
    memref.store %one, %count[%i] : memref<?xi32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %a = memref.load %partial[%c0, %i, %c0] : memref<2x?x4xf32>
    %b = memref.load %partial[%c1, %i, %c0] : memref<2x?x4xf32>
    %sum = arith.addf %a, %b : f32
    memref.store %sum, %out[%i, %c0] : memref<?x4xf32>
    scf.reduce
  }
  return %out : memref<?x4xf32>
}
