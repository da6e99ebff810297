// RUN: sh -c 'attnc %s -o %t; echo "exit=$?"' 2>&1 | FileCheck %s

// Kernel functions must take the attention's operands directly and return
// its results; each problem is reported at its location.

// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:47: error: argument #1 of kernel 'extra_arg' must be used exactly once, as an operand of its attn.attention
func.func @extra_arg(%q: tensor<1x1x1x8xf32>, %unused: tensor<1x1x1x8xf32>,
                     %k: tensor<1x1x1x8xf32>, %v: tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32> {
  %o = attn.attention %q, %k, %v : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return %o : tensor<1x1x1x8xf32>
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:1: error: kernel 'none' contains 0 attn.attention, attn.paged_attention, attn.kv_append, attn.merge or attn.select_pages ops; a kernel function holds exactly one
func.func @none(%q: tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32> {
  return %q : tensor<1x1x1x8xf32>
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+2]]:16: error: two arguments of kernel 'dup' are named 'x'; set distinct attn.name attributes
func.func @dup(%q: tensor<1x1x1x8xf32> {attn.name = "x"},
               %k: tensor<1x1x1x8xf32> {attn.name = "x"},
               %v: tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32> {
  %o = attn.attention %q, %k, %v : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return %o : tensor<1x1x1x8xf32>
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+3]]:3: error: result #1 of kernel 'twice' returns the same value as an earlier result; return each attention result once
func.func @twice(%q: tensor<?x?x1x8xf32>, %k: tensor<?x?x1x8xf32>, %v: tensor<?x?x1x8xf32>) -> (tensor<?x?x1x8xf32>, tensor<?x?x1x8xf32>) {
  %o = attn.attention %q, %k, %v : (tensor<?x?x1x8xf32>, tensor<?x?x1x8xf32>, tensor<?x?x1x8xf32>) -> tensor<?x?x1x8xf32>
  return %o, %o : tensor<?x?x1x8xf32>, tensor<?x?x1x8xf32>
}
// The same rules hold for the cache ops; a cache counts as its component
// buffers when names are compared.
!f16cache = !attn.kv_cache<page_size = 16, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>
// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:71: error: argument #2 of kernel 'append_extra' must be used exactly once, as an operand of its attn.kv_append
func.func @append_extra(%k: tensor<?x1x8xf16>, %v: tensor<?x1x8xf16>, %unused: tensor<?xi32>,
                        %slots: tensor<?xi32>, %cache: !f16cache) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x1x8xf16>, tensor<?x1x8xf16>, tensor<?xi32>, !f16cache
  return
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+2]]:48: error: two arguments of kernel 'append_clash' are named 'cache_k_pages'; set distinct attn.name attributes
func.func @append_clash(%k: tensor<?x1x8xf16> {attn.name = "cache_k_pages"}, %v: tensor<?x1x8xf16>,
                        %slots: tensor<?xi32>, %cache: !f16cache) {
  attn.kv_append %k, %v, %slots into %cache : tensor<?x1x8xf16>, tensor<?x1x8xf16>, tensor<?xi32>, !f16cache
  return
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:1: error: kernel 'two_ops' contains 2 attn.attention, attn.paged_attention, attn.kv_append, attn.merge or attn.select_pages ops; a kernel function holds exactly one
func.func @two_ops(%q: tensor<1x1x1x8xf32>, %po: tensor<2x1x1x8xf32>, %plse: tensor<2x1x1xf32>)
    -> (tensor<1x1x1x8xf32>, tensor<1x1x8xf32>) {
  %o = attn.attention %q, %q, %q : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  %m = attn.merge %po, %plse : (tensor<2x1x1x8xf32>, tensor<2x1x1xf32>) -> tensor<1x1x8xf32>
  return %o, %m : tensor<1x1x1x8xf32>, tensor<1x1x8xf32>
}

// No IR dumps follow the diagnostics.
// CHECK-NOT: see current operation
// CHECK: exit=1
