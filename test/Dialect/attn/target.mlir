// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s

// Every preset prints back as its name; a target is a discardable attribute
// until the planner reads it.

// CHECK: module attributes {attn.target = #attn.target<"h100-80gb">}
module attributes {attn.target = #attn.target<"h100-80gb">} {
  // CHECK-LABEL: func.func @a100
  // CHECK-SAME: attn.target = #attn.target<"a100-80gb">
  func.func @a100() attributes {attn.target = #attn.target<"a100-80gb">} {
    return
  }
  // CHECK-LABEL: func.func @h200
  // CHECK-SAME: attn.target = #attn.target<"h200">
  func.func @h200() attributes {attn.target = #attn.target<"h200">} {
    return
  }
  // CHECK-LABEL: func.func @host
  // CHECK-SAME: attn.target = #attn.target<"host">
  func.func @host() attributes {attn.target = #attn.target<"host">} {
    return
  }
  // The explicit form, in any key order, printed in the canonical order.
  // CHECK-LABEL: func.func @explicit
  // CHECK-SAME: attn.target = #attn.target<sm_count = 2, tensor_flops = 3000, smem_per_block = 256, smem_per_sm = 512, hbm_bytes = 4096, hbm_bandwidth = 1000, host_bytes = 65536, link_bandwidth = 10>
  func.func @explicit() attributes {attn.target = #attn.target<
      host_bytes = 65536, link_bandwidth = 10, sm_count = 2,
      smem_per_block = 256, smem_per_sm = 512, hbm_bytes = 4096,
      hbm_bandwidth = 1000, tensor_flops = 3000>} {
    return
  }
  // The figures of a preset are that preset.
  // CHECK-LABEL: func.func @explicit_preset
  // CHECK-SAME: attn.target = #attn.target<"h100-80gb">
  func.func @explicit_preset() attributes {attn.target = #attn.target<
      sm_count = 132, tensor_flops = 989400000000000,
      smem_per_block = 232448, smem_per_sm = 233472, hbm_bytes = 80000000000,
      hbm_bandwidth = 3350000000000, host_bytes = 274877906944,
      link_bandwidth = 64000000000>} {
    return
  }
  // One figure off a preset is no longer that preset.
  // CHECK-LABEL: func.func @explicit_not_preset
  // CHECK-SAME: attn.target = #attn.target<sm_count = 132, tensor_flops = 756000000000000, smem_per_block = 232448, smem_per_sm = 233472, hbm_bytes = 80000000000, hbm_bandwidth = 3350000000000, host_bytes = 274877906944, link_bandwidth = 64000000000>
  func.func @explicit_not_preset() attributes {attn.target = #attn.target<
      sm_count = 132, tensor_flops = 756000000000000,
      smem_per_block = 232448, smem_per_sm = 233472, hbm_bytes = 80000000000,
      hbm_bandwidth = 3350000000000, host_bytes = 274877906944,
      link_bandwidth = 64000000000>} {
    return
  }
  // CHECK-LABEL: func.func @explicit_host
  // CHECK-SAME: attn.target = #attn.target<sm_count = 0, tensor_flops = 0, smem_per_block = 0, smem_per_sm = 0, hbm_bytes = 0, hbm_bandwidth = 0, host_bytes = 1024, link_bandwidth = 0>
  func.func @explicit_host() attributes {attn.target = #attn.target<
      sm_count = 0, tensor_flops = 0, smem_per_block = 0, smem_per_sm = 0,
      hbm_bytes = 0, hbm_bandwidth = 0, host_bytes = 1024,
      link_bandwidth = 0>} {
    return
  }
}
