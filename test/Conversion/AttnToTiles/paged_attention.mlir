// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles --canonicalize -split-input-file | FileCheck %s
// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles="num-kv-splits=3" --canonicalize -split-input-file | FileCheck %s --check-prefix=FORCED

// int8 decode: the cache argument becomes its buffers; each key's page comes
// from kv_indices inside the KV-tile loop and is dequantized right there.
!i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 8>

// CHECK-LABEL: func.func @decode_i8
// CHECK-SAME: %[[KP:[^:]+]]: memref<?x16x2x64xi8> {attn.name = "cache_k_pages", attn.role = "k_pages"}
// CHECK-SAME: %[[VP:[^:]+]]: memref<?x16x2x64xi8> {attn.name = "cache_v_pages", attn.role = "v_pages"}
// CHECK-SAME: %[[KS:[^:]+]]: memref<?x2x2x64xf16> {attn.name = "cache_k_scale", attn.role = "k_scale"}
// CHECK-SAME: %[[VS:[^:]+]]: memref<?x16x2xf16> {attn.name = "cache_v_scale", attn.role = "v_scale"}
// CHECK-SAME: attn.phases = 2
// CHECK-SAME: attn.scratch = [{dtype = "f32", name = "partial_o", shape = [8, "batch", 4, 64]}, {dtype = "f32", name = "partial_lse", shape = [8, 4, "batch"]}]
// Only the results and the split-KV partials are allocated; no copy of the cache.
// CHECK-NOT: memref.alloc(
// CHECK: memref.alloc(%{{.*}}) : memref<?x4x64xf16>
// CHECK-NOT: memref.alloc(
// CHECK: memref.alloc(%{{.*}}) : memref<8x?x4x64xf32>
// CHECK: memref.alloc(%{{.*}}) : memref<8x4x?xf32>
// CHECK-NOT: memref.alloc(
// Phase 1: (batch, KV head, partition).
// CHECK: scf.parallel (%{{.*}}, %[[HEAD:.*]], %{{.*}}) =
// The KV-tile loop, carrying the row max and sum.
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<2xf32>, vector<2xf32>)
// CHECK: scf.for %[[J:.*]] = %c0 to %c32
// CHECK: %[[PAGE_I32:.*]] = tensor.extract %{{.*}}[%{{.*}}] : tensor<?xi32>
// CHECK: %[[PAGE_IDX:.*]] = arith.index_cast %[[PAGE_I32]]
// A trimmed page (-1) reads page 0, in bounds and masked.
// CHECK: %[[PAGE:.*]] = arith.maxsi %[[PAGE_IDX]], %c0
// Per-channel K scales of the token's group, the int8 K, the product.
// CHECK: %[[KSC:.*]] = vector.load %[[KS]][%[[PAGE]], %{{.*}}, %[[HEAD]], %c0] : memref<?x2x2x64xf16>, vector<64xf16>
// CHECK: %[[KSF:.*]] = arith.extf %[[KSC]]
// CHECK: %[[KQ:.*]] = vector.load %[[KP]][%[[PAGE]], %{{.*}}, %[[HEAD]], %c0] : memref<?x16x2x64xi8>, vector<64xi8>
// CHECK: %[[KF:.*]] = arith.sitofp %[[KQ]] : vector<64xi8> to vector<64xf32>
// CHECK: arith.mulf %[[KF]], %[[KSF]] : vector<64xf32>
// The per-token V scale, broadcast.
// CHECK: memref.load %[[VS]][%[[PAGE]], %{{.*}}, %[[HEAD]]] : memref<?x16x2xf16>
// CHECK: vector.load %[[VP]][%[[PAGE]], %{{.*}}, %[[HEAD]], %c0]
// CHECK: arith.sitofp
// Phase 2: the merge over (token, head), only when there are partitions.
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%c0, %c0) to (%{{.*}}, %c4)
// CHECK: math.exp2
// FORCED-LABEL: func.func @decode_i8
// FORCED-SAME: shape = [3, "batch", 4, 64]
// FORCED: scf.parallel (%{{.*}}, %{{.*}}, %{{.*}}) = (%c0, %c0, %c0) to (%{{.*}}, %c2, %c3)
func.func @decode_i8(%q: tensor<?x4x64xf16>, %cache: !i8, %indptr: tensor<?xi32>,
                     %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x4x64xf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}

// -----

// int4 (KIVI), head-major pages: nibbles unpacked and interleaved, then
// scale * q + min with per-channel K parameters.
!i4 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = hnd, storage = i4, k_group = 16>

// CHECK-LABEL: func.func @decode_i4
// CHECK-SAME: memref<?x2x16x32xi8> {attn.name = "cache_k_pages"
// CHECK-SAME: memref<?x1x2x64xf16> {attn.name = "cache_k_min"
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<2xf32>, vector<2xf32>)
// CHECK: %[[BYTES:.*]] = vector.load %{{.*}} : memref<?x2x16x32xi8>, vector<32xi8>
// CHECK-DAG: %[[LO:.*]] = arith.andi %[[BYTES]]
// CHECK-DAG: %[[HI:.*]] = arith.shrui %[[BYTES]]
// CHECK: %[[Q:.*]] = vector.interleave %[[LO]], %[[HI]] : vector<32xi8> -> vector<64xi8>
// CHECK: %[[QF:.*]] = arith.uitofp %[[Q]] : vector<64xi8> to vector<64xf32>
// CHECK: vector.fma %[[QF]]
func.func @decode_i4(%q: tensor<?x4x64xf16>, %cache: !i4, %indptr: tensor<?xi32>,
                     %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x4x64xf16>, !i4, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}

