// RUN: attn-opt %s -split-input-file -attn-verify-plan -verify-diagnostics

// Every error of attn-verify-plan. The device has 512 bytes of HBM and 1 KiB
// of host memory; q is 1x1x2x8xf16 (32 bytes), k and v 1x4x1x8xf16 (64).

// Overlap: the kernel reads q while it writes its output over q's bytes.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.name = "q0", attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': in tier hbm: buffers argument 'q0' at [0, 32) and 'result0' (result 0 of attn.attention at verify-plan-invalid.mlir:16:8) at [0, 32) overlap while both are live (step 0)}}
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 0>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// Overlap across steps: a prefetch lands on bytes a kernel still reads later.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>},
             %k2: tensor<1x4x1x8xf16> {attn.name = "k2", attn.place = #attn.place<host, 0>})
    -> (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': in tier hbm: buffers argument 'arg2' at [128, 192) and 'k2@hbm' (the copy of 'k2' at verify-plan-invalid.mlir:35:8) at [128, 192) overlap while both are live (step 0)}}
  %c = attn.copy_start %k2 to #attn.place<hbm, 128> : tensor<1x4x1x8xf16>
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %k3 = attn.copy_done %c : !attn.copy<tensor<1x4x1x8xf16>>
  %o2 = attn.attention %q, %k3, %k {attn.places = [#attn.place<hbm, 256>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o, %o2 : tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>
}
}

// -----

// A kernel reads an operand from the host tier.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.name = "k0", attn.place = #attn.place<host, 0>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': operand #1 of attn.attention at step 0 is argument 'k0', in tier host; kernels read only tier hbm (copy it there first)}}
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A kernel writes its result to the host tier.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': result #0 of attn.attention at step 0 is placed in tier host; kernels write only tier hbm}}
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<host, 0>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A KV cache used at its home while the copy writing it back is in flight:
// the home holds the appended tokens only after the copy_done.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
!cache = !attn.kv_cache<page_size = 1, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x8xf16> {attn.place = #attn.place<hbm, 0>},
             %key: tensor<1x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %slots: tensor<1xi32> {attn.place = #attn.place<hbm, 128>},
             %indptr: tensor<2xi32> {attn.place = #attn.place<hbm, 192>},
             %indices: tensor<4xi32> {attn.place = #attn.place<hbm, 256>},
             %cache: !cache {attn.name = "cache0", attn.num_pages = 4 : i64, attn.place = #attn.place<hbm, 320>})
    -> tensor<1x1x8xf16> attributes {attn.step} {
  %c = attn.copy_start %cache to #attn.place<host, 0> : !cache
  %staged = attn.copy_done %c : !attn.copy<!cache>
  %c2 = attn.copy_start %staged to #attn.place<hbm, 320> : !cache
  // expected-error @+1 {{memory plan of step function 'f': attn.paged_attention at step 0 uses argument 'cache0' before the copy of 'cache0@host' to [320, 448) in tier hbm (issued before step 0, waited after step 0) has written it back}}
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %slots
      {attn.places = [#attn.place<hbm, 448>]}
      : (tensor<1x1x8xf16>, !cache, tensor<2xi32>, tensor<4xi32>, tensor<1xi32>) -> tensor<1x1x8xf16>
  %back = attn.copy_done %c2 : !attn.copy<!cache>
  return %o : tensor<1x1x8xf16>
}
}

// -----

// A kernel writes bytes an offload still reads.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %c = attn.copy_start %o to #attn.place<host, 0> : tensor<1x1x2x8xf16>
  // expected-error @+1 {{memory plan of step function 'f': attn.attention at step 1 writes 'result1' (result 0 of attn.attention at verify-plan-invalid.mlir:124:9) at [192, 224) in tier hbm while the copy of 'f__0.result0' to [0, 32) in tier host (issued before step 1, waited after step 1) still reads [192, 224) in tier hbm}}
  %o2 = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  %h = attn.copy_done %c : !attn.copy<tensor<1x1x2x8xf16>>
  return %h, %o2 : tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>
}
}

// -----

// Over capacity: the output ends past the 512 bytes of HBM.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': in tier hbm: the peak 544 exceeds the capacity 512: buffer 'result0' (result 0 of attn.attention at verify-plan-invalid.mlir:143:8) at [512, 544) (step 0) is beyond it}}
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 512>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// attn.plan's peak above where the buffers end.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
// expected-error @+1 {{memory plan of step function 'f': attn.plan gives tier hbm the peak 320 but its buffers end at 224 (256 rounded up to a multiple of 64)}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step, attn.plan = {
      tiers = [{name = "hbm", capacity = 512 : i64, peak = 320 : i64, lower_bound = 224 : i64},
               {name = "host", capacity = 1024 : i64, peak = 0 : i64, lower_bound = 0 : i64}]}} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A misaligned offset.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
// expected-error @+1 {{memory plan of step function 'f': argument 'arg1' at offset 96 in tier hbm is not 64-byte aligned}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 96>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 192>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 256>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A result without a place.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{memory plan of step function 'f': 'result0' (result 0 of attn.attention at verify-plan-invalid.mlir:199:8) has no place (attn.places, one #attn.place per result)}}
  %o = attn.attention %q, %k, %v
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// An argument without a place.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
// expected-error @+1 {{memory plan of step function 'f': argument 'v0' has no place (its argument attribute attn.place)}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.name = "v0"})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// One place for an op with two results.
#t = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1,
    smem_per_sm = 1, hbm_bytes = 512, hbm_bandwidth = 1, host_bytes = 1024,
    link_bandwidth = 1>
module attributes {attn.target = #t} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> (tensor<1x1x2x8xf16>, tensor<1x2x1xf32>) attributes {attn.step} {
  // expected-error @+1 {{step function 'f': attn.places of 'attn.attention' must hold one #attn.place per result (2), got [#attn.place<hbm, 192>]}}
  %o, %lse = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> (tensor<1x1x2x8xf16>, tensor<1x2x1xf32>)
  return %o, %lse : tensor<1x1x2x8xf16>, tensor<1x2x1xf32>
}
}

// -----

// Not planned at all.
module {
// expected-error @+1 {{step function 'f' has no memory plan; run attn-plan-memory first}}
func.func @f(%q: tensor<1x1x2x8xf16>, %k: tensor<1x4x1x8xf16>, %v: tensor<1x4x1x8xf16>)
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  %o = attn.attention %q, %k, %v
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// Places but no target and no attn.plan to say what the tiers are.
module {
// expected-error @+1 {{step function 'f' has no target to check its plan against: give the module attn.target = #attn.target<...>, or the pass option target=<preset>}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<hbm, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<hbm, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// HBM on a host-only target.
module attributes {attn.target = #attn.target<"host">} {
// expected-error @+1 {{memory plan of step function 'f': argument 'arg0' is placed in tier hbm, which a host-only target does not have}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<hbm, 0>},
             %k: tensor<1x4x1x8xf16> {attn.place = #attn.place<host, 64>},
             %v: tensor<1x4x1x8xf16> {attn.place = #attn.place<host, 128>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  %o = attn.attention %q, %k, %v {attn.places = [#attn.place<host, 192>]}
      : (tensor<1x1x2x8xf16>, tensor<1x4x1x8xf16>, tensor<1x4x1x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// attn.plan with a tier the target does not have.
module attributes {attn.target = #attn.target<"host">} {
// expected-error @+1 {{the attn.plan of step function 'f' has tier "hbm", which the target #attn.target<"host"> does not have}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<host, 0>})
    -> tensor<1x1x2x8xf16> attributes {attn.step, attn.plan = {
      tiers = [{name = "hbm", capacity = 512 : i64, peak = 0 : i64, lower_bound = 0 : i64}]}} {
  %o = attn.attention %q, %q, %q {attn.places = [#attn.place<host, 64>]}
      : (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A malformed attn.plan tier.
module attributes {attn.target = #attn.target<"host">} {
// expected-error @+1 {{the attn.plan of step function 'f' has a malformed tier {name = "sram"}; expected {name = "hbm" | "host", capacity = C : i64, peak = P : i64, lower_bound = L : i64}}}
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<host, 0>})
    -> tensor<1x1x2x8xf16> attributes {attn.step, attn.plan = {tiers = [{name = "sram"}]}} {
  %o = attn.attention %q, %q, %q {attn.places = [#attn.place<host, 64>]}
      : (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// Ops a step function does not hold.
module attributes {attn.target = #attn.target<"host">} {
func.func @f(%q: tensor<1x1x2x8xf16> {attn.place = #attn.place<host, 0>})
    -> tensor<1x1x2x8xf16> attributes {attn.step} {
  // expected-error @+1 {{step function 'f': 'tensor.empty' is not a step op; a step function holds attn compute ops (attention, paged_attention, kv_append, merge, select_pages), copies and a return}}
  %e = tensor.empty() : tensor<1x1x2x8xf16>
  %o = attn.attention %q, %e, %e {attn.places = [#attn.place<host, 64>]}
      : (tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>, tensor<1x1x2x8xf16>) -> tensor<1x1x2x8xf16>
  return %o : tensor<1x1x2x8xf16>
}
}

// -----

// A KV cache without its pool size.
!cache = !attn.kv_cache<page_size = 1, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>
module attributes {attn.target = #attn.target<"host">} {
// expected-error @+1 {{step function 'f': KV cache argument 'arg1' needs its pool size: add {attn.num_pages = N : i64} with N > 0}}
func.func @f(%key: tensor<1x1x8xf16> {attn.place = #attn.place<host, 0>},
             %cache: !cache {attn.place = #attn.place<host, 64>},
             %slots: tensor<1xi32> {attn.place = #attn.place<host, 128>}) attributes {attn.step} {
  attn.kv_append %key, %key, %slots into %cache
      : tensor<1x1x8xf16>, tensor<1x1x8xf16>, tensor<1xi32>, !cache
  return
}
}

// -----

// A step function without compute ops.
module attributes {attn.target = #attn.target<"host">} {
// expected-error @+1 {{step function 'f' has no compute ops}}
func.func @f() attributes {attn.step} {
  return
}
}
