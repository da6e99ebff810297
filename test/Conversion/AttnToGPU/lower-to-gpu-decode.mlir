// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu \
// RUN:   | attn-opt --split-input-file --pass-pipeline="builtin.module(gpu-lower-to-nvvm-pipeline{cubin-chip=sm_80 cubin-features=+ptx80 cubin-format=isa})" \
// RUN:   | FileCheck %s --check-prefix=PTX

// Paged decode, Llama-3-8B shaped (32 query heads over 8 KV heads, head_dim
// 128, bf16 pages of 16 tokens), with the LSE: one block per (KV head,
// sequence, split) computes the 4 query heads of its KV head; 16 lanes read
// one key, 16 bytes each. The runtime picks num_splits per call; the merge
// kernel, in the same module, combines the splits' partials.

// CHECK-LABEL: gpu.module @decode_gpu
// CHECK: gpu.func @decode({{.*}}: i32, %{{.*}}: i32, %{{.*}}: i32, %{{.*}}: i32)
// The lane groups' partial softmaxes meet in shared memory.
// CHECK-SAME: workgroup(%{{.*}} : memref<2x8x4xf32, #gpu.address_space<workgroup>>, %{{.*}} : memref<8x4x128xf32, #gpu.address_space<workgroup>>) kernel
// CHECK-SAME: attn.launch = {block = array<i64: 128, 1, 1>, grid = [8, {divide = 1 : i64, symbol = "batch"}, {divide = 1 : i64, symbol = "num_splits"}],
// CHECK-SAME: merge = {block = array<i64: 128, 1, 1>, entry = "decode_merge", grid = [{divide = 1 : i64, symbol = "batch"}, 32, 1], params = ["%partial_o", "%partial_lse", "output", "lse", "$batch", "$num_splits"], smem_bytes = 0 : i64}
// CHECK-SAME: params = ["query", "k_pages", "v_pages", "kv_indptr", "kv_indices", "kv_last_page_len", "output", "lse", "%partial_o", "%partial_lse", "$batch", "$num_pages", "$num_page_refs", "$num_splits"]
// CHECK-SAME: scratch = [{dtype = "f32", name = "partial_o", shape = ["num_splits", "batch", 32, 128]}, {dtype = "f32", name = "partial_lse", shape = ["num_splits", 32, "batch"]}], smem_bytes = 0 : i64, split_kv = {max_splits = 64 : i64, symbol = "num_splits"}
// CHECK-SAME: tile = {keys_per_step = 8 : i64, lanes_per_key = 16 : i64, min_split_keys = 64 : i64, threads = 128 : i64}}
// CHECK: %[[SPLIT:.*]] = gpu.block_id  z
// The sequence's length from the page table.
// CHECK: memref.load {{.*}} : memref<?xi32, #gpu.address_space<global>>
// This split's share of the keys: ceil(count / num_splits) in whole steps,
// at least 64 keys.
// CHECK: arith.ceildivui
// CHECK: %[[CHUNK:.*]] = arith.maxsi %{{.*}}, %c64
// CHECK: arith.muli %[[SPLIT]], %[[CHUNK]]
// The 4 query heads, 16 bytes per lane.
// CHECK-COUNT-4: vector.load {{.*}} {alignment = 16 : i64} : memref<?x32x128xbf16, #gpu.address_space<global>>, vector<8xbf16>
// CHECK: scf.for
// Each key through the page table, K and V in 16-byte loads.
// CHECK: memref.load {{.*}} : memref<?xi32, #gpu.address_space<global>>
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<?x16x8x128xbf16, #gpu.address_space<global>>, vector<8xbf16>
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<?x16x8x128xbf16, #gpu.address_space<global>>, vector<8xbf16>
// The dot product over a key's 16 lanes: 4 shuffles.
// CHECK: vector.reduction <add>
// CHECK-COUNT-4: gpu.shuffle  xor
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: scf.yield
// CHECK: gpu.barrier
// The merged output, 16 bytes per lane, and the LSE when the call has one
// split; else this split's normalized output and LSE into the partials.
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: %[[ONE:.*]] = arith.cmpi eq, %{{.*}}, %c1
// CHECK: scf.if %[[ONE]]
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<?x32x128xbf16, #gpu.address_space<global>>, vector<8xbf16>
// CHECK: memref.store {{.*}} : memref<32x?xf32, #gpu.address_space<global>>
// CHECK: %[[MANY:.*]] = arith.cmpi ne, %{{.*}}, %c1
// CHECK: scf.if %[[MANY]]
// CHECK: vector.store {{.*}}[%[[SPLIT]], {{.*}}] {alignment = 16 : i64} : memref<?x?x32x128xf32, #gpu.address_space<global>>, vector<8xf32>
// CHECK: memref.store {{.*}}[%[[SPLIT]], {{.*}}] : memref<?x32x?xf32, #gpu.address_space<global>>

