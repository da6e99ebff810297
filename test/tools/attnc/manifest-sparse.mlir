// RUN: attnc %s --emit=manifest | %python %S/Inputs/manifest_lines.py | FileCheck %s
// RUN: attnc %s --emit=manifest | FileCheck %s --check-prefix=RAW

// Sparsity in the manifest (docs/sparsity.md): the block-sparse operands of
// attention kernels (roles block_offsets, block_indices, block_full, inputs)
// with the kernel-level block_sparse object; per-KV-head masks in the
// attention object (the top-level mask stays none, with the heads'
// alignment); attn.select_pages as kind select_pages with its outputs and
// parameters; the page summaries of a summary = minmax cache as components;
// attn.instrumented as the kernel's instrumented list.

// Dense attention, one pattern per KV head, with full flags.
// CHECK-LABEL: kernel dense_bsr
// CHECK-NEXT: attention: {"dtype": "f16", "has_lse": false, "head_dim": 64, "layout": "dense", "mask": {"align": "bottom_right", "causal": true, "sinks": 0, "window": -1}, "num_kv_heads": 2, "num_q_heads": 8, "scale": 0.125, "softcap": 0}
// CHECK-NEXT: block_sparse: {"block_kv": 64, "block_q": 32, "heads": 2}
// CHECK-NEXT: entry_run: "dense_bsr__run"
// CHECK-NEXT: entry_work_items: "dense_bsr__work_items"
// CHECK-NEXT: kind: "attention"
// CHECK-NEXT: phases: 1
// CHECK-NEXT: arg in q query f16 ["batch", "seqlen_q", 8, 64]
// CHECK-NEXT: arg in k key f16 ["batch", "seqlen_k", 2, 64]
// CHECK-NEXT: arg in v value f16 ["batch", "seqlen_k", 2, 64]
// CHECK-NEXT: arg in block_offsets block_offsets i32 ["batch", 2, "num_q_blocks+1"]
// CHECK-NEXT: arg in block_indices block_indices i32 ["batch", 2, "max_blocks"]
// CHECK-NEXT: arg in block_full block_full i8 ["batch", 2, "max_blocks"]
// CHECK-NEXT: arg out o output f16 ["batch", "seqlen_q", 8, 64]
func.func @dense_bsr(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x2x64xf16>, %v: tensor<?x?x2x64xf16>,
                     %offsets: tensor<?x2x?xi32>, %indices: tensor<?x2x?xi32>, %full: tensor<?x2x?xi8>)
    -> tensor<?x?x8x64xf16> {
  %o = attn.attention %q, %k, %v block_sparse(%offsets, %indices) block_full(%full)
      {block_size = array<i64: 32, 64>, mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>,
         tensor<?x2x?xi32>, tensor<?x2x?xi32>, tensor<?x2x?xi8>) -> tensor<?x?x8x64xf16>
  return %o : tensor<?x?x8x64xf16>
}

