// RUN: attn-opt %s -split-input-file --attn-plan-tiles | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-plan-tiles=target=a100-80gb | FileCheck %s --check-prefix=A100
// RUN: attn-opt %s -split-input-file --attn-plan-tiles=occupancy=3 | FileCheck %s --check-prefix=OCC3

// Kernel tiles in the FlashAttention-2 shape for each attention op: the Q
// tile once, K and V tiles once per stage, every stage 128-byte aligned.
// Bytes are per buffer, all stages included; smem_bytes is their sum.

!f16 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>
!i8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16>
!i4 = !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = hnd, storage = i4, k_group = 64>
!kivi = !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = hnd, storage = i4, k_group = 64, residual = 128>
!f8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E4M3FN>

module attributes {attn.target = #attn.target<"h100-80gb">} {
  // Prefill, head_dim 128, GQA 32/8: FlashAttention-2's 128 x 64, three
  // stages: Q 128x128x2 = 32 KiB, K and V 3 x 64x128x2 = 48 KiB each.
  // H100 (227 KiB per block) and A100 (163 KiB) both hold it.
  // CHECK-LABEL: func.func @prefill_d128
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 128 : i64, buffers = [{bytes = 32768 : i64, name = "q"}, {bytes = 49152 : i64, name = "k"}, {bytes = 49152 : i64, name = "v"}], smem_bytes = 131072 : i64, stages = 3 : i64}
  // A100-LABEL: func.func @prefill_d128
  // A100: attn.tile_plan = {block_kv = 64 : i64, block_q = 128 : i64, {{.*}}, smem_bytes = 131072 : i64, stages = 3 : i64}
  // Three blocks per SM need 3 x smem <= 228 KiB: 76 KiB each at most, so
  // a 128-row tile keeps two stages of 32 keys (32 + 2 x 2 x 8 KiB).
  // OCC3-LABEL: func.func @prefill_d128
  // OCC3: attn.tile_plan = {block_kv = 32 : i64, block_q = 128 : i64, {{.*}}, smem_bytes = 65536 : i64, stages = 2 : i64}
  func.func @prefill_d128(%q: tensor<?x?x32x128xf16>, %k: tensor<?x?x8x128xf16>,
                          %v: tensor<?x?x8x128xf16>) -> tensor<?x?x32x128xf16> {
    %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
        : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
        -> tensor<?x?x32x128xf16>
    return %o : tensor<?x?x32x128xf16>
  }

  // head_dim 64: 128 x 128 (FlashAttention-2's choice up to 64).
  // 16 KiB of Q + 2 x 3 x 16 KiB of K and V.
  // CHECK-LABEL: func.func @prefill_d64
  // CHECK: attn.tile_plan = {block_kv = 128 : i64, block_q = 128 : i64, buffers = [{bytes = 16384 : i64, name = "q"}, {bytes = 49152 : i64, name = "k"}, {bytes = 49152 : i64, name = "v"}], smem_bytes = 114688 : i64, stages = 3 : i64}
  // A100-LABEL: func.func @prefill_d64
  // A100: attn.tile_plan = {block_kv = 128 : i64, block_q = 128 : i64, {{.*}}, smem_bytes = 114688 : i64, stages = 3 : i64}
  func.func @prefill_d64(%q: tensor<?x?x8x64xbf16>, %k: tensor<?x?x8x64xbf16>,
                         %v: tensor<?x?x8x64xbf16>) -> tensor<?x?x8x64xbf16> {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>)
        -> tensor<?x?x8x64xbf16>
    return %o : tensor<?x?x8x64xbf16>
  }

  // head_dim 256: at most 64 x 64. H100: three stages, 32 + 2 x 96 = 224
  // KiB of 227; two on A100 (163 KiB): 32 + 2 x 64 = 160 KiB.
  // CHECK-LABEL: func.func @prefill_d256
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 64 : i64, buffers = [{bytes = 32768 : i64, name = "q"}, {bytes = 98304 : i64, name = "k"}, {bytes = 98304 : i64, name = "v"}], smem_bytes = 229376 : i64, stages = 3 : i64}
  // A100-LABEL: func.func @prefill_d256
  // A100: attn.tile_plan = {block_kv = 64 : i64, block_q = 64 : i64, buffers = [{bytes = 32768 : i64, name = "q"}, {bytes = 65536 : i64, name = "k"}, {bytes = 65536 : i64, name = "v"}], smem_bytes = 163840 : i64, stages = 2 : i64}
  func.func @prefill_d256(%q: tensor<?x?x8x256xf16>, %k: tensor<?x?x8x256xf16>,
                          %v: tensor<?x?x8x256xf16>) -> tensor<?x?x8x256xf16> {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x8x256xf16>, tensor<?x?x8x256xf16>, tensor<?x?x8x256xf16>)
        -> tensor<?x?x8x256xf16>
    return %o : tensor<?x?x8x256xf16>
  }

  // A static query length bounds the tile: 2 tokens x 4 heads = 8 rows, one
  // MMA's 16 rows.
  // CHECK-LABEL: func.func @short_query
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 16 : i64, buffers = [{bytes = 4096 : i64, name = "q"}
  func.func @short_query(%q: tensor<?x2x32x128xf16>, %k: tensor<?x?x8x128xf16>,
                         %v: tensor<?x?x8x128xf16>) -> tensor<?x2x32x128xf16> {
    %o = attn.attention %q, %k, %v
        : (tensor<?x2x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
        -> tensor<?x2x32x128xf16>
    return %o : tensor<?x2x32x128xf16>
  }

  // Paged decode, f16 cache: the 4 query heads of a KV head are one tile of
  // 16 rows (Q 4 KiB), 128 keys per tile (FlashAttention-2's split-KV
  // kernel): three stages of 2 x 32 KiB on H100, two on A100.
  // CHECK-LABEL: func.func @decode_f16
  // CHECK: attn.tile_plan = {block_kv = 128 : i64, block_q = 16 : i64, buffers = [{bytes = 4096 : i64, name = "q"}, {bytes = 98304 : i64, name = "k"}, {bytes = 98304 : i64, name = "v"}], smem_bytes = 200704 : i64, stages = 3 : i64}
  // A100-LABEL: func.func @decode_f16
  // A100: attn.tile_plan = {block_kv = 128 : i64, block_q = 16 : i64, {{.*}}, smem_bytes = 135168 : i64, stages = 2 : i64}
  func.func @decode_f16(%q: tensor<?x32x128xf16>, %cache: !f16, %indptr: tensor<?xi32>,
                        %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x32x128xf16>, !f16, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }

  // int8 cache: K and V at one byte (16 KiB per stage each), K scales per
  // channel for the 8 groups of 16 keys in a tile (8 x 128 x 2 B), V scales
  // one f16 per key (256 B).
  // CHECK-LABEL: func.func @decode_i8
  // CHECK: attn.tile_plan = {block_kv = 128 : i64, block_q = 16 : i64, buffers = [{bytes = 4096 : i64, name = "q"}, {bytes = 49152 : i64, name = "k"}, {bytes = 49152 : i64, name = "v"}, {bytes = 6144 : i64, name = "k_scale"}, {bytes = 768 : i64, name = "v_scale"}], smem_bytes = 109312 : i64, stages = 3 : i64}
  // A100-LABEL: func.func @decode_i8
  // A100: attn.tile_plan = {block_kv = 128 : i64, block_q = 16 : i64, {{.*}}, smem_bytes = 109312 : i64, stages = 3 : i64}
  func.func @decode_i8(%q: tensor<?x32x128xf16>, %cache: !i8, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x32x128xf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }

  // fp8: one byte per element; its per-head scales are scalars (registers).
  // CHECK-LABEL: func.func @decode_f8
  // CHECK: attn.tile_plan = {block_kv = 128 : i64, block_q = 16 : i64, buffers = [{bytes = 4096 : i64, name = "q"}, {bytes = 49152 : i64, name = "k"}, {bytes = 49152 : i64, name = "v"}], smem_bytes = 102400 : i64, stages = 3 : i64}
  func.func @decode_f8(%q: tensor<?x32x128xf16>, %cache: !f8, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x32x128xf16>, !f8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }

  // Paged prefill (qo_indptr) over an int4 cache: 128 x 64 tiles, K and V
  // packed two per byte (4 KiB per stage), a tile within one 64-key scale
  // group: one row of K scales and one of minima (256 B each), a V scale and
  // minimum per key (128 B each).
  // CHECK-LABEL: func.func @prefill_i4
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 128 : i64, buffers = [{bytes = 32768 : i64, name = "q"}, {bytes = 12288 : i64, name = "k"}, {bytes = 12288 : i64, name = "v"}, {bytes = 768 : i64, name = "k_scale"}, {bytes = 768 : i64, name = "k_min"}, {bytes = 384 : i64, name = "v_scale"}, {bytes = 384 : i64, name = "v_min"}], smem_bytes = 59648 : i64, stages = 3 : i64}
  func.func @prefill_i4(%q: tensor<?x32x128xf16>, %cache: !i4, %indptr: tensor<?xi32>,
                        %indices: tensor<?xi32>, %last: tensor<?xi32>, %qo: tensor<?xi32>)
      -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
        {mask = #attn.mask<causal>}
        : (tensor<?x32x128xf16>, !i4, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }

  // A residual window's f16 tokens pass through the same K and V stages, so
  // those are sized for f16 (16 KiB per stage, not 4).
  // CHECK-LABEL: func.func @prefill_kivi
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 128 : i64, buffers = [{bytes = 32768 : i64, name = "q"}, {bytes = 49152 : i64, name = "k"}, {bytes = 49152 : i64, name = "v"}, {bytes = 768 : i64, name = "k_scale"}, {bytes = 768 : i64, name = "k_min"}, {bytes = 384 : i64, name = "v_scale"}, {bytes = 384 : i64, name = "v_min"}], smem_bytes = 133376 : i64, stages = 3 : i64}
  func.func @prefill_kivi(%q: tensor<?x32x128xf16>, %cache: !kivi, %indptr: tensor<?xi32>,
                          %indices: tensor<?xi32>, %last: tensor<?xi32>, %qo: tensor<?xi32>,
                          %rings: tensor<?xi32>) -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
        kv_rings(%rings)
        : (tensor<?x32x128xf16>, !kivi, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
           tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }

  // A function's own target wins over the module's.
  // CHECK-LABEL: func.func @on_a100
  // CHECK: attn.tile_plan = {block_kv = 64 : i64, block_q = 64 : i64, {{.*}}, smem_bytes = 163840 : i64, stages = 2 : i64}
  func.func @on_a100(%q: tensor<?x?x8x256xf16>, %k: tensor<?x?x8x256xf16>,
                     %v: tensor<?x?x8x256xf16>) -> tensor<?x?x8x256xf16>
      attributes {attn.target = #attn.target<"a100-80gb">} {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x8x256xf16>, tensor<?x?x8x256xf16>, tensor<?x?x8x256xf16>)
        -> tensor<?x?x8x256xf16>
    return %o : tensor<?x?x8x256xf16>
  }

  // The host has no shared memory to plan: the op is left alone.
  // CHECK-LABEL: func.func @on_host
  // CHECK-NOT: attn.tile_plan
  // CHECK: return
  func.func @on_host(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x8x64xf16>,
                     %v: tensor<?x?x8x64xf16>) -> tensor<?x?x8x64xf16>
      attributes {attn.target = #attn.target<"host">} {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>)
        -> tensor<?x?x8x64xf16>
    return %o : tensor<?x?x8x64xf16>
  }
}

