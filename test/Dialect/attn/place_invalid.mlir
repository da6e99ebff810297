// RUN: attn-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{unknown memory tier 'sram'; expected hbm or host}}
func.func private @f(tensor<4xf32> {attn.place = #attn.place<sram, 0>})

// -----

// expected-error @+1 {{place offset must be >= 0, got -64}}
func.func private @f(tensor<4xf32> {attn.place = #attn.place<hbm, -64>})

// -----

// expected-error @+1 {{!attn.copy can move a static-shape ranked tensor or an !attn.kv_cache, got 'tensor<?x8xf16>'}}
func.func private @f(!attn.copy<tensor<?x8xf16>>)

// -----

// expected-error @+1 {{!attn.copy can move a static-shape ranked tensor or an !attn.kv_cache, got 'i32'}}
func.func private @f(!attn.copy<i32>)

// -----

func.func @f(%x: tensor<?x8xf16>) {
  // expected-error @+1 {{cannot copy a value of type 'tensor<?x8xf16>': a copy moves a static-shape ranked tensor or an !attn.kv_cache}}
  %c = attn.copy_start %x to #attn.place<hbm, 0> : tensor<?x8xf16>
  return
}

// -----

func.func @f(%x: tensor<8xf16>) {
  // expected-error @+1 {{expected an #attn.place, got #attn.mask<causal>}}
  %c = attn.copy_start %x to #attn.mask<causal> : tensor<8xf16>
  return
}

// -----

func.func @f(%x: tensor<8xf16>) {
  // expected-error @+1 {{'attn.copy_start' op copy must be waited for by exactly one attn.copy_done, found 0}}
  %c = attn.copy_start %x to #attn.place<hbm, 0> : tensor<8xf16>
  return
}

// -----

func.func @f(%x: tensor<8xf16>) {
  // expected-error @+1 {{'attn.copy_start' op copy must be waited for by exactly one attn.copy_done, found 2}}
  %c = attn.copy_start %x to #attn.place<hbm, 0> : tensor<8xf16>
  %a = attn.copy_done %c : !attn.copy<tensor<8xf16>>
  %b = attn.copy_done %c : !attn.copy<tensor<8xf16>>
  return
}

// -----

func.func @f(%x: tensor<8xf16>) -> !attn.copy<tensor<8xf16>> {
  // expected-error @+1 {{'attn.copy_start' op copy handle may only be used by attn.copy_done, but 'func.return' uses it}}
  %c = attn.copy_start %x to #attn.place<hbm, 0> : tensor<8xf16>
  %a = attn.copy_done %c : !attn.copy<tensor<8xf16>>
  return %c : !attn.copy<tensor<8xf16>>
}

// -----

func.func @f(%c: !attn.copy<tensor<8xf16>>) -> tensor<8xf16> {
  // expected-error @+1 {{'attn.copy_done' op operand must be the result of an attn.copy_start}}
  %a = attn.copy_done %c : !attn.copy<tensor<8xf16>>
  return %a : tensor<8xf16>
}

// -----

func.func @f(%x: tensor<8xf16>) {
  // expected-error @+1 {{'attn.copy_done' op expects an !attn.copy operand, got 'tensor<8xf16>'}}
  %a = attn.copy_done %x : tensor<8xf16>
  return
}

// -----

func.func @f(%x: tensor<?x8xf16>) {
  // expected-error @+1 {{cannot copy a value of type 'tensor<?x8xf16>': a copy moves a static-shape ranked tensor or an !attn.kv_cache}}
  %c = attn.copy_start %x to #attn.place<hbm, 0> {attn.transfer_seconds = 0.0 : f64} : tensor<?x8xf16>
  return
}
