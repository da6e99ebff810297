// RUN: sh -c 'attnc %s -o %t; echo "exit=$?"' 2>&1 | FileCheck %s

// Kernel functions must take the attention's operands directly and return
// its results; each problem is reported at its location.

// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:47: error: argument #1 of kernel 'extra_arg' must be used exactly once, as an operand of its attn.attention
func.func @extra_arg(%q: tensor<1x1x1x8xf32>, %unused: tensor<1x1x1x8xf32>,
                     %k: tensor<1x1x1x8xf32>, %v: tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32> {
  %o = attn.attention %q, %k, %v : (tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  return %o : tensor<1x1x1x8xf32>
}

// CHECK-DAG: kernel-signature.mlir:[[@LINE+1]]:1: error: kernel 'none' contains 0 attn.attention ops; a kernel function holds exactly one
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
// No IR dumps follow the diagnostics.
// CHECK-NOT: see current operation
// CHECK: exit=1
