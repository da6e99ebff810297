// RUN: rm -rf %t && attnc %s --target=host --vector-width=8 --count-tiles -o %t
// RUN: %python %S/Inputs/manifest_lines.py < %t/manifest.json | FileCheck %s --check-prefix=MANIFEST
// RUN: FileCheck %s --check-prefix=HEADER < %t/manifest-sparse-artifacts.h
// RUN: cc -fsyntax-only -Wall -Werror -x c %t/manifest-sparse-artifacts.h
// RUN: nm -D %t/libmanifest-sparse-artifacts.so | FileCheck %s --check-prefix=SYMBOLS

// Sparse kernels compiled for the host: select_pages (one phase, its block
// lists as out-parameters, no tile object since it is not tiled), a paged
// decode over the selected pages with per-head masks, instrumented by
// --count-tiles (the lowering's attn.instrumented reaches the manifest and
// the header), and the append that keeps the summaries.

// MANIFEST-LABEL: kernel quest
// MANIFEST: kind: "select_pages"
// MANIFEST-NEXT: kv_cache: {{.*}}"summary": "minmax"}
// MANIFEST-NEXT: phases: 1
// MANIFEST-NEXT: select_pages: {"recent_pages": 1, "sink_pages": 1, "top_k": 4}
// MANIFEST-NOT: tile
// MANIFEST: arg out block_offsets block_offsets i32 ["batch", 2, 2]
// MANIFEST-NEXT: arg out block_indices block_indices i32 ["batch", 2, 4]
// MANIFEST-LABEL: kernel decode
// MANIFEST: block_sparse: {"block_kv": 16, "block_q": 1, "heads": 2}
// MANIFEST: instrumented: ["tile_stats"]
// MANIFEST-NEXT: kind: "paged_attention"
// MANIFEST: arg in block_offsets block_offsets i32 ["batch", 2, 2]
// MANIFEST-NEXT: arg in block_indices block_indices i32 ["batch", 2, 4]
// MANIFEST-LABEL: kernel append
// MANIFEST: kind: "kv_append"
// MANIFEST-NOT: instrumented
// MANIFEST: arg inout cache_k_page_max k_page_max f16 ["num_pages", 2, 32]
// MANIFEST-NEXT: arg inout cache_k_page_min k_page_min f16 ["num_pages", 2, 32]

// HEADER: quest: query-aware page selection, top_k 4 (sink_pages 1, recent_pages 1).
// HEADER-NEXT: kind select_pages, 1 phase.
// HEADER-NEXT: KV cache 'cache': page_size 16, 2 KV heads, head size 32, nhd, f16 storage, page summaries (min/max), 272 bytes per token.
// HEADER: out   block_offsets: i32 [batch, 2, 2]
// HEADER-NEXT: out   block_indices: i32 [batch, 2, 4]
// HEADER: static inline void quest(attnc_memref3d *q, attnc_memref4d *cache_k_pages, attnc_memref4d *cache_v_pages, attnc_memref3d *cache_k_page_max, attnc_memref3d *cache_k_page_min, attnc_memref1d *kv_indptr, attnc_memref1d *kv_indices, attnc_memref1d *kv_last_page_len, attnc_memref3d *block_offsets, attnc_memref3d *block_indices) {
// HEADER: decode: paged attention (decode), 4 query heads, 2 KV heads, head size 32, f32.
// HEADER-NEXT: kind paged_attention,
// HEADER-NEXT: Block-sparse mask: block_size [1, 16] (query x key tokens), one pattern per KV head.
// HEADER-NEXT: Masks per KV head: causal; window 64 sinks 4.
// HEADER-NEXT: Instrumented: tile_stats.
// HEADER-NEXT: KV cache 'cache'

// SYMBOLS-DAG: T quest__run
// SYMBOLS-DAG: T quest__work_items
// SYMBOLS-DAG: T decode__run
// SYMBOLS-DAG: decode__tile_stats
// SYMBOLS-DAG: T append__run

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = nhd, storage = f16, summary = minmax>

func.func @quest(%q: tensor<?x4x32xf32>, %cache: !cache, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>) {
  %offsets, %pages = attn.select_pages %q, %cache, %indptr, %indices, %last
      {top_k = 4, sink_pages = 1, recent_pages = 1}
      : (tensor<?x4x32xf32>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return %offsets, %pages : tensor<?x2x2xi32>, tensor<?x2x4xi32>
}

func.func @decode(%q: tensor<?x4x32xf32>, %cache: !cache, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>,
                  %offsets: tensor<?x2x2xi32>, %pages: tensor<?x2x4xi32>)
    -> tensor<?x4x32xf32> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last block_sparse(%offsets, %pages)
      {block_size = array<i64: 1, 16>,
       head_masks = [#attn.mask<causal>, #attn.mask<window = 64, sinks = 4>]}
      : (tensor<?x4x32xf32>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?x2x2xi32>, tensor<?x2x4xi32>) -> tensor<?x4x32xf32>
  return %o : tensor<?x4x32xf32>
}

func.func @append(%k: tensor<?x2x32xf32>, %v: tensor<?x2x32xf32>, %slots: tensor<?xi32>,
                  %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x32xf32>, tensor<?x2x32xf32>, tensor<?xi32>, !cache
  return
}
