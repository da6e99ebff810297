// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s
// RUN: attn-opt %s -mlir-print-op-generic | attn-opt | FileCheck %s
// The copies have memory effects: canonicalization and CSE keep every one,
// even those whose result is unused, and in place.
// RUN: attn-opt %s -canonicalize -cse | FileCheck %s --check-prefix=KEEP

!cache = !attn.kv_cache<page_size = 16, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>

// CHECK-LABEL: func.func @places
// CHECK-SAME: attn.place = #attn.place<hbm, 4096>
// CHECK-SAME: attn.place = #attn.place<host, 0>
// CHECK-SAME: attn.place = #attn.place<host, 9223372036854775807>
func.func @places(%a: tensor<4xf32> {attn.place = #attn.place<hbm, 4096>},
                  %b: tensor<4xf32> {attn.place = #attn.place<host, 0>},
                  %c: tensor<4xf32> {attn.place = #attn.place<host, 9223372036854775807>}) {
  return
}

// CHECK-LABEL: func.func @copies
// CHECK: %[[C:.*]] = attn.copy_start %{{.*}} to #attn.place<hbm, 4096> {attn.transfer_seconds = 1.000000e-03 : f64} : tensor<2x8xf16>
// CHECK: %[[Y:.*]] = attn.copy_done %[[C]] {attn.exposed_seconds = 5.000000e-04 : f64} : !attn.copy<tensor<2x8xf16>>
// CHECK: %[[D:.*]] = attn.copy_start %{{.*}} to #attn.place<hbm, 0> : !attn.kv_cache<page_size = 16, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>
// CHECK: %[[Z:.*]] = attn.copy_done %[[D]] : !attn.copy<!attn.kv_cache<page_size = 16, kv_heads = 1, head_dim = 8, layout = nhd, storage = f16>>
// CHECK: %[[E:.*]] = attn.copy_start %[[Y]] to #attn.place<host, 64> : tensor<2x8xf16>
// CHECK: attn.copy_done %[[E]] : !attn.copy<tensor<2x8xf16>>
// CHECK: return %[[Y]], %[[Z]]
// KEEP-LABEL: func.func @copies
// KEEP-COUNT-3: attn.copy_start
// KEEP-NOT: attn.copy_start
// KEEP: return
func.func @copies(%x: tensor<2x8xf16> {attn.place = #attn.place<host, 0>},
                  %cache: !cache {attn.place = #attn.place<host, 64>})
    -> (tensor<2x8xf16>, !cache) {
  %c = attn.copy_start %x to #attn.place<hbm, 4096> {attn.transfer_seconds = 1.0e-3 : f64} : tensor<2x8xf16>
  %y = attn.copy_done %c {attn.exposed_seconds = 5.0e-4 : f64} : !attn.copy<tensor<2x8xf16>>
  %d = attn.copy_start %cache to #attn.place<hbm, 0> : !cache
  %z = attn.copy_done %d : !attn.copy<!cache>
  %e = attn.copy_start %y to #attn.place<host, 64> : tensor<2x8xf16>
  %unused = attn.copy_done %e : !attn.copy<tensor<2x8xf16>>
  return %y, %z : tensor<2x8xf16>, !cache
}

// The handle is a value like any other (an argument's type here).
// CHECK-LABEL: func.func private @handle_type
// CHECK-SAME: !attn.copy<tensor<1x2x3xi8>>
func.func private @handle_type(!attn.copy<tensor<1x2x3xi8>>)
