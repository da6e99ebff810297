// RUN: attn-opt %s -attn-print-plan-report -o /dev/null | FileCheck %s --check-prefix=TABLE
// RUN: attn-opt %s -attn-print-plan-report=format=json -o /dev/null | FileCheck %s --check-prefix=JSON
// RUN: attn-opt %s -attn-print-plan-report=format=json -o /dev/null | %python -m json.tool > /dev/null
// RUN: not attn-opt %s -attn-print-plan-report=format=xml -o /dev/null 2>&1 | FileCheck %s --check-prefix=FORMAT
// RUN: echo 'module {}' | attn-opt -attn-print-plan-report -o /dev/null | FileCheck %s --check-prefix=EMPTY

// A planned decode-like step on an H100: K and V (8 MiB each) live on the
// host and are prefetched, the first while nothing runs (exposed), the
// second behind the first attention; the report reads only the IR.

// TABLE:      step decode (target h100-80gb, 2 steps)
// TABLE-NEXT:   tier       capacity         peak  lower bound   peak/lb
// TABLE-NEXT:   hbm        74.5 GiB       16 MiB       16 MiB     1.000
// TABLE-NEXT:   host        256 GiB       16 MiB       16 MiB     1.000
// TABLE-NEXT:   held in each tier:
// TABLE-NEXT:   hbm       3 buffers     24 KiB, and 2 copies 16 MiB
// TABLE-NEXT:   host      2 buffers     16 MiB
// TABLE-NEXT:   transfers:
// TABLE-NEXT:   buffer                   direction from -> to          bytes  issue   wait   transfer    exposed
// TABLE-NEXT:   k0                       prefetch  host -> hbm         8 MiB      0      0     131 us     131 us
// TABLE-NEXT:   v0                       prefetch  host -> hbm         8 MiB      0      1     131 us       0 us
// TABLE-NEXT:   predicted step time 3.13 ms (compute 3 ms); without offload 3 ms; 16 MiB moved
// TABLE-EMPTY:
// TABLE-NEXT: step host_step (target h100-80gb, 1 step)
// TABLE-NEXT:   tier       capacity         peak  lower bound   peak/lb
// TABLE-NEXT:   hbm        74.5 GiB       16 KiB       16 KiB     1.000
// TABLE-NEXT:   held in each tier:
// TABLE-NEXT:   hbm       2 buffers     16 KiB
// TABLE-NEXT:   transfers: none
// TABLE-NEXT:   predicted step time 0 us (compute 0 us); without offload n/a; 0 B moved

// JSON:      "steps": [
// JSON:        "name": "decode",
// JSON-NEXT:   "target": "h100-80gb",
// JSON-NEXT:   "tiers": [
// JSON:          "name": "hbm",
// JSON-NEXT:     "capacity": 80000000000,
// JSON-NEXT:     "peak": 16801792,
// JSON-NEXT:     "lower_bound": 16801792,
// JSON-NEXT:     "peak_over_lower_bound": 1{{$}}
// JSON:        "buffers": [
// JSON:          "name": "q0",
// JSON-NEXT:     "tier": "hbm",
// JSON-NEXT:     "offset": 0,
// JSON-NEXT:     "bytes": 8192,
// JSON-NEXT:     "first_step": 0,
// JSON-NEXT:     "last_step": 1,
// JSON-NEXT:     "kind": "input"
// JSON:          "name": "k0@hbm",
// JSON-NEXT:     "tier": "hbm",
// JSON-NEXT:     "offset": 16384,
// JSON-NEXT:     "bytes": 8388608,
// JSON-NEXT:     "first_step": 0,
// JSON-NEXT:     "last_step": 1,
// JSON-NEXT:     "kind": "copy"
// JSON:          "name": "o1",
// JSON:          "kind": "output"
// JSON:        "transfers": [
// JSON-NEXT:     {
// JSON-NEXT:       "buffer": "k0",
// JSON-NEXT:       "direction": "prefetch",
// JSON-NEXT:       "from": "host",
// JSON-NEXT:       "to": "hbm",
// JSON-NEXT:       "bytes": 8388608,
// JSON-NEXT:       "issue_step": 0,
// JSON-NEXT:       "wait_step": 0,
// JSON-NEXT:       "transfer_seconds": 0.000131072{{[0-9]*}},
// JSON-NEXT:       "exposed_seconds": 0.000131072{{[0-9]*}}
// JSON:        "ops": [
// JSON-NEXT:     {
// JSON-NEXT:       "step": 0,
// JSON-NEXT:       "op": "attn.attention",
// JSON-NEXT:       "location": "{{.*}}plan-report.mlir:{{[0-9]+}}:{{[0-9]+}}",
// JSON-NEXT:       "seconds": 0.0015
// JSON:        "step_seconds": 0.00313107{{[0-9]*}},
// JSON-NEXT:   "compute_seconds": 0.00{{[0-9]+}},
// JSON-NEXT:   "no_offload_seconds": 0.00{{[0-9]+}},
// JSON-NEXT:   "bytes_moved": 16777216
// JSON:        "name": "host_step",