// -----

// Tiny explicit targets. 6 KiB per block, head_dim 16: a 128-row Q tile
// (4 KiB) leaves 2 KiB, two stages of 16-key K and V tiles (512 B each):
// exactly the budget. Pipelining wins over a larger block_kv in one stage.
// With three blocks per SM (12 KiB) each gets 4 KiB: a 64-row tile.
// CHECK-LABEL: func.func @tiny
// CHECK: attn.tile_plan = {block_kv = 16 : i64, block_q = 128 : i64, buffers = [{bytes = 4096 : i64, name = "q"}, {bytes = 1024 : i64, name = "k"}, {bytes = 1024 : i64, name = "v"}], smem_bytes = 6144 : i64, stages = 2 : i64}
// OCC3-LABEL: func.func @tiny
// OCC3: attn.tile_plan = {block_kv = 16 : i64, block_q = 64 : i64, buffers = [{bytes = 2048 : i64, name = "q"}, {bytes = 1024 : i64, name = "k"}, {bytes = 1024 : i64, name = "v"}], smem_bytes = 4096 : i64, stages = 2 : i64}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1000,
    smem_per_block = 6144, smem_per_sm = 12288, hbm_bytes = 1048576,
    hbm_bandwidth = 1000, host_bytes = 1048576, link_bandwidth = 100>} {
  func.func @tiny(%q: tensor<?x?x2x16xf16>, %k: tensor<?x?x2x16xf16>,
                  %v: tensor<?x?x2x16xf16>) -> tensor<?x?x2x16xf16> {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x2x16xf16>, tensor<?x?x2x16xf16>, tensor<?x?x2x16xf16>)
        -> tensor<?x?x2x16xf16>
    return %o : tensor<?x?x2x16xf16>
  }
}

