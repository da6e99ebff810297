// RUN: attn-opt %s --attn-lower-to-tiles=block-kv=16 --canonicalize | FileCheck %s

// A sliding window skips the tiles below it by the loop's start; sink tiles
// run first, then the contiguous range [window start, causal end).

// CHECK-LABEL: func.func @window_sinks
// Window lower edge: first tile = max(0, firstPos - 32) / 16.
// CHECK: %[[LO:.*]] = arith.subi %{{.*}}, %c32 : index
// CHECK: %[[LO0:.*]] = arith.maxsi %[[LO]], %c0 : index
// CHECK: %[[LOK:.*]] = arith.minsi %{{.*}}, %[[LO0]] : index
// CHECK: %[[FIRST:.*]] = arith.divsi %[[LOK]], %c16 : index
// Sink tiles: ceil(min(4, causal end) / 16), never past the first tile of a
// non-empty window range.
// CHECK: %[[S:.*]] = arith.minsi %{{.*}}, %c4 : index
// CHECK: %[[SN:.*]] = arith.ceildivsi %[[S]], %c16 : index
// CHECK: %[[SNW:.*]] = arith.minsi %[[SN]], %[[FIRST]] : index
// CHECK: %[[MAIN:.*]] = arith.cmpi slt, %[[FIRST]], %{{.*}} : index
// CHECK: %[[NSINK:.*]] = arith.select %[[MAIN]], %[[SNW]], %[[SN]] : index
// CHECK: %[[NT:.*]] = arith.addi %[[NSINK]], %{{.*}} : index
// CHECK: scf.for %[[STEP:.*]] = %c0 to %[[NT]] step %c1 iter_args
// CHECK: %[[ISSINK:.*]] = arith.cmpi slt, %[[STEP]], %[[NSINK]] : index
// CHECK: arith.select %[[ISSINK]], %[[STEP]], %{{.*}} : index
// Element predicate on partial tiles: j >= pos - 32 or j < 4.
// CHECK: arith.cmpi sge, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.cmpi slt, %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.ori %{{.*}}, %{{.*}} : vector<16xi1>
func.func @window_sinks(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x2x64xf16>,
                        %v: tensor<?x?x2x64xf16>) -> tensor<?x?x4x64xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<window = 32, sinks = 4>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
      -> tensor<?x?x4x64xf16>
  return %o : tensor<?x?x4x64xf16>
}

// Top-left alignment: positions are the query indices themselves (no
// kLen - qLen offset).
// CHECK-LABEL: func.func @top_left
// CHECK-NOT: arith.subi %{{.*}}, %{{.*}} : index
// CHECK: scf.parallel
func.func @top_left(%q: tensor<1x?x1x16xf32>, %k: tensor<1x?x1x16xf32>,
                    %v: tensor<1x?x1x16xf32>) -> tensor<1x?x1x16xf32> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal, top_left>}
      : (tensor<1x?x1x16xf32>, tensor<1x?x1x16xf32>, tensor<1x?x1x16xf32>)
      -> tensor<1x?x1x16xf32>
  return %o : tensor<1x?x1x16xf32>
}
