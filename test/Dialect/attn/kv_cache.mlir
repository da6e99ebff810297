// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s

// CHECK-LABEL: func.func @types
// CHECK-SAME: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>
// CHECK-SAME: !attn.kv_cache<page_size = 1, kv_heads = 1, head_dim = 64, layout = hnd, storage = bf16>
// CHECK-SAME: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E4M3FN>
// CHECK-SAME: !attn.kv_cache<page_size = 256, kv_heads = 2, head_dim = 80, layout = hnd, storage = f8E5M2>
// The K group defaults to the page.
// CHECK-SAME: !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 64>
// CHECK-SAME: !attn.kv_cache<page_size = 32, kv_heads = 4, head_dim = 96, layout = hnd, storage = i4, k_group = 8>
// CHECK-SAME: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, k_group = 16, residual = 128>
// CHECK-SAME: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E5M2, residual = 1>
func.func @types(
    %a: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f16>,
    %b: !attn.kv_cache<layout = hnd, storage = bf16, page_size = 1, kv_heads = 1, head_dim = 64>,
    %c: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E4M3FN>,
    %d: !attn.kv_cache<page_size = 256, kv_heads = 2, head_dim = 80, layout = hnd, storage = f8E5M2>,
    %e: !attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8>,
    %f: !attn.kv_cache<page_size = 32, kv_heads = 4, head_dim = 96, layout = hnd, storage = i4, k_group = 8>,
    %g: !attn.kv_cache<residual = 128, page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4>,
    %h: !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = f8E5M2, residual = 1>) {
  return
}

!cache = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i8, k_group = 16>

// CHECK-LABEL: func.func @append
// CHECK: attn.kv_append %{{.*}}, %{{.*}}, %{{.*}} into %{{.*}} : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !attn.kv_cache<
func.func @append(%k: tensor<?x8x128xf16>, %v: tensor<?x8x128xf16>, %slots: tensor<?xi32>, %cache: !cache) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !cache
  return
}

// CHECK-LABEL: func.func @decode
// CHECK: attn.paged_attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {mask = #attn.mask<causal>} : (tensor<?x32x128xf16>, !attn.kv_cache<{{.*}}>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
func.func @decode(%q: tensor<?x32x128xf16>, %cache: !cache, %indptr: tensor<?xi32>,
                  %indices: tensor<?xi32>, %last: tensor<?xi32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>) {
  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last {mask = #attn.mask<causal>}
      : (tensor<?x32x128xf16>, !cache, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
  return %o, %lse : tensor<?x32x128xf16>, tensor<32x?xf32>
}

// CHECK-LABEL: func.func @prefill
// CHECK: attn.paged_attention {{.*}} qo_indptr(%{{.*}}) {mask = #attn.mask<window = 128, sinks = 4>, softcap = 5.000000e+01 : f32}
func.func @prefill(%q: tensor<?x4x128xbf16>, %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 128, layout = hnd, storage = bf16>,
                   %indptr: tensor<?xi32>, %indices: tensor<?xi32>, %last: tensor<?xi32>, %qo: tensor<?xi32>) -> tensor<?x4x128xbf16> {
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)
      {mask = #attn.mask<window = 128, sinks = 4>, softcap = 50.0 : f32}
      : (tensor<?x4x128xbf16>, !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 128, layout = hnd, storage = bf16>,
         tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x128xbf16>
  return %o : tensor<?x4x128xbf16>
}

// CHECK-LABEL: func.func @merge
// CHECK: attn.merge %{{.*}}, %{{.*}} : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
func.func @merge(%po: tensor<?x?x32x128xf32>, %plse: tensor<?x32x?xf32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>) {
  %o, %lse = attn.merge %po, %plse : (tensor<?x?x32x128xf32>, tensor<?x32x?xf32>) -> (tensor<?x32x128xf16>, tensor<32x?xf32>)
  return %o, %lse : tensor<?x32x128xf16>, tensor<32x?xf32>
}

!kivi = !attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = 128, layout = nhd, storage = i4, k_group = 16, residual = 64>

// CHECK-LABEL: func.func @residual
// CHECK: attn.kv_append %{{.*}}, %{{.*}}, %{{.*}} ring_slots(%{{.*}} : tensor<?xi32>) into %{{.*}} :
// CHECK: attn.paged_attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} kv_rings(%{{.*}}) :
func.func @residual(%k: tensor<?x8x128xf16>, %slots: tensor<?xi32>, %ring_slots: tensor<?xi32>,
                    %q: tensor<?x32x128xf16>, %cache: !kivi, %indptr: tensor<?xi32>,
                    %indices: tensor<?xi32>, %last: tensor<?xi32>, %rings: tensor<?xi32>) -> tensor<?x32x128xf16> {
  attn.kv_append %k, %k, %slots ring_slots(%ring_slots : tensor<?xi32>) into %cache
      : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi32>, !kivi
  %o = attn.paged_attention %q, %cache, %indptr, %indices, %last kv_rings(%rings)
      : (tensor<?x32x128xf16>, !kivi, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x32x128xf16>
  return %o : tensor<?x32x128xf16>
}
