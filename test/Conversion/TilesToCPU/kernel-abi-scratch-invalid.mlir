// RUN: attn-opt %s -split-input-file --attn-cpu-kernel-abi -verify-diagnostics

// A buffer allocated outside the work loops that is not a result must be
// listed in attn.scratch, or the runtime would not know to provide it.
// expected-error @+1 {{kernel 'unlisted' allocates 2 buffers outside its work loops that are not results, but its attn.scratch attribute lists 1; every such buffer must be a scratch buffer the manifest describes}}
func.func @unlisted(%x: memref<?xf32>) -> memref<?xf32>
    attributes {attn.scratch = [{name = "a", dtype = "f32", shape = ["n"]}]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  %a = memref.alloc(%n) : memref<?xf32>
  %b = memref.alloc(%n) : memref<?xf32>
  %out = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf32>
    memref.store %v, %a[%i] : memref<?xf32>
    memref.store %v, %b[%i] : memref<?xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %a[%i] : memref<?xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return %out : memref<?xf32>
}

// -----

// No attribute at all counts as an empty list.
// expected-error @+1 {{kernel 'no_list' allocates 1 buffers outside its work loops that are not results, but its attn.scratch attribute lists 0}}
func.func @no_list(%x: memref<?xf32>) -> memref<?xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  %a = memref.alloc(%n) : memref<?xf32>
  %out = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf32>
    memref.store %v, %a[%i] : memref<?xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return %out : memref<?xf32>
}

// -----

func.func @wrong_dtype(%x: memref<?xf32>) -> memref<?xf32>
    attributes {attn.scratch = [{name = "a", dtype = "f16", shape = ["n"]}]} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  // expected-error @+1 {{scratch buffer #0 of kernel 'wrong_dtype' 'a' is 'memref<?xf32>' but attn.scratch says dtype "f16"}}
  %a = memref.alloc(%n) : memref<?xf32>
  %out = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf32>
    memref.store %v, %a[%i] : memref<?xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return %out : memref<?xf32>
}

// -----

// The phase count the lowering declares must match the work loops.
// expected-error @+1 {{kernel 'folded' declares attn.phases = 2 but has 1 top-level scf.parallel work loops (one per phase); was a single-iteration phase loop folded away?}}
func.func @folded(%x: memref<?xf32>) -> memref<?xf32> attributes {attn.phases = 2 : i64} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  %out = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return %out : memref<?xf32>
}
