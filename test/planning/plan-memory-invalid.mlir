// RUN: attn-opt %s --split-input-file --attn-plan-memory -verify-diagnostics
// RUN: not attn-opt %s --split-input-file --attn-plan-memory="target=h900" 2>&1 | FileCheck %s --check-prefix=PRESET

// Every way a step can fail to plan gets an error at its cause that says
// what to change.

// PRESET: error: unknown target 'h900' for attn-plan-memory; the presets are h100-80gb, a100-80gb, h200, host

// One kernel's operands (1 KiB of K and V) exceed an HBM of 512 bytes:
// kernels read only HBM, so no placement helps.
#tiny = #attn.target<sm_count = 1, tensor_flops = 1000000, smem_per_block = 1024,
    smem_per_sm = 1024, hbm_bytes = 512, hbm_bandwidth = 64, host_bytes = 65536,
    link_bandwidth = 64>
module attributes {attn.target = #tiny} {
  // expected-error @+1 {{cannot plan step 'too_big' for #attn.target<sm_count = 1, tensor_flops = 1000000, smem_per_block = 1024, smem_per_sm = 1024, hbm_bytes = 512, hbm_bandwidth = 64, host_bytes = 65536, link_bandwidth = 64>: the device tier (512 B) cannot hold what kernel 'too_big__0' (step 0) needs at once}}
  func.func @too_big(%q: tensor<1x1x1x32xf16>, %k: tensor<1x8x1x32xf16>,
                     %v: tensor<1x8x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x8x1x32xf16>, tensor<1x8x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}

// -----

module {
  // expected-error @+1 {{planning step function 'no_target' needs a target: give the module the attribute attn.target = #attn.target<...> or the pass option target=<preset>}}
  func.func @no_target(%q: tensor<1x1x1x32xf16>, %k: tensor<1x2x1x32xf16>,
                       %v: tensor<1x2x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>, tensor<1x2x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}

// -----

!cache = !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 32, layout = nhd, storage = f16>
module attributes {attn.target = #attn.target<"h100-80gb">} {
  // expected-error @+1 {{step function 'no_pool': KV cache argument 'cache' needs its pool size: add {attn.num_pages = N : i64} with N > 0}}
  func.func @no_pool(%q: tensor<1x4x32xf16>, %cache: !cache {attn.name = "cache"},
                     %indptr: tensor<2xi32>, %indices: tensor<4xi32>,
                     %last: tensor<1xi32>) -> tensor<1x4x32xf16>
      attributes {attn.step} {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<1x4x32xf16>, !cache, tensor<2xi32>, tensor<4xi32>, tensor<1xi32>)
        -> tensor<1x4x32xf16>
    return %o : tensor<1x4x32xf16>
  }
}

// -----

module attributes {attn.target = #attn.target<"h100-80gb">} {
  // expected-error @+1 {{step function 'dynamic': argument 'arg1' has type 'tensor<1x?x1x32xf16>'; a step takes static-shape tensors and KV caches}}
  func.func @dynamic(%q: tensor<1x1x1x32xf16>, %k: tensor<1x?x1x32xf16>,
                     %v: tensor<1x?x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x?x1x32xf16>, tensor<1x?x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}

// -----

module attributes {attn.target = #attn.target<"h100-80gb">} {
  func.func @returns_argument(%q: tensor<1x1x1x32xf16>, %k: tensor<1x2x1x32xf16>,
                              %v: tensor<1x2x1x32xf16>)
      -> (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>) attributes {attn.step} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>, tensor<1x2x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    // expected-error @+1 {{the step returns its argument as result #1; a step returns what its kernels produce}}
    return %o, %k : tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>
  }
}

// -----

module attributes {attn.target = #attn.target<"h100-80gb">} {
  func.func @not_a_step_op(%q: tensor<1x1x1x32xf16>, %k: tensor<1x2x1x32xf16>,
                           %v: tensor<1x2x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step} {
    // expected-error @+1 {{step function 'not_a_step_op': 'arith.constant' is not a step op; a step function holds attn compute ops (attention, paged_attention, kv_append, merge, select_pages), copies and a return}}
    %c = arith.constant 0 : index
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>, tensor<1x2x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}

// -----

module attributes {attn.target = #attn.target<"h100-80gb">} {
  // expected-error @+1 {{step function 'twice' is already planned}}
  func.func @twice(%q: tensor<1x1x1x32xf16>, %k: tensor<1x2x1x32xf16>,
                   %v: tensor<1x2x1x32xf16>) -> tensor<1x1x1x32xf16>
      attributes {attn.step, attn.plan = {}} {
    %o = attn.attention %q, %k, %v
        : (tensor<1x1x1x32xf16>, tensor<1x2x1x32xf16>, tensor<1x2x1x32xf16>)
        -> tensor<1x1x1x32xf16>
    return %o : tensor<1x1x1x32xf16>
  }
}
