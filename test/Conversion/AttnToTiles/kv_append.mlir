// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles=vector-width=2 --canonicalize --cse | FileCheck %s
// RUN: attn-opt %s --attn-expand-kv-cache --attn-lower-to-tiles --canonicalize --attn-host-to-llvm | FileCheck %s --check-prefix=LLVM

// attn.kv_append: one work item per KV head, the tokens in order inside it
// (the K group scales of a head change token by token); negative slots skip.
// head_dim 16 with vector-width 2: one chunk of 16 channels per vector op.

// LLVM-NOT: attn.kv_append
// LLVM-NOT: unrealized_conversion_cast
// LLVM-DAG: llvm.func @append_f16_nhd
// LLVM-DAG: llvm.func @append_bf16_hnd
// LLVM-DAG: llvm.func @append_e4m3_hnd
// LLVM-DAG: llvm.func @append_e5m2_nhd
// LLVM-DAG: llvm.func @append_i8_nhd
// LLVM-DAG: llvm.func @append_i4_hnd

// CHECK-LABEL: func.func @append_f16_nhd
// CHECK-SAME: %[[KT:[^:]*]]: tensor<?x2x16xf32>, %[[VT:[^:]*]]: tensor<?x2x16xf32>, %[[ST:[^:]*]]: tensor<?xi32>
// CHECK-SAME: %[[KP:.*]]: memref<?x16x2x16xf16> {attn.name = "cache_k_pages", attn.role = "k_pages"}
// CHECK-SAME: %[[VP:.*]]: memref<?x16x2x16xf16> {attn.name = "cache_v_pages", attn.role = "v_pages"}
// CHECK-DAG: %[[K:.*]] = bufferization.to_buffer %[[KT]] read_only
// CHECK-DAG: %[[V:.*]] = bufferization.to_buffer %[[VT]] read_only
// CHECK: scf.parallel (%[[H:.*]]) = (%c0) to (%c2) step (%c1)
// CHECK: %[[N:.*]] = tensor.dim %[[KT]], %c0
// CHECK: scf.for %[[I:.*]] = %c0 to %[[N]] step %c1
// CHECK: %[[SLOT:.*]] = tensor.extract %[[ST]][%[[I]]]
// CHECK: %[[KEEP:.*]] = arith.cmpi sge, %[[SLOT]], %c0_i32 : i32
// CHECK: scf.if %[[KEEP]]
// CHECK: %[[SI:.*]] = arith.index_cast %[[SLOT]]
// CHECK: %[[PAGE:.*]] = arith.divui %[[SI]], %c16
// CHECK: %[[OFF:.*]] = arith.remui %[[SI]], %c16
// CHECK: %[[X:.*]] = vector.load %[[K]][%[[I]], %[[H]], %c0] : memref<?x2x16xf32>, vector<16xf32>
// CHECK: %[[XH:.*]] = arith.truncf %[[X]] : vector<16xf32> to vector<16xf16>
// nhd: [page, offset, head, d]
// CHECK: vector.store %[[XH]], %[[KP]][%[[PAGE]], %[[OFF]], %[[H]], %c0]
// CHECK: vector.load %[[V]][%[[I]], %[[H]], %c0]
// CHECK: vector.store %{{.*}}, %[[VP]][%[[PAGE]], %[[OFF]], %[[H]], %c0]

// CHECK-LABEL: func.func @append_bf16_hnd
// CHECK-SAME: %[[KP:[^:]*]]: memref<?x2x16x16xbf16> {attn.name = "cache_k_pages"
// CHECK: scf.parallel (%[[H:.*]]) =
// CHECK: %[[PAGE:.*]] = arith.divui
// CHECK: %[[OFF:.*]] = arith.remui
// f16 -> bf16 through f32 (exact), one rounding.
// CHECK: %[[X:.*]] = vector.load {{.*}} : memref<?x2x16xf16>, vector<16xf16>
// CHECK: %[[XF:.*]] = arith.extf %[[X]] : vector<16xf16> to vector<16xf32>
// CHECK: %[[XB:.*]] = arith.truncf %[[XF]] : vector<16xf32> to vector<16xbf16>
// hnd: [page, head, offset, d]
// CHECK: vector.store %[[XB]], %[[KP]][%[[PAGE]], %[[H]], %[[OFF]], %c0]