// Ragged attention with one pattern for every head (H = 1) and per-head
// masks: the batch symbol is the one of cu_seqlens (batch+1).
// CHECK-LABEL: kernel ragged_heads
// CHECK-NEXT: attention: {"dtype": "f32", "has_lse": true, "head_dim": 32, "head_masks": [{"causal": true, "sinks": 0, "top_left": false, "window": -1}, {"causal": false, "sinks": 4, "top_left": false, "window": 16}], "layout": "ragged", "mask": {"align": "bottom_right", "causal": false, "sinks": 0, "window": -1}
// CHECK-NEXT: block_sparse: {"block_kv": 16, "block_q": 16, "heads": 1}
// CHECK: arg in cu_seqlens_k cu_seqlens_k i32 ["batch+1"]
// CHECK-NEXT: arg in block_offsets block_offsets i32 ["batch", 1, "num_q_blocks+1"]
// CHECK-NEXT: arg in block_indices block_indices i32 ["batch", 1, "max_blocks"]
// CHECK-NEXT: arg out o output f32 ["total_q", 4, 32]
// CHECK-NEXT: arg out lse lse f32 [4, "total_q"]
func.func @ragged_heads(%q: tensor<?x4x32xf32>, %k: tensor<?x2x32xf32>, %v: tensor<?x2x32xf32>,
                        %cuq: tensor<?xi32>, %cuk: tensor<?xi32>,
                        %offsets: tensor<?x1x?xi32>, %indices: tensor<?x1x?xi32>)
    -> (tensor<?x4x32xf32>, tensor<4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cuq, %cuk) block_sparse(%offsets, %indices)
      {block_size = array<i64: 16, 16>,
       head_masks = [#attn.mask<causal>, #attn.mask<window = 16, sinks = 4>]}
      : (tensor<?x4x32xf32>, tensor<?x2x32xf32>, tensor<?x2x32xf32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?x1x?xi32>, tensor<?x1x?xi32>) -> (tensor<?x4x32xf32>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x32xf32>, tensor<4x?xf32>
}

// Top-left aligned head masks: the top-level mask carries the alignment.
// CHECK-LABEL: kernel top_left_heads
// CHECK-NEXT: attention: {{.*}}"head_masks": [{"causal": true, "sinks": 0, "top_left": true, "window": 8}, {"causal": true, "sinks": 0, "top_left": true, "window": -1}], "layout": "dense", "mask": {"align": "top_left", "causal": false, "sinks": 0, "window": -1}
// CHECK-NOT: block_sparse
// CHECK: kind: "attention"
func.func @top_left_heads(%q: tensor<?x?x2x16xf32>, %k: tensor<?x?x2x16xf32>, %v: tensor<?x?x2x16xf32>)
    -> tensor<?x?x2x16xf32> {
  %o = attn.attention %q, %k, %v
      {head_masks = [#attn.mask<causal, window = 8, top_left>, #attn.mask<causal, top_left>]}
      : (tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>) -> tensor<?x?x2x16xf32>
  return %o : tensor<?x?x2x16xf32>
}

// Paged decode over the pages select_pages chose: block_size [1, page_size];
// a static query block count (num_q_blocks + 1 = 2) makes num_q_blocks 1.
// The summaries are cache components (in) after the others, counted in bytes
// per token (2 x 2 heads x 64 x 2 bytes per 16-token page = 32).
// CHECK-LABEL: kernel decode_selected
// CHECK: block_sparse: {"block_kv": 16, "block_q": 1, "heads": 2}
// CHECK: instrumented: ["tile_stats"]
// CHECK-NEXT: kind: "paged_attention"
// CHECK-NEXT: kv_cache: {"bytes_per_token": 544, "head_dim": 64, "k_group": 0, "layout": "nhd", "name": "layer", "num_kv_heads": 2, "page_size": 16, "residual": 0, "storage": "f16", "summary": "minmax"}
// CHECK: arg in layer_v_pages v_pages f16 ["num_pages", 16, 2, 64]
// CHECK-NEXT: arg in layer_k_page_max k_page_max f16 ["num_pages", 2, 64]
// CHECK-NEXT: arg in layer_k_page_min k_page_min f16 ["num_pages", 2, 64]
// CHECK-NEXT: arg in kv_indptr kv_indptr i32 ["batch+1"]
// CHECK-NEXT: arg in kv_indices kv_indices i32 ["num_page_refs"]
// CHECK-NEXT: arg in kv_last_page_len kv_last_page_len i32 ["batch"]
// CHECK-NEXT: arg in sel_offsets block_offsets i32 ["batch", 2, 2]
// CHECK-NEXT: arg in sel_pages block_indices i32 ["batch", 2, "max_blocks"]
// CHECK-NEXT: arg out o output f16 ["batch", 8, 64]
!quest = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16, summary = minmax>
func.func @decode_selected(%q: tensor<?x8x64xf16>, %cache: !quest {attn.name = "layer"},
                           %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>,
                           %offsets: tensor<?x2x2xi32> {attn.name = "sel_offsets"},
                           %pages: tensor<?x2x?xi32> {attn.name = "sel_pages"})
    -> tensor<?x8x64xf16> attributes {attn.instrumented = ["tile_stats"]} {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last block_sparse(%offsets, %pages)
      {block_size = array<i64: 1, 16>}
      : (tensor<?x8x64xf16>, !quest, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?x2x2xi32>, tensor<?x2x?xi32>) -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}

// select_pages: the query and page table in, the block lists out, no
// attention object, the parameters at kernel level.
// CHECK-LABEL: kernel select
// CHECK-NEXT: entry_run: "select__run"
// CHECK-NEXT: entry_work_items: "select__work_items"
// CHECK-NEXT: kind: "select_pages"
// CHECK-NEXT: kv_cache: {"bytes_per_token": 544, {{.*}} "summary": "minmax"}
// CHECK-NEXT: phases: 1
// CHECK-NEXT: select_pages: {"recent_pages": 4, "sink_pages": 1, "top_k": 16}
// CHECK-NEXT: arg in q query f16 ["batch", 8, 64]
// CHECK-NEXT: arg in layer_k_pages k_pages f16 ["num_pages", 16, 2, 64]
// CHECK-NEXT: arg in layer_v_pages v_pages f16 ["num_pages", 16, 2, 64]
// CHECK-NEXT: arg in layer_k_page_max k_page_max f16 ["num_pages", 2, 64]
// CHECK-NEXT: arg in layer_k_page_min k_page_min f16 ["num_pages", 2, 64]
// CHECK-NEXT: arg in kv_indptr kv_indptr i32 ["batch+1"]
// CHECK-NEXT: arg in kv_indices kv_indices i32 ["num_page_refs"]
// CHECK-NEXT: arg in kv_last_page_len kv_last_page_len i32 ["batch"]
// CHECK-NEXT: arg out block_offsets block_offsets i32 ["batch", 2, 2]
// CHECK-NEXT: arg out block_indices block_indices i32 ["batch", 2, 16]
// CHECK-NOT: attention
func.func @select(%q: tensor<?x8x64xf16>, %cache: !quest {attn.name = "layer"},
                  %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x16xi32>) {
  %offsets, %pages = attn.select_pages %q, %cache, %indptr, %indices, %last
      {top_k = 16, sink_pages = 1, recent_pages = 4}
      : (tensor<?x8x64xf16>, !quest, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x2x2xi32>, tensor<?x2x16xi32>)
  return %offsets, %pages : tensor<?x2x2xi32>, tensor<?x2x16xi32>
}

// A static batch is that size everywhere, the results included.
// CHECK-LABEL: kernel select_static
// CHECK: arg in q query f32 [3, 8, 64]
// CHECK: arg in kv_indptr kv_indptr i32 [4]
// CHECK: arg out block_offsets block_offsets i32 [3, 2, 2]
// CHECK-NEXT: arg out block_indices block_indices i32 [3, 2, 4]
func.func @select_static(%q: tensor<3x8x64xf32>, %cache: !quest,
                         %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>) {
  %offsets, %pages = attn.select_pages %q, %cache, %indptr, %indices, %last {top_k = 4}
      : (tensor<3x8x64xf32>, !quest, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return %offsets, %pages : tensor<?x2x2xi32>, tensor<?x2x4xi32>
}

// RAW: "kind": "select_pages",
// RAW: "select_pages": {
// RAW-NEXT: "recent_pages": 4,
// RAW-NEXT: "sink_pages": 1,
// RAW-NEXT: "top_k": 16
