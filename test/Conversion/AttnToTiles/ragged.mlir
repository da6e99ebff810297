// RUN: attn-opt %s --attn-lower-to-tiles --canonicalize | FileCheck %s

// Ragged batches: the number of query tiles comes from the longest sequence
// (a scan of cu_seqlens_q); each work item reads its sequence's bounds.

// CHECK-LABEL: func.func @ragged
// CHECK-DAG: %[[CQ:.*]] = bufferization.to_buffer %arg3 read_only : tensor<?xi32> to memref<?xi32>
// CHECK-DAG: %[[CK:.*]] = bufferization.to_buffer %arg4 read_only : tensor<?xi32> to memref<?xi32>
// CHECK: %[[MAXLEN:.*]] = scf.for {{.*}} -> (index)
// CHECK: arith.maxsi
// CHECK: %[[NQT:.*]] = arith.ceildivsi %[[MAXLEN]], %c16 : index
// CHECK: scf.parallel (%[[B:.*]], %{{.*}}, %{{.*}}) = (%c0, %c0, %c0) to (%{{.*}}, %c1, %[[NQT]])
// CHECK: memref.load %[[CQ]][%[[B]]] : memref<?xi32>
// CHECK: memref.load %[[CK]][%[[B]]] : memref<?xi32>
// LSE is [q_heads, total_q]:
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<4x?xf32>
func.func @ragged(%q: tensor<?x4x64xf32>, %k: tensor<?x1x64xf32>,
                  %v: tensor<?x1x64xf32>, %cq: tensor<?xi32>,
                  %ck: tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cq, %ck)
      {mask = #attn.mask<causal>}
      : (tensor<?x4x64xf32>, tensor<?x1x64xf32>, tensor<?x1x64xf32>,
         tensor<?xi32>, tensor<?xi32>) -> (tensor<?x4x64xf32>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x64xf32>, tensor<4x?xf32>
}
