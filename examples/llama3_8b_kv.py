#!/usr/bin/env python3
"""Serves a few Llama-3-8B-shaped requests (one layer) from a paged int8 KV cache, using the
kernels of examples/llama3_8b_kv.mlir and attnrt's page pool:

  prefill: each request's prompt is appended (quantized on write) and attended causally;
  fork:    a second request shares the first one's prompt pages (prefix sharing);
  decode:  every request generates tokens one at a time (append + split-KV decode),
           the fork's first append copying the shared last page (copy-on-write).

It checks the last decode step against float64 attention over the unquantized K/V (the documented
int8 bound) and prints times, the pool's bytes per token and the memory an f16 cache would use.

Usage: .venv/bin/python examples/llama3_8b_kv.py ARTIFACT_DIR [--quick]
(ARTIFACT_DIR: `attnc examples/llama3_8b_kv.mlir --target=host -o ARTIFACT_DIR`)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "e2e"))
from attnrt_ctypes import CachePool, Module  # noqa: E402
from kv_reference import KVDistribution, kv_tolerance, paged_reference  # noqa: E402
from reference import Mask  # noqa: E402

HQ, HKV, D = 32, 8, 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("artifacts", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n_req, prompt, steps = (4, 300, 4) if a.quick else (8, 1000, 16)
    dist = KVDistribution(HKV, D, seed=int(rng.integers(1 << 30)))
    m = Module(a.artifacts, num_threads=0)
    pool = CachePool(m, "llama3_8b_kv_append", num_pages=n_req * (prompt + 2 * steps) // 64
                     + 4 * n_req)
    history = {}  # request -> (k, v) float32 tokens, unquantized

    def append(seqs, per_seq):
        slots = np.concatenate([pool.append(s, n) for s, n in zip(seqs, per_seq)])
        k, v = dist.sample(rng, slots.size)
        m.run("llama3_8b_kv_append", {"k_new": k.astype(np.float16),
                                      "v_new": v.astype(np.float16),
                                      "slot_mapping": slots, **pool.buffers})
        at = 0
        for s, n in zip(seqs, per_seq):
            hk, hv = history.setdefault(s, (np.zeros((0, HKV, D), np.float32),) * 2)
            history[s] = (np.concatenate([hk, k[at:at + n].astype(np.float16)]),
                          np.concatenate([hv, v[at:at + n].astype(np.float16)]))
            at += n

    def table(seqs):
        indptr, indices, last = pool.page_table(seqs)
        return {"kv_indptr": indptr, "kv_indices": indices, "kv_last_page_len": last}

    # Prefill: prompts of different lengths, all tokens attended causally.
    seqs = [pool.create() for _ in range(n_req)]
    lens = rng.integers(prompt // 2, prompt + 1, n_req)
    t = time.perf_counter()
    append(seqs, lens)
    t_append = time.perf_counter() - t
    q = (rng.standard_normal((int(lens.sum()), HQ, D)) * 0.3).astype(np.float16)
    o = np.empty_like(q)
    qo = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    t = time.perf_counter()
    m.run("llama3_8b_kv_prefill", {"q": q, **pool.buffers, **table(seqs), "qo_indptr": qo,
                                   "o": o})
    t_prefill = time.perf_counter() - t
    print(f"prefill: {n_req} prompts, {int(lens.sum())} tokens: append {t_append * 1e3:.1f} ms, "
          f"attention {t_prefill * 1e3:.1f} ms")

    # A second request sharing request 0's prompt.
    fork = pool.fork(seqs[0])
    history[fork] = history[seqs[0]]
    seqs.append(fork)
    used = pool.stats()["used_pages"]
    print(f"fork: request {len(seqs) - 1} shares request 0's {int(lens[0])} prompt tokens "
          f"({used} pages in use, none copied)")

    times = []
    for step in range(steps):
        t = time.perf_counter()
        append(seqs, [1] * len(seqs))
        q = (rng.standard_normal((len(seqs), HQ, D)) * 0.3).astype(np.float16)
        o = np.full_like(q, np.nan)
        lse = np.full((HQ, len(seqs)), np.nan, np.float32)
        m.run("llama3_8b_kv_decode", {"q": q, **pool.buffers, **table(seqs), "o": o,
                                      "lse": lse})
        times.append(time.perf_counter() - t)
        if step == 0:
            print(f"decode step 1: the fork's first token went to a copy of the shared last "
                  f"page (pages in use {used} -> {pool.stats()['used_pages']})")

    # Check the last step against float64 attention over the unquantized tokens.
    ks = [history[s][0].astype(np.float64) for s in seqs]
    vs = [history[s][1].astype(np.float64) for s in seqs]
    ref, ref_lse = paged_reference(q, ks, vs, mask=Mask(causal=True))
    o_tol, lse_tol = kv_tolerance("i8", 64)
    err = float(np.abs(o - ref).max() / np.abs(ref).max())
    lse_err = float(np.abs(lse - ref_lse).max())
    ok = err <= o_tol + 1e-2 and lse_err <= lse_tol + 1e-3
    st = pool.stats()
    tokens = sum(len(history[s][0]) for s in seqs)
    shared = int(lens[0])
    print(f"decode: {steps} steps x {len(seqs)} requests (append + attention): median "
          f"{np.median(times) * 1e3:.2f} ms per step")
    print(f"check (last step vs float64 on unquantized K/V): O error {err:.3g} "
          f"(int8 bound {o_tol}), LSE error {lse_err:.3g} (bound {lse_tol}): "
          f"{'PASS' if ok else 'FAIL'}")
    print(f"pool: {st['bytes_per_token']:.0f} bytes/token/layer (f16: {2 * HKV * D * 2}), "
          f"{st['used_pages']} pages in use = {st['bytes_in_use'] / 2**20:.2f} MiB for "
          f"{tokens} tokens of {len(seqs)} requests ({tokens - shared} distinct); an f16 cache "
          f"without sharing: {tokens * 2 * HKV * D * 2 / 2**20:.2f} MiB")
    for s in seqs:
        pool.free(s)
    pool.check()
    pool.close()
    m.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
