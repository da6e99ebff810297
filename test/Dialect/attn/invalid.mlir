// RUN: attn-opt %s -split-input-file -verify-diagnostics

func.func @rank(%q: tensor<?x32x128xf16>, %k: tensor<?x?x8x128xf16>) {
  // expected-error @+1 {{query must be [batch, seq_len, heads, head_dim] (rank 4) in the dense form, got rank 3}}
  %o = attn.attention %q, %k, %k : (tensor<?x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>) -> tensor<?x32x128xf16>
  return
}

// -----

func.func @ragged_rank(%q: tensor<?x?x4x64xf32>, %c: tensor<?xi32>) {
  // expected-error @+1 {{query must be [total_tokens, heads, head_dim] (rank 3) in the ragged (cu_seqlens) form, got rank 4}}
  %o = attn.attention %q, %q, %q cu_seqlens(%c, %c) : (tensor<?x?x4x64xf32>, tensor<?x?x4x64xf32>, tensor<?x?x4x64xf32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x?x4x64xf32>
  return
}

// -----

func.func @elem(%q: tensor<1x1x1x8xi8>) {
  // expected-error @+1 {{query element type must be f32, f16 or bf16, got 'i8'}}
  %o = attn.attention %q, %q, %q : (tensor<1x1x1x8xi8>, tensor<1x1x1x8xi8>, tensor<1x1x1x8xi8>) -> tensor<1x1x1x8xi8>
  return
}

// -----

func.func @mixed(%q: tensor<1x1x1x8xf16>, %k: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{key element type 'f32' differs from the query's 'f16'}}
  %o = attn.attention %q, %k, %k : (tensor<1x1x1x8xf16>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf16>
  return
}

// -----

func.func @dyn_heads(%q: tensor<1x1x?x8xf32>, %k: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{query has a dynamic head count (dimension 2); head counts and head size must be static}}
  %o = attn.attention %q, %k, %k : (tensor<1x1x?x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x?x8xf32>
  return
}

// -----

func.func @dyn_dim(%q: tensor<1x1x1x?xf32>, %k: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{query has a dynamic head size (dimension 3)}}
  %o = attn.attention %q, %k, %k : (tensor<1x1x1x?xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x?xf32>
  return
}

// -----

func.func @gqa(%q: tensor<1x1x6x8xf32>, %k: tensor<1x1x4x8xf32>) {
  // expected-error @+1 {{query heads (6) must be a multiple of key/value heads (4) for grouped-query attention}}
  %o = attn.attention %q, %k, %k : (tensor<1x1x6x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x6x8xf32>
  return
}

// -----

func.func @value_heads(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x2x8xf32>, %v: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{value has 1 heads but key has 2}}
  %o = attn.attention %q, %k, %v : (tensor<1x1x4x8xf32>, tensor<1x1x2x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x4x8xf32>
  return
}

// -----

func.func @head_dim(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x2x16xf32>) {
  // expected-error @+1 {{head size differs: query 8, key 16, value 16; all three must match}}
  %o = attn.attention %q, %k, %k : (tensor<1x1x4x8xf32>, tensor<1x1x2x16xf32>, tensor<1x1x2x16xf32>) -> tensor<1x1x4x8xf32>
  return
}

// -----

func.func @kv_len(%q: tensor<1x1x4x8xf32>, %k: tensor<1x5x2x8xf32>, %v: tensor<1x6x2x8xf32>) {
  // expected-error @+1 {{key and value differ in dimension 1 (5 vs 6)}}
  %o = attn.attention %q, %k, %v : (tensor<1x1x4x8xf32>, tensor<1x5x2x8xf32>, tensor<1x6x2x8xf32>) -> tensor<1x1x4x8xf32>
  return
}

// -----

func.func @batch(%q: tensor<2x1x4x8xf32>, %k: tensor<3x5x2x8xf32>) {
  // expected-error @+1 {{query batch 2 differs from key batch 3}}
  %o = attn.attention %q, %k, %k : (tensor<2x1x4x8xf32>, tensor<3x5x2x8xf32>, tensor<3x5x2x8xf32>) -> tensor<2x1x4x8xf32>
  return
}

// -----

func.func @cu_type(%q: tensor<?x4x8xf32>, %c: tensor<?xi64>) {
  // expected-error @+1 {{cu_seqlens_q must be a 1-D i32 tensor of size batch + 1, got 'tensor<?xi64>'}}
  %o = attn.attention %q, %q, %q cu_seqlens(%c, %c) : (tensor<?x4x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, tensor<?xi64>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return
}

// -----

func.func @cu_size(%q: tensor<?x4x8xf32>, %a: tensor<3xi32>, %b: tensor<4xi32>) {
  // expected-error @+1 {{cu_seqlens_q and cu_seqlens_k must have the same size (batch + 1)}}
  %o = attn.attention %q, %q, %q cu_seqlens(%a, %b) : (tensor<?x4x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, tensor<3xi32>, tensor<4xi32>) -> tensor<?x4x8xf32>
  return
}

// -----

func.func @result(%q: tensor<1x1x4x8xf32>) {
  // expected-error @+1 {{result must have the query's type 'tensor<1x1x4x8xf32>', got 'tensor<1x1x4x8xf16>'}}
  %o = attn.attention %q, %q, %q : (tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf16>
  return
}

// -----

func.func @lse(%q: tensor<2x3x4x8xf32>) {
  // expected-error @+1 {{log-sum-exp result must be f32 [batch, q_heads, seq_q] = 'tensor<2x4x3xf32>', got 'tensor<2x3x4xf32>'}}
  %o, %l = attn.attention %q, %q, %q : (tensor<2x3x4x8xf32>, tensor<2x3x4x8xf32>, tensor<2x3x4x8xf32>) -> (tensor<2x3x4x8xf32>, tensor<2x3x4xf32>)
  return
}

// -----

func.func @scale(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{scale must be a positive finite number, got -1}}
  %o = attn.attention %q, %q, %q {scale = -1.0 : f32} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @softcap(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{softcap must be a positive finite number (omit it to disable soft-capping), got 0}}
  %o = attn.attention %q, %q, %q {softcap = 0.0 : f32} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @sinks_without_window(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{mask sinks = 4 has no effect without a sliding window; add 'window = N' or drop 'sinks'}}
  %o = attn.attention %q, %q, %q {mask = #attn.mask<causal, sinks = 4>} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @top_left_alone(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{mask alignment 'top_left' has no effect without 'causal' or 'window'}}
  %o = attn.attention %q, %q, %q {mask = #attn.mask<top_left>} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @negative_window(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{mask 'window' must be >= 0, got -3}}
  %o = attn.attention %q, %q, %q {mask = #attn.mask<window = -3>} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @unknown_item(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{unknown mask item 'casual'; expected none, causal, window = N, sinks = N, top_left or bottom_right}}
  %o = attn.attention %q, %q, %q {mask = #attn.mask<casual>} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}

// -----

func.func @twice(%q: tensor<1x1x1x8xf32>) {
  // expected-error @+1 {{mask item 'causal' given twice}}
  %o = attn.attention %q, %q, %q {mask = #attn.mask<causal, causal>} : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return
}