// -----

// fp8 e4m3fn: the magnitude bits shifted under the f32 exponent (<< 20),
// the sign to bit 31, one multiply by 2^120 * the head's scale.
!f8 = !attn.kv_cache<page_size = 8, kv_heads = 1, head_dim = 32, layout = nhd, storage = f8E4M3FN>

// CHECK-LABEL: func.func @decode_fp8
// CHECK-SAME: memref<?x8x1x32xi8> {attn.name = "cache_k_pages"
// CHECK-SAME: memref<1xf32> {attn.name = "cache_k_scale"
// CHECK: scf.for {{.*}} iter_args
// CHECK: %[[B:.*]] = arith.extui %{{.*}} : vector<32xi8> to vector<32xi32>
// CHECK: arith.shli
// CHECK: arith.bitcast %{{.*}} : vector<32xi32> to vector<32xf32>
// CHECK: arith.mulf %{{.*}}, %cst{{.*}} : f32
func.func @decode_fp8(%q: tensor<?x2x32xbf16>, %cache: !f8, %indptr: tensor<?xi32>,
                      %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x2x32xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x2x32xbf16>, !f8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x2x32xbf16>
  return %o : tensor<?x2x32xbf16>
}

// -----

// Append/prefill: ragged queries through qo_indptr; no split (several
// queries per sequence already give enough work items), one phase.
!f16 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>

// CHECK-LABEL: func.func @prefill_f16
// CHECK-NOT: attn.phases
// CHECK-SAME: qk_form = "by_rows"
// CHECK: scf.parallel
// CHECK: vector.load %{{.*}} : memref<?x16x2x64xf16>, vector<64xf16>
// CHECK-NOT: scf.parallel
// CHECK: return
func.func @prefill_f16(%q: tensor<?x4x64xf16>, %cache: !f16, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>, %qo: tensor<?xi32>)
    -> (tensor<?x4x64xf16>, tensor<4x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo) {mask = #attn.mask<causal>}
      : (tensor<?x4x64xf16>, !f16, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x4x64xf16>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x64xf16>, tensor<4x?xf32>
}

// -----

// attn.merge alone: one parallel loop over (token, head), the max LSE then
// the weighted sum.
// CHECK-LABEL: func.func @merge
// CHECK: scf.parallel (%[[T:.*]], %[[H:.*]]) = (%c0, %c0) to (%{{.*}}, %c4)
// CHECK: scf.for {{.*}} -> (f32)
// CHECK: arith.maximumf
// CHECK: scf.for {{.*}} -> (f32, vector<32xf32>)
// CHECK: math.exp2
// CHECK: vector.fma
// CHECK: math.log2
func.func @merge(%po: tensor<?x?x4x32xf32>, %plse: tensor<?x4x?xf32>) -> (tensor<?x4x32xf16>, tensor<4x?xf32>) {
  %o, %lse = attn.merge %po, %plse : (tensor<?x?x4x32xf32>, tensor<?x4x?xf32>) -> (tensor<?x4x32xf16>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x32xf16>, tensor<4x?xf32>
}

// -----

// Pages and K groups that are multiples of the tile: each tile lies in one
// page and one K group, so the page lookup and the K scale chunks are loaded
// once per tile, before the per-key loop.
!i8tile = !attn.kv_cache<page_size = 64, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 32>

// CHECK-LABEL: func.func @decode_i8_tile_in_page
// CHECK-SAME: %[[KS:[^:]+]]: memref<?x2x2x64xf16> {attn.name = "cache_k_scale"
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<2xf32>, vector<2xf32>)
// CHECK: tensor.extract %{{.*}} : tensor<?xi32>
// CHECK: vector.load %[[KS]]
// CHECK: scf.for %{{.*}} = %c0 to %c32
// CHECK-NOT: tensor.extract
// CHECK-NOT: vector.load %[[KS]]
// CHECK: arith.sitofp
// CHECK: memref.prefetch
func.func @decode_i8_tile_in_page(%q: tensor<?x4x64xf16>, %cache: !i8tile, %indptr: tensor<?xi32>,
                                  %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x4x64xf16>, !i8tile, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}

// -----

// Residual window: the last `residual` keys of a sequence come, unquantized,
// from its ring (kv_rings), the others from the pages, decided per key
// inside the KV-tile loop.
!kivi = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i4, k_group = 16, residual = 48>

// CHECK-LABEL: func.func @decode_residual
// CHECK-SAME: %[[KR:[^:]+]]: memref<?x48x2x64xf16> {attn.name = "cache_k_recent", attn.role = "k_recent"}
// CHECK-SAME: memref<?x48x2x64xf16> {attn.name = "cache_v_recent", attn.role = "v_recent"}
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<2xf32>, vector<2xf32>)
// CHECK: scf.for %{{.*}} = %c0 to %c32
// CHECK: %[[IN_RING:.*]] = arith.cmpi sle
// CHECK: scf.if %[[IN_RING]] {
// CHECK: %[[AT:.*]] = arith.remui %{{.*}}, %c48
// CHECK: vector.load %[[KR]][%{{.*}}, %[[AT]], %{{.*}}, %c0] : memref<?x48x2x64xf16>, vector<64xf16>
// CHECK: } else {
// CHECK: vector.interleave
func.func @decode_residual(%q: tensor<?x4x64xf16>, %cache: !kivi, %indptr: tensor<?xi32>,
                           %indices: tensor<?xi32>, %last: tensor<?xi32>, %rings: tensor<?xi32>) -> tensor<?x4x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last kv_rings(%rings)
      : (tensor<?x4x64xf16>, !kivi, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}
