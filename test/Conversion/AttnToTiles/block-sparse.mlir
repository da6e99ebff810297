// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles --canonicalize --cse -split-input-file | FileCheck %s

// Block-sparse prefill: the KV loop walks the block list of the item's query
// block (offsets[b, h, row] .. offsets[b, h, row + 1]), two kernel tiles of
// 32 keys per 64-key block; an unlisted block is never visited.
// CHECK-LABEL: func.func @block_sparse
// CHECK: scf.parallel (%[[B:.*]], %[[H:.*]], %[[QT:.*]]) =
// The kernel's query tile (16 queries) lies inside one 64-query block.
// CHECK: %[[FIRSTQ:.*]] = arith.muli %[[QT]], %c16
// CHECK: %[[ROW:.*]] = arith.divui %[[FIRSTQ]], %c64
// CHECK: %[[BEGIN_I32:.*]] = tensor.extract %{{.*}}[%[[B]], %[[H]], %[[ROW]]] : tensor<?x2x?xi32>
// CHECK: %[[BEGIN:.*]] = arith.index_cast %[[BEGIN_I32]]
// CHECK: %[[NEXT:.*]] = arith.addi %[[ROW]], %c1
// CHECK: %[[END_I32:.*]] = tensor.extract %{{.*}}[%[[B]], %[[H]], %[[NEXT]]]
// CHECK: %[[END:.*]] = arith.index_cast %[[END_I32]]
// CHECK: %[[LISTED:.*]] = arith.subi %[[END]], %[[BEGIN]]
// CHECK: %[[NONNEG:.*]] = arith.maxsi %[[LISTED]], %c0
// CHECK: %[[STEPS:.*]] = arith.muli %[[NONNEG]], %c2
// CHECK: scf.for %[[S:.*]] = %c0 to %[[STEPS]] step %c1 iter_args
// CHECK: %[[ENTRY_OFF:.*]] = arith.divui %[[S]], %c2
// CHECK: %[[ENTRY:.*]] = arith.addi %[[BEGIN]], %[[ENTRY_OFF]]
// CHECK: %[[BLOCK_I32:.*]] = tensor.extract %{{.*}}[%[[B]], %[[H]], %[[ENTRY]]] : tensor<?x2x?xi32>
// CHECK: %[[FULL_I8:.*]] = tensor.extract %{{.*}}[%[[B]], %[[H]], %[[ENTRY]]] : tensor<?x2x?xi8>
// CHECK: %[[FULL:.*]] = arith.cmpi ne, %[[FULL_I8]], %c0_i8
// A listed tile hidden by the causal mask (and not flagged full) or past
// the sequence's end is skipped before its load.
// CHECK: scf.if %{{.*}} -> (vector<64xf32>, vector<64xf32>)
// The element predicate only on tiles that are not wholly visible; a full
// block counts as wholly visible.
// CHECK: arith.ori %{{.*}}, %[[FULL]] : i1
// CHECK: scf.if %{{.*}} -> (vector<32xf32>)
func.func @block_sparse(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x2x64xf16>,
                        %v: tensor<?x?x2x64xf16>, %off: tensor<?x2x?xi32>,
                        %idx: tensor<?x2x?xi32>, %full: tensor<?x2x?xi8>)
    -> tensor<?x?x8x64xf16> {
  %o = attn.attention %q, %k, %v block_sparse(%off, %idx) block_full(%full)
      {block_size = array<i64: 64, 64>, mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>,
         tensor<?x2x?xi32>, tensor<?x2x?xi32>, tensor<?x2x?xi8>)
      -> tensor<?x?x8x64xf16>
  return %o : tensor<?x?x8x64xf16>
}

// -----

// One pattern for every head (heads = 1): the lists are read at head 0.
// Blocks of 16 keys make 16-key kernel tiles (gcd with block-kv = 32).
// CHECK-LABEL: func.func @shared_pattern
// CHECK-SAME: block_kv = 16 : i64
// CHECK: scf.parallel (%[[B:.*]], %{{.*}}, %{{.*}}) =
// CHECK: tensor.extract %{{.*}}[%[[B]], %c0, %{{.*}}] : tensor<?x1x?xi32>
// CHECK: scf.for
// CHECK: tensor.extract %{{.*}}[%[[B]], %c0, %{{.*}}] : tensor<?x1x?xi32>
func.func @shared_pattern(%q: tensor<?x4x64xf32>, %k: tensor<?x4x64xf32>,
                          %v: tensor<?x4x64xf32>, %cq: tensor<?xi32>,
                          %ck: tensor<?xi32>, %off: tensor<?x1x?xi32>,
                          %idx: tensor<?x1x?xi32>) -> tensor<?x4x64xf32> {
  %o = attn.attention %q, %k, %v cu_seqlens(%cq, %ck) block_sparse(%off, %idx)
      {block_size = array<i64: 16, 16>}
      : (tensor<?x4x64xf32>, tensor<?x4x64xf32>, tensor<?x4x64xf32>,
         tensor<?xi32>, tensor<?xi32>, tensor<?x1x?xi32>, tensor<?x1x?xi32>)
      -> tensor<?x4x64xf32>
  return %o : tensor<?x4x64xf32>
}

// -----

// Selected pages: decode reads only the listed pages (one 16-token page per
// entry, one kernel tile each); the page of a tile comes from kv_indices.
!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>
// CHECK-LABEL: func.func @selected_pages
// Phase 1 over (sequence, KV head, split-KV partition).
// CHECK: scf.parallel (%[[B:.*]], %[[H:.*]], %{{.*}}) =
// CHECK: tensor.extract %{{.*}}[%[[B]], %[[H]], %c0] : tensor<?x2x2xi32>
// CHECK: tensor.extract %{{.*}}[%[[B]], %[[H]], %c1] : tensor<?x2x2xi32>
// CHECK: scf.for
// CHECK: %[[PAGE_NO:.*]] = tensor.extract %{{.*}}[%[[B]], %[[H]], %{{.*}}] : tensor<?x2x8xi32>
func.func @selected_pages(%q: tensor<?x8x64xf16>, %c: !cache,
                          %indptr: tensor<?xi32>, %indices: tensor<?xi32>,
                          %last: tensor<?xi32>, %off: tensor<?x2x2xi32>,
                          %pages: tensor<?x2x8xi32>) -> tensor<?x8x64xf16> {
  %o = attn.paged_attention %q, %c, %indptr, %indices, %last
      block_sparse(%off, %pages) {block_size = array<i64: 1, 16>}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>, tensor<?x2x2xi32>, tensor<?x2x8xi32>)
      -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}
