// RUN: attnc %s --emit=manifest | %python %S/Inputs/manifest_lines.py | FileCheck %s
// RUN: attnc %s --emit=manifest | FileCheck %s --check-prefix=RAW

// --emit=manifest describes the kernels of the attn level without lowering
// them: kind, arguments (a cache as its component buffers, named
// <cache>_<component>), directions, symbols and the kv_cache object. Tile
// sizes, phases and scratch come from lowering (1 phase, no scratch here).

// RAW: "format_version": 2,
// RAW: "dir": "inout",
// RAW-NEXT: "dtype": "f8e4m3fn",
// RAW-NEXT: "name": "layer0_k_pages",
// RAW-NEXT: "role": "k_pages",
// RAW-NEXT: "shape": [
// RAW-NEXT: "num_pages",
// RAW-NEXT: 16,

// CHECK: format_version 2
// CHECK: library "libmanifest-kv.so"

// Paged decode over an i8 cache in hnd layout: one query per sequence.
// CHECK-LABEL: kernel decode
// CHECK-NEXT: attention: {"dtype": "f16", "has_lse": true, "head_dim": 64, "layout": "paged", "mask": {"align": "bottom_right", "causal": true, "sinks": 0, "window": -1}, "num_kv_heads": 2, "num_q_heads": 8, "scale": 0.125, "softcap": 0}
// CHECK-NEXT: entry_run: "decode__run"
// CHECK-NEXT: entry_work_items: "decode__work_items"
// CHECK-NEXT: kind: "paged_attention"
// 2 x 64 bytes of K and V, K scales 2 groups x 2 x 64 f16 per 16-token page, V scales 2 f16.
// CHECK-NEXT: kv_cache: {"bytes_per_token": 292, "head_dim": 64, "k_group": 8, "layout": "hnd", "name": "cache", "num_kv_heads": 2, "page_size": 16, "residual": 0, "storage": "i8"}
// CHECK-NEXT: phases: 1
// CHECK-NEXT: arg in q query f16 ["batch", 8, 64]
// CHECK-NEXT: arg in cache_k_pages k_pages i8 ["num_pages", 2, 16, 64]
// CHECK-NEXT: arg in cache_v_pages v_pages i8 ["num_pages", 2, 16, 64]
// CHECK-NEXT: arg in cache_k_scale k_scale f16 ["num_pages", 2, 2, 64]
// CHECK-NEXT: arg in cache_v_scale v_scale f16 ["num_pages", 16, 2]
// CHECK-NEXT: arg in kv_indptr kv_indptr i32 ["batch+1"]
// CHECK-NEXT: arg in kv_indices kv_indices i32 ["num_page_refs"]
// CHECK-NEXT: arg in kv_last_page_len kv_last_page_len i32 ["batch"]
// CHECK-NEXT: arg out o output f16 ["batch", 8, 64]
// CHECK-NEXT: arg out lse lse f32 [8, "batch"]
// CHECK-NOT: scratch
!i8cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = hnd, storage = i8, k_group = 8>
func.func @decode(%q: tensor<?x8x64xf16>, %cache: !i8cache,
                  %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x8x64xf16>, tensor<8x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last {mask = #attn.mask<causal>}
      : (tensor<?x8x64xf16>, !i8cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x8x64xf16>, tensor<8x?xf32>)
  return %o, %lse : tensor<?x8x64xf16>, tensor<8x?xf32>
}

// Append into an fp8 cache named by attn.name: the pages and the per-head
// scales are written in place (inout); no attention object.
// CHECK-LABEL: kernel append
// CHECK-NOT: attention
// CHECK-NEXT: entry_run: "append__run"
// CHECK-NEXT: entry_work_items: "append__work_items"
// CHECK-NEXT: kind: "kv_append"
// CHECK-NEXT: kv_cache: {"bytes_per_token": 2048, "head_dim": 128, "k_group": 0, "layout": "nhd", "name": "layer0", "num_kv_heads": 8, "page_size": 16, "residual": 0, "storage": "f8e4m3fn"}
// CHECK-NEXT: phases: 1
// CHECK-NEXT: arg in k_new k_new bf16 ["num_new", 8, 128]
// CHECK-NEXT: arg in v_new v_new bf16 ["num_new", 8, 128]
// CHECK-NEXT: arg in slot_mapping slot_mapping i32 ["num_new"]
// CHECK-NEXT: arg inout layer0_k_pages k_pages f8e4m3fn ["num_pages", 16, 8, 128]
// CHECK-NEXT: arg inout layer0_v_pages v_pages f8e4m3fn ["num_pages", 16, 8, 128]
// CHECK-NEXT: arg inout layer0_k_scale k_scale f32 [8]
// CHECK-NEXT: arg inout layer0_v_scale v_scale f32 [8]
// CHECK-NOT: arg
!f8cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E4M3FN>
func.func @append(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %slots: tensor<?xi32>,
                  %cache: !f8cache {attn.name = "layer0"}) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi32>, !f8cache
  return
}

