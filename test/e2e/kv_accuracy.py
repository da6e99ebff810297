"""Accuracy study of the KV-cache storage formats (docs/kv-cache.md, "Accuracy (measured)").

For each format, realistic K/V of Llama-3-8B-like heads (32 query heads, 8 KV heads, head_dim 128;
K with outlier channels, see kv_reference.KVDistribution) are appended through the exact model
(kv_reference.append, in chunks of interleaved sequences, per-token-in-order semantics) into a
shuffled page pool. Paged attention on the dequantized cache (float64, kv_reference.gather +
paged_reference) is compared with float64 attention on the unquantized values, for decode (one
query per sequence, no mask; 8 independent decode queries per sequence, evaluated as one
no-mask batch) and append (16 queries per sequence, causal). Only the cache's
quantization is measured: no kernel arithmetic, no output rounding. Formats with a residual
window (`_r128`) read the 128 latest tokens of each sequence from its f16 ring.

    python test/e2e/kv_accuracy.py [--seeds 3] [--lens 1000,2500,4000] [--only i4_g64,...]

Columns: bytes per token per layer; O error = max |o - ref| / max |ref| (as the e2e tests),
worst over seeds; mean O error = mean |o - ref| / mean |ref|, mean over seeds; LSE error =
max |lse - ref| (absolute, natural log), worst over seeds; then the proposed bound
(1.5-2x the worst, rounded up to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kv_reference import (CacheFormat, KVDistribution, append, append_rings,  # noqa: E402
                          build_page_table, fp8_scales, gather, paged_reference,
                          realistic_queries, ring_slots_for, slots_for)
from reference import Mask  # noqa: E402

HQ, HKV, D = 32, 8, 128
FORMATS = [  # (key of KV_O_TOL, CacheFormat)
    ("f16", CacheFormat(16, HKV, D, "nhd", "f16")),
    ("bf16", CacheFormat(16, HKV, D, "nhd", "bf16")),
    ("f8E4M3FN", CacheFormat(16, HKV, D, "nhd", "f8E4M3FN")),
    ("f8E5M2", CacheFormat(16, HKV, D, "nhd", "f8E5M2")),
    ("i8_g16", CacheFormat(64, HKV, D, "hnd", "i8", 16)),
    ("i8_g64", CacheFormat(64, HKV, D, "hnd", "i8", 64)),
    ("i4_g16", CacheFormat(64, HKV, D, "hnd", "i4", 16)),
    ("i4_g64", CacheFormat(64, HKV, D, "hnd", "i4", 64)),
    # KIVI's setting: the 128 latest tokens of every sequence also kept in f16 (a per-sequence
    # ring, read instead of the pages); the pages are those of the format without the window
    ("i8_g64_r128", CacheFormat(64, HKV, D, "hnd", "i8", 64, 128)),
    ("i4_g64_r128", CacheFormat(64, HKV, D, "hnd", "i4", 64, 128)),
]
N_APPEND_Q = 16
N_DECODE_SETS = 8    # independent decode query batches against the same cache
CHUNK = 256          # tokens per sequence per append call


def nice_bound(worst: float, factor: float = 1.5) -> float:
    """Smallest m x 10^k >= factor * worst, m in {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8}."""
    x = factor * worst
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        b = float(f"{m * 10.0 ** e:.3g}")
        if b >= x * (1 - 1e-12):
            return b
    raise AssertionError


def make_data(seed: int, lens):
    rng = np.random.default_rng(seed)
    dist = KVDistribution(HKV, D, seed=seed)
    ks, vs = zip(*[dist.sample(rng, n) for n in lens])
    # N_DECODE_SETS decode queries per sequence: without a mask each query row is an
    # independent decode query, so all sets run as one ragged batch
    q_dec = np.concatenate([realistic_queries(rng, k, HQ, N_DECODE_SETS) for k in ks])
    q_app = np.concatenate([realistic_queries(rng, k, HQ, N_APPEND_Q) for k in ks])
    return list(ks), list(vs), q_dec, q_app


def chunked_calls(lens, chunk):
    """Append calls: each call takes the next `chunk` tokens of every sequence (interleaved
    prefill chunks); yields (seq_ids, positions)."""
    for c0 in range(0, max(lens), chunk):
        sid = np.concatenate([np.full(max(0, min(n, c0 + chunk) - c0), b)
                              for b, n in enumerate(lens)]).astype(np.int64)
        pos = np.concatenate([np.arange(c0, min(n, c0 + chunk)) for n in lens]).astype(np.int64)
        yield sid, pos


def fill_pages(fmt: CacheFormat, seed: int, lens, ks, vs):
    """(table, pool) of a format without a residual window: every sequence appended through the
    model in interleaved chunks into a shuffled page pool."""
    rng = np.random.default_rng(seed + 1000)
    table = build_page_table(rng, lens, fmt.page_size, extra_pages=3)
    kw = {}
    if fmt.storage.startswith("f8"):
        kw = dict(k_scale=fp8_scales(np.concatenate(ks), fmt.storage),
                  v_scale=fp8_scales(np.concatenate(vs), fmt.storage))
    pool = fmt.empty_pool(table.num_pages, **kw)
    for sid, pos in chunked_calls(lens, CHUNK):
        k = np.stack([ks[b][p] for b, p in zip(sid, pos)])
        v = np.stack([vs[b][p] for b, p in zip(sid, pos)])
        append(pool, fmt, k, v, slots_for(table, sid, pos))
    return table, pool


def measure(fmt: CacheFormat, seed: int, lens, data, refs, paged=None):
    """Decode and append errors of fmt. `paged` caches the (table, pool) of the formats without a
    window: a residual window does not change what the pages hold (docs/kv-cache.md), so a format
    with one reuses its base format's pages and only adds the rings (written by
    kv_reference.append_rings in the same chunked calls)."""
    ks, vs, q_dec, q_app = data
    paged = {} if paged is None else paged
    base = fmt.without_residual()
    if base not in paged:
        paged[base] = fill_pages(base, seed, lens, ks, vs)
    table, pool = paged[base]
    kv_rings = None
    if fmt.residual:
        n = len(lens)
        kv_rings = np.random.default_rng(seed + 2000).permutation(n + 2)[:n]
        pool = {**pool, **{c.name: np.zeros(c.shape, c.dtype)
                           for c in fmt.components(table.num_pages, n + 2) if c.ring}}
        for sid, pos in chunked_calls(lens, CHUNK):
            k = np.stack([ks[b][p] for b, p in zip(sid, pos)])
            v = np.stack([vs[b][p] for b, p in zip(sid, pos)])
            append_rings(pool, fmt, k, v, ring_slots_for(kv_rings, sid, pos, fmt.residual))
    gk, gv = gather(pool, fmt, *table.arrays(), kv_rings=kv_rings)
    out = []
    cases = [(q_dec, [N_DECODE_SETS] * len(lens), Mask()),
             (q_app, [N_APPEND_Q] * len(lens), Mask(causal=True))]
    for (q, qo, mask), (o_ref, l_ref) in zip(cases, refs):
        o, lse = paged_reference(q, gk, gv, qo_lens=qo, mask=mask)
        err = np.abs(o - o_ref)
        out.append((err.max() / np.abs(o_ref).max(), err.mean() / np.abs(o_ref).mean(),
                    np.abs(lse - l_ref).max()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lens", default="1000,2500,4000")
    ap.add_argument("--only", default="", help="comma-separated keys of the formats to measure")
    args = ap.parse_args(argv)
    lens = [int(x) for x in args.lens.split(",")]
    formats = [(k, f) for k, f in FORMATS if not args.only or k in args.only.split(",")]
    t0 = time.time()
    res = {key: [] for key, _ in formats}      # key -> [(decode stats, append stats)]
    for seed in range(args.seeds):
        data = make_data(seed, lens)
        ks, vs, q_dec, q_app = data
        refs = [paged_reference(q_dec, ks, vs, qo_lens=[N_DECODE_SETS] * len(lens)),
                paged_reference(q_app, ks, vs, qo_lens=[N_APPEND_Q] * len(lens),
                                mask=Mask(causal=True))]
        paged = {}
        for key, fmt in formats:
            res[key].append(measure(fmt, seed, lens, data, refs, paged))
    print(f"# {args.seeds} seeds, sequences {lens}, Hq={HQ} Hkv={HKV} D={D}, decode + "
          f"{N_APPEND_Q}-query causal append; {time.time() - t0:.1f} s\n")
    print("| format | bytes/token | O err max (decode / append) | O err mean | LSE err max "
          "| bound O | bound LSE |")
    print("|---|---|---|---|---|---|---|")
    bounds = {}
    for key, fmt in formats:
        r = np.array(res[key])                 # [seeds, 2 modes, 3 stats]
        o_max = r[:, :, 0].max(axis=0)
        o_mean = r[:, :, 1].mean()
        l_max = r[:, :, 2].max()
        bounds[key] = (nice_bound(o_max.max()), nice_bound(l_max))
        print(f"| {key} | {fmt.bytes_per_token:g} | {o_max[0]:.3g} / {o_max[1]:.3g} | "
              f"{o_mean:.3g} | {l_max:.3g} | {bounds[key][0]:g} | {bounds[key][1]:g} |")
    print("\nKV_O_TOL = {" + ", ".join(f'"{k}": {b[0]:g}' for k, b in bounds.items()) + "}")
    print("KV_LSE_TOL = {" + ", ".join(f'"{k}": {b[1]:g}' for k, b in bounds.items()) + "}")
    return res, bounds


if __name__ == "__main__":
    main()
