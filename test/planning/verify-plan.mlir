// RUN: attn-opt %s -attn-verify-plan | FileCheck %s
// RUN: not attn-opt %s -attn-verify-plan=target=h100-80gb -o /dev/null 2>&1 | FileCheck %s --check-prefix=PRESET

// Hand-written plans that verify, against a device with 1 KiB of HBM and
// 4 KiB of host memory. Byte counts: q 1x1x2x8xf16 = 32, k and v 1x4x1x8xf16
// = 64 each; the cache (page_size 1, 1 KV head, head_dim 8, f16, 4 pages) is
// k_pages then v_pages, 64 bytes each = 128.

// The pass leaves the IR alone.
// CHECK: func.func @dense
// CHECK: attn.copy_start
// CHECK: func.func @paged
// CHECK: func.func @fifo
// CHECK: func.func @recorded

// Under the preset the capacities of attn.plan disagree with the target.
// PRESET: error: the attn.plan of step function 'paged' gives tier "hbm" the capacity 1024 but the target #attn.target<"h100-80gb"> has 80000000000

!cache = !attn.kv_cache<page_size = 1, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>

module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1,
    smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1024, hbm_bandwidth = 1,
    host_bytes = 4096, link_bandwidth = 1>} {

// K and V live on the host and are prefetched; q0's bytes are reused by the
// second attention's output once q0 is read (an input is consumed by the
// step); the output goes back to the host, and the HBM bytes it leaves are
// free from the copy_done on. No attn.plan: the tiers are the target's.
func.func @dense(
    %q: tensor<1x1x2x8xf16> {attn.name = "q0", attn.place = #attn.place<hbm, 0>},
    %k: tensor<1x4x1x8xf16> {attn.name = "k0", attn.place = #attn.place<host, 0>},
    %v: tensor<1x4x1x8xf16> {attn.name = "v0", attn.place = #attn.place<host, 64>})
    -> (tensor<1x1x2x8xf16> {attn.name = "o0"}) attributes {attn.step} {
  %ck = attn.copy_start %k to #attn.place<hbm, 64> : tensor<1x4x1x8xf16>
  %cv = attn.copy_start %v to #attn.place<hbm, 128> : tensor<1x4x1x8xf16>
  %k1 = attn.copy_done %ck : !attn.copy<tensor<1x4x1x8xf16>>
  %v1 = attn.copy_done %cv : !attn.copy<tensor<1x4x1x8xf16>>
  %o = attn.attention %q, %k1, %v1 {attn.places = [#attn.place<hbm, 192>], attn.seconds = 1.0e-3 : f64}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %o2 = attn.attention %o, %k1, %v1 {attn.places = [#attn.place<hbm, 0>], attn.seconds = 1.0e-3 : f64}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %co = attn.copy_start %o2 to #attn.place<host, 128> : tensor<1x1x2x8xf16>
  %h = attn.copy_done %co : !attn.copy<tensor<1x1x2x8xf16>>
  return %h : tensor<1x1x2x8xf16>
}

// A KV cache homed on the host: prefetched, appended to in HBM, written back
// to its home after the append while the attention reads the HBM copy, with
// a workspace over bytes of inputs the append consumed, and an attn.plan.
func.func @paged(
    %q: tensor<1x1x8xf16> {attn.place = #attn.place<hbm, 0>},
    %key: tensor<1x1x8xf16> {attn.place = #attn.place<hbm, 64>},
    %value: tensor<1x1x8xf16> {attn.place = #attn.place<hbm, 128>},
    %slots: tensor<1xi32> {attn.place = #attn.place<hbm, 192>},
    %indptr: tensor<2xi32> {attn.place = #attn.place<hbm, 256>},
    %indices: tensor<4xi32> {attn.place = #attn.place<hbm, 320>},
    %last: tensor<1xi32> {attn.place = #attn.place<hbm, 384>},
    %cache: !cache {attn.name = "cache0", attn.num_pages = 4 : i64, attn.place = #attn.place<host, 0>})
    -> tensor<1x1x8xf16> attributes {attn.step, attn.plan = {
      tiers = [{name = "hbm", capacity = 1024 : i64, peak = 576 : i64, lower_bound = 576 : i64},
               {name = "host", capacity = 4096 : i64, peak = 128 : i64, lower_bound = 128 : i64}],
      step_seconds = 3.0e-3 : f64, compute_seconds = 2.0e-3 : f64,
      no_offload_seconds = 2.0e-3 : f64, bytes_moved = 256 : i64}} {
  %c = attn.copy_start %cache to #attn.place<hbm, 448> {attn.transfer_seconds = 1.0e-3 : f64} : !cache
  %hot = attn.copy_done %c {attn.exposed_seconds = 1.0e-3 : f64} : !attn.copy<!cache>
  attn.kv_append %key, %value, %slots into %hot {attn.seconds = 1.0e-3 : f64}
      : tensor<1x1x8xf16>, tensor<1x1x8xf16>, tensor<1xi32>, !cache
  %back = attn.copy_start %hot to #attn.place<host, 0> {attn.transfer_seconds = 1.0e-3 : f64} : !cache
  %o = attn.paged_attention %q, %hot, %indptr, %indices, %last
      {attn.places = [#attn.place<hbm, 64>], attn.seconds = 1.0e-3 : f64,
       attn.workspace = #attn.place<hbm, 128>, attn.workspace_bytes = 100 : i64}
      : (tensor<1x1x8xf16>, !cache, tensor<2xi32>, tensor<4xi32>, tensor<1xi32>) -> tensor<1x1x8xf16>
  %done = attn.copy_done %back {attn.exposed_seconds = 0.0 : f64} : !attn.copy<!cache>
  return %o : tensor<1x1x8xf16>
}

// Copies run in issue order on one stream: a prefetch issued after the
// offload of a buffer may land on that buffer's bytes before the offload is
// waited for; a kernel may not (verify-plan-invalid.mlir).
func.func @fifo(
    %q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
    %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
    %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>},
    %k2: tensor<1x4x1x8xf16> {attn.place = #attn.place<host, 0>})
    -> (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %off = attn.copy_start %o to #attn.place<host, 64> : tensor<1x1x2x8xf16>
  %pre = attn.copy_start %k2 to #attn.place<hbm, 192> : tensor<1x4x1x8xf16>
  %h = attn.copy_done %off : !attn.copy<tensor<1x1x2x8xf16>>
  %k3 = attn.copy_done %pre : !attn.copy<tensor<1x4x1x8xf16>>
  %o2 = attn.attention %q, %k3, %v {attn.places = [#attn.place<hbm, 64>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %h, %o2 : tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>
}

// attn.plan may record the target it was planned for, which wins over the
// module's: here the host-only one, whose one tier kernels read.
func.func @recorded(
    %q: tensor<1x1x2x8xf16> {attn.place = #attn.place<host, 0>})
    -> tensor<1x1x2x8xf16> attributes {attn.step, attn.plan = {
      target = #attn.target<"host">,
      tiers = [{name = "host", capacity = 274877906944 : i64, peak = 96 : i64, lower_bound = 64 : i64}]}} {
  %o = attn.attention %q, %q, %q {attn.places = [#attn.place<host, 64>]}
      : (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}

// Functions without attn.step are kernels and are not checked.
func.func @kernel(%q: tensor<1x1x2x8xf16>) -> tensor<1x1x2x8xf16> {
  return %q : tensor<1x1x2x8xf16>
}

}
