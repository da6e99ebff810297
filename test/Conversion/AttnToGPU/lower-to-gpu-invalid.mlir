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

func.func @softcap(%q: tensor<1x16x2x64xf16>, %k: tensor<1x16x2x64xf16>,
                   %v: tensor<1x16x2x64xf16>) -> tensor<1x16x2x64xf16> {
  // expected-error @+1 {{the GPU target has no kernel for softcap yet; compile it with --target=host}}
  %o = attn.attention %q, %k, %v {softcap = 30.0 : f32}
      : (tensor<1x16x2x64xf16>, tensor<1x16x2x64xf16>, tensor<1x16x2x64xf16>)
      -> tensor<1x16x2x64xf16>
  return %o : tensor<1x16x2x64xf16>
}

// -----

func.func @ragged(%q: tensor<?x2x64xf16>, %k: tensor<?x2x64xf16>,
                  %v: tensor<?x2x64xf16>, %cq: tensor<?xi32>,
                  %ck: tensor<?xi32>) -> tensor<?x2x64xf16> {
  // expected-error @+1 {{the GPU target has no kernel for ragged (cu_seqlens) attention yet; compile it with --target=host}}
  %o = attn.attention %q, %k, %v cu_seqlens(%cq, %ck)
      : (tensor<?x2x64xf16>, tensor<?x2x64xf16>, tensor<?x2x64xf16>,
         tensor<?xi32>, tensor<?xi32>) -> tensor<?x2x64xf16>
  return %o : tensor<?x2x64xf16>
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = f16>
// expected-error @+1 {{kernel 'decode' has no GPU lowering: the GPU target compiles functions holding one attn.attention (paged attention, kv_append, merge and select_pages run on --target=host)}}
func.func @decode(%q: tensor<?x4x64xf16>, %cache: !cache, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x4x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x4x64xf16>
  return %o : tensor<?x4x64xf16>
}