// The merge: a block of 128 threads (one per column) per (sequence, query
// head): the splits' largest LSE, then their outputs weighted by
// exp(lse_s - max), the output and LSE.
// CHECK: gpu.func @decode_merge(%{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: i32, %{{.*}}: i32) kernel {
// CHECK: %[[SEQ:.*]] = gpu.block_id  x
// CHECK: %[[HEAD:.*]] = gpu.block_id  y
// CHECK: %[[COL:.*]] = gpu.thread_id  x
// CHECK: scf.for %[[S:[^ ]*]] = {{.*}} -> (f32)
// CHECK: memref.load %{{.*}}[%[[S]], %[[HEAD]], %[[SEQ]]] : memref<?x32x?xf32, #gpu.address_space<global>>
// CHECK: arith.maximumf
// CHECK: scf.for %[[S2:[^ ]*]] = {{.*}} -> (f32, f32)
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: memref.load %{{.*}}[%[[S2]], %[[SEQ]], %[[HEAD]], %[[COL]]] : memref<?x?x32x128xf32, #gpu.address_space<global>>
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[SEQ]], %[[HEAD]], %[[COL]]] : memref<?x32x128xbf16, #gpu.address_space<global>>
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: memref.store {{.*}} : memref<32x?xf32, #gpu.address_space<global>>
// CHECK: gpu.return

// The assembly has 128-bit global loads and stores.
// PTX: gpu.binary @decode_gpu
// PTX-SAME: .entry decode(
// PTX-SAME: ld.global.v4.b32
// PTX-SAME: shfl.sync.bfly.b32
// PTX-SAME: bar.sync
// PTX-SAME: st.global.v4.b32
// PTX-SAME: .entry decode_merge(
!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = bf16>
func.func @decode(%q: tensor<?x32x128xbf16>, %cache: !cache, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>)
    -> (tensor<?x32x128xbf16>, tensor<32x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> (tensor<?x32x128xbf16>, tensor<32x?xf32>)
  return %o, %lse : tensor<?x32x128xbf16>, tensor<32x?xf32>
}

// -----