// fp8: x / s_h, then the f32 -> e4m3fn bits in integer arithmetic: sign to
// bit 7; |x| clamped to 448; normal range: exponent rebiased by 120 << 23,
// mantissa rounded to 3 bits (+0x7FFFF + odd, >> 20); below 2^-6: multiples
// of 2^-9 by roundeven; NaN -> 0x7F.
// CHECK-LABEL: func.func @append_e4m3_hnd
// CHECK-SAME: %[[KP:[^:]*]]: memref<?x2x16x16xi8> {attn.name = "cache_k_pages"
// CHECK-SAME: %[[KS:[^:]*]]: memref<2xf32> {attn.name = "cache_k_scale"
// CHECK-SAME: %[[VS:[^:]*]]: memref<2xf32> {attn.name = "cache_v_scale"
// CHECK-DAG: %[[NAN:.*]] = arith.constant dense<127> : vector<16xi32>
// CHECK-DAG: %[[MINNORMBITS:.*]] = arith.constant dense<1015021568> : vector<16xi32>
// CHECK-DAG: %[[MINNORM:.*]] = arith.constant dense<1.562500e-02> : vector<16xf32>
// CHECK-DAG: %[[SUBSTEPS:.*]] = arith.constant dense<5.120000e+02> : vector<16xf32>
// CHECK-DAG: %[[HALF:.*]] = arith.constant dense<524287> : vector<16xi32>
// CHECK-DAG: %[[SHIFT:.*]] = arith.constant dense<20> : vector<16xi32>
// CHECK-DAG: %[[REBIAS:.*]] = arith.constant dense<1006632960> : vector<16xi32>
// CHECK-DAG: %[[MAX:.*]] = arith.constant dense<4.480000e+02> : vector<16xf32>
// CHECK-DAG: %[[SIGNBIT:.*]] = arith.constant dense<128> : vector<16xi32>
// CHECK: scf.parallel (%[[H:.*]]) =
// CHECK: %[[SK:.*]] = memref.load %[[KS]][%[[H]]] : memref<2xf32>
// CHECK: %[[SV:.*]] = memref.load %[[VS]][%[[H]]] : memref<2xf32>
// CHECK: scf.for
// CHECK: %[[PAGE:.*]] = arith.divui
// CHECK: %[[OFF:.*]] = arith.remui
// CHECK: %[[SB:.*]] = vector.broadcast %[[SK]]
// CHECK: %[[XB:.*]] = vector.load {{.*}} : memref<?x2x16xbf16>, vector<16xbf16>
// CHECK: %[[X:.*]] = arith.extf %[[XB]] : vector<16xbf16> to vector<16xf32>
// CHECK: %[[Y:.*]] = arith.divf %[[X]], %[[SB]] : vector<16xf32>
// CHECK: %[[BITS:.*]] = arith.bitcast %[[Y]] : vector<16xf32> to vector<16xi32>
// CHECK: %[[SGN0:.*]] = arith.shrui %[[BITS]], %{{.*}}
// CHECK: %[[SGN:.*]] = arith.andi %[[SGN0]], %[[SIGNBIT]]
// CHECK: %[[ABS:.*]] = math.absf %[[Y]]
// CHECK: %[[MAG:.*]] = arith.minimumf %[[ABS]], %[[MAX]]
// CHECK: %[[MB:.*]] = arith.bitcast %[[MAG]] : vector<16xf32> to vector<16xi32>
// CHECK: %[[R:.*]] = arith.subi %[[MB]], %[[REBIAS]]
// CHECK: %[[ODD0:.*]] = arith.shrui %[[R]], %[[SHIFT]]
// CHECK: %[[ODD:.*]] = arith.andi %[[ODD0]], %{{.*}}
// CHECK: %[[R1:.*]] = arith.addi %[[R]], %[[HALF]]
// CHECK: %[[R2:.*]] = arith.addi %[[R1]], %[[ODD]]
// CHECK: %[[NORMAL:.*]] = arith.shrui %[[R2]], %[[SHIFT]]
// CHECK: %[[SM:.*]] = arith.minimumf %[[MAG]], %[[MINNORM]]
// CHECK: %[[SS:.*]] = arith.mulf %[[SM]], %[[SUBSTEPS]]
// CHECK: %[[SR:.*]] = math.roundeven %[[SS]]
// CHECK: %[[SUB:.*]] = arith.fptosi %[[SR]]
// CHECK: %[[ISSUB:.*]] = arith.cmpi ult, %[[MB]], %[[MINNORMBITS]]
// CHECK: %[[C0:.*]] = arith.select %[[ISSUB]], %[[SUB]], %[[NORMAL]]
// CHECK: %[[ISNAN:.*]] = arith.cmpf uno, %[[Y]], %[[Y]]
// CHECK: %[[C1:.*]] = arith.select %[[ISNAN]], %[[NAN]], %[[C0]]
// CHECK: %[[C2:.*]] = arith.ori %[[C1]], %[[SGN]]
// CHECK: %[[CODE:.*]] = arith.trunci %[[C2]] : vector<16xi32> to vector<16xi8>
// CHECK: vector.store %[[CODE]], %[[KP]][%[[PAGE]], %[[H]], %[[OFF]], %c0] : memref<?x2x16x16xi8>, vector<16xi8>
// CHECK: vector.broadcast %[[SV]]

