// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, summary = minmax>

// CHECK-LABEL: func.func @block_sparse
// CHECK: attn.attention %{{.*}}, %{{.*}}, %{{.*}} block_sparse(%{{.*}}, %{{.*}}) block_full(%{{.*}}) {block_size = array<i64: 64, 32>, mask = #attn.mask<causal>}
func.func @block_sparse(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x2x64xf16>,
                        %v: tensor<?x?x2x64xf16>, %off: tensor<?x2x?xi32>,
                        %idx: tensor<?x2x?xi32>, %full: tensor<?x2x?xi8>)
    -> tensor<?x?x8x64xf16> {
  %o = attn.attention %q, %k, %v block_sparse(%off, %idx) block_full(%full)
      {block_size = array<i64: 64, 32>, mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>,
         tensor<?x2x?xi32>, tensor<?x2x?xi32>, tensor<?x2x?xi8>)
      -> tensor<?x?x8x64xf16>
  return %o : tensor<?x?x8x64xf16>
}

// One pattern shared by every head (heads = 1), ragged, no full flags.
// CHECK-LABEL: func.func @block_sparse_ragged
// CHECK: cu_seqlens(%{{.*}}, %{{.*}}) block_sparse(%{{.*}}, %{{.*}}) {block_size = array<i64: 16, 16>}
func.func @block_sparse_ragged(%q: tensor<?x4x64xf32>, %k: tensor<?x4x64xf32>,
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

// CHECK-LABEL: func.func @head_policies
// CHECK: head_masks = [#attn.mask<causal>, #attn.mask<window = 252, sinks = 4>]
func.func @head_policies(%q: tensor<1x?x8x64xf16>, %k: tensor<1x?x2x64xf16>,
                         %v: tensor<1x?x2x64xf16>) -> tensor<1x?x8x64xf16> {
  %o = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>,
                                   #attn.mask<window = 252, sinks = 4>]}
      : (tensor<1x?x8x64xf16>, tensor<1x?x2x64xf16>, tensor<1x?x2x64xf16>)
      -> tensor<1x?x8x64xf16>
  return %o : tensor<1x?x8x64xf16>
}

// CHECK-LABEL: func.func @select_then_read
// CHECK-SAME: summary = minmax
// CHECK: attn.select_pages %{{.*}} {recent_pages = 2 : i64, sink_pages = 1 : i64, top_k = 8 : i64}
// CHECK: attn.paged_attention {{.*}} block_sparse(%{{.*}}, %{{.*}}) {block_size = array<i64: 1, 16>}
func.func @select_then_read(%q: tensor<?x8x64xf16>, %c: !cache,
                            %indptr: tensor<?xi32>, %indices: tensor<?xi32>,
                            %last: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %off, %pages = attn.select_pages %q, %c, %indptr, %indices, %last
      {top_k = 8, sink_pages = 1, recent_pages = 2}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x8xi32>)
  %o = attn.paged_attention %q, %c, %indptr, %indices, %last
      block_sparse(%off, %pages) {block_size = array<i64: 1, 16>}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>, tensor<?x2x2xi32>, tensor<?x2x8xi32>)
      -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}
