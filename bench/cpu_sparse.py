#!/usr/bin/env python3
"""CPU sparse attention: does time track the visible work? (issue 4, DESIGN.md section 7)

Usage: .venv/bin/python bench/cpu_sparse.py [--quick] [--seq 32768] [--context 131072] [--json PATH]

Prefill: one sequence of `seq` tokens (32k), 32 query / 8 KV heads, head size 128, f16, each mask
compiled as its own kernel and timed in the same run:
  dense        no mask: every KV tile of every query tile (the work of a kernel that skips nothing)
  causal       tile skipping by loop bounds (about half of dense)
  window 4096  sliding window, `#attn.mask<window = 4096>`
  sinks+window sinks 4 + window 4092 (StreamingLLM)
  duo 50%      per-head policy: KV heads 0-3 causal, 4-7 sinks 4 + window 1020 (DuoAttention)
  bsr 10%      block-sparse, 128 x 128 blocks, a random 10% of all blocks inside the causal
               triangle (diagonal blocks always, partial; the others flagged full), per KV head
Each row prints the median time, the time relative to causal and to dense, and the ratio of
visible KV tiles (counted on the host for the kernel's 16 x 32 tiles) to show whether time tracks
the work.

Decode: batch 4 at `context` cached tokens (128k) in a paged f16 cache with per-page key summaries
(pages of 16), 32/8 heads, D 128: full paged decode against Quest-style selection of 64 pages per
KV head (attn.select_pages, then attn.paged_attention reading only the selected pages). Prints
the selection time, the sparse decode time, both relative to full decode, and the error of the
sparse output against the full one on concentrated data: per (sequence, KV head) three pages hold
keys along the query (long-context retrieval), the other keys are random; it also reports how many
of those pages the selection found.
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
from attnrt_ctypes import Module  # noqa: E402
from kv_reference import CacheFormat, build_page_table, sequence_slots  # noqa: E402

HQ, HKV, D = 32, 8, 128
TILE_Q, TILE_KV = 16, 32  # the kernels' tiles: 64 rows / G = 4 queries, 32 keys
BLOCK = 128               # block-sparse block size (FlexAttention's default)
PAGE, TOP_K, BATCH = 16, 64, 4

# name -> (mask attribute text, per-KV-head (causal, window, sinks) for the tile count)
MASKS = {
    "dense": ("", [(False, -1, 0)] * HKV),
    "causal": ("{mask = #attn.mask<causal>}", [(True, -1, 0)] * HKV),
    "window 4096": ("{mask = #attn.mask<window = 4096>}", [(True, 4096, 0)] * HKV),
    "sinks+window": ("{mask = #attn.mask<window = 4092, sinks = 4>}", [(True, 4092, 4)] * HKV),
    "duo 50%": ("{head_masks = [" + ", ".join(
        ["#attn.mask<causal>"] * 4 + ["#attn.mask<window = 1020, sinks = 4>"] * 4) + "]}",
        [(True, -1, 0)] * 4 + [(True, 1020, 4)] * 4),
}


def prefill_mlir() -> str:
    q = f"tensor<1x?x{HQ}x{D}xf16>"
    kv = f"tensor<1x?x{HKV}x{D}xf16>"
    out = []
    for i, (name, (attr, _)) in enumerate(MASKS.items()):
        out.append(f"func.func @prefill{i}(%q: {q}, %k: {kv}, %v: {kv}) -> {q} {{\n"
                   f"  %o = attn.attention %q, %k, %v {attr} : ({q}, {kv}, {kv}) -> {q}\n"
                   f"  return %o : {q}\n}}\n")
    i32 = "tensor<1x" + str(HKV) + "x?xi32>"
    i8 = "tensor<1x" + str(HKV) + "x?xi8>"
    out.append(
        f"func.func @prefill_bsr(%q: {q}, %k: {kv}, %v: {kv}, %off: {i32}, %idx: {i32},"
        f" %full: {i8}) -> {q} {{\n"
        f"  %o = attn.attention %q, %k, %v block_sparse(%off, %idx) block_full(%full)"
        f" {{block_size = array<i64: {BLOCK}, {BLOCK}>, mask = #attn.mask<causal>}}"
        f" : ({q}, {kv}, {kv}, {i32}, {i32}, {i8}) -> {q}\n  return %o : {q}\n}}\n")
    return "\n".join(out)


def decode_mlir(fmt: CacheFormat) -> str:
    ct = fmt.mlir_type()
    q = f"tensor<?x{HQ}x{D}xf16>"
    kv = f"tensor<?x{HKV}x{D}xf16>"
    i32 = "tensor<?xi32>"
    off = f"tensor<?x{HKV}x2xi32>"
    sel = f"tensor<?x{HKV}x{TOP_K}xi32>"
    return (
        f"func.func @append(%k: {kv}, %v: {kv}, %s: {i32}, %cache: {ct}) {{\n"
        f"  attn.kv_append %k, %v, %s into %cache : {kv}, {kv}, {i32}, {ct}\n  return\n}}\n"
        f"func.func @decode(%q: {q}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32}) -> {q} {{\n"
        f"  %o = attn.paged_attention %q, %cache, %p, %i, %l"
        f" : ({q}, {ct}, {i32}, {i32}, {i32}) -> {q}\n  return %o : {q}\n}}\n"
        f"func.func @select(%q: {q}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32})"
        f" -> ({off}, {sel}) {{\n"
        f"  %off, %sel = attn.select_pages %q, %cache, %p, %i, %l"
        f" {{top_k = {TOP_K}, sink_pages = 1, recent_pages = 4}}"
        f" : ({q}, {ct}, {i32}, {i32}, {i32}) -> ({off}, {sel})\n"
        f"  return %off, %sel : {off}, {sel}\n}}\n"
        f"func.func @decode_selected(%q: {q}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32},"
        f" %off: {off}, %sel: {sel}) -> {q} {{\n"
        f"  %o = attn.paged_attention %q, %cache, %p, %i, %l block_sparse(%off, %sel)"
        f" {{block_size = array<i64: 1, {PAGE}>}}"
        f" : ({q}, {ct}, {i32}, {i32}, {i32}, {off}, {sel}) -> {q}\n  return %o : {q}\n}}\n")


def random_bsr(rng, seq: int, density: float):
    """Per KV head: about `density` of all BLOCK x BLOCK blocks, inside the causal triangle."""
    n = -(-seq // BLOCK)
    want = max(1, round(density * n))  # blocks per row on average
    rows = []
    for h in range(HKV):
        for r in range(n):
            below = rng.permutation(r)[:max(0, min(r, want - 1))]
            rows.append((h, r, sorted(below.tolist()) + [r]))
    # The indices are CSR over all rows of a head: room for the longest head.
    width = max(sum(len(c) for hh, _, c in rows if hh == h) for h in range(HKV))
    off = np.zeros((1, HKV, n + 1), np.int32)
    idx = np.zeros((1, HKV, width), np.int32)
    full = np.zeros((1, HKV, width), np.int8)
    for h in range(HKV):
        at = 0
        for r in range(n):
            cols = rows[h * n + r][2]
            off[0, h, r] = at
            idx[0, h, at:at + len(cols)] = cols
            full[0, h, at:at + len(cols) - 1] = 1  # below the diagonal: wholly visible
            at += len(cols)
        off[0, h, n] = at
    return off, idx, full, float(off[0, :, n].sum()) / (HKV * n * n)


def visible_tiles(seq: int, heads) -> int:
    """KV tiles holding a visible key of their query tile, over the KV heads (host count)."""
    total = 0
    for causal, window, sinks in heads:
        for q0 in range(0, seq, TILE_Q):
            q1 = min(seq, q0 + TILE_Q) - 1
            hi = q1 if causal else seq - 1
            lo = max(0, q0 - window) if window >= 0 else 0
            main = range(lo // TILE_KV, hi // TILE_KV + 1)
            sink = set(range(0, -(-min(sinks, lo) // TILE_KV))) - set(main)
            total += len(main) + len(sink)
    return total


def bsr_tiles(seq: int, off, idx) -> int:
    """Tiles the kernel runs: all of a listed block below the diagonal (flagged full), and in
    the diagonal block (partial, causal) the tiles at or below the diagonal. seq is a multiple
    of BLOCK here."""
    per_block = (BLOCK // TILE_KV) * (BLOCK // TILE_Q)
    diagonal = sum(q0 // TILE_KV + 1 for q0 in range(TILE_Q - 1, BLOCK, TILE_Q))
    n = -(-seq // BLOCK)
    listed = int(off[0, :, n].sum())  # every row lists its diagonal block once
    return (listed - HKV * n) * per_block + HKV * n * diagonal


def timed(m, name, args, reps):
    m.run(name, args)  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        m.run(name, args)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=32768)
    ap.add_argument("--context", type=int, default=131072)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=1, help="timed prefill runs per mask")
    ap.add_argument("--decode-reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="seq 2048, context 8192")
    ap.add_argument("--only", choices=("prefill", "decode"), help="run one part")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.quick:
        a.seq, a.context = 2048, 8192
    rng = np.random.default_rng(20261123)
    work = Path(tempfile.mkdtemp(prefix="attnc-sparsebench-"))
    fmt = CacheFormat(PAGE, HKV, D, "nhd", "f16", None, None, summary="minmax")
    (work / "prefill.mlir").write_text(prefill_mlir())
    (work / "decode.mlir").write_text(decode_mlir(fmt))
    attnc = ROOT / "build" / "bin" / "attnc"
    t0 = time.perf_counter()
    for stem in ("prefill", "decode"):
        subprocess.run([str(attnc), str(work / f"{stem}.mlir"), "--target=host",
                        "-o", str(work / stem)], check=True)
    print(f"# compiled in {time.perf_counter() - t0:.1f} s; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{a.threads} threads")
    records = dict(prefill=[], decode=[])

    if a.only != "decode":
        # Prefill.
        s = a.seq
        q = (rng.standard_normal((1, s, HQ, D), np.float32) * 0.5).astype(np.float16)
        k = rng.standard_normal((1, s, HKV, D), np.float32).astype(np.float16)
        v = rng.standard_normal((1, s, HKV, D), np.float32).astype(np.float16)
        o = np.empty_like(q)
        off, idx, full, density = random_bsr(rng, s, 0.10)
        dense_tiles = visible_tiles(s, MASKS["dense"][1])
        rows = [(name, f"prefill{i}", {}, visible_tiles(s, heads))
                for i, (name, (_, heads)) in enumerate(MASKS.items())]
        rows.append((f"bsr {density:.0%}", "prefill_bsr",
                     {"block_offsets": off, "block_indices": idx, "block_full": full},
                     bsr_tiles(s, off, idx)))
        print(f"\n# prefill 1 x {s}, {HQ}/{HKV} heads, D {D}, f16; median of {a.reps}")
        print(f"{'mask':>14} {'ms':>10} {'vs causal':>10} {'vs dense':>9} {'tiles':>10} "
              f"{'tiles vs causal':>16}")
        causal_ms = causal_tiles = dense_ms = None
        with Module(work / "prefill", num_threads=a.threads) as m:
            for name, kernel, extra, tiles in rows:
                ms = timed(m, kernel, {"q": q, "k": k, "v": v, **extra, "o": o}, a.reps)
                if name == "dense":
                    dense_ms = ms
                if name == "causal":
                    causal_ms, causal_tiles = ms, tiles
                rel_c = ms / causal_ms if causal_ms else float("nan")
                tiles_c = tiles / causal_tiles if causal_tiles else float("nan")
                print(f"{name:>14} {ms:>10.1f} {rel_c:>10.3f} {ms / dense_ms:>9.3f} {tiles:>10} "
                      f"{tiles_c:>16.3f}", flush=True)
                records["prefill"].append(dict(mask=name, ms=ms, tiles=tiles,
                                               dense_tiles=dense_tiles))

    if a.only != "prefill":
        # Decode with page selection.
        ctx, b = a.context, BATCH
        lens = np.full(b, ctx)
        table = build_page_table(rng, lens, PAGE)
        indptr, indices, last = table.arrays()
        pool = fmt.empty_pool(table.num_pages)
        cache = {f"cache_{c}": arr for c, arr in pool.items()}
        sid, pos, slots = sequence_slots(table, skip_shared=False)
        qd = (rng.standard_normal((b, HQ, D), np.float32) * 0.5).astype(np.float16)
        # Concentrated attention, as in long-context retrieval: per (sequence, KV head) 3 pages
        # (away from the sinks and the recent pages) hold keys along the group's queries, so most
        # of each query head's softmax mass sits there; the other keys are random.
        pages = ctx // PAGE
        needle = np.zeros((b, pages, HKV), bool)
        for bi in range(b):
            for h in range(HKV):
                needle[bi, rng.choice(np.arange(1, pages - 4), 3, replace=False), h] = True
        # Token o of a planted page of KV head h lies along query head h * G + o % G.
        direction = qd.astype(np.float32).reshape(b, HKV, HQ // HKV, D)
        direction *= 4 * np.sqrt(D) / np.linalg.norm(direction, axis=-1, keepdims=True)
        g = HQ // HKV
        with Module(work / "decode", num_threads=a.threads) as m:
            chunk = 65536  # append in chunks: the K/V of 512k tokens at once is 2 GiB of f16
            for at in range(0, len(slots), chunk):
                n = min(chunk, len(slots) - at)
                kk = rng.standard_normal((n, HKV, D), np.float32)
                planted = needle[sid[at:at + n], pos[at:at + n] // PAGE]  # [n, HKV]
                along = direction[sid[at:at + n], :, pos[at:at + n] % g]       # [n, HKV, D]
                kk = np.where(planted[..., None], along, kk).astype(np.float16)
                vv = rng.standard_normal((n, HKV, D), np.float32).astype(np.float16)
                m.run("append", {"k_new": kk, "v_new": vv, "slot_mapping": slots[at:at + n],
                                 **cache})
            table_args = {"kv_indptr": indptr, "kv_indices": indices, "kv_last_page_len": last}
            full_o, sparse_o = np.empty_like(qd), np.empty_like(qd)
            sel_off = np.empty((b, HKV, 2), np.int32)
            sel = np.empty((b, HKV, TOP_K), np.int32)
            full_ms = timed(m, "decode", {"q": qd, **cache, **table_args, "o": full_o},
                            a.decode_reps)
            select_ms = timed(m, "select", {"q": qd, **cache, **table_args,
                                            "block_offsets": sel_off, "block_indices": sel},
                              a.decode_reps)
            sparse_ms = timed(m, "decode_selected",
                              {"q": qd, **cache, **table_args, "block_offsets": sel_off,
                               "block_indices": sel, "o": sparse_o}, a.decode_reps)
        err = float(np.abs(sparse_o.astype(np.float32) - full_o.astype(np.float32)).max())
        scale = float(np.abs(full_o.astype(np.float32)).max())
        found, mass = 0, 1.0
        for bi in range(b):
            keys = pool["k_pages"][indices[indptr[bi]:indptr[bi + 1]]].reshape(-1, HKV, D)
            for h in range(HKV):
                chosen = sel[bi, h, :sel_off[bi, h, 1]]
                found += len(set(chosen.tolist()) & set(np.flatnonzero(needle[bi, :, h]).tolist()))
                # Softmax mass of the selected pages, per query head of the group.
                sc = qd[bi, h * g:(h + 1) * g].astype(np.float64) @ keys[:ctx, h].T.astype(np.float64)
                p = np.exp((sc - sc.max(axis=1, keepdims=True)) / np.sqrt(D))
                inside = p.reshape(g, pages, PAGE)[:, chosen].sum(axis=(1, 2)) / p.sum(axis=1)
                mass = min(mass, float(inside.min()))
        print(f"\n# decode batch {b} x {ctx} keys, {HQ}/{HKV} heads, D {D}, f16 pages of {PAGE} "
              f"({pages} per sequence), top {TOP_K} pages; median of {a.decode_reps}")
        print(f"{'step':>22} {'ms':>9} {'vs full':>8}")
        for name, ms in (("full decode", full_ms), ("select_pages", select_ms),
                         ("decode, selected pages", sparse_ms),
                         ("select + decode", select_ms + sparse_ms)):
            print(f"{name:>22} {ms:>9.2f} {ms / full_ms:>8.3f}")
        print(f"# pages read: {TOP_K} of {pages} ({TOP_K / pages:.2%}); planted pages selected: "
              f"{found} of {3 * b * HKV}; softmax mass in the selected pages >= {mass:.4f}; "
              f"max |sparse - full| = {err:.3g} (max |full| = {scale:.3g})")
        records["decode"] = dict(batch=b, context=ctx, top_k=TOP_K, page_size=PAGE,
                                 full_ms=full_ms, select_ms=select_ms, sparse_ms=sparse_ms,
                                 max_abs_err=err, max_abs_full=scale, planted_found=found, min_selected_mass=mass,
                                 planted=3 * b * HKV)
    if a.json:
        a.json.write_text(json.dumps(dict(
            date=datetime.date.today().isoformat(), machine=platform.processor(),
            cores=os.cpu_count(), threads=a.threads, seq=a.seq, context=a.context, **records), indent=1))


if __name__ == "__main__":
    main()
