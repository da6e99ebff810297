// RUN: attnc %s --emit=manifest | %python %S/Inputs/manifest_lines.py | FileCheck %s

// A cache with a residual window: its rings are components counted by
// num_rings (not pages, so not in bytes per token), appends take ring slots
// and attention takes each sequence's ring.

!kivi = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i4, k_group = 16, residual = 32>

// 128 bytes of packed K and V, 32 of K scales and minima (per channel, per
// 16 tokens), 8 of V scales and minima; the rings are not per token.
// CHECK-LABEL: kernel append
// CHECK: kv_cache: {"bytes_per_token": 168, "head_dim": 64, "k_group": 16, "layout": "nhd", "name": "cache", "num_kv_heads": 2, "page_size": 16, "residual": 32, "storage": "i4"}
// CHECK: arg in slot_mapping slot_mapping i32 ["num_new"]
// CHECK-NEXT: arg in ring_slots ring_slots i32 ["num_new"]
// CHECK: arg inout cache_v_min v_min f16 ["num_pages", 16, 2]
// CHECK-NEXT: arg inout cache_k_recent k_recent f16 ["num_rings", 32, 2, 64]
// CHECK-NEXT: arg inout cache_v_recent v_recent f16 ["num_rings", 32, 2, 64]
func.func @append(%k: tensor<?x2x64xf32>, %v: tensor<?x2x64xf32>, %slots: tensor<?xi32>,
                  %ring_slots: tensor<?xi32>, %cache: !kivi) {
  attn.kv_append %k, %v, %slots ring_slots(%ring_slots : tensor<?xi32>) into %cache
      : tensor<?x2x64xf32>, tensor<?x2x64xf32>, tensor<?xi32>, !kivi
  return
}

// CHECK-LABEL: kernel decode
// CHECK: arg in cache_k_recent k_recent f16 ["num_rings", 32, 2, 64]
// CHECK: arg in kv_rings kv_rings i32 ["batch"]
func.func @decode(%q: tensor<?x4x64xf32>, %cache: !kivi, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>, %rings: tensor<?xi32>)
    -> tensor<?x4x64xf32> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last kv_rings(%rings)
      : (tensor<?x4x64xf32>, !kivi, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x64xf32>
  return %o : tensor<?x4x64xf32>
}
