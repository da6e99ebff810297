// Block-sparse and per-head-mask kernels for attn-run's --check and --stats.

// Dense, one BSR pattern per KV head, with full flags, under a causal mask.
func.func @bsr_dense(%q: tensor<?x?x4x64xf32>, %k: tensor<?x?x2x64xf32>,
                     %v: tensor<?x?x2x64xf32>, %off: tensor<?x2x?xi32>,
                     %idx: tensor<?x2x?xi32>, %full: tensor<?x2x?xi8>)
    -> (tensor<?x?x4x64xf32>, tensor<?x4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v block_sparse(%off, %idx) block_full(%full)
      {block_size = array<i64: 16, 32>, mask = #attn.mask<causal>}
      : (tensor<?x?x4x64xf32>, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>,
         tensor<?x2x?xi32>, tensor<?x2x?xi32>, tensor<?x2x?xi8>)
      -> (tensor<?x?x4x64xf32>, tensor<?x4x?xf32>)
  return %o, %lse : tensor<?x?x4x64xf32>, tensor<?x4x?xf32>
}

// Ragged, one pattern for every head, no full flags, window + sinks.
func.func @bsr_ragged(%q: tensor<?x2x64xf32>, %k: tensor<?x1x64xf32>,
                      %v: tensor<?x1x64xf32>, %cq: tensor<?xi32>,
                      %ck: tensor<?xi32>, %off: tensor<?x1x?xi32>,
                      %idx: tensor<?x1x?xi32>)
    -> (tensor<?x2x64xf32>, tensor<2x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cq, %ck) block_sparse(%off, %idx)
      {block_size = array<i64: 8, 16>, mask = #attn.mask<window = 8, sinks = 2>}
      : (tensor<?x2x64xf32>, tensor<?x1x64xf32>, tensor<?x1x64xf32>,
         tensor<?xi32>, tensor<?xi32>, tensor<?x1x?xi32>, tensor<?x1x?xi32>)
      -> (tensor<?x2x64xf32>, tensor<2x?xf32>)
  return %o, %lse : tensor<?x2x64xf32>, tensor<2x?xf32>
}

// A full causal head next to a sinks + window head.
func.func @head_masks(%q: tensor<1x?x4x64xf32>, %k: tensor<1x?x2x64xf32>,
                      %v: tensor<1x?x2x64xf32>)
    -> (tensor<1x?x4x64xf32>, tensor<1x4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v {head_masks = [#attn.mask<causal>,
                                        #attn.mask<window = 16, sinks = 4>]}
      : (tensor<1x?x4x64xf32>, tensor<1x?x2x64xf32>, tensor<1x?x2x64xf32>)
      -> (tensor<1x?x4x64xf32>, tensor<1x4x?xf32>)
  return %o, %lse : tensor<1x?x4x64xf32>, tensor<1x4x?xf32>
}
