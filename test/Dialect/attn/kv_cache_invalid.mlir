// RUN: attn-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{kv_cache page_size must be 1 to 256 tokens, got 512}}
func.func @page_too_big(%c: !attn.kv_cache<page_size = 512, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache page_size must be 1 to 256 tokens, got 0}}
func.func @page_zero(%c: !attn.kv_cache<page_size = 0, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache kv_heads must be positive, got 0}}
func.func @heads(%c: !attn.kv_cache<page_size = 16, kv_heads = 0, head_dim = 128, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache head_dim must be positive, got -1}}
func.func @dim(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = -1, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache storage must be f16, bf16, f8E4M3FN, f8E5M2, i8 or i4, got 'f32'}}
func.func @storage(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f32>)

// -----

// expected-error @+1 {{kv_cache storage must be f16, bf16, f8E4M3FN, f8E5M2, i8 or i4, got 'ui8'}}
func.func @unsigned(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = ui8>)

// -----

// expected-error @+1 {{kv_cache with i4 storage packs two channels per byte: head_dim must be even, got 65}}
func.func @odd_i4(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 65, layout = nhd, storage = i4>)

// -----

// expected-error @+1 {{kv_cache k_group applies to i8 and i4 storage only (per-channel K scales); drop it for 'f16'}}
func.func @group_f16(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16, k_group = 16>)

// -----

// expected-error @+1 {{kv_cache k_group must divide page_size (16), got 5}}
func.func @group_divides(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 5>)

// -----

// expected-error @+1 {{unknown kv_cache layout 'nd'; expected nhd}}
func.func @layout(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nd, storage = f16>)

// -----

// expected-error @+1 {{unknown kv_cache parameter 'heads'}}
func.func @param(%c: !attn.kv_cache<page_size = 16, heads = 8, head_dim = 128, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache parameter 'page_size' given twice}}
func.func @twice(%c: !attn.kv_cache<page_size = 16, page_size = 8, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>)

// -----

// expected-error @+1 {{kv_cache is missing 'storage = ...'}}
func.func @missing(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd>)

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8>

