// RUN: attn-opt %s --attn-plan-tiles -o %t.mlir
// RUN: attnc %t.mlir --emit=manifest | %python %S/Inputs/manifest_lines.py | FileCheck %s
// RUN: rm -rf %t.dir && attnc %t.mlir -o %t.dir
// RUN: %python %S/Inputs/manifest_lines.py < %t.dir/manifest.json | FileCheck %s
// RUN: not attnc %S/Inputs/bad_tile_plan.mlir --emit=manifest 2>&1 | FileCheck %s --check-prefix=BAD

// The tile plan of attn-plan-tiles reaches manifest.json as each kernel's
// tile_plan object; a kernel without one has none. The host library is
// built as always (the plan is for a GPU kernel).

// CHECK-LABEL: kernel prefill
// CHECK: kind: "attention"
// CHECK: tile_plan: {"block_kv": 64, "block_q": 128, "buffers": [{"bytes": 32768, "name": "q"}, {"bytes": 49152, "name": "k"}, {"bytes": 49152, "name": "v"}], "smem_bytes": 131072, "stages": 3}
// CHECK-LABEL: kernel decode
// CHECK: kind: "paged_attention"
// CHECK: tile_plan: {"block_kv": 128, "block_q": 16, "buffers": [{"bytes": 4096, "name": "q"}, {"bytes": 49152, "name": "k"}, {"bytes": 49152, "name": "v"}, {"bytes": 6144, "name": "k_scale"}, {"bytes": 768, "name": "v_scale"}], "smem_bytes": 109312, "stages": 3}
// CHECK-LABEL: kernel on_host
// CHECK-NOT: tile_plan
// CHECK: arg

// BAD: error: attn.tile_plan = {block_q = 128 : i64}; expected {block_q, block_kv, stages, smem_bytes, buffers = [{name, bytes}, ...]} as attn-plan-tiles writes it

!i8 = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16>

module attributes {attn.target = #attn.target<"h100-80gb">} {
  func.func @prefill(%q: tensor<?x?x32x128xf16>, %k: tensor<?x?x8x128xf16>,
                     %v: tensor<?x?x8x128xf16>) -> tensor<?x?x32x128xf16> {
    %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
        : (tensor<?x?x32x128xf16>, tensor<?x?x8x128xf16>, tensor<?x?x8x128xf16>)
        -> tensor<?x?x32x128xf16>
    return %o : tensor<?x?x32x128xf16>
  }
  func.func @decode(%q: tensor<?x32x128xf16>, %cache: !i8, %indptr: tensor<?xi32>,
                    %indices: tensor<?xi32>, %last: tensor<?xi32>) -> tensor<?x32x128xf16> {
    %o = attn.paged_attention %q, %cache, %indptr, %indices, %last
        : (tensor<?x32x128xf16>, !i8, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>)
        -> tensor<?x32x128xf16>
    return %o : tensor<?x32x128xf16>
  }
  func.func @on_host(%q: tensor<?x?x8x64xf16>, %k: tensor<?x?x8x64xf16>,
                     %v: tensor<?x?x8x64xf16>) -> tensor<?x?x8x64xf16>
      attributes {attn.target = #attn.target<"host">} {
    %o = attn.attention %q, %k, %v
        : (tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>, tensor<?x?x8x64xf16>)
        -> tensor<?x?x8x64xf16>
    return %o : tensor<?x?x8x64xf16>
  }
}
