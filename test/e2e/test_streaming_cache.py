"""Streaming heads keep only sinks + window (docs/sparsity.md section 1): their own paged cache,
whose pool returns the pages that fall wholly outside the sinks and the window
(attnrt_cache_seq_trim, `-1` in the page table), read by a paged_attention with the window mask.
Memory stays bounded while sequences grow, every decode step matches the float64 reference over
all tokens with the window mask, and attnrt refuses the trimmed page table for a kernel whose mask
could read a trimmed page."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attnrt_ctypes import AttnrtError, CachePool, Module  # noqa: E402
from harness import O_TOL  # noqa: E402
from kv_reference import CacheFormat  # noqa: E402
from reference import Mask, attention  # noqa: E402

HQ, HKV, D, PAGE = 8, 2, 64, 8
SINKS, WINDOW = 4, 21


def module_mlir() -> str:
    ct = CacheFormat(PAGE, HKV, D, "nhd", "f16", None, None).mlir_type()
    kt, qt, i32 = f"tensor<?x{HKV}x{D}xf32>", f"tensor<?x{HQ}x{D}xf32>", "tensor<?xi32>"

    def decode(name, mask):
        return (f"func.func @{name}(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32})"
                f" -> {qt} {{\n  %o = attn.paged_attention %q, %cache, %p, %i, %l"
                f" {{mask = {mask}}} : ({qt}, {ct}, {i32}, {i32}, {i32}) -> {qt}\n"
                f"  return %o : {qt}\n}}\n")
    return (f"func.func @append(%k: {kt}, %v: {kt}, %s: {i32}, %cache: {ct}) {{\n"
            f"  attn.kv_append %k, %v, %s into %cache : {kt}, {kt}, {i32}, {ct}\n"
            f"  return\n}}\n"
            + decode("streaming", f"#attn.mask<window = {WINDOW}, sinks = {SINKS}>")
            + decode("retrieval", "#attn.mask<causal>"))


@pytest.fixture(scope="module")
def module(tools, tmp_path_factory):
    d = tmp_path_factory.mktemp("streaming")
    (d / "streaming.mlir").write_text(module_mlir())
    r = subprocess.run([str(tools[0]), str(d / "streaming.mlir"), "--target=host", "-o", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Module(d, num_threads=2) as m:
        yield m


def test_trimmed_streaming_cache(module, rng_seed):
    rng = np.random.default_rng(rng_seed)
    pool = CachePool(module, "append", num_pages=40)
    seqs = [pool.create() for _ in range(3)]
    tokens = {s: ([], []) for s in seqs}
    # Pages a sequence can need at once: the sink pages, the window's pages, one partial page.
    bound = -(-SINKS // PAGE) + -(-(WINDOW + 1) // PAGE) + 1
    most = 0
    for step in range(60):
        for i, s in enumerate(seqs):
            n = int(rng.integers(1, 6)) if step else 3 + 5 * i  # a prompt, then decode steps
            k = rng.standard_normal((n, HKV, D)).astype(np.float32)
            v = rng.standard_normal((n, HKV, D)).astype(np.float32)
            module.run("append", {"k_new": k, "v_new": v, "slot_mapping": pool.append(s, n),
                                  **pool.buffers})
            tokens[s][0].extend(k)
            tokens[s][1].extend(v)
            pool.trim(s, SINKS, WINDOW)
        most = max(most, pool.stats()["used_pages"])
        if step % 7 and step != 59:
            continue
        indptr, indices, last = pool.page_table(seqs)
        q = rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
        o = np.full_like(q, np.nan)
        module.run("streaming", {"q": q, **pool.buffers, "kv_indptr": indptr,
                                 "kv_indices": indices, "kv_last_page_len": last, "o": o})
        for b, s in enumerate(seqs):
            # f16 storage: the reference reads the appended tokens rounded to f16.
            kk = np.stack(tokens[s][0]).astype(np.float16).astype(np.float64)[None]
            vv = np.stack(tokens[s][1]).astype(np.float16).astype(np.float64)[None]
            ref, _ = attention(q[b][None, None].astype(np.float64), kk, vv,
                               mask=Mask(causal=True, window=WINDOW, sinks=SINKS))
            err = np.abs(o[b] - ref[0, 0]).max() / np.abs(ref).max()
            assert err <= O_TOL["f32"], f"step {step}, sequence {b}: error {err:.2e}"
    pool.check()
    lengths = [len(tokens[s][0]) for s in seqs]
    # Long enough that the untrimmed caches would not fit the pool (40 pages): a property of
    # the total, so that one short random sequence cannot fail it (min(lengths) > 4 * bound *
    # PAGE once did, at exactly 160 tokens).
    assert sum(-(-n // PAGE) for n in lengths) > 40
    assert most <= len(seqs) * bound, (most, bound)
    indptr, indices, last = pool.page_table(seqs)
    assert (indices == -1).sum() > 0

    # The same page table for a kernel whose mask sees every key: refused, not read.
    q = rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
    with pytest.raises(AttnrtError, match="-1"):
        module.run("retrieval", {"q": q, **pool.buffers, "kv_indptr": indptr,
                                 "kv_indices": indices, "kv_last_page_len": last,
                                 "o": np.empty_like(q)})
    pool.close()
