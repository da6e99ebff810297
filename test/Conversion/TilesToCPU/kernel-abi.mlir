// RUN: attn-opt %s --attn-host-to-tiles --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" --canonicalize --attn-cpu-kernel-abi --canonicalize | FileCheck %s

// The result becomes a trailing out-parameter, the (batch, kv head, query
// tile) space a work-item range [begin, end) of phase 0 (the only phase), the
// workspace is hoisted to the entry, and @decode__count returns
// batch * 8 * query tiles for phase 0 and 0 for any other phase.

// CHECK-LABEL: func.func @decode(
// CHECK-SAME: %[[Q:.*]]: memref<?x1x32x128xf16>, %{{.*}}: memref<?x?x8x128xf16>, %{{.*}}: memref<?x?x8x128xf16>,
// CHECK-SAME: %[[O:.*]]: memref<?x1x32x128xf16>, %[[PHASE:[a-z0-9]+]]: index, %[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index)
// CHECK-SAME: llvm.emit_c_interface
// CHECK-COUNT-5: memref.alloca()
// CHECK: %[[P0:.*]] = arith.cmpi eq, %[[PHASE]], %c0
// CHECK-NEXT: scf.if %[[P0]] {
// CHECK-NEXT: scf.for %[[ITEM:.*]] = %[[BEGIN]] to %[[END]] step %c1 {
// CHECK-NOT: memref.alloca
// CHECK: arith.remui %[[ITEM]]
// CHECK: vector.store %{{.*}}, %[[O]]
// CHECK-NOT: memref.alloc(
// CHECK: return
// CHECK-NEXT: }

// CHECK-LABEL: func.func @decode__count(
// CHECK-SAME: %[[CPHASE:[a-z0-9]+]]: index) -> index attributes {{.*}}llvm.emit_c_interface
// CHECK: %[[B:.*]] = memref.dim %{{.*}}, %c0
// CHECK: %[[N:.*]] = arith.muli %[[B]], %c8
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[CPHASE]], %c0
// CHECK: %[[R:.*]] = arith.select %[[IS0]], %[[N]], %c0
// CHECK: return %[[R]] : index
func.func @decode(%q: tensor<?x1x32x128xf16>, %k: tensor<?x?x8x128xf16>,
                  %v: tensor<?x?x8x128xf16>) -> tensor<?x1x32x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x1x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
      -> tensor<?x1x32x128xf16>
  return %o : tensor<?x1x32x128xf16>
}

// Static shapes with a single work item: canonicalization folds the work
// loop away; the kernel runs whole in phase 0 when item 0 is in range, and
// counts 1 item in phase 0.
// CHECK-LABEL: func.func @single(
// CHECK-SAME: %[[PHASE:[a-z0-9]+]]: index, %[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index)
// CHECK-DAG: %[[P:.*]] = arith.cmpi eq, %[[PHASE]], %c0
// CHECK-DAG: %[[A:.*]] = arith.cmpi sle, %[[BEGIN]], %c0
// CHECK-DAG: %[[B:.*]] = arith.cmpi sgt, %[[END]], %c0
// CHECK: %[[IN:.*]] = arith.andi %[[P]], %{{.*}} : i1
// CHECK-NEXT: scf.if %[[IN]] {
// CHECK-LABEL: func.func @single__count(
// CHECK-SAME: %[[CPHASE:[a-z0-9]+]]: index) -> index
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[CPHASE]], %c0
// CHECK: %[[R:.*]] = arith.select %[[IS0]], %c1, %c0
// CHECK: return %[[R]] : index
func.func @single(%q: tensor<1x3x1x16xf32>) -> tensor<1x3x1x16xf32> {
  %o = attn.attention %q, %q, %q
      : (tensor<1x3x1x16xf32>, tensor<1x3x1x16xf32>, tensor<1x3x1x16xf32>) -> tensor<1x3x1x16xf32>
  return %o : tensor<1x3x1x16xf32>
}
