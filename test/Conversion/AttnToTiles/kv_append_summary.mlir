// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles=vector-width=2 --canonicalize --cse | FileCheck %s
// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles --canonicalize --attn-host-to-llvm | FileCheck %s --check-prefix=LLVM

// A cache with summary = minmax: kv_append also keeps each page's key
// maxima and minima (docs/sparsity.md section 3) from the input K rounded
// to f16, whatever the storage: offset 0 replaces them, later offsets widen
// them. head_dim 32 with vector-width 2: two chunks of 16 channels.

// LLVM-NOT: attn.kv_append
// LLVM-DAG: llvm.func @summary_f16_nhd
// LLVM-DAG: llvm.func @summary_i4_hnd

// CHECK-LABEL: func.func @summary_f16_nhd
// CHECK-SAME: %[[KT:[^:]*]]: tensor<?x2x32xf32>
// CHECK-SAME: %[[KP:[^:]*]]: memref<?x16x2x32xf16> {attn.name = "cache_k_pages", attn.role = "k_pages"}
// CHECK-SAME: %[[MAX:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_max", attn.role = "k_page_max"}
// CHECK-SAME: %[[MIN:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_min", attn.role = "k_page_min"}
// CHECK-DAG: %[[K:.*]] = bufferization.to_buffer %[[KT]] read_only
// CHECK: scf.parallel (%[[H:.*]]) = (%c0) to (%c2) step (%c1)
// CHECK: scf.for %[[I:.*]] = %c0 to
// CHECK: scf.if
// CHECK: %[[PAGE:.*]] = arith.divui %{{.*}}, %c16
// CHECK: %[[OFF:.*]] = arith.remui %{{.*}}, %c16
// The pages first (f32 -> f16), then the summaries of the same input.
// CHECK: vector.store %{{.*}}, %[[KP]][%[[PAGE]], %[[OFF]], %[[H]], %c0]
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[OFF]], %c0 : index
// CHECK: %[[X:.*]] = vector.load %[[K]][%[[I]], %[[H]], %c0] : memref<?x2x32xf32>, vector<16xf32>
// CHECK: %[[XH:.*]] = arith.truncf %[[X]] : vector<16xf32> to vector<16xf16>
// CHECK: %[[XR:.*]] = arith.extf %[[XH]] : vector<16xf16> to vector<16xf32>
// CHECK: %[[OLDMAX:.*]] = vector.load %[[MAX]][%[[PAGE]], %[[H]], %c0] : memref<?x2x32xf16>, vector<16xf16>
// CHECK: %[[OLDMAXF:.*]] = arith.extf %[[OLDMAX]]
// CHECK: %[[WIDE:.*]] = arith.maximumf %[[OLDMAXF]], %[[XR]] : vector<16xf32>
// CHECK: %[[NEWMAX:.*]] = arith.select %[[FIRST]], %[[XR]], %[[WIDE]] : vector<16xf32>
// CHECK: %[[NEWMAXH:.*]] = arith.truncf %[[NEWMAX]] : vector<16xf32> to vector<16xf16>
// CHECK: vector.store %[[NEWMAXH]], %[[MAX]][%[[PAGE]], %[[H]], %c0]
// CHECK: %[[OLDMIN:.*]] = vector.load %[[MIN]][%[[PAGE]], %[[H]], %c0]
// CHECK: %[[OLDMINF:.*]] = arith.extf %[[OLDMIN]]
// CHECK: %[[NARROW:.*]] = arith.minimumf %[[OLDMINF]], %[[XR]] : vector<16xf32>
// CHECK: arith.select %[[FIRST]], %[[XR]], %[[NARROW]] : vector<16xf32>
// CHECK: vector.store %{{.*}}, %[[MIN]][%[[PAGE]], %[[H]], %c0]
// The second chunk of channels.
// CHECK: vector.load %[[K]][%[[I]], %[[H]], %c16]
// CHECK: vector.store %{{.*}}, %[[MAX]][%[[PAGE]], %[[H]], %c16]
// CHECK: vector.store %{{.*}}, %[[MIN]][%[[PAGE]], %[[H]], %c16]
!f16mm = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = nhd, storage = f16, summary = minmax>
func.func @summary_f16_nhd(%k: tensor<?x2x32xf32>, %v: tensor<?x2x32xf32>, %slots: tensor<?xi32>, %cache: !f16mm) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x2x32xf32>, tensor<?x2x32xf32>, tensor<?xi32>, !f16mm
  return
}

// i4 storage from bf16 input: the summary comes from the input (bf16 -> f32
// exactly, one rounding to f16), after the quantized K and V are written.
// CHECK-LABEL: func.func @summary_i4_hnd
// CHECK-SAME: %[[KT:[^:]*]]: tensor<?x2x32xbf16>
// CHECK-SAME: %[[MAX:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_max"
// CHECK-SAME: %[[MIN:[^:]*]]: memref<?x2x32xf16> {attn.name = "cache_k_page_min"
// CHECK: %[[PAGE:.*]] = arith.divui %{{.*}}, %c16
// CHECK: %[[OFF:.*]] = arith.remui %{{.*}}, %c16
// CHECK: vector.deinterleave
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[OFF]], %c0 : index
// CHECK: %[[X:.*]] = vector.load %{{.*}} : memref<?x2x32xbf16>, vector<16xbf16>
// CHECK: %[[XF:.*]] = arith.extf %[[X]] : vector<16xbf16> to vector<16xf32>
// CHECK: %[[XH:.*]] = arith.truncf %[[XF]] : vector<16xf32> to vector<16xf16>
// CHECK: %[[XR:.*]] = arith.extf %[[XH]]
// CHECK: arith.maximumf %{{.*}}, %[[XR]]
// CHECK: arith.select %[[FIRST]], %[[XR]]
// CHECK: vector.store %{{.*}}, %[[MAX]][%[[PAGE]], %{{.*}}, %c0]
// CHECK: arith.minimumf %{{.*}}, %[[XR]]
// CHECK: vector.store %{{.*}}, %[[MIN]][%[[PAGE]], %{{.*}}, %c0]
!i4mm = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = hnd, storage = i4, summary = minmax>
func.func @summary_i4_hnd(%k: tensor<?x2x32xbf16>, %v: tensor<?x2x32xbf16>, %slots: tensor<?xi32>, %cache: !i4mm) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x2x32xbf16>, tensor<?x2x32xbf16>, tensor<?xi32>, !i4mm
  return
}

// Without summary = minmax no summary is written.
// CHECK-LABEL: func.func @no_summary
// CHECK-NOT: maximumf
// CHECK: return
!plain = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = nhd, storage = f16>
func.func @no_summary(%k: tensor<?x2x32xf32>, %v: tensor<?x2x32xf32>, %slots: tensor<?xi32>, %cache: !plain) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x2x32xf32>, tensor<?x2x32xf32>, tensor<?xi32>, !plain
  return
}
