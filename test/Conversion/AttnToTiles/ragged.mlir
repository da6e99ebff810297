// RUN: attn-opt %s --attn-lower-to-tiles --canonicalize | FileCheck %s

// Ragged batches: the number of query tiles comes from the longest sequence
// (a scan of cu_seqlens_q); each work item reads its sequence's bounds.

// CHECK-LABEL: func.func @ragged
// CHECK: %[[NSEQ:.*]] = tensor.dim %arg3, %c0 : tensor<?xi32>
// CHECK: %[[B:.*]] = arith.subi %[[NSEQ]], %c1 : index
// CHECK: %[[MAXLEN:.*]] = scf.for {{.*}} = %c0 to %[[B]] {{.*}} -> (index)
// CHECK: tensor.extract %arg3
// CHECK: arith.maxsi
// CHECK: %[[NQT:.*]] = arith.ceildivsi %[[MAXLEN]], %c32 : index
// CHECK: scf.parallel (%[[SEQ:.*]], %{{.*}}, %{{.*}}) = (%c0, %c0, %c0) to (%[[B]], %c2, %[[NQT]])
// CHECK: tensor.extract %arg3[%[[SEQ]]] : tensor<?xi32>
// CHECK: tensor.extract %arg4[%[[SEQ]]] : tensor<?xi32>
// LSE is [q_heads, total_q]:
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<4x?xf32>
func.func @ragged(%q: tensor<?x4x64xf32>, %k: tensor<?x2x64xf32>,
                  %v: tensor<?x2x64xf32>, %cq: tensor<?xi32>,
                  %ck: tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cq, %ck)
      {mask = #attn.mask<causal>}
      : (tensor<?x4x64xf32>, tensor<?x2x64xf32>, tensor<?x2x64xf32>,
         tensor<?xi32>, tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x64xf32>, tensor<4x?xf32>
}
