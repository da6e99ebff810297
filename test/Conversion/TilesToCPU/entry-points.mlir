// RUN: attn-opt %s --attn-host-to-tiles --attn-host-to-llvm | FileCheck %s

// Every kernel gets packed entry points: args[i] is the descriptor of
// argument i (here q, k, v, o, lse), then the phase and, for __run, the
// work-item range. Only the entry points are exported: the kernel and its
// C interface are internal, so a kernel named like a libc function cannot be
// interposed (the kernel @select below).

// CHECK-DAG: llvm.func internal @prefill(
// CHECK-DAG: llvm.func internal @_mlir_ciface_prefill(
// CHECK-DAG: llvm.func internal @select(
// CHECK-LABEL: llvm.func @prefill__run(%arg0: !llvm.ptr, %arg1: i64, %arg2: i64, %arg3: i64)
// CHECK-COUNT-5: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.call @_mlir_ciface_prefill(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %arg1, %arg2, %arg3)
// CHECK-LABEL: llvm.func @prefill__work_items(%arg0: !llvm.ptr, %arg1: i64) -> i64
// CHECK-COUNT-5: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[N:.*]] = llvm.call @_mlir_ciface_prefill__count(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %arg1)
// CHECK: llvm.return %[[N]] : i64
func.func @prefill(%q: tensor<?x?x8x64xbf16>, %k: tensor<?x?x8x64xbf16>,
                   %v: tensor<?x?x8x64xbf16>)
    -> (tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>) {
  %o, %lse = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>, tensor<?x?x8x64xbf16>)
      -> (tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>)
  return %o, %lse : tensor<?x?x8x64xbf16>, tensor<?x8x?xf32>
}

// Scratch buffers follow the results in args[]: x, out, then partial.
// CHECK-LABEL: llvm.func @two_phase__run(%arg0: !llvm.ptr, %arg1: i64, %arg2: i64, %arg3: i64)
// CHECK-COUNT-3: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK-NOT: llvm.load
// CHECK: llvm.call @_mlir_ciface_two_phase(%{{.*}}, %{{.*}}, %{{.*}}, %arg1, %arg2, %arg3)
// CHECK-LABEL: llvm.func @two_phase__work_items(%arg0: !llvm.ptr, %arg1: i64) -> i64
// CHECK: llvm.call @_mlir_ciface_two_phase__count(%{{.*}}, %{{.*}}, %{{.*}}, %arg1)
func.func @two_phase(%x: memref<?xf32>) -> memref<?xf32>
    attributes {attn.phases = 2 : i64,
                attn.scratch = [{name = "partial", dtype = "f32", shape = ["n"]}]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  %partial = memref.alloc(%n) : memref<?xf32>
  %out = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf32>
    memref.store %v, %partial[%i] : memref<?xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %partial[%i] : memref<?xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return %out : memref<?xf32>
}

func.func @select(%q: tensor<?x?x1x64xf32>, %k: tensor<?x?x1x64xf32>,
                  %v: tensor<?x?x1x64xf32>) -> tensor<?x?x1x64xf32> {
  %o = attn.attention %q, %k, %v
      : (tensor<?x?x1x64xf32>, tensor<?x?x1x64xf32>, tensor<?x?x1x64xf32>)
      -> tensor<?x?x1x64xf32>
  return %o : tensor<?x?x1x64xf32>
}
