// RUN: not attn-opt %s -attn-verify-plan="target=h900" 2>&1 | FileCheck %s

// An unknown preset in the pass option is an error that lists the presets
// (the same helper as attn-plan-memory's, plan-memory-invalid.mlir).
// CHECK: error: unknown target 'h900' for attn-verify-plan; the presets are h100-80gb, a100-80gb, h200, host
module {
}
