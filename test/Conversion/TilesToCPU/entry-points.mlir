// RUN: attn-opt %s --attn-host-to-tiles --attn-host-to-llvm | FileCheck %s

// Every kernel gets packed entry points: args[i] is the descriptor of
// argument i (here q, k, v, o, lse), plus the work-item range for __run.

// CHECK-LABEL: llvm.func @prefill__run(%arg0: !llvm.ptr, %arg1: i64, %arg2: i64)
// CHECK-COUNT-5: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.call @_mlir_ciface_prefill(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %arg1, %arg2)
// CHECK-LABEL: llvm.func @prefill__work_items(%arg0: !llvm.ptr) -> i64
// CHECK: %[[N:.*]] = llvm.call @_mlir_ciface_prefill__count
// CHECK: llvm.return %[[N]] : i64
func.func @prefill(%q: tensor<?x?x8x64xbf16>, %k: tensor<?x?x8x64xbf16>,
                   %v: tensor<?x?x8x64xbf16>)
    -> (tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>)
      -> (tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>)
  return %o, %lse : tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>
}
