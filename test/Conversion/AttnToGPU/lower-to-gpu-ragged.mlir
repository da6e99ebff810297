// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu \
// RUN:   | attn-opt --split-input-file --pass-pipeline="builtin.module(gpu-lower-to-nvvm-pipeline{cubin-chip=sm_80 cubin-features=+ptx80 cubin-format=isa})" \
// RUN:   | FileCheck %s --check-prefix=PTX

// Ragged (cu_seqlens) prefill, causal, GQA 4:1, with the LSE: the prefill
// kernel over concatenated sequences. The 4 query heads of the KV head are
// packed into a tile's rows, so the grid is ceil(4 total_q / 64) x Hkv;
// block x takes the query tiles x, x + gridDim.x, ... of all sequences,
// each located by a warp scan of the sequences' tile counts (5 shuffles up
// for the scan, the chunk's total from lane 31, two sums of 5 xor
// shuffles). Rows are read at the sequence's offset.

// CHECK-LABEL: gpu.module @ragged_gpu
// CHECK: gpu.func @ragged
// CHECK-SAME: attn.launch = {block = array<i64: 128, 1, 1>, grid = [{divide = 64 : i64, multiply = 4 : i64, symbol = "total_q"}, 1, 1], params = ["query", "key", "value", "cu_seqlens_q", "cu_seqlens_k", "output", "lse", "$total_q", "$total_k", "$batch"], smem_bytes = 40960 : i64, tile = {block_kv = 64 : i64, block_q = 64 : i64, stages = 2 : i64, warps = 4 : i64}}
// The number of tiles of all sequences.
// CHECK: scf.for %{{.*}} step %c32{{.*}} -> (i32, i32, i32)
// CHECK-COUNT-5: gpu.shuffle  up
// CHECK: gpu.shuffle  idx
// CHECK-COUNT-10: gpu.shuffle  xor
// CHECK: scf.yield
// This block's tiles.
// CHECK: %[[FIRST:.*]] = gpu.block_id  x
// CHECK: %[[STRIDE:.*]] = gpu.grid_dim  x
// CHECK: scf.for %{{.*}} = %[[FIRST]] to %{{.*}} step %[[STRIDE]] {
// CHECK: scf.for %{{.*}} step %c32{{.*}} -> (i32, i32, i32)
// CHECK: scf.yield
// The sequence's rows: cu_seqlens_q, then cu_seqlens_k.
// CHECK: %[[Q0:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK: memref.load
// CHECK: nvgpu.device_async_copy %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}], {{.*}} : memref<?x4x64xf16, #gpu.address_space<global>> to memref<64x64xf16, #gpu.address_space<workgroup>>
// K and V of a row from one address.
// CHECK: nvgpu.device_async_copy %{{.*}}[%[[ROW:.*]], %[[H:.*]], %[[C:.*]]], {{.*}} : memref<?x1x64xf16, #gpu.address_space<global>> to memref<2x64x64xf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvgpu.device_async_copy %{{.*}}[%[[ROW]], %[[H]], %[[C]]], {{.*}} : memref<?x1x64xf16, #gpu.address_space<global>> to memref<2x64x64xf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.mma.sync
// The output and the LSE ([Hq, total_q]) at the sequence's rows.
// CHECK: vector.store {{.*}} : memref<?x4x64xf16, #gpu.address_space<global>>, vector<2xf16>
// CHECK: memref.store {{.*}} : memref<4x?xf32, #gpu.address_space<global>>
// PTX: gpu.binary @ragged_gpu
// PTX-SAME: shfl.sync.up.b32
// PTX-SAME: cp.async.cg.shared.global
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
func.func @ragged(%q: tensor<?x4x64xf16>, %k: tensor<?x1x64xf16>, %v: tensor<?x1x64xf16>,
                  %cu_q: tensor<?xi32>, %cu_k: tensor<?xi32>)
    -> (tensor<?x4x64xf16>, tensor<4x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v cu_seqlens(%cu_q, %cu_k) {mask = #attn.mask<causal>}
      : (tensor<?x4x64xf16>, tensor<?x1x64xf16>, tensor<?x1x64xf16>,
         tensor<?xi32>, tensor<?xi32>) -> (tensor<?x4x64xf16>, tensor<4x?xf32>)
  return %o, %lse : tensor<?x4x64xf16>, tensor<4x?xf32>
}

// -----

// Paged append/prefill (qo_indptr) over bf16 NHD pages of 16 tokens at
// head_dim 128, causal (bottom-right: a sequence's queries are its last
// tokens): the same kernel with K/V tiles of 32 keys (the page lookups leave
// no registers for 64), each row found through kv_indices; the length from
// kv_indptr and kv_last_page_len.

// CHECK-LABEL: gpu.module @append_gpu
// CHECK: gpu.func @append
// CHECK-SAME: grid = [{divide = 64 : i64, multiply = 4 : i64, symbol = "total_q"}, 8, 1], params = ["query", "k_pages", "v_pages", "kv_indptr", "kv_indices", "kv_last_page_len", "qo_indptr", "output", "$total_q", "$batch", "$num_pages", "$num_page_refs"], smem_bytes = 49152 : i64, tile = {block_kv = 32 : i64, block_q = 64 : i64, stages = 2 : i64, warps = 4 : i64}
// CHECK: gpu.grid_dim  x
// A key row's page: kv_indices[first + key / 16], then K and V at (page,
// key % 16, KV head).
// CHECK: nvgpu.device_async_copy %{{.*}}[%[[PAGE:[0-9]+]], %[[SLOT:[0-9]+]], %[[H:[a-z_0-9]+]], %[[C:[0-9]+]]], {{.*}} : memref<?x16x8x128xbf16, #gpu.address_space<global>> to memref<2x32x128xbf16, #gpu.address_space<workgroup>>
// CHECK-NEXT: nvgpu.device_async_copy %{{.*}}[%[[PAGE]], %[[SLOT]], %[[H]], %[[C]]], {{.*}} : memref<?x16x8x128xbf16, #gpu.address_space<global>> to memref<2x32x128xbf16, #gpu.address_space<workgroup>>
// In the KV loop, the next tile's rows through the page table, then the
// tensor cores.
// CHECK: scf.for
// CHECK: memref.load %{{.*}} : memref<?xi32, #gpu.address_space<global>>
// CHECK: nvgpu.device_async_copy %{{.*}} : memref<?x16x8x128xbf16, #gpu.address_space<global>> to memref<2x32x128xbf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.mma.sync
// PTX: gpu.binary @append_gpu
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = bf16>
func.func @append(%q: tensor<?x32x128xbf16>, %cache: !cache, %kv_indptr: tensor<?xi32>,
                  %kv_indices: tensor<?xi32>, %kv_last_page_len: tensor<?xi32>,
                  %qo_indptr: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = attn.paged_attention %q, %cache, %kv_indptr, %kv_indices, %kv_last_page_len
      qo_indptr(%qo_indptr) {mask = #attn.mask<causal>}
      : (tensor<?x32x128xbf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// HND pages: K and V at (page, KV head, key % page_size).
// CHECK-LABEL: gpu.module @append_hnd_gpu
// CHECK: nvgpu.device_async_copy %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}], {{.*}} : memref<?x2x32x64xf16, #gpu.address_space<global>> to memref<2x64x64xf16, #gpu.address_space<workgroup>>
!hnd = !attn.kv_cache<page_size = 32, kv_heads = 2, head_dim = 64, layout = hnd, storage = f16>
func.func @append_hnd(%q: tensor<?x8x64xf16>, %cache: !hnd, %kv_indptr: tensor<?xi32>,
                      %kv_indices: tensor<?xi32>, %kv_last_page_len: tensor<?xi32>,
                      %qo_indptr: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %o = attn.paged_attention %q, %cache, %kv_indptr, %kv_indices, %kv_last_page_len
      qo_indptr(%qo_indptr) {mask = #attn.mask<window = 100, sinks = 4>}
      : (tensor<?x8x64xf16>, !hnd, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}

// -----

// Per-KV-head masks (head_masks): KV head 0 causal, KV head 1 a window of
// 252 with 4 sinks. The block's window and sinks are selected by its KV head
// (block y: the block's rows are that head's 4 query heads), and the
// window's bounds apply only where the head has one.
// CHECK-LABEL: gpu.module @duo_gpu
// CHECK: %[[KVH:.*]] = gpu.block_id  y
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[KVH]], %c1
// CHECK: %[[HASW:.*]] = arith.select %[[IS1]], %true{{[_0-9]*}}, %false{{[_0-9]*}} : i1
// CHECK: arith.select %{{.*}}, %c252, %c0
// CHECK: arith.select %{{.*}}, %c4{{.*}}, %c0
// CHECK: arith.select %[[HASW]]
// CHECK: nvvm.mma.sync
func.func @duo(%q: tensor<?x?x8x128xbf16>, %k: tensor<?x?x2x128xbf16>,
               %v: tensor<?x?x2x128xbf16>) -> tensor<?x?x8x128xbf16> {
  %o = attn.attention %q, %k, %v
      {head_masks = [#attn.mask<causal>, #attn.mask<window = 252, sinks = 4>]}
      : (tensor<?x?x8x128xbf16>, tensor<?x?x2x128xbf16>, tensor<?x?x2x128xbf16>)
      -> tensor<?x?x8x128xbf16>
  return %o : tensor<?x?x8x128xbf16>
}

// -----

// Paged append over int8 pages (bf16 queries, head_dim 64): the scales
// follow the pages among the parameters. In the KV loop the next tile's
// bytes are loaded into registers before this tile's tensor-core work (no
// cp.async for K and V), then dequantized (int8 to f32, times the K
// channels' and the V token's scales), rounded to bf16 and stored into the
// other stage, 16 bytes at a time, before the loop's one barrier. (At
// head_dim 128 the registers cannot hold the bytes over the tensor-core work:
// the loads follow it.)
// CHECK-LABEL: gpu.module @append_int8_gpu
// CHECK: gpu.func @append_int8
// CHECK-SAME: params = ["query", "k_pages", "v_pages", "k_scale", "v_scale", "kv_indptr", "kv_indices", "kv_last_page_len", "qo_indptr", "output", "$total_q", "$batch", "$num_pages", "$num_page_refs"]
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: scf.for
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: %[[K:.*]] = vector.load {{.*}} : memref<?x16x2x64xi8, #gpu.address_space<global>>, vector<16xi8>
// CHECK-NOT: gpu.barrier
// CHECK: nvvm.mma.sync
// CHECK-NOT: gpu.barrier
// CHECK: scf.if
// CHECK: arith.sitofp %[[K]] : vector<16xi8> to vector<16xf32>
// CHECK: arith.truncf {{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<2x64x64xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
// CHECK: gpu.barrier
// CHECK-NEXT: scf.yield
// PTX: gpu.binary @append_int8_gpu
// PTX-SAME: ld.global.v4.b32
// PTX-SAME: st.shared.v4.b32
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
!i8 = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 64, layout = nhd, storage = i8, k_group = 8>
func.func @append_int8(%q: tensor<?x8x64xbf16>, %cache: !i8, %indptr: tensor<?xi32>,
                       %indices: tensor<?xi32>, %last: tensor<?xi32>,
                       %qo: tensor<?xi32>) -> tensor<?x8x64xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
      {mask = #attn.mask<causal>}
      : (tensor<?x8x64xbf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>,
         tensor<?xi32>) -> tensor<?x8x64xbf16>
  return %o : tensor<?x8x64xbf16>
}
