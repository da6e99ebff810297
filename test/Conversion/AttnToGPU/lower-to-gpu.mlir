// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-lower-to-gpu \
// RUN:   | attn-opt --split-input-file --pass-pipeline="builtin.module(gpu-lower-to-nvvm-pipeline{cubin-chip=sm_80 cubin-features=+ptx80 cubin-format=isa})" \
// RUN:   | FileCheck %s --check-prefix=PTX

// A causal GQA prefill kernel (8 query heads over 2 KV heads, head_dim 128,
// f16, dynamic batch and lengths) becomes one FlashAttention-2 kernel. A
// block covers one KV head's group of 4 query heads: its 64 rows are 16
// positions x 4 heads, so the grid is ceil(4 seqlen_q / 64) x Hkv x batch.

// CHECK-LABEL: module attributes {gpu.container_module}
// CHECK: gpu.module @prefill_gpu
// The ABI: bare global pointers, then the dynamic sizes as i32.
// CHECK: gpu.func @prefill(%{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: i32, %{{.*}}: i32, %{{.*}}: i32) kernel
// CHECK-SAME: attn.launch = {block = array<i64: 128, 1, 1>, grid = [{divide = 64 : i64, multiply = 4 : i64, symbol = "seqlen_q"}, 2, {divide = 1 : i64, symbol = "batch"}], params = ["query", "key", "value", "output", "$batch", "$seqlen_q", "$seqlen_k"], smem_bytes = 81920 : i64, tile = {block_kv = 64 : i64, block_q = 64 : i64, stages = 2 : i64, warps = 4 : i64}}
// Q [64, 128], K and V [2, 64, 128] in dynamic shared memory.
// CHECK: %[[KVHEAD:.*]] = gpu.block_id  y
// CHECK: gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<64x128xf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x64x128xf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x64x128xf16, #gpu.address_space<workgroup>>
// Q and the first K/V tile: 16-byte cp.async, zero-filled past the end.
// Row r of the Q tile is position r / 4 of query head 4 kv_head + r % 4
// (after the row's swizzled column in the shared tile).
// CHECK: arith.xori
// CHECK: %[[POS:.*]] = arith.divui %[[ROW:.*]], %c4{{.*}} : index
// CHECK-NEXT: %c4{{.*}} = arith.constant 4 : index
// CHECK-NEXT: %[[INGROUP:.*]] = arith.remui %[[ROW]], %c4{{.*}} : index
// CHECK-NEXT: %c4{{.*}} = arith.constant 4 : index
// CHECK-NEXT: %[[FIRSTHEAD:.*]] = arith.muli %[[KVHEAD]], %c4{{.*}} : index
// CHECK-NEXT: %[[QHEAD:.*]] = arith.addi %[[FIRSTHEAD]], %[[INGROUP]] : index
// CHECK-NEXT: nvgpu.device_async_copy %{{.*}}[%{{.*}}, %[[POS]], %[[QHEAD]], %{{.*}}], {{.*}}, 8, %{{.*}} {bypassL1} : memref<?x?x8x128xf16, #gpu.address_space<global>> to memref<64x128xf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: nvvm.cp.async.wait.group 0
// CHECK-NEXT: gpu.barrier
// This warp's Q fragments.
// CHECK-COUNT-8: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<64x128xf16, #gpu.address_space<workgroup>> -> vector<4x2xf16>
// The KV loop: prefetch the next tile into the other stage, wait for this one.
// CHECK: scf.for
// CHECK: nvgpu.device_async_copy {{.*}} to memref<2x64x128xf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.cp.async.commit.group
// CHECK-NEXT: nvvm.cp.async.wait.group 1
// CHECK-NEXT: gpu.barrier
// S = Q K^T on tensor cores.
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<2x64x128xf16, #gpu.address_space<workgroup>> -> vector<4x2xf16>
// CHECK: nvvm.mma.sync {{.*}}{layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// The element predicate only on partial tiles.
// CHECK: scf.if %{{.*}} -> (f32
// CHECK: arith.select
// Row max across the 4 lanes of a row, exp2 on the SFU.
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{[_0-9]*}}, %c32_i32{{[_0-9]*}} : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{[_0-9]*}}, %c32_i32{{[_0-9]*}} : f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// O += P V: V through ldmatrix.trans.
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true} : memref<2x64x128xf16, #gpu.address_space<workgroup>> -> vector<4x2xf16>
// CHECK: nvvm.mma.sync
// CHECK: gpu.barrier
// CHECK: scf.yield
// Epilogue: O / l, stored as pairs.
// CHECK: vector.store {{.*}} : memref<?x?x8x128xf16, #gpu.address_space<global>>, vector<2xf16>
// CHECK-NOT: func.func

