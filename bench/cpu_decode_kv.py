#!/usr/bin/env python3
"""CPU paged decode over quantized KV caches: time and achieved cache-read bandwidth per storage
format, against the machine's copy bandwidth measured in the same run (DESIGN.md section 7).

Usage: .venv/bin/python bench/cpu_decode_kv.py [--quick] [--contexts 4096,32768] [--json PATH]

Shape: batch 8, 32 query / 8 KV heads, head size 128 (Llama-3-8B), f16 queries, one new token per
sequence against `context` cached tokens, pages of 64 tokens (k_group 64 for i8/i4) assigned in
shuffled order; the last row keeps a residual window of 128 f16 tokens per sequence (KIVI). The cache is filled by the compiled `attn.kv_append` kernel (quantizing on write),
then `attn.paged_attention` (decode, split-KV chosen automatically) is timed.

Decode reads every cached byte once, so it is memory-bound: the floor is cache bytes / copy
bandwidth, and the speed-up of a format over f16 should track its bytes per token. The table prints
bytes/token, median time, GB/s of cache read (K, V, scales and minima), that bandwidth as a fraction
of the measured copy bandwidth (read + write counted, as `copy` reports it), the speed-up over f16
and the bytes ratio it would reach if it tracked bytes exactly. Every output is checked against the
float64 reference on the dequantized cache for two sequences.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from attnrt_ctypes import Module  # noqa: E402
from cpu_compare import measure_ceilings  # noqa: E402
from kv_reference import (CacheFormat, build_page_table, dequant_pages,  # noqa: E402
                          fp8_scales, ring_slots_for, sequence_slots)
from reference import Mask, attention  # noqa: E402

B, HQ, HKV, D, PAGE = 8, 32, 8, 128, 64
# (storage, k_group, residual window): i4 + 128 is KIVI's setting.
FORMATS = [("f16", None, None), ("f8E4M3FN", None, None), ("i8", PAGE, None),
           ("i4", PAGE, None), ("i4", PAGE, 128)]


def fmt_of(storage: str, k_group, residual) -> CacheFormat:
    return CacheFormat(PAGE, HKV, D, "nhd", storage, k_group, residual)


def label(storage: str, residual) -> str:
    return storage.lower() + (f"_r{residual}" if residual else "")


def module_mlir(formats) -> str:
    out = []
    for storage, g, r in formats:
        ct = fmt_of(storage, g, r).mlir_type()
        kt = f"tensor<?x{HKV}x{D}xf16>"
        qt = f"tensor<?x{HQ}x{D}xf16>"
        i32 = "tensor<?xi32>"
        name = label(storage, r)
        ring_in = f", %rs: {i32}" if r else ""
        ring_op = f" ring_slots(%rs : {i32})" if r else ""
        rings_in = f", %rings: {i32}" if r else ""
        rings_op = " kv_rings(%rings)" if r else ""
        rings_ty = f", {i32}" if r else ""
        out.append(
            f"func.func @append_{name}(%k: {kt}, %v: {kt}, %s: {i32}{ring_in}, %cache: {ct}) {{\n"
            f"  attn.kv_append %k, %v, %s{ring_op} into %cache : {kt}, {kt}, {i32}, {ct}\n"
            f"  return\n}}\n"
            f"func.func @decode_{name}(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32}"
            f"{rings_in}) -> {qt} {{\n"
            f"  %o = attn.paged_attention %q, %cache, %p, %i, %l{rings_op}"
            f" : ({qt}, {ct}, {i32}, {i32}, {i32}{rings_ty}) -> {qt}\n  return %o : {qt}\n}}\n")
    return "\n".join(out)


def realistic_kv(rng, n: int):
    """Keys with a few outlier channels (large, offset), Gaussian values, in f16."""
    k = rng.standard_normal((n, HKV, D), np.float32)
    outliers = rng.choice(D, 4, replace=False)
    k[:, :, outliers] = k[:, :, outliers] * 12 + 5
    v = rng.standard_normal((n, HKV, D), np.float32)
    return k.astype(np.float16), v.astype(np.float16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="4096,32768")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="contexts 1024 only, 3 reps")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    contexts = [1024] if a.quick else [int(c) for c in a.contexts.split(",")]
    reps = 3 if a.quick else a.reps
    bin_dir = ROOT / "build" / "bin"
    work = Path(tempfile.mkdtemp(prefix="attnc-kvbench-"))
    src = work / "kvbench.mlir"
    src.write_text(module_mlir(FORMATS))
    t0 = time.perf_counter()
    subprocess.run([str(bin_dir / "attnc"), str(src), "--target=host", "-o", str(work)],
                   check=True)
    print(f"# compiled {len(FORMATS) * 2} kernels in {time.perf_counter() - t0:.1f} s")

    ceil = measure_ceilings(a.threads)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{a.threads} threads; copy {ceil['copy_gbs']:.1f} GB/s (read + write)")
    print(f"# decode batch {B}, {HQ}/{HKV} heads, D {D}, f16 queries, pages of {PAGE}, "
          f"median of {reps}")
    print(f"{'context':>8} {'format':>9} {'B/token':>8} {'ms':>8} {'GB/s':>7} {'of copy':>8} "
          f"{'vs f16':>7} {'bytes x':>8} {'max rel err':>11}")
    records = []
    rng = np.random.default_rng(20261123)
    with Module(work, num_threads=a.threads) as m:
        for ctx in contexts:
            base_ms = base_bytes = None
            lens = np.full(B, ctx)
            table = build_page_table(rng, lens, PAGE)
            indptr, indices, last = table.arrays()
            k_all, v_all = realistic_kv(rng, B * ctx)
            q = (rng.standard_normal((B, HQ, D), np.float32) * 0.5).astype(np.float16)
            sid, pos, slots = sequence_slots(table, skip_shared=False)
            for storage, g, r in FORMATS:
                fmt = fmt_of(storage, g, r)
                name = label(storage, r)
                ks = vs = None
                if storage.startswith("f8"):
                    ks = fp8_scales(k_all, storage)
                    vs = fp8_scales(v_all, storage)
                pool = fmt.empty_pool(table.num_pages, k_scale=ks, v_scale=vs,
                                      num_rings=B if r else None)
                pool_args = {f"cache_{c}": arr for c, arr in pool.items()}
                append_args = {"k_new": k_all, "v_new": v_all, "slot_mapping": slots}
                rings = {}
                if r:
                    append_args["ring_slots"] = ring_slots_for(np.arange(B), sid, pos, r)
                    rings = {"kv_rings": np.arange(B, dtype=np.int32)}
                m.run(f"append_{name}", {**append_args, **pool_args})
                o = np.empty_like(q)
                args = {"q": q, **pool_args, "kv_indptr": indptr, "kv_indices": indices,
                        "kv_last_page_len": last, **rings, "o": o}
                m.run(f"decode_{name}", args)
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    m.run(f"decode_{name}", args)
                    times.append(time.perf_counter() - t)
                ms = float(np.median(times)) * 1e3
                read = fmt.bytes_per_token * B * ctx
                gbs = read / (ms * 1e-3) / 1e9
                # Check two sequences against float64 attention on the dequantized cache.
                err = 0.0
                for bi in (0, B - 1):
                    kd, vd = dequant_pages(pool, fmt, table.pages(bi))
                    kk = kd.reshape(-1, HKV, D)[None, :ctx].astype(np.float64)
                    vv = vd.reshape(-1, HKV, D)[None, :ctx].astype(np.float64)
                    if r:  # the window comes from the sequence's ring
                        at = np.arange(ctx - r, ctx) % r
                        kk[0, -r:] = pool["k_recent"][bi, at]
                        vv[0, -r:] = pool["v_recent"][bi, at]
                    ref, _ = attention(q[bi][None, None], kk, vv, mask=Mask())
                    ref = ref[0, 0]
                    err = max(err, float(np.abs(o[bi] - ref).max() / np.abs(ref).max()))
                if base_ms is None:
                    base_ms, base_bytes = ms, fmt.bytes_per_token
                speedup, bytes_ratio = base_ms / ms, base_bytes / fmt.bytes_per_token
                print(f"{ctx:>8} {name:>9} {fmt.bytes_per_token:>8.0f} {ms:>8.2f} "
                      f"{gbs:>7.2f} {gbs / ceil['copy_gbs']:>8.2f} {speedup:>7.2f} "
                      f"{bytes_ratio:>8.2f} {err:>11.2e}", flush=True)
                records.append(dict(context=ctx, format=storage, k_group=g, residual=r,
                                    bytes_per_token=fmt.bytes_per_token, median_ms=ms,
                                    min_ms=float(min(times)) * 1e3, gbs=gbs,
                                    of_copy=gbs / ceil["copy_gbs"], speedup_vs_f16=speedup,
                                    bytes_ratio_vs_f16=bytes_ratio, max_rel_err=err))
    if a.json:
        a.json.write_text(json.dumps(dict(
            date=datetime.date.today().isoformat(), machine=platform.processor(),
            cores=os.cpu_count(), threads=a.threads, ceilings=ceil,
            shape=dict(batch=B, hq=HQ, hkv=HKV, d=D, page_size=PAGE), rows=records), indent=1))


if __name__ == "__main__":
    main()