// Paged prefill (qo_indptr) over an i4 cache: a static kv_indptr of 5 makes
// batch 4 everywhere (kv_last_page_len, qo_indptr).
// CHECK-LABEL: kernel prefill
// CHECK-NEXT: attention: {{.*}}"layout": "paged"{{.*}}"num_q_heads": 32
// CHECK: kv_cache: {"bytes_per_token": 1120, "head_dim": 128, "k_group": 64, "layout": "nhd", "name": "kv", "num_kv_heads": 8, "page_size": 64, "residual": 0, "storage": "i4"}
// CHECK: arg in q query f32 ["total_q", 32, 128]
// CHECK-NEXT: arg in kv_k_pages k_pages u8 ["num_pages", 64, 8, 64]
// CHECK-NEXT: arg in kv_v_pages v_pages u8 ["num_pages", 64, 8, 64]
// CHECK-NEXT: arg in kv_k_scale k_scale f16 ["num_pages", 1, 8, 128]
// CHECK-NEXT: arg in kv_k_min k_min f16 ["num_pages", 1, 8, 128]
// CHECK-NEXT: arg in kv_v_scale v_scale f16 ["num_pages", 64, 8]
// CHECK-NEXT: arg in kv_v_min v_min f16 ["num_pages", 64, 8]
// CHECK-NEXT: arg in kv_indptr kv_indptr i32 [5]
// CHECK-NEXT: arg in kv_indices kv_indices i32 ["num_page_refs"]
// CHECK-NEXT: arg in kv_last_page_len kv_last_page_len i32 [4]
// CHECK-NEXT: arg in cu_q qo_indptr i32 [5]
// CHECK-NEXT: arg out o output f32 ["total_q", 32, 128]
!i4cache = !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, k_group = 64>
func.func @prefill(%q: tensor<?x32x128xf32>, %cache: !i4cache {attn.name = "kv"},
                   %indptr: tensor<5xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>,
                   %qo: tensor<?xi32> {attn.name = "cu_q"}) -> tensor<?x32x128xf32> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
      : (tensor<?x32x128xf32>, !i4cache, tensor<5xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xf32>
  return %o : tensor<?x32x128xf32>
}

// Merge: partials in, combined output and LSE out; no cache, no attention.
// CHECK-LABEL: kernel combine
// CHECK-NOT: attention
// CHECK-NOT: kv_cache
// CHECK: kind: "merge"
// CHECK: arg in partial_o partial_o f32 ["num_partials", "num_tokens", 32, 128]
// CHECK-NEXT: arg in partial_lse partial_lse f32 ["num_partials", 32, "num_tokens"]
// CHECK-NEXT: arg out o output f16 ["num_tokens", 32, 128]
// CHECK-NEXT: arg out lse lse f32 [32, "num_tokens"]
func.func @combine(%po: tensor<?x?x32x128xf32>, %plse: tensor<?x32x?xf32>)
    -> (tensor<?x32x128xf16>, tensor<32x?xf32>) {
  %o, %lse = attn.merge %po, %plse
      : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
  return %o, %lse : tensor<?x32x128xf16>, tensor<32x?xf32>
}
