// RUN: attn-opt %s --split-input-file --attn-plan-memory | FileCheck %s
// RUN: attn-opt %s --split-input-file --attn-plan-memory --attn-verify-plan

// Tiny capacities in the style of XLA's memory-space-assignment tests: three
// kernels, each reading a 64-byte query and 128-byte K and V of its own, in
// an HBM of 512 bytes. Everything (1344 bytes) does not fit: the K/V of the
// later layers live in host memory and are prefetched, each while the
// kernel before it runs; the last output is offloaded.

#tiny = #attn.target<sm_count = 1, tensor_flops = 1000000, smem_per_block = 1024,
    smem_per_sm = 1024, hbm_bytes = 512, hbm_bandwidth = 64, host_bytes = 65536,
    link_bandwidth = 64>
!q = tensor<1x1x1x32xf16>
!kv = tensor<1x2x1x32xf16>
module attributes {attn.target = #tiny} {
  func.func @three_layers(%q0: !q {attn.name = "q0"}, %k0: !kv {attn.name = "k0"},
                          %v0: !kv {attn.name = "v0"}, %q1: !q {attn.name = "q1"},
                          %k1: !kv {attn.name = "k1"}, %v1: !kv {attn.name = "v1"},
                          %q2: !q {attn.name = "q2"}, %k2: !kv {attn.name = "k2"},
                          %v2: !kv {attn.name = "v2"})
      -> (!q {attn.name = "o0"}, !q {attn.name = "o1"}, !q {attn.name = "o2"})
      attributes {attn.step} {
    %o0 = attn.attention %q0, %k0, %v0 : (!q, !kv, !kv) -> !q
    %o1 = attn.attention %q1, %k1, %v1 : (!q, !kv, !kv) -> !q
    %o2 = attn.attention %q2, %k2, %v2 : (!q, !kv, !kv) -> !q
    return %o0, %o1, %o2 : !q, !q, !q
  }
}

// The first layer's operands stay in HBM; everything later starts in host
// memory. HBM is used to the byte (its lower bound is 512 too), and the
// predicted step takes 25 s against 18 s of kernels at this link speed.
// CHECK-LABEL: func.func @three_layers
// CHECK-SAME: attn.name = "q0", attn.place = #attn.place<hbm, 384>
// CHECK-SAME: attn.name = "k0", attn.place = #attn.place<hbm, 128>
// CHECK-SAME: attn.name = "v0", attn.place = #attn.place<hbm,
// CHECK-SAME: attn.name = "q1", attn.place = #attn.place<host,
// CHECK-SAME: attn.name = "k1", attn.place = #attn.place<host,
// CHECK-SAME: attn.name = "v1", attn.place = #attn.place<host,
// CHECK-SAME: attn.name = "q2", attn.place = #attn.place<host,
// CHECK-SAME: attn.name = "k2", attn.place = #attn.place<host,
// CHECK-SAME: attn.name = "v2", attn.place = #attn.place<host,
// CHECK-SAME: attn.plan = {bytes_moved = 704 : i64, compute_seconds = 1.800000e+01 : f64, no_offload_seconds = 1.800000e+01 : f64, step_seconds = 2.500000e+01 : f64, target = #attn.target<sm_count = 1, {{.*}}>, tiers = [{capacity = 512 : i64, lower_bound = 512 : i64, name = "hbm", peak = 512 : i64}, {capacity = 65536 : i64, lower_bound = 704 : i64, name = "host", peak = 704 : i64}]}
// v1 is prefetched while layer 0 runs (nothing exposed) ...
// CHECK: %[[CV1:.*]] = attn.copy_start %arg5 to #attn.place<hbm, 0> {attn.transfer_seconds = 2.000000e+00 : f64}
// CHECK-NEXT: %[[O0:.*]] = attn.attention %arg0, %arg1, %arg2 {attn.places = [#attn.place<hbm, 448>], attn.seconds = 6.000000e+00 : f64}
// CHECK-NEXT: %[[V1:.*]] = attn.copy_done %[[CV1]] {attn.exposed_seconds = 0.000000e+00 : f64}
// ... o0 goes to the host, and q1 and k1 come in after it, into bytes
// layer 0 no longer needs: the copy stream is FIFO, so q1 lands on o0's
// bytes only once o0 has left.
// CHECK-NEXT: %[[CO0:.*]] = attn.copy_start %[[O0]] to #attn.place<host, 640>
// CHECK-NEXT: %[[CQ1:.*]] = attn.copy_start %arg3 to #attn.place<hbm, 448>
// CHECK-NEXT: %[[CK1:.*]] = attn.copy_start %arg4 to #attn.place<hbm, 256>
// CHECK-NEXT: %[[CV2:.*]] = attn.copy_start %arg8 to #attn.place<hbm, 128>
// CHECK-NEXT: %[[HO0:.*]] = attn.copy_done %[[CO0]]
// CHECK-NEXT: %[[Q1:.*]] = attn.copy_done %[[CQ1]] {attn.exposed_seconds = 1.000000e+00 : f64}
// CHECK-NEXT: %[[K1:.*]] = attn.copy_done %[[CK1]] {attn.exposed_seconds = 2.000000e+00 : f64}
// CHECK-NEXT: %[[O1:.*]] = attn.attention %[[Q1]], %[[K1]], %[[V1]] {attn.places = [#attn.place<hbm, 384>]
// CHECK-NEXT: %[[V2:.*]] = attn.copy_done %[[CV2]] {attn.exposed_seconds = 0.000000e+00 : f64}
// CHECK-NEXT: %[[CQ2:.*]] = attn.copy_start %arg6 to #attn.place<hbm, 448>
// CHECK-NEXT: %[[CK2:.*]] = attn.copy_start %arg7 to #attn.place<hbm, 0>
// CHECK-NEXT: %[[Q2:.*]] = attn.copy_done %[[CQ2]]
// CHECK-NEXT: %[[K2:.*]] = attn.copy_done %[[CK2]]
// CHECK-NEXT: %[[O2:.*]] = attn.attention %[[Q2]], %[[K2]], %[[V2]] {attn.places = [#attn.place<hbm, 256>]
// CHECK-NEXT: return %[[HO0]], %[[O1]], %[[O2]]

// -----

// A host-only target: one tier that kernels read, no copies.
// CHECK-LABEL: func.func @host_only
// CHECK-SAME: attn.place = #attn.place<host, 0>
// CHECK-SAME: attn.plan = {{{.*}}target = #attn.target<"host">, tiers = [{capacity = 274877906944 : i64, lower_bound = 384 : i64, name = "host", peak = 384 : i64}]}
// CHECK-NOT: attn.copy_start
// CHECK: attn.attention {{.*}}attn.places = [#attn.place<host,
module attributes {attn.target = #attn.target<"host">} {
  func.func @host_only(%q: tensor<1x1x1x32xf16>, %k: tensor<1x2x1x32xf16>,
                       %v: tensor<1x2x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>, tensor<1x2x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}
