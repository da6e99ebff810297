// Paged decode (split-KV: two phases and scratch) and an append into the
// same kind of cache.
!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 16>

func.func @paged_decode(%q: tensor<?x8x64xf16>, %cache: !cache,
                        %indptr: tensor<?xi32>, %indices: tensor<?xi32>,
                        %last: tensor<?xi32>) -> (tensor<?x8x64xf16>, tensor<8x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x8x64xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x8x64xf16>, tensor<8x?xf32>)
  return %o, %lse : tensor<?x8x64xf16>, tensor<8x?xf32>
}

func.func @append(%k: tensor<?x2x64xf16>, %v: tensor<?x2x64xf16>, %slots: tensor<?xi32>,
                  %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x64xf16>, tensor<?x2x64xf16>, tensor<?xi32>, !cache
  return
}