// FORMAT: attn-print-plan-report: unknown format 'xml'; expected table or json

// EMPTY: no step functions (attn.step)

module attributes {attn.target = #attn.target<"h100-80gb">} {
func.func @decode(
    %q: tensor<1x1x32x128xf16> {attn.name = "q0", attn.place = #attn.place<hbm, 0>},
    %k: tensor<1x4096x8x128xf16> {attn.name = "k0", attn.place = #attn.place<host, 0>},
    %v: tensor<1x4096x8x128xf16> {attn.name = "v0", attn.place = #attn.place<host, 8388608>})
    -> (tensor<1x1x32x128xf16> {attn.name = "o0"}, tensor<1x1x32x128xf16> {attn.name = "o1"})
    attributes {attn.step, attn.plan = {
      tiers = [{name = "hbm", capacity = 80000000000 : i64, peak = 16801792 : i64, lower_bound = 16801792 : i64},
               {name = "host", capacity = 274877906944 : i64, peak = 16777216 : i64, lower_bound = 16777216 : i64}],
      step_seconds = 3.131072e-3 : f64, compute_seconds = 3.0e-3 : f64,
      no_offload_seconds = 3.0e-3 : f64, bytes_moved = 16777216 : i64}} {
  %ck = attn.copy_start %k to #attn.place<hbm, 16384> {attn.transfer_seconds = 1.31072e-4 : f64} : tensor<1x4096x8x128xf16>
  %cv = attn.copy_start %v to #attn.place<hbm, 8404992> {attn.transfer_seconds = 1.31072e-4 : f64} : tensor<1x4096x8x128xf16>
  %k1 = attn.copy_done %ck {attn.exposed_seconds = 1.31072e-4 : f64} : !attn.copy<tensor<1x4096x8x128xf16>>
  %o = attn.attention %q, %k1, %k1 {attn.places = [#attn.place<hbm, 8192>], attn.seconds = 1.5e-3 : f64}
      : (tensor<1x1x32x128xf16>, tensor<1x4096x8x128xf16>, tensor<1x4096x8x128xf16>) -> tensor<1x1x32x128xf16>
  %v1 = attn.copy_done %cv {attn.exposed_seconds = 0.0 : f64} : !attn.copy<tensor<1x4096x8x128xf16>>
  %o1 = attn.attention %q, %k1, %v1 {attn.places = [#attn.place<hbm, 16793600>], attn.seconds = 1.5e-3 : f64}
      : (tensor<1x1x32x128xf16>, tensor<1x4096x8x128xf16>, tensor<1x4096x8x128xf16>) -> tensor<1x1x32x128xf16>
  return %o, %o1 : tensor<1x1x32x128xf16>, tensor<1x1x32x128xf16>
}

// No attn.plan: the summary is measured from the places.
func.func @host_step(
    %q: tensor<1x1x32x128xf16> {attn.place = #attn.place<hbm, 0>})
    -> tensor<1x1x32x128xf16> attributes {attn.step} {
  %o = attn.attention %q, %q, %q {attn.places = [#attn.place<hbm, 8192>]}
      : (tensor<1x1x32x128xf16>, tensor<1x1x32x128xf16>, tensor<1x1x32x128xf16>) -> tensor<1x1x32x128xf16>
  return %o : tensor<1x1x32x128xf16>
}
}
