// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu -verify-diagnostics

// What has no GPU kernel yet is an error at the op that says so and names
// the way out.

func.func @f32(%q: tensor<1x16x2x64xf32>, %k: tensor<1x16x2x64xf32>,
               %v: tensor<1x16x2x64xf32>) -> tensor<1x16x2x64xf32> {
  // expected-error @+1 {{the GPU target has no kernel for element type f32 (tensor cores take f16 and bf16) yet; compile it with --target=host}}
  %o = attn.attention %q, %k, %v
      : (tensor<1x16x2x64xf32>, tensor<1x16x2x64xf32>, tensor<1x16x2x64xf32>)
      -> tensor<1x16x2x64xf32>
  return %o : tensor<1x16x2x64xf32>
}

// -----

func.func @head96(%q: tensor<1x16x2x96xf16>, %k: tensor<1x16x2x96xf16>,
                  %v: tensor<1x16x2x96xf16>) -> tensor<1x16x2x96xf16> {
  // expected-error @+1 {{the GPU target has no kernel for head_dim 96 (64 and 128 have kernels) yet; compile it with --target=host}}
  %o = attn.attention %q, %k, %v
      : (tensor<1x16x2x96xf16>, tensor<1x16x2x96xf16>, tensor<1x16x2x96xf16>)
      -> tensor<1x16x2x96xf16>
  return %o : tensor<1x16x2x96xf16>
}

// -----

// Quantized pages take f16 or bf16 queries in append/prefill as in decode.
!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 16>
func.func @append_int8_f32(%q: tensor<?x4x64xf32>, %cache: !cache, %indptr: tensor<?xi32>,
                           %indices: tensor<?xi32>, %last: tensor<?xi32>,
                           %qo: tensor<?xi32>) -> tensor<?x4x64xf32> {
  // expected-error @+1 {{the GPU target has no kernel for f32 queries over i8 pages (i8 pages take f16 or bf16 queries) yet; compile it with --target=host}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
      : (tensor<?x4x64xf32>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x4x64xf32>
  return %o : tensor<?x4x64xf32>
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 1, head_dim = 128, layout = nhd, storage = bf16>
func.func @wide_group(%q: tensor<?x16x128xbf16>, %cache: !cache, %indptr: tensor<?xi32>,
                      %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x16x128xbf16> {
  // expected-error @+1 {{the GPU target has no kernel for 16 query heads per KV head (at most 8 with bf16 pages) yet; compile it with --target=host}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x16x128xbf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x16x128xbf16>
  return %o : tensor<?x16x128xbf16>
}

// -----

!i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 128, layout = nhd, storage = i8, k_group = 16>
func.func @int8_wide_group(%q: tensor<?x16x128xbf16>, %cache: !i8, %indptr: tensor<?xi32>,
                           %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x16x128xbf16> {
  // expected-error @+1 {{the GPU target has no kernel for 8 query heads per KV head (at most 4 with i8 pages) yet; compile it with --target=host}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x16x128xbf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x16x128xbf16>
  return %o : tensor<?x16x128xbf16>
}

// -----

!i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 16>
func.func @int8_f32_query(%q: tensor<?x4x64xf32>, %cache: !i8, %indptr: tensor<?xi32>,
                          %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x64xf32> {
  // expected-error @+1 {{the GPU target has no kernel for f32 queries over i8 pages (i8 pages take f16 or bf16 queries) yet; compile it with --target=host}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x4x64xf32>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x4x64xf32>
  return %o : tensor<?x4x64xf32>
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>
// expected-error @+1 {{kernel 'append_kv' has no GPU lowering: the GPU target compiles functions holding one attn.attention or one attn.paged_attention (kv_append, merge and select_pages run on --target=host)}}
func.func @append_kv(%k: tensor<?x2x64xf16>, %v: tensor<?x2x64xf16>,
                     %slots: tensor<?xi32>, %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x64xf16>, tensor<?x2x64xf16>, tensor<?xi32>, !cache
  return
}

// -----

func.func @block_sparse(%q: tensor<1x128x2x64xf16>, %k: tensor<1x128x2x64xf16>,
                        %v: tensor<1x128x2x64xf16>, %offsets: tensor<1x2x3xi32>,
                        %indices: tensor<1x2x2xi32>) -> tensor<1x128x2x64xf16> {
  // expected-error @+1 {{the GPU target has no kernel for block-sparse masks yet; compile it with --target=host}}
  %o = attn.attention %q, %k, %v block_sparse(%offsets, %indices)
      {block_size = array<i64: 64, 64>}
      : (tensor<1x128x2x64xf16>, tensor<1x128x2x64xf16>, tensor<1x128x2x64xf16>,
         tensor<1x2x3xi32>, tensor<1x2x2xi32>) -> tensor<1x128x2x64xf16>
  return %o : tensor<1x128x2x64xf16>
}

// -----

!res = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 16, residual = 32>
func.func @residual_append(%q: tensor<?x4x64xf16>, %cache: !res, %indptr: tensor<?xi32>,
                           %indices: tensor<?xi32>, %last: tensor<?xi32>, %qo: tensor<?xi32>,
                           %rings: tensor<?xi32>) -> tensor<?x4x64xf16> {
  // expected-error @+1 {{the GPU target has no kernel for paged append/prefill (qo_indptr) over a cache with a residual window yet; compile it with --target=host}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo) kv_rings(%rings)
      : (tensor<?x4x64xf16>, !res, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}
