// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles=vector-width=8 --canonicalize --cse | FileCheck %s
// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles --canonicalize --attn-host-to-llvm | FileCheck %s --check-prefix=LLVM

// attn.select_pages (docs/sparsity.md section 3): one work item per
// (sequence, KV head). A sequence of at most top_k pages keeps them all;
// otherwise the sink and recent pages, and the best-scoring others kept in a
// fixed-size candidate list (top_k - sink_pages - recent_pages = 5 entries),
// sorted by page into the result. Scores in f32: the G = 2 query rows of the
// item are widened once into a stack buffer; per page, head_dim 32 in four
// one-register chunks of 8 (vector-width 8), one accumulator per query head.

// LLVM-NOT: attn.select_pages
// LLVM-NOT: unrealized_conversion_cast
// LLVM: llvm.func @select

// CHECK-LABEL: func.func @select
// CHECK-SAME: %[[QT:[^:]*]]: tensor<?x4x32xbf16>
// CHECK-SAME: %[[MAX:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_max", attn.role = "k_page_max"}
// CHECK-SAME: %[[MIN:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_min", attn.role = "k_page_min"}
// CHECK-SAME: %[[INDPTR:[^:]*]]: tensor<?xi32>, %[[PAGES:[^:]*]]: tensor<?xi32>
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[Q:.*]] = bufferization.to_buffer %[[QT]] read_only
// CHECK-DAG: %[[B:.*]] = tensor.dim %[[QT]], %c0
// Results are fresh buffers: [batch, kv_heads, 2] and [batch, kv_heads, top_k].
// CHECK: %[[OFFS:.*]] = memref.alloc(%[[B]]) : memref<?x2x2xi32>
// CHECK: %[[IDX:.*]] = memref.alloc(%[[B]]) : memref<?x2x8xi32>
// CHECK: scf.parallel (%[[SEQ:.*]], %[[H:.*]]) = (%c0, %c0) to (%[[B]], %c2) step (%c1, %c1)
// CHECK: %[[START:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK: %[[N:.*]] = arith.subi %{{.*}}, %[[START]] : index
// Query heads 2h and 2h + 1.
// CHECK: %[[G0:.*]] = arith.muli %[[H]], %c2 : index
// CHECK: %[[G1:.*]] = arith.addi %[[G0]], %c1 : index
// CHECK: %[[FEW:.*]] = arith.cmpi sle, %[[N]], %c8 : index
// CHECK: %[[SEL:.*]] = scf.if %[[FEW]] -> (index) {
// At most top_k pages: all of them.
// CHECK: scf.for %[[P:.*]] = %c0 to
// CHECK: memref.store %{{.*}}, %[[IDX]][%[[SEQ]], %[[H]], %[[P]]]
// CHECK: } else {
// Sink page 0 and the recent pages n - 2, n - 1 at result slots 0 and 6, 7.
// CHECK: %[[RECENT:.*]] = arith.subi %[[N]], %c2 : index
// CHECK: memref.store %c0_i32, %[[IDX]][%[[SEQ]], %[[H]], %c0]
// CHECK: scf.for
// CHECK: arith.addi %{{.*}}, %c6 : index
// CHECK: %[[SCORES:.*]] = memref.alloca() : memref<5xf32>
// CHECK: %[[CAND:.*]] = memref.alloca() : memref<5xi32>
// CHECK: %[[QROWS:.*]] = memref.alloca() : memref<2x32xf32>
// CHECK: %[[Q00:.*]] = vector.load %[[Q]][%[[SEQ]], %[[G0]], %c0] : memref<?x4x32xbf16>, vector<8xbf16>
// CHECK: %[[Q00F:.*]] = arith.extf %[[Q00]] : vector<8xbf16> to vector<8xf32>
// CHECK: vector.store %[[Q00F]], %[[QROWS]][%c0, %c0]
// CHECK: vector.load %[[Q]][%[[SEQ]], %[[G1]], %c24]
// CHECK: vector.store %{{.*}}, %[[QROWS]][%c1, %c24]
// The pages between the sinks and the recent ones, with the list's size.
// CHECK: scf.for %[[PG:.*]] = %c1 to %[[RECENT]] step %c1 iter_args(%[[COUNT:.*]] = %c0) -> (index) {
// CHECK: %[[PHYS:.*]] = tensor.extract %[[PAGES]]
// CHECK: %[[VALID:.*]] = arith.cmpi sge, %[[PHYS]], %c0_i32 : i32
// CHECK: %[[SCORE:.*]] = scf.if %[[VALID]] -> (f32) {
// CHECK: %[[PI:.*]] = arith.index_cast %[[PHYS]] : i32 to index
// CHECK: %[[HI:.*]] = vector.load %[[MAX]][%[[PI]], %[[H]], %c0] : memref<?x2x32xf16>, vector<8xf16>
// CHECK: %[[HIF:.*]] = arith.extf %[[HI]] : vector<8xf16> to vector<8xf32>
// CHECK: %[[LO:.*]] = vector.load %[[MIN]][%[[PI]], %[[H]], %c0]
// CHECK: %[[LOF:.*]] = arith.extf %[[LO]]
// CHECK: %[[QV:.*]] = vector.load %[[QROWS]][%c0, %c0] : memref<2x32xf32>, vector<8xf32>
// CHECK-DAG: %[[A:.*]] = arith.mulf %[[QV]], %[[LOF]] : vector<8xf32>
// CHECK-DAG: %[[C:.*]] = arith.mulf %[[QV]], %[[HIF]] : vector<8xf32>
// max as a compare and select (one max instruction on x86).
// CHECK: %[[GT:.*]] = arith.cmpf ogt, %[[C]], %[[A]] : vector<8xf32>
// CHECK: %[[B0:.*]] = arith.select %[[GT]], %[[C]], %[[A]] : vector<8xi1>, vector<8xf32>
// CHECK: vector.load %[[QROWS]][%c1, %c0]
// The next chunk, accumulated per query head.
// CHECK: vector.load %[[MAX]][%[[PI]], %[[H]], %c8]
// CHECK: vector.load %[[MIN]][%[[PI]], %[[H]], %c8]
// CHECK: vector.load %[[QROWS]][%c0, %c8]
// CHECK: %[[B0N:.*]] = arith.select
// CHECK: %[[ACC0:.*]] = arith.addf %[[B0]], %[[B0N]] : vector<8xf32>
// CHECK: vector.load %[[MAX]][%[[PI]], %[[H]], %c24]
// CHECK: %[[S0:.*]] = vector.reduction <add>, %{{.*}} : vector<8xf32> into f32
// CHECK: %[[S1:.*]] = vector.reduction <add>, %{{.*}} : vector<8xf32> into f32
// CHECK: %[[SGT:.*]] = arith.cmpf ogt, %[[S1]], %[[S0]] : f32
// CHECK: %[[S:.*]] = arith.select %[[SGT]], %[[S1]], %[[S0]] : f32
// CHECK: scf.yield %[[S]] : f32
// CHECK: } else {
// CHECK: scf.yield %[[NEGINF]] : f32
// Enter when the list has room or the score beats the last (worst) entry.
// CHECK: %[[FULL:.*]] = arith.cmpi eq, %[[COUNT]], %c5 : index
// CHECK: %[[ENTER:.*]] = scf.if %[[FULL]] -> (i1) {
// CHECK: %[[WORST:.*]] = memref.load %[[SCORES]][%c4] : memref<5xf32>
// CHECK: arith.cmpf ogt, %[[SCORE]], %[[WORST]] : f32
// CHECK: scf.if %[[ENTER]] -> (index) {
// CHECK: scf.while
// CHECK: arith.cmpf olt, %{{.*}}, %[[SCORE]] : f32
// CHECK: memref.store %[[SCORE]], %[[SCORES]]
// Then the candidates, sorted by page, into slots 1..5.
// CHECK: scf.for %{{.*}} = %c0 to %c5 step %c1 {
// CHECK: memref.load %[[CAND]]
// CHECK: scf.while
// CHECK: arith.cmpi sgt
// CHECK: scf.yield %c8 : index
// offsets = [0, n]; the rest of the indices -1.
// CHECK: memref.store %c0_i32, %[[OFFS]][%[[SEQ]], %[[H]], %c0]
// CHECK: %[[SELI:.*]] = arith.index_cast %[[SEL]] : index to i32
// CHECK: memref.store %[[SELI]], %[[OFFS]][%[[SEQ]], %[[H]], %c1]
// CHECK: scf.for %[[J:.*]] = %[[SEL]] to %c8 step %c1 {
// CHECK: memref.store %c-1_i32, %[[IDX]][%[[SEQ]], %[[H]], %[[J]]]
// CHECK: bufferization.to_tensor %[[OFFS]] restrict writable
// CHECK: bufferization.to_tensor %[[IDX]] restrict writable
!c = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = nhd, storage = i8, summary = minmax>
func.func @select(%q: tensor<?x4x32xbf16>, %cache: !c, %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x8xi32>) {
  %o, %i = attn.select_pages %q, %cache, %indptr, %indices, %last {top_k = 8, sink_pages = 1, recent_pages = 2}
    : (tensor<?x4x32xbf16>, !c, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x8xi32>)
  return %o, %i : tensor<?x2x2xi32>, tensor<?x2x8xi32>
}

// top_k = sink_pages + recent_pages: nothing to score, no candidate list.
// CHECK-LABEL: func.func @select_no_candidates
// CHECK: scf.parallel
// CHECK-NOT: memref.alloca
// CHECK-NOT: vector.load
// CHECK: return
!c1 = !attn.kv_cache<page_size = 7, kv_heads = 1, head_dim = 80, layout = hnd, storage = f16, summary = minmax>
func.func @select_no_candidates(%q: tensor<3x4x80xf32>, %cache: !c1, %indptr: tensor<4xi32>, %indices: tensor<?xi32>, %last: tensor<3xi32>)
    -> (tensor<3x1x2xi32>, tensor<3x1x4xi32>) {
  %o, %i = attn.select_pages %q, %cache, %indptr, %indices, %last {top_k = 4, sink_pages = 1, recent_pages = 3}
    : (tensor<3x4x80xf32>, !c1, tensor<4xi32>, tensor<?xi32>, tensor<3xi32>) -> (tensor<3x1x2xi32>, tensor<3x1x4xi32>)
  return %o, %i : tensor<3x1x2xi32>, tensor<3x1x4xi32>
}
