// RUN: sh -c 'attnc %s -o %t; echo "exit=$?"' 2>&1 | FileCheck %s

// Verifier errors carry file:line:col in the user's terms and exit with 1.
// CHECK: diagnostics.mlir:[[@LINE+4]]:8: error: 'attn.attention' op query heads (6) must be a multiple of key/value heads (4) for grouped-query attention
// CHECK: exit=1
func.func @bad_gqa(%q: tensor<1x1x6x8xf32>, %k: tensor<1x1x4x8xf32>,
                   %v: tensor<1x1x4x8xf32>) -> tensor<1x1x6x8xf32> {
  %o = attn.attention %q, %k, %v : (tensor<1x1x6x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x6x8xf32>
  return %o : tensor<1x1x6x8xf32>
}
