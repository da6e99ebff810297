// RUN: attn-opt %s --attn-lower-to-tiles="block-kv=16 qk-form=transposed" --canonicalize | FileCheck %s
// RUN: attn-opt %s --attn-lower-to-tiles="block-kv=16 qk-form=dot" --canonicalize | FileCheck %s --check-prefix=DOT
// RUN: attn-opt %s --attn-lower-to-tiles=block-kv=16 --canonicalize | FileCheck %s --check-prefix=AUTO

// GQA 4/2: the two query heads of one KV head are the rows of one tile, so
// every K/V tile is loaded once per group; 32 query tokens x 2 heads = 64 rows.

// CHECK-LABEL: func.func @causal
// CHECK-SAME: attn.tile = {block_kv = 16 : i64, block_q = 32 : i64, head_dim_chunk = 64 : i64, qk_form = "transposed", workspace_bytes = 41024 : i64}
// CHECK-DAG: %[[Q:.*]] = bufferization.to_buffer %arg0 read_only
// CHECK-DAG: %[[K:.*]] = bufferization.to_buffer %arg1 read_only
// CHECK-DAG: %[[V:.*]] = bufferization.to_buffer %arg2 read_only
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?x4x64xf16>
// Outer parallel loop: (batch, KV head, query tile).
// CHECK: scf.parallel (%[[B:.*]], %[[G:.*]], %[[T:.*]]) = (%c0, %c0, %c0) to (%{{.*}}, %c2, %{{.*}})
// Fixed-size private workspace; no size depends on a sequence length.
// (Q 64x64, K^T 64x16, V 16x64, one row of P, accumulator 64x64: 41024 bytes.)
// CHECK: memref.alloca() : memref<64x64xf32>
// CHECK-NEXT: memref.alloca() : memref<64x16xf32>
// CHECK-NEXT: memref.alloca() : memref<16x64xf32>
// CHECK-NEXT: memref.alloca() : memref<16xf32>
// CHECK-NEXT: memref.alloca() : memref<64x64xf32>
// CHECK-NOT: memref.alloca() : memref<?
// Q is staged once per tile, pre-scaled by scale * log2(e) = 0.125 * 1.4427.
// CHECK: vector.load %[[Q]][%[[B]], {{.*}}] : memref<?x?x4x64xf16>, vector<64xf16>
// CHECK: arith.mulf %{{.*}}, %{{.*}} : vector<64xf32>
// Causal block predicate: the KV loop stops at the tile's last visible key.
// CHECK: %[[LAST:.*]] = arith.minsi %{{.*}}, %{{.*}} : index
// CHECK: %[[NT:.*]] = arith.ceildivsi %[[LAST]], %c16 : index
// The KV-tile loop carries the running row max and row sum.
// CHECK: %[[STATE:.*]]:2 = scf.for %{{.*}} = %c0 to %{{.*}} step %c1 iter_args(%[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}) -> (vector<64xf32>, vector<64xf32>)
// Tile load: K and V converted to f32 once per tile.
// CHECK: vector.load %[[K]]
// CHECK: arith.extf
// CHECK: vector.load %[[V]]
// Whole-tile test decides whether the element predicate runs.
// CHECK: %[[FULL:.*]] = arith.andi
// Per row: scores as broadcast-FMAs over K^T (a vector of 16 keys), masked
// only on partial tiles.
// CHECK: scf.for
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c1 iter_args(%{{.*}} = %{{.*}}) -> (vector<16xf32>)
// CHECK: vector.broadcast %{{.*}} : f32 to vector<16xf32>
// CHECK: vector.fma %{{.*}} : vector<16xf32>
// CHECK: scf.if %[[FULL]] -> (vector<16xf32>)
// CHECK: } else {
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<16xi1>, vector<16xf32>
// Online softmax in the log2 domain.
// CHECK: vector.reduction <maximumf>
// CHECK: arith.maximumf
// CHECK: math.exp2 %{{.*}} : vector<16xf32>
// CHECK: %[[ALPHA:.*]] = math.exp2 %{{.*}} : f32
// CHECK: vector.reduction <add>
// P.V accumulation over the tile's keys only.
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 iter_args(%{{.*}} = %{{.*}}) -> (vector<64xf32>)
// CHECK: vector.fma
// CHECK: vector.insert %{{.*}}, %{{.*}} [%{{.*}}] : f32 into vector<64xf32>
// Epilogue: 1/l, zero for rows that saw no key, rounded to f16.
// CHECK: arith.cmpf ogt
// CHECK: arith.truncf %{{.*}} : vector<64xf32> to vector<64xf16>
// CHECK: vector.store %{{.*}}, %[[OUT]]
// CHECK: bufferization.to_tensor %[[OUT]] restrict writable
func.func @causal(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x2x64xf16>,
                  %v: tensor<?x?x2x64xf16>) -> tensor<?x?x4x64xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>, scale = 0.125 : f32}
      : (tensor<?x?x4x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
      -> tensor<?x?x4x64xf16>
  return %o : tensor<?x?x4x64xf16>
}