// e5m2: rebias 112 << 23, 2 mantissa bits (+0xFFFFF + odd, >> 21), clamp to
// 57344, subnormal step 2^-16, NaN -> 0x7E.
// CHECK-LABEL: func.func @append_e5m2_nhd
// CHECK-DAG: arith.constant dense<126> : vector<16xi32>
// CHECK-DAG: arith.constant dense<947912704> : vector<16xi32>
// CHECK-DAG: arith.constant dense<6.553600e+04> : vector<16xf32>
// CHECK-DAG: arith.constant dense<1048575> : vector<16xi32>
// CHECK-DAG: arith.constant dense<21> : vector<16xi32>
// CHECK-DAG: arith.constant dense<939524096> : vector<16xi32>
// CHECK-DAG: arith.constant dense<5.734400e+04> : vector<16xf32>
// CHECK: scf.parallel
// CHECK: math.roundeven
// CHECK: arith.trunci %{{.*}} : vector<16xi32> to vector<16xi8>

// i8, K per channel over groups of 4 slots: a fresh scale at the group's
// first slot, afterwards the scale grows, and when any channel grew the
// group's earlier tokens of this page and head are requantized.
// CHECK-LABEL: func.func @append_i8_nhd
// CHECK-SAME: %[[KP:[^:]*]]: memref<?x16x2x16xi8> {attn.name = "cache_k_pages"
// CHECK-SAME: %[[VP:[^:]*]]: memref<?x16x2x16xi8> {attn.name = "cache_v_pages"
// CHECK-SAME: %[[KS:[^:]*]]: memref<?x4x2x16xf16> {attn.name = "cache_k_scale"
// CHECK-SAME: %[[VS:[^:]*]]: memref<?x16x2xf16> {attn.name = "cache_v_scale"
// CHECK-DAG: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<16xf32>
// CHECK-DAG: %[[LO:.*]] = arith.constant dense<-1.270000e+02> : vector<16xf32>
// CHECK-DAG: %[[HI:.*]] = arith.constant dense<1.270000e+02> : vector<16xf32>
// CHECK: scf.parallel (%[[H:.*]]) = (%c0) to (%c2)
// CHECK: scf.for %[[I:.*]] =
// CHECK: arith.cmpi sge
// CHECK: scf.if
// CHECK: %[[PAGE:.*]] = arith.divui %{{.*}}, %c16
// CHECK: %[[OFF:.*]] = arith.remui %{{.*}}, %c16
// CHECK: %[[GROUP:.*]] = arith.divui %[[OFF]], %c4
// CHECK: %[[INGROUP:.*]] = arith.remui %[[OFF]], %c4
// CHECK: %[[GSTART:.*]] = arith.subi %[[OFF]], %[[INGROUP]]
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[INGROUP]], %c0
// CHECK: %[[LATER:.*]] = arith.cmpi ne, %[[INGROUP]], %c0
// CHECK: %[[LATERV:.*]] = vector.broadcast %[[LATER]] : i1 to vector<16xi1>
// CHECK: %[[FIRSTV:.*]] = vector.broadcast %[[FIRST]] : i1 to vector<16xi1>
// CHECK: %[[X:.*]] = arith.extf
// CHECK: %[[SOLD16:.*]] = vector.load %[[KS]][%[[PAGE]], %[[GROUP]], %[[H]], %c0] : memref<?x4x2x16xf16>, vector<16xf16>
// CHECK: %[[SOLD:.*]] = arith.extf %[[SOLD16]]
// CHECK: %[[AX:.*]] = math.absf %[[X]]
// CHECK: %[[CAND:.*]] = arith.divf %[[AX]], %[[HI]]
// CHECK: %[[ABOVE:.*]] = arith.cmpf ogt, %[[CAND]], %[[SOLD]]
// CHECK: %[[GREW:.*]] = arith.andi %[[LATERV]], %[[ABOVE]]
// CHECK: %[[C16:.*]] = arith.truncf %[[CAND]] : vector<16xf32> to vector<16xf16>
// CHECK: %[[CR:.*]] = arith.extf %[[C16]]
// CHECK: %[[TAKE:.*]] = arith.ori %[[FIRSTV]], %[[ABOVE]]
// CHECK: %[[SNEW:.*]] = arith.select %[[TAKE]], %[[CR]], %[[SOLD]]
// CHECK: %[[ANY:.*]] = vector.reduction <or>, %[[GREW]] : vector<16xi1> into i1
// CHECK: scf.if %[[ANY]] {
// CHECK-NEXT: scf.for %[[T:.*]] = %[[GSTART]] to %[[OFF]] step %c1 {
// CHECK-NEXT: %[[QB:.*]] = vector.load %[[KP]][%[[PAGE]], %[[T]], %[[H]], %c0] : memref<?x16x2x16xi8>, vector<16xi8>
// CHECK-NEXT: %[[Q:.*]] = arith.sitofp %[[QB]]
// CHECK-NEXT: %[[NUM:.*]] = arith.mulf %[[Q]], %[[SOLD]]
// CHECK-NEXT: %[[RATIO:.*]] = arith.divf %[[NUM]], %[[SNEW]]
// CHECK-NEXT: %[[RNE:.*]] = math.roundeven %[[RATIO]]
// CHECK-NEXT: %[[CL0:.*]] = arith.maxnumf %[[RNE]], %[[LO]]
// CHECK-NEXT: %[[CL1:.*]] = arith.minnumf %[[CL0]], %[[HI]]
// CHECK-NEXT: %[[ZS:.*]] = arith.cmpf oeq, %[[SNEW]], %[[ZERO]]
// CHECK-NEXT: %[[RQ:.*]] = arith.select %[[ZS]], %[[ZERO]], %[[CL1]]
// CHECK-NEXT: %[[KEPT:.*]] = arith.select %[[GREW]], %[[RQ]], %[[Q]]
// CHECK-NEXT: %[[QI:.*]] = arith.fptosi %[[KEPT]] : vector<16xf32> to vector<16xi8>
// CHECK-NEXT: vector.store %[[QI]], %[[KP]][%[[PAGE]], %[[T]], %[[H]], %c0]
// CHECK-NEXT: }
// CHECK-NEXT: }
// The new scale (f16), then the new token with it.
// CHECK: %[[S16:.*]] = arith.truncf %[[SNEW]] : vector<16xf32> to vector<16xf16>
// CHECK: vector.store %[[S16]], %[[KS]][%[[PAGE]], %[[GROUP]], %[[H]], %c0]
// CHECK: %[[XS:.*]] = arith.divf %[[X]], %[[SNEW]]
// CHECK: math.roundeven %[[XS]]
// CHECK: arith.maxnumf %{{.*}}, %[[LO]]
// CHECK: arith.minnumf %{{.*}}, %[[HI]]
// CHECK: vector.store %{{.*}}, %[[KP]][%[[PAGE]], %[[OFF]], %[[H]], %c0]
// V per token: the absolute maximum over the channels, s = f16(amax / 127).
// CHECK: %[[VX:.*]] = math.absf
// CHECK: %[[AMAX:.*]] = vector.reduction <maximumf>, %[[VX]] : vector<16xf32> into f32
// CHECK: %[[VSC:.*]] = arith.divf %[[AMAX]], %{{.*}} : f32
// CHECK: %[[VS16:.*]] = arith.truncf %[[VSC]] : f32 to f16
// CHECK: %[[VS32:.*]] = arith.extf %[[VS16]] : f16 to f32
// CHECK: memref.store %[[VS16]], %[[VS]][%[[PAGE]], %[[OFF]], %[[H]]]
// CHECK: %[[VSB:.*]] = vector.broadcast %[[VS32]]
// CHECK: arith.divf %{{.*}}, %[[VSB]]
// CHECK: math.roundeven
// CHECK: vector.store %{{.*}}, %[[VP]][%[[PAGE]], %[[OFF]], %[[H]], %c0] : memref<?x16x2x16xi8>, vector<16xi8>

