// RUN: attn-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{unknown target preset 'h100'; known presets: h100-80gb, a100-80gb, h200, host}}
module attributes {attn.target = #attn.target<"h100">} {}

// -----

// expected-error @+1 {{unknown target key 'smem'; expected a preset name or sm_count, tensor_flops, smem_per_block, smem_per_sm, hbm_bytes, hbm_bandwidth, host_bytes, link_bandwidth}}
module attributes {attn.target = #attn.target<smem = 1>} {}

// -----

// expected-error @+1 {{target key 'sm_count' given twice}}
module attributes {attn.target = #attn.target<sm_count = 1, sm_count = 2>} {}

// -----

// expected-error @+1 {{target is missing 'link_bandwidth'}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 1>} {}

// -----

// expected-error @+1 {{target hbm_bandwidth must be >= 0, got -5}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = -5, host_bytes = 1, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target host_bytes must be positive}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 0, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target hbm_bytes must be positive when sm_count > 0}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 0, hbm_bandwidth = 1, host_bytes = 1, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target link_bandwidth = 5 needs a device; a host-only target (sm_count = 0) has no device figures}}
module attributes {attn.target = #attn.target<sm_count = 0, tensor_flops = 0, smem_per_block = 0, smem_per_sm = 0, hbm_bytes = 0, hbm_bandwidth = 0, host_bytes = 1, link_bandwidth = 5>} {}

// -----

// expected-error @+1 {{target smem_per_block (2048) exceeds smem_per_sm (1024)}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 1, smem_per_block = 2048, smem_per_sm = 1024, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 1, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target is missing 'tensor_flops'}}
module attributes {attn.target = #attn.target<sm_count = 1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 1, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target tensor_flops must be positive when sm_count > 0}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = 0, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 1, link_bandwidth = 1>} {}

// -----

// expected-error @+1 {{target tensor_flops = 7 needs a device; a host-only target (sm_count = 0) has no device figures}}
module attributes {attn.target = #attn.target<sm_count = 0, tensor_flops = 7, smem_per_block = 0, smem_per_sm = 0, hbm_bytes = 0, hbm_bandwidth = 0, host_bytes = 1, link_bandwidth = 0>} {}

// -----

// expected-error @+1 {{target tensor_flops must be >= 0, got -1}}
module attributes {attn.target = #attn.target<sm_count = 1, tensor_flops = -1, smem_per_block = 1, smem_per_sm = 1, hbm_bytes = 1, hbm_bandwidth = 1, host_bytes = 1, link_bandwidth = 1>} {}