// HND pages at head_dim 64 (8 lanes per key, 16 keys per step), MQA (8
// query heads over 1 KV head), a window of 1024 keys with 4 sinks, f16.
// CHECK-LABEL: gpu.module @window_decode_gpu
// CHECK: workgroup(%{{.*}} : memref<2x16x8xf32, #gpu.address_space<workgroup>>, %{{.*}} : memref<16x8x64xf32, #gpu.address_space<workgroup>>) kernel
// CHECK-SAME: grid = [1, {divide = 1 : i64, symbol = "batch"}, {divide = 1 : i64, symbol = "num_splits"}]
// The merge of head_dim 64 runs 64 threads.
// CHECK-SAME: merge = {block = array<i64: 64, 1, 1>, entry = "window_decode_merge", grid = [{divide = 1 : i64, symbol = "batch"}, 8, 1]
// CHECK-SAME: tile = {keys_per_step = 16 : i64, lanes_per_key = 8 : i64, min_split_keys = 64 : i64, threads = 128 : i64}
// CHECK: scf.for
// CHECK: vector.load {{.*}} : memref<?x1x32x64xf16, #gpu.address_space<global>>, vector<8xf16>
// Three shuffles per query head (8 lanes a key): 24.
// CHECK-COUNT-24: gpu.shuffle  xor
// CHECK-NOT: gpu.shuffle
// CHECK: scf.yield
!hnd = !attn.kv_cache<page_size = 32, kv_heads = 1, head_dim = 64, layout = hnd, storage = f16>
func.func @window_decode(%q: tensor<?x8x64xf16>, %cache: !hnd, %indptr: tensor<?xi32>,
                         %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      {mask = #attn.mask<window = 1024, sinks = 4>}
      : (tensor<?x8x64xf16>, !hnd, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}

// -----

// int8 pages (k_group 16): 8 lanes per key read 16 bytes of K and V each,
// dequantized in registers by the key group's per-channel K scales (two
// 16-byte loads of f16) and the token's V scale; the output, 16 elements a
// lane, is two 16-byte stores.
// CHECK-LABEL: gpu.module @int8_decode_gpu
// CHECK: gpu.func @int8_decode
// CHECK-SAME: params = ["query", "k_pages", "v_pages", "k_scale", "v_scale", "kv_indptr", "kv_indices", "kv_last_page_len", "output", "%partial_o", "%partial_lse", "$batch", "$num_pages", "$num_page_refs", "$num_splits"]
// CHECK-SAME: tile = {keys_per_step = 16 : i64, lanes_per_key = 8 : i64, min_split_keys = 64 : i64, threads = 128 : i64}
// CHECK: scf.for
// K's and V's bytes are loaded before either is converted.
// CHECK: %[[K:.*]] = vector.load {{.*}} {alignment = 16 : i64} : memref<?x16x8x128xi8, #gpu.address_space<global>>, vector<16xi8>
// CHECK-NEXT: %[[V:.*]] = vector.load {{.*}} {alignment = 16 : i64} : memref<?x16x8x128xi8, #gpu.address_space<global>>, vector<16xi8>
// CHECK: arith.sitofp %[[K]] : vector<16xi8> to vector<16xf32>
// CHECK: arith.sitofp %[[V]] : vector<16xi8> to vector<16xf32>
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<?x1x8x128xf16, #gpu.address_space<global>>, vector<16xf16>
// CHECK: arith.mulf {{.*}} : vector<16xf32>
// CHECK: memref.load {{.*}} : memref<?x16x8xf16, #gpu.address_space<global>>
// CHECK-COUNT-3: gpu.shuffle  xor
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<?x32x128xbf16, #gpu.address_space<global>>, vector<16xbf16>
// PTX: gpu.binary @int8_decode_gpu
// PTX-SAME: ld.global.v4.b32
// PTX-SAME: st.global.v4.b32
!i8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16>
func.func @int8_decode(%q: tensor<?x32x128xbf16>, %cache: !i8, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// fp8 (e4m3fn) pages: bytes widened to f16 bits in registers (sign to bit 15,
// the rest from bit 7), times 2^8, times the head's f32 scale.
// CHECK-LABEL: gpu.module @fp8_decode_gpu
// CHECK: params = ["query", "k_pages", "v_pages", "k_scale", "v_scale", "kv_indptr", "kv_indices", "kv_last_page_len", "output", "%partial_o", "%partial_lse", "$batch", "$num_pages", "$num_page_refs", "$num_splits"]
// CHECK: memref.load {{.*}} : memref<8xf32, #gpu.address_space<global>>
// CHECK: scf.for
// CHECK: %[[B:.*]] = vector.load {{.*}} {alignment = 16 : i64} : memref<?x16x8x128xi8, #gpu.address_space<global>>, vector<16xi8>
// CHECK: %[[W:.*]] = arith.extui %[[B]] : vector<16xi8> to vector<16xi16>
// CHECK: arith.andi %[[W]]
// CHECK: arith.shli
// CHECK: %[[H:.*]] = arith.bitcast %{{.*}} : vector<16xi16> to vector<16xf16>
// CHECK: arith.extf %[[H]] : vector<16xf16> to vector<16xf32>
// CHECK: arith.mulf
// PTX: gpu.binary @fp8_decode_gpu
// PTX-SAME: ld.global.v4.b32
!f8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E4M3FN>
func.func @fp8_decode(%q: tensor<?x32x128xf16>, %cache: !f8, %indptr: tensor<?xi32>,
                      %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xf16>, !f8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xf16>
  return %o : tensor<?x32x128xf16>
}

// -----

// int4 pages (k_group 8, asymmetric): 8 lanes per key read 8 bytes of K and
// V each, 16 codes unpacked from the nibbles (low nibble first) and
// dequantized in registers as scale * q + min, with the key group's
// per-channel K scales and minima and the token's V scale and minimum.
// CHECK-LABEL: gpu.module @int4_decode_gpu
// CHECK: params = ["query", "k_pages", "v_pages", "k_scale", "v_scale", "k_min", "v_min", "kv_indptr", "kv_indices", "kv_last_page_len", "output", "%partial_o", "%partial_lse", "$batch", "$num_pages", "$num_page_refs", "$num_splits"]
// CHECK-SAME: tile = {keys_per_step = 16 : i64, lanes_per_key = 8 : i64, min_split_keys = 64 : i64, threads = 128 : i64}
// CHECK: scf.for
// CHECK: %[[B:.*]] = vector.load {{.*}} {alignment = 8 : i64} : memref<?x16x8x64xi8, #gpu.address_space<global>>, vector<8xi8>
// CHECK-NEXT: vector.load {{.*}} {alignment = 8 : i64} : memref<?x16x8x64xi8, #gpu.address_space<global>>, vector<8xi8>
// CHECK: %[[W:.*]] = arith.extui %[[B]] : vector<8xi8> to vector<8xi16>
// CHECK: %[[LO:.*]] = arith.andi %[[W]]
// CHECK: %[[HI:.*]] = arith.shrui %[[W]]
// CHECK: %[[Q:.*]] = vector.interleave %[[LO]], %[[HI]] : vector<8xi16> -> vector<16xi16>
// CHECK: arith.uitofp %[[Q]] : vector<16xi16> to vector<16xf32>
// CHECK: vector.load {{.*}} : memref<?x2x8x128xf16, #gpu.address_space<global>>, vector<16xf16>
// CHECK: arith.mulf
// CHECK: vector.load {{.*}} : memref<?x2x8x128xf16, #gpu.address_space<global>>, vector<16xf16>
// CHECK: arith.addf
// PTX: gpu.binary @int4_decode_gpu
// PTX-SAME: ld.global.v2.b32
!i4 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, k_group = 8>
func.func @int4_decode(%q: tensor<?x32x128xbf16>, %cache: !i4, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
      : (tensor<?x32x128xbf16>, !i4, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// An int8 cache with a residual window of 64 tokens: a key among the
// sequence's 64 latest is read, unquantized, from the sequence's f16 ring
// (kv_rings), the others from the pages.
// CHECK-LABEL: gpu.module @residual_decode_gpu
// CHECK: params = ["query", "k_pages", "v_pages", "k_scale", "v_scale", "k_recent", "v_recent", "kv_indptr", "kv_indices", "kv_last_page_len", "kv_rings", "output", "%partial_o", "%partial_lse", "$batch", "$num_pages", "$num_page_refs", "$num_rings", "$num_splits"]
// CHECK: scf.for
// CHECK: %[[RING:.*]] = arith.cmpi sge, %[[KEY:.*]], %{{.*}} : index
// CHECK: scf.if %[[RING]] -> (vector<16xf32>, vector<16xf32>)
// CHECK: arith.remui %[[KEY]], %c64
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<?x64x8x128xf16, #gpu.address_space<global>>, vector<16xf16>
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<?x64x8x128xf16, #gpu.address_space<global>>, vector<16xf16>
// CHECK: } else {
// CHECK: vector.load {{.*}} : memref<?x16x8x128xi8, #gpu.address_space<global>>, vector<16xi8>
!res = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16, residual = 64>
func.func @residual_decode(%q: tensor<?x32x128xf16>, %cache: !res, %indptr: tensor<?xi32>,
                           %indices: tensor<?xi32>, %last: tensor<?xi32>,
                           %rings: tensor<?xi32>) -> tensor<?x32x128xf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last kv_rings(%rings)
      : (tensor<?x32x128xf16>, !res, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
      -> tensor<?x32x128xf16>
  return %o : tensor<?x32x128xf16>
}