// The dot form (decode-shaped tiles) reduces one dot product per row and key
// and keeps K row-major.
// DOT-LABEL: func.func @causal
// DOT-SAME: qk_form = "dot"
// DOT: scf.for %{{.*}} iter_args
// DOT: vector.fma %{{.*}} : vector<64xf32>
// DOT: vector.reduction <add>, %{{.*}} : vector<64xf32> into f32
// DOT: memref.store

// With a dynamic query length (auto), a work item's row count picks the form:
// more than 16 rows take the transposed KV loop, fewer (decode) the dot loop.
// AUTO-LABEL: func.func @causal
// AUTO-SAME: qk_form = "by_rows"
// AUTO: %[[ROWS:.*]] = arith.muli %{{.*}}, %c2 : index
// AUTO: %[[MANY:.*]] = arith.cmpi sgt, %[[ROWS]], %c16 : index
// AUTO: scf.if %[[MANY]] -> (vector<64xf32>) {
// AUTO: scf.for {{.*}} -> (vector<16xf32>)
// AUTO: } else {
// AUTO: vector.reduction <add>
// AUTO: return

// Without a mask the KV loop runs over every tile of the sequence and no
// causal comparison is emitted (only the sequence-tail test).
// CHECK-LABEL: func.func @unmasked
// CHECK: %[[KLEN:.*]] = tensor.dim %arg1, %c1 : tensor<?x?x1x80xf32>
// CHECK: %[[NT:.*]] = arith.ceildivsi %[[KLEN]], %c16 : index
// CHECK: %[[N:.*]] = arith.maxsi %[[NT]], %c0 : index
// CHECK: scf.for %{{.*}} = %c0 to %[[N]] step %c1 iter_args
// CHECK-NOT: arith.cmpi sle, %{{.*}} : vector<16xi32>
// CHECK: arith.cmpi slt, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK-NOT: arith.cmpi sle, %{{.*}} : vector<16xi32>
// CHECK: return
func.func @unmasked(%q: tensor<?x?x1x80xf32>, %k: tensor<?x?x1x80xf32>,
                    %v: tensor<?x?x1x80xf32>) -> tensor<?x?x1x80xf32> {
  %o = attn.attention %q, %k, %v
      : (tensor<?x?x1x80xf32>, tensor<?x?x1x80xf32>, tensor<?x?x1x80xf32>)
      -> tensor<?x?x1x80xf32>
  return %o : tensor<?x?x1x80xf32>
}

// Soft-capping: Q is pre-scaled by scale / softcap and tanh(s) * softcap *
// log2(e) follows the dot products.
// CHECK-LABEL: func.func @softcap
// CHECK: math.tanh %{{.*}} : vector<16xf32>
// CHECK-NEXT: arith.mulf
func.func @softcap(%q: tensor<1x3x2x32xf32>, %k: tensor<1x5x2x32xf32>,
                   %v: tensor<1x5x2x32xf32>) -> tensor<1x3x2x32xf32> {
  %o = attn.attention %q, %k, %v {softcap = 30.0 : f32}
      : (tensor<1x3x2x32xf32>, tensor<1x5x2x32xf32>, tensor<1x5x2x32xf32>)
      -> tensor<1x3x2x32xf32>
  return %o : tensor<1x3x2x32xf32>
}