// The assembly (in the order the NVPTX back-end lays out the blocks):
// cp.async.cg, barriers, ldmatrix, ex2.approx, ldmatrix.trans, mma.sync.
// PTX: gpu.binary @prefill_gpu
// PTX-SAME: .target sm_80
// PTX-SAME: .shared .align 16 .b8 __dynamic_shmem__0;
// PTX-SAME: cp.async.cg.shared.global
// PTX-SAME: bar.sync
// PTX-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// PTX-SAME: ex2.approx.ftz.f32
// PTX-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
func.func @prefill(%q: tensor<?x?x8x128xf16>, %k: tensor<?x?x2x128xf16>,
                   %v: tensor<?x?x2x128xf16>) -> tensor<?x?x8x128xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x8x128xf16>, tensor<?x?x2x128xf16>, tensor<?x?x2x128xf16>)
      -> tensor<?x?x8x128xf16>
  return %o : tensor<?x?x8x128xf16>
}

// -----

// bf16 at head_dim 64 with static sizes, a sliding window with sinks and
// the LSE: the sizes are constants (no i32 parameters), the grid is static,
// bf16 pairs go to mma.sync as i32 registers, and lane 0 of each row quad
// writes the LSE.
// CHECK-LABEL: gpu.module @window_gpu
// CHECK: gpu.func @window(%{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>) kernel
// CHECK-SAME: grid = [4, 4, 2], params = ["query", "key", "value", "output", "lse"], smem_bytes = 40960 : i64
// CHECK: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>{{.*}} : (i32, i32, f32)
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// CHECK: memref.store {{.*}} : memref<2x4x200xf32, #gpu.address_space<global>>
// PTX: gpu.binary @window_gpu
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX-SAME: lg2.approx.ftz.f32
func.func @window(%q: tensor<2x200x4x64xbf16>, %k: tensor<2x1000x4x64xbf16>,
                  %v: tensor<2x1000x4x64xbf16>)
    -> (tensor<2x200x4x64xbf16>, tensor<2x4x200xf32>) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<window = 100, sinks = 4>}
      : (tensor<2x200x4x64xbf16>, tensor<2x1000x4x64xbf16>, tensor<2x1000x4x64xbf16>)
      -> (tensor<2x200x4x64xbf16>, tensor<2x4x200xf32>)
  return %o, %lse : tensor<2x200x4x64xbf16>, tensor<2x4x200xf32>
}

// -----

// Softcap 30: each score times the scale goes through 30 * tanh(x / 30) in
// the log2 domain, tanh from the SFU's exp2 (1 - 2 / (2^(2 log2(e) y) + 1)),
// before the element predicate.
// CHECK-LABEL: gpu.module @capped_gpu
// CHECK: nvvm.mma.sync
// CHECK: arith.mulf
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: arith.divf
// CHECK: scf.if
func.func @capped(%q: tensor<?x?x8x64xbf16>, %k: tensor<?x?x8x64xbf16>,
                  %v: tensor<?x?x8x64xbf16>) -> tensor<?x?x8x64xbf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>, softcap = 30.0 : f32}
      : (tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>)
      -> tensor<?x?x8x64xbf16>
  return %o : tensor<?x?x8x64xbf16>
}