func.func @append_heads(%k: tensor<?x4x128xf16>, %s: tensor<?xi32>, %c: !cache) {
  // expected-error @+1 {{key is 'tensor<?x4x128xf16>' but the cache holds 8 heads of size 128; expected tensor<?x8x128x...>}}
  attn.kv_append %k, %k, %s into %c : tensor<?x4x128xf16>, tensor<?x4x128xf16>, tensor<?xi32>, !cache
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8>

func.func @append_elem(%k: tensor<?x8x128xi8>, %s: tensor<?xi32>, %c: !cache) {
  // expected-error @+1 {{key element type must be f32, f16 or bf16, got 'i8'}}
  attn.kv_append %k, %k, %s into %c : tensor<?x8x128xi8>, tensor<?x8x128xi8>, tensor<?xi32>, !cache
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @append_mixed(%k: tensor<3x8x128xf16>, %v: tensor<4x8x128xf16>, %s: tensor<3xi32>, %c: !cache) {
  // expected-error @+1 {{must have the same element type and token count}}
  attn.kv_append %k, %v, %s into %c : tensor<3x8x128xf16>, tensor<4x8x128xf16>, tensor<3xi32>, !cache
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @append_slots(%k: tensor<3x8x128xf16>, %s: tensor<4xi32>, %c: !cache) {
  // expected-error @+1 {{slots has 4 entries; expected num_new = 3}}
  attn.kv_append %k, %k, %s into %c : tensor<3x8x128xf16>, tensor<3x8x128xf16>, tensor<4xi32>, !cache
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @append_slot_type(%k: tensor<3x8x128xf16>, %s: tensor<3xi64>, %c: !cache) {
  // expected-error @+1 {{slots must be a 1-D i32 tensor of size num_new, got 'tensor<3xi64>'}}
  attn.kv_append %k, %k, %s into %c : tensor<3x8x128xf16>, tensor<3x8x128xf16>, tensor<3xi64>, !cache
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_rank(%q: tensor<?x1x32x128xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{query must be [batch, q_heads, head_dim] (rank 3), got rank 4}}
  %o = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x1x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x1x32x128xf16>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_dim(%q: tensor<?x32x64xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{query head size 64 differs from the cache's head_dim 128}}
  %o = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x32x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x64xf16>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_gqa(%q: tensor<?x12x128xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{query heads (12) must be a positive multiple of the cache's kv_heads (8)}}
  %o = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x12x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x12x128xf16>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_indptr(%q: tensor<4x32x128xf16>, %c: !cache, %p: tensor<4xi32>, %i: tensor<?xi32>, %l: tensor<4xi32>) {
  // expected-error @+1 {{kv_indptr has 4 entries; expected batch + 1 = 5}}
  %o = attn.paged_attention %q, %c, %p, %i, %l : (tensor<4x32x128xf16>, !cache, tensor<4xi32>, tensor<?xi32>, tensor<4xi32>) -> tensor<4x32x128xf16>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_last(%q: tensor<4x32x128xf16>, %c: !cache, %p: tensor<5xi32>, %i: tensor<?xi32>, %l: tensor<?xf32>) {
  // expected-error @+1 {{kv_last_page_len must be a 1-D i32 tensor of size batch, got 'tensor<?xf32>'}}
  %o = attn.paged_attention %q, %c, %p, %i, %l : (tensor<4x32x128xf16>, !cache, tensor<5xi32>, tensor<?xi32>, tensor<?xf32>) -> tensor<4x32x128xf16>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_result(%q: tensor<?x32x128xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{result must have the query's type 'tensor<?x32x128xf16>', got 'tensor<?x32x128xf32>'}}
  %o = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf32>
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_lse(%q: tensor<?x32x128xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{log-sum-exp result must be f32 [q_heads, batch] = 'tensor<32x?xf32>', got 'tensor<16x?xf32>'}}
  %o, %l = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x32x128xf16>, tensor<16x?xf32>)
  return
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>

func.func @paged_scale(%q: tensor<?x32x128xf16>, %c: !cache, %i: tensor<?xi32>) {
  // expected-error @+1 {{scale must be a positive finite number, got -1}}
  %o = attn.paged_attention %q, %c, %i, %i, %i {scale = -1.0 : f32} : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf16>
  return
}

// -----

func.func @merge_lse(%po: tensor<4x?x32x128xf32>, %pl: tensor<3x32x?xf32>) {
  // expected-error @+1 {{partial log-sum-exps 'tensor<3x32x?xf32>' do not match the partial outputs 'tensor<4x?x32x128xf32>'; expected [4, 32, ?]}}
  %o = attn.merge %po, %pl : (tensor<4x?x32x128xf32>, tensor<3x32x?xf32>) -> tensor<?x32x128xf32>
  return
}

// -----

func.func @merge_rank(%po: tensor<?x32x128xf32>, %pl: tensor<?x32x?xf32>) {
  // expected-error @+1 {{partial outputs must be f32, f16 or bf16 [num_partials, tokens, heads, head_dim], got 'tensor<?x32x128xf32>'}}
  %o = attn.merge %po, %pl : (tensor<?x32x128xf32>, tensor<?x32x?xf32>) -> tensor<?x32x128xf32>
  return
}

// -----

func.func @merge_result(%po: tensor<?x?x32x128xf32>, %pl: tensor<?x32x?xf32>) {
  // expected-error @+1 {{result must be [tokens, heads, head_dim] = [?, 32, 128] in f32, f16 or bf16, got 'tensor<?x32x64xf32>'}}
  %o = attn.merge %po, %pl : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>) -> tensor<?x32x64xf32>
  return
}

// -----

func.func @merge_lse_result(%po: tensor<?x?x32x128xf32>, %pl: tensor<?x32x?xf32>) {
  // expected-error @+1 {{log-sum-exp result must be f32 [heads, tokens] = [32, ?], got 'tensor<16x?xf32>'}}
  %o, %l = attn.merge %po, %pl : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>) -> (tensor<?x32x128xf32>, tensor<16x?xf32>)
  return
}

// -----

// expected-error @+1 {{kv_cache residual keeps recent tokens unquantized; 'f16' storage is not quantized: drop the residual}}
func.func @residual_f16(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16, residual = 8>)

// -----

// expected-error @+1 {{kv_cache residual must be 1 to 4096 tokens, got 5000}}
func.func @residual_big(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, residual = 5000>)

// -----

// expected-error @+1 {{kv_cache residual must be at least 1 token (omit it for no residual window)}}
func.func @residual_zero(%c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, residual = 0>)

// -----

!kivi = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, residual = 64>

func.func @rings_missing(%q: tensor<?x32x128xf16>, %c: !kivi, %i: tensor<?xi32>) {
  // expected-error @+1 {{the cache keeps a residual window: pass each sequence's ring with kv_rings(%rings : [batch] i32)}}
  %o = attn.paged_attention %q, %c, %i, %i, %i : (tensor<?x32x128xf16>, !kivi, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf16>
  return
}

// -----

!kivi = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, residual = 64>

func.func @ring_slots_missing(%k: tensor<?x8x128xf16>, %s: tensor<?xi32>, %c: !kivi) {
  // expected-error @+1 {{the cache keeps a residual window: pass the tokens' ring slots with ring_slots(%ring_slots : [num_new] i32)}}
  attn.kv_append %k, %k, %s into %c : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !kivi
  return
}

// -----

!i8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8>

func.func @ring_slots_extra(%k: tensor<?x8x128xf16>, %s: tensor<?xi32>, %c: !i8) {
  // expected-error @+1 {{ring_slots given but the cache has no residual window}}
  attn.kv_append %k, %k, %s ring_slots(%s : tensor<?xi32>) into %c : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !i8
  return
}

// -----

!kivi = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, residual = 64>

func.func @rings_size(%q: tensor<4x32x128xf16>, %c: !kivi, %p: tensor<5xi32>, %i: tensor<?xi32>, %l: tensor<4xi32>, %r: tensor<3xi32>) {
  // expected-error @+1 {{kv_rings has 3 entries; expected batch = 4}}
  %o = attn.paged_attention %q, %c, %p, %i, %l kv_rings(%r) : (tensor<4x32x128xf16>, !kivi, tensor<5xi32>, tensor<?xi32>, tensor<4xi32>, tensor<3xi32>) -> tensor<4x32x128xf16>
  return
}
