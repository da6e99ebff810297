// RUN: attn-opt %s -split-input-file --attn-plan-tiles -verify-diagnostics
// RUN: not attn-opt %s -split-input-file --attn-plan-tiles=occupancy=2 2>&1 | FileCheck %s --check-prefix=OCC
// RUN: not attn-opt %s --attn-plan-tiles=target=h100 2>&1 | FileCheck %s --check-prefix=PRESET
// RUN: not attn-opt %s --attn-plan-tiles=occupancy=0 2>&1 | FileCheck %s --check-prefix=ZERO

// PRESET: error: attn-plan-tiles: unknown target preset 'h100'; known presets: h100-80gb, a100-80gb, h200, host
// ZERO: error: attn-plan-tiles: occupancy = 0 must be at least 1 block per SM

// Nothing fits 1 KiB: the smallest candidate needs 3 x 512 B.
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1000,
    smem_per_block = 1024, smem_per_sm = 2048, hbm_bytes = 1048576,
    hbm_bandwidth = 1000, host_bytes = 1048576, link_bandwidth = 100>} {
  func.func @too_small(%q: tensor<?x?x2x16xf16>, %k: tensor<?x?x2x16xf16>,
                       %v: tensor<?x?x2x16xf16>) -> tensor<?x?x2x16xf16> {
    // expected-error @+1 {{no kernel tiles fit the target's shared memory: the smallest candidate (block_q = 16, block_kv = 16, stages = 1) needs q 512 B, k 512 B, v 512 B = 1536 B, over smem_per_block = 1024 B; use a smaller head_dim (16 here) or a target with more shared memory}}
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x2x16xf16>, tensor<?x?x2x16xf16>, tensor<?x?x2x16xf16>)
        -> tensor<?x?x2x16xf16>
    return %o : tensor<?x?x2x16xf16>
  }
}

// -----

// The scale tiles count too. At occupancy 2, the 2 KiB per SM hold one block.
// OCC: error: no kernel tiles fit the target's shared memory: the smallest candidate (block_q = 16, block_kv = 16, stages = 1) needs q 512 B, k 256 B, v 256 B, k_scale 128 B, v_scale 128 B = 1280 B per block, and 2 blocks per SM (occupancy) need 2560 B, over smem_per_sm = 2048 B; use a smaller head_dim (16 here) or a target with more shared memory, or a lower occupancy
!i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = i8, k_group = 16>
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1000,
    smem_per_block = 2048, smem_per_sm = 2048, hbm_bytes = 1048576,
    hbm_bandwidth = 1000, host_bytes = 1048576, link_bandwidth = 100>} {
  func.func @scales(%q: tensor<?x4x16xf16>, %cache: !i8, %indptr: tensor<?xi32>,
                    %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x4x16xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x4x16xf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x4x16xf16>
    return %o : tensor<?x4x16xf16>
  }
}

// -----

// No target at all.
func.func @no_target(%q: tensor<?x?x2x64xf16>, %k: tensor<?x?x2x64xf16>,
                     %v: tensor<?x?x2x64xf16>) -> tensor<?x?x2x64xf16> {
  // expected-error @+1 {{attn-plan-tiles needs a target: add attn.target = #attn.target<...> to the module (or the function), or pass target=<preset> (h100-80gb, a100-80gb, h200, host)}}
  %o = attn.attention %q, %k, %v
      : (tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
      -> tensor<?x?x2x64xf16>
  return %o : tensor<?x?x2x64xf16>
}

// -----

// expected-error @+1 {{attn.target must be an #attn.target, got "h100-80gb"}}
module attributes {attn.target = "h100-80gb"} {
  func.func @not_a_target(%q: tensor<?x?x2x64xf16>, %k: tensor<?x?x2x64xf16>,
                          %v: tensor<?x?x2x64xf16>) -> tensor<?x?x2x64xf16> {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
        -> tensor<?x?x2x64xf16>
    return %o : tensor<?x?x2x64xf16>
  }
}

// -----

// Blocks of 8 keys hold no tile of 16 or more.
module attributes {attn.target = #attn.target<"h100-80gb">} {
  func.func @sparse_blocks(%q: tensor<?x?x2x64xf16>, %k: tensor<?x?x2x64xf16>,
                           %v: tensor<?x?x2x64xf16>, %off: tensor<?x2x?xi32>,
                           %idx: tensor<?x2x?xi32>) -> tensor<?x?x2x64xf16> {
    // expected-error @+1 {{no kernel tile lies inside one block of the block-sparse mask (block_size = [64, 8], 1 query head per KV head): block_kv must divide the block's keys and block_q its rows, with tiles of 16 to 128; use block sizes that are multiples of 16}}
    %o = attn.attention %q, %k, %v block_sparse(%off, %idx)
        {block_size = array<i64: 64, 8>}
        : (tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>,
           tensor<?x2x?xi32>, tensor<?x2x?xi32>) -> tensor<?x?x2x64xf16>
    return %o : tensor<?x?x2x64xf16>
  }
}
