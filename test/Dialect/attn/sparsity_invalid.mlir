// RUN: attn-opt %s -split-input-file -verify-diagnostics

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @both_masks(%q: !q, %k: !kv, %v: !kv) -> !q {
  // expected-error @+1 {{has both mask and head_masks; give one}}
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>,
      head_masks = [#attn.mask<causal>, #attn.mask<causal>]}
      : (!q, !kv, !kv) -> !q
  return %o : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @head_mask_count(%q: !q, %k: !kv, %v: !kv) -> !q {
  // expected-error @+1 {{head_masks has 3 entries; expected one #attn.mask per KV head (2)}}
  %o = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>,
      #attn.mask<causal>, #attn.mask<causal>]} : (!q, !kv, !kv) -> !q
  return %o : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @head_mask_kind(%q: !q, %k: !kv, %v: !kv) -> !q {
  // expected-error @+1 {{head_masks entry 1 must be an #attn.mask, got 4 : i64}}
  %o = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>, 4]}
      : (!q, !kv, !kv) -> !q
  return %o : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @head_mask_alignment(%q: !q, %k: !kv, %v: !kv) -> !q {
  // expected-error @+1 {{head_masks entry 1 differs in alignment (top_left) from entry 0}}
  %o = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>,
      #attn.mask<causal, top_left>]} : (!q, !kv, !kv) -> !q
  return %o : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @no_block_size(%q: !q, %k: !kv, %v: !kv, %o: tensor<1x2x?xi32>,
                         %i: tensor<1x2x?xi32>) -> !q {
  // expected-error @+1 {{block_sparse needs block_size = array<i64: BQ, BK>}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i)
      : (!q, !kv, !kv, tensor<1x2x?xi32>, tensor<1x2x?xi32>) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @zero_block(%q: !q, %k: !kv, %v: !kv, %o: tensor<1x2x?xi32>,
                      %i: tensor<1x2x?xi32>) -> !q {
  // expected-error @+1 {{block_sparse needs block_size = array<i64: BQ, BK>, the query and KV block sizes in tokens (both >= 1)}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i)
      {block_size = array<i64: 64, 0>}
      : (!q, !kv, !kv, tensor<1x2x?xi32>, tensor<1x2x?xi32>) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @size_without_operands(%q: !q, %k: !kv, %v: !kv) -> !q {
  // expected-error @+1 {{block_size given without block_sparse operands}}
  %r = attn.attention %q, %k, %v {block_size = array<i64: 64, 64>}
      : (!q, !kv, !kv) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @heads(%q: !q, %k: !kv, %v: !kv, %o: tensor<1x8x?xi32>,
                 %i: tensor<1x8x?xi32>) -> !q {
  // expected-error @+1 {{block_sparse offsets have 8 heads; expected the KV heads (2) or 1}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i)
      {block_size = array<i64: 64, 64>}
      : (!q, !kv, !kv, tensor<1x8x?xi32>, tensor<1x8x?xi32>) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @elem(%q: !q, %k: !kv, %v: !kv, %o: tensor<1x2x?xi64>,
                %i: tensor<1x2x?xi32>) -> !q {
  // expected-error @+1 {{block_sparse offsets must be an i32 tensor [batch, heads, num_q_blocks + 1], got 'tensor<1x2x?xi64>'}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i)
      {block_size = array<i64: 64, 64>}
      : (!q, !kv, !kv, tensor<1x2x?xi64>, tensor<1x2x?xi32>) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @batch(%q: !q, %k: !kv, %v: !kv, %o: tensor<3x2x?xi32>,
                 %i: tensor<3x2x?xi32>) -> !q {
  // expected-error @+1 {{block_sparse offsets cover 3 sequences; the batch has 1}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i)
      {block_size = array<i64: 64, 64>}
      : (!q, !kv, !kv, tensor<3x2x?xi32>, tensor<3x2x?xi32>) -> !q
  return %r : !q
}

// -----

!q = tensor<1x?x8x64xf16>
!kv = tensor<1x?x2x64xf16>

func.func @full_shape(%q: !q, %k: !kv, %v: !kv, %o: tensor<1x2x?xi32>,
                      %i: tensor<1x2x5xi32>, %f: tensor<1x2x4xi8>) -> !q {
  // expected-error @+1 {{block_full must be an i8 tensor shaped like the indices 'tensor<1x2x5xi32>', got 'tensor<1x2x4xi8>'}}
  %r = attn.attention %q, %k, %v block_sparse(%o, %i) block_full(%f)
      {block_size = array<i64: 64, 64>}
      : (!q, !kv, !kv, tensor<1x2x?xi32>, tensor<1x2x5xi32>, tensor<1x2x4xi8>)
      -> !q
  return %r : !q
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>

func.func @decode_bq(%q: tensor<?x8x64xf16>, %c: !cache, %p: tensor<?xi32>,
                     %i: tensor<?xi32>, %l: tensor<?xi32>,
                     %o: tensor<?x2x2xi32>, %s: tensor<?x2x4xi32>)
    -> tensor<?x8x64xf16> {
  // expected-error @+1 {{decode has one query per sequence: block_size must be array<i64: 1, BK>, got BQ = 16}}
  %r = attn.paged_attention %q, %c, %p, %i, %l block_sparse(%o, %s)
      {block_size = array<i64: 16, 16>}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>, tensor<?x2x2xi32>, tensor<?x2x4xi32>)
      -> tensor<?x8x64xf16>
  return %r : tensor<?x8x64xf16>
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>

func.func @no_summary(%q: tensor<?x8x64xf16>, %c: !cache, %p: tensor<?xi32>,
                      %i: tensor<?xi32>, %l: tensor<?xi32>) {
  // expected-error @+1 {{needs per-page key summaries: declare the cache with summary = minmax}}
  %o, %s = attn.select_pages %q, %c, %p, %i, %l {top_k = 4}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16, summary = minmax>

func.func @topk(%q: tensor<?x8x64xf16>, %c: !cache, %p: tensor<?xi32>,
                %i: tensor<?xi32>, %l: tensor<?xi32>) {
  // expected-error @+1 {{needs top_k >= 1 and 0 <= sink_pages + recent_pages <= top_k, got top_k = 4, sink_pages = 2, recent_pages = 3}}
  %o, %s = attn.select_pages %q, %c, %p, %i, %l
      {top_k = 4, sink_pages = 2, recent_pages = 3}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x4xi32>)
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16, summary = minmax>

func.func @result_shape(%q: tensor<?x8x64xf16>, %c: !cache, %p: tensor<?xi32>,
                        %i: tensor<?xi32>, %l: tensor<?xi32>) {
  // expected-error @+1 {{indices result must be 'tensor<?x2x4xi32>' (batch, kv_heads, top_k), got 'tensor<?x2x8xi32>'}}
  %o, %s = attn.select_pages %q, %c, %p, %i, %l {top_k = 4}
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> (tensor<?x2x2xi32>, tensor<?x2x8xi32>)
  return
}

// -----

// expected-error @+1 {{unknown kv_cache summary 'mean'; expected minmax}}
func.func @summary_kind(%c: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16, summary = mean>)