// -----

// 8 KiB per block, int8 decode at head_dim 64, K scales per 8 keys: 16-key
// tiles in two stages. Each stage of each buffer is 128-byte aligned: a V
// scale tile is 32 B but takes 128.
!tiny_i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 8>
// CHECK-LABEL: func.func @tiny_decode_i8
// CHECK: attn.tile_plan = {block_kv = 16 : i64, block_q = 16 : i64, buffers = [{bytes = 2048 : i64, name = "q"}, {bytes = 2048 : i64, name = "k"}, {bytes = 2048 : i64, name = "v"}, {bytes = 512 : i64, name = "k_scale"}, {bytes = 256 : i64, name = "v_scale"}], smem_bytes = 6912 : i64, stages = 2 : i64}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1000,
    smem_per_block = 8192, smem_per_sm = 24576, hbm_bytes = 1048576,
    hbm_bandwidth = 1000, host_bytes = 1048576, link_bandwidth = 100>} {
  func.func @tiny_decode_i8(%q: tensor<?x8x64xf16>, %cache: !tiny_i8, %indptr: tensor<?xi32>,
                            %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x8x64xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x8x64xf16>, !tiny_i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x8x64xf16>
    return %o : tensor<?x8x64xf16>
  }
}

// -----

// A block-sparse mask of 32 x 32 blocks over 2 query heads per KV head
// (64 rows per block): tiles lie inside one block.
// CHECK-LABEL: func.func @block_sparse
// CHECK: attn.tile_plan = {block_kv = 32 : i64, block_q = 64 : i64, {{.*}}, stages = 3 : i64}
module attributes {attn.target = #attn.target<"h100-80gb">} {
  func.func @block_sparse(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x2x64xf16>,
                          %v: tensor<?x?x2x64xf16>, %off: tensor<?x2x?xi32>,
                          %idx: tensor<?x2x?xi32>) -> tensor<?x?x4x64xf16> {
    %o = attn.attention %q, %k, %v block_sparse(%off, %idx)
        {block_size = array<i64: 32, 32>}
        : (tensor<?x?x4x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>,
           tensor<?x2x?xi32>, tensor<?x2x?xi32>) -> tensor<?x?x4x64xf16>
    return %o : tensor<?x?x4x64xf16>
  }
}