// i4, hnd: asymmetric, minimum and scale per channel group (K) and token (V),
// two channels per byte, the even channel in the low nibble.
// CHECK-LABEL: func.func @append_i4_hnd
// CHECK-SAME: %[[KP:[^:]*]]: memref<?x2x16x8xi8> {attn.name = "cache_k_pages"
// CHECK-SAME: %[[VP:[^:]*]]: memref<?x2x16x8xi8> {attn.name = "cache_v_pages"
// CHECK-SAME: %[[KS:[^:]*]]: memref<?x2x2x16xf16> {attn.name = "cache_k_scale"
// CHECK-SAME: %[[KM:[^:]*]]: memref<?x2x2x16xf16> {attn.name = "cache_k_min"
// CHECK-SAME: %[[VS:[^:]*]]: memref<?x16x2xf16> {attn.name = "cache_v_scale"
// CHECK-SAME: %[[VM:[^:]*]]: memref<?x16x2xf16> {attn.name = "cache_v_min"
// CHECK-DAG: %[[FOUR:.*]] = arith.constant dense<4> : vector<8xi8>
// CHECK-DAG: %[[LOW:.*]] = arith.constant dense<15> : vector<8xi8>
// CHECK-DAG: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<16xf32>
// CHECK-DAG: %[[FIFTEEN:.*]] = arith.constant dense<1.500000e+01> : vector<16xf32>
// CHECK: scf.parallel (%[[H:.*]]) =
// CHECK: %[[PAGE:.*]] = arith.divui %{{.*}}, %c16
// CHECK: %[[OFF:.*]] = arith.remui %{{.*}}, %c16
// CHECK: %[[GROUP:.*]] = arith.divui %[[OFF]], %c8
// CHECK: %[[SOLD:.*]] = arith.extf
// CHECK: %[[MOLD16:.*]] = vector.load %[[KM]][%[[PAGE]], %[[GROUP]], %[[H]], %c0]
// CHECK: %[[MOLD:.*]] = arith.extf %[[MOLD16]]
// Range [m, m + 15 s] extended to include x.
// CHECK: %[[S15:.*]] = arith.mulf %[[SOLD]], %[[FIFTEEN]]
// CHECK: %[[TOP:.*]] = arith.addf %[[MOLD]], %[[S15]]
// CHECK-DAG: arith.cmpf ogt, %{{.*}}, %[[TOP]]
// CHECK-DAG: arith.cmpf olt, %{{.*}}, %[[MOLD]]
// CHECK: %[[GREW:.*]] = arith.andi
// CHECK: %[[RLO:.*]] = arith.minimumf %[[MOLD]],
// CHECK: %[[RHI:.*]] = arith.maximumf %[[TOP]],
// CHECK: %[[ANY:.*]] = vector.reduction <or>, %[[GREW]]
// CHECK: scf.if %[[ANY]] {
// CHECK-NEXT: scf.for %[[T:.*]] = %{{.*}} to %[[OFF]] step %c1 {
// Unpack: low nibble = even channel.
// CHECK-NEXT: %[[B:.*]] = vector.load %[[KP]][%[[PAGE]], %[[H]], %[[T]], %c0] : memref<?x2x16x8xi8>, vector<8xi8>
// CHECK-NEXT: %[[EVEN:.*]] = arith.andi %[[B]], %[[LOW]]
// CHECK-NEXT: %[[ODD:.*]] = arith.shrui %[[B]], %[[FOUR]]
// CHECK-NEXT: %[[QI:.*]] = vector.interleave %[[EVEN]], %[[ODD]] : vector<8xi8> -> vector<16xi8>
// CHECK-NEXT: %[[Q:.*]] = arith.uitofp %[[QI]]
// Reconstruct s * q + m, requantize with the new range.
// CHECK-NEXT: %[[SQ:.*]] = arith.mulf %[[SOLD]], %[[Q]]
// CHECK-NEXT: %[[XR:.*]] = arith.addf %[[SQ]], %[[MOLD]]
// CHECK-NEXT: arith.subf %[[XR]],
// CHECK-NEXT: arith.divf
// CHECK-NEXT: math.roundeven
// CHECK-NEXT: arith.maxnumf %{{.*}}, %[[ZERO]]
// CHECK-NEXT: arith.minnumf %{{.*}}, %[[FIFTEEN]]
// CHECK-NEXT: arith.cmpf oeq
// CHECK-NEXT: arith.select
// CHECK-NEXT: %[[KEEP:.*]] = arith.select %[[GREW]], %{{.*}}, %[[Q]]
// CHECK-NEXT: %[[Q8:.*]] = arith.fptosi %[[KEEP]] : vector<16xf32> to vector<16xi8>
// Pack: byte i = q[2i] | q[2i+1] << 4.
// CHECK-NEXT: %[[E:.*]], %[[O:.*]] = vector.deinterleave %[[Q8]] : vector<16xi8> -> vector<8xi8>
// CHECK-NEXT: %[[OS:.*]] = arith.shli %[[O]], %[[FOUR]]
// CHECK-NEXT: %[[PACKED:.*]] = arith.ori %[[E]], %[[OS]]
// CHECK-NEXT: vector.store %[[PACKED]], %[[KP]][%[[PAGE]], %[[H]], %[[T]], %c0] : memref<?x2x16x8xi8>, vector<8xi8>
// CHECK: vector.store %{{.*}}, %[[KS]][%[[PAGE]], %[[GROUP]], %[[H]], %c0]
// CHECK: vector.store %{{.*}}, %[[KM]][%[[PAGE]], %[[GROUP]], %[[H]], %c0]
// CHECK: vector.deinterleave
// CHECK: vector.store %{{.*}}, %[[KP]][%[[PAGE]], %[[H]], %[[OFF]], %c0]
// V per token: min and max over the channels; m and s stored as f16.
// CHECK-DAG: %[[VMAX:.*]] = vector.reduction <maximumf>
// CHECK-DAG: %[[VMIN:.*]] = vector.reduction <minimumf>
// CHECK: memref.store %{{.*}}, %[[VM]][%[[PAGE]], %[[OFF]], %[[H]]]
// CHECK: memref.store %{{.*}}, %[[VS]][%[[PAGE]], %[[OFF]], %[[H]]]
// CHECK: math.roundeven
// CHECK: arith.maxnumf %{{.*}}, %[[ZERO]]
// CHECK: arith.minnumf %{{.*}}, %[[FIFTEEN]]
// CHECK: vector.deinterleave
// CHECK: vector.store %{{.*}}, %[[VP]][%[[PAGE]], %[[H]], %[[OFF]], %c0] : memref<?x2x16x8xi8>, vector<8xi8>

func.func @append_f16_nhd(%k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f16>
  return
}

func.func @append_bf16_hnd(%k: tensor<?x2x16xf16>, %v: tensor<?x2x16xf16>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = bf16>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf16>, tensor<?x2x16xf16>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = bf16>
  return
}

func.func @append_e4m3_hnd(%k: tensor<?x2x16xbf16>, %v: tensor<?x2x16xbf16>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = f8E4M3FN>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xbf16>, tensor<?x2x16xbf16>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = f8E4M3FN>
  return
}

func.func @append_e5m2_nhd(%k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f8E5M2>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = f8E5M2>
  return
}

func.func @append_i8_nhd(%k: tensor<?x2x16xf16>, %v: tensor<?x2x16xf16>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = i8, k_group = 4>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf16>, tensor<?x2x16xf16>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = nhd, storage = i8, k_group = 4>
  return
}

func.func @append_i4_hnd(%k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>, %slots: tensor<?xi32>,
    %cache: !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = i4, k_group = 8>) {
  attn.kv_append %k, %v, %slots into %cache
      : tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?xi32>,
        !attn.kv_cache<page_size = 16, kv_heads = 2, head_dim = 16, layout = hnd, storage = i4, k_group = 8>
  return
}
