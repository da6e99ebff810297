"""A serving loop end to end: attnrt's page pool (attnrt_cache.h) owns the cache, hands out slots
and page tables; the compiled attn.kv_append writes into the pool's buffers in place and the
compiled attn.paged_attention reads them. Prefix sharing by fork, copy-on-write when a fork
appends into the shared last page, a full pool, and the bytes per token that the manifest and the
pool report (docs/kv-cache.md). With a residual window (i4_r12) the pool also gives every sequence
a ring: append returns ring slots, the page table comes with kv_rings, fork copies the ring."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attnrt_ctypes import AttnrtError, CachePool, Module  # noqa: E402
from harness import O_TOL  # noqa: E402
from kv_reference import CacheFormat, gather, paged_reference  # noqa: E402

HQ, HKV, D = 8, 2, 64
FORMATS = {  # name: (storage, page_size, k_group, residual)
    "f16": ("f16", 16, None, None),
    "i8": ("i8", 16, 4, None),
    "i4": ("i4", 8, 8, None),
    "i4_r12": ("i4", 8, 8, 12),      # a window longer than a page, shorter than the sequences
}
NUM_RINGS = 4
OUT_OF_PAGES = 8


def module_mlir() -> str:
    out = []
    for name, (storage, page, group, residual) in FORMATS.items():
        ct = CacheFormat(page, HKV, D, "nhd", storage, group, residual).mlir_type()
        kt, qt, i32 = f"tensor<?x{HKV}x{D}xf32>", f"tensor<?x{HQ}x{D}xf32>", "tensor<?xi32>"
        rs_arg, rs_op, r_arg, r_op, r_ty = "", "", "", "", ""
        if residual:
            rs_arg, rs_op = f", %rs: {i32}", f" ring_slots(%rs : {i32})"
            r_arg, r_op, r_ty = f", %r: {i32}", " kv_rings(%r)", f", {i32}"
        out.append(
            f"func.func @append_{name}(%k: {kt}, %v: {kt}, %s: {i32}{rs_arg}, %cache: {ct}) {{\n"
            f"  attn.kv_append %k, %v, %s{rs_op} into %cache : {kt}, {kt}, {i32}, {ct}\n"
            f"  return\n}}\n"
            f"func.func @decode_{name}(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32}"
            f"{r_arg}) -> {qt} {{\n  %o = attn.paged_attention %q, %cache, %p, %i, %l{r_op}"
            f" : ({qt}, {ct}, {i32}, {i32}, {i32}{r_ty}) -> {qt}\n  return %o : {qt}\n}}\n")
    return "\n".join(out)


@pytest.fixture(scope="module")
def module(tools, tmp_path_factory):
    d = tmp_path_factory.mktemp("kv_serving")
    (d / "serving.mlir").write_text(module_mlir())
    r = subprocess.run([str(tools[0]), str(d / "serving.mlir"), "--target=host", "-o", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Module(d, num_threads=2) as m:
        yield m


@pytest.mark.parametrize("name", list(FORMATS))
def test_serving_loop(module, name, rng_seed):
    storage, page, group, residual = FORMATS[name]
    fmt = CacheFormat(page, HKV, D, "nhd", storage, group, residual)
    rng = np.random.default_rng(rng_seed)
    pool = CachePool(module, f"append_{name}", num_pages=24, num_rings=NUM_RINGS)
    tokens = {}  # sequence -> list of (k, v) [HKV, D] appended, in order

    def append(seq, n):
        k = rng.standard_normal((n, HKV, D)).astype(np.float32)
        v = rng.standard_normal((n, HKV, D)).astype(np.float32)
        args = {"k_new": k, "v_new": v, **pool.buffers}
        if residual:
            args["slot_mapping"], args["ring_slots"] = pool.append_with_rings(seq, n)
        else:
            args["slot_mapping"] = pool.append(seq, n)
        module.run(f"append_{name}", args)
        tokens.setdefault(seq, []).extend(zip(k, v))

    def decode_and_check(seqs):
        indptr, indices, last = pool.page_table(seqs)
        q = rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
        o = np.full_like(q, np.nan)
        args = {"q": q, **pool.buffers, "kv_indptr": indptr, "kv_indices": indices,
                "kv_last_page_len": last, "o": o}
        rings = None
        if residual:
            rings = args["kv_rings"] = pool.rings(seqs)
            assert len(set(rings.tolist())) == len(seqs)      # one ring per sequence
        module.run(f"decode_{name}", args)
        comp = {r: pool.buffers[f"cache_{r}"] for r in
                ("k_pages", "v_pages", "k_scale", "v_scale", "k_min", "v_min", "k_recent",
                 "v_recent") if f"cache_{r}" in pool.buffers}
        ks, vs = gather(comp, fmt, indptr, indices, last, kv_rings=rings)
        for b, seq in enumerate(seqs):
            # What the pool holds for this sequence is what was appended to it (exactly for
            # f16 storage and for the residual window's f16 rings; within the format's
            # quantization step otherwise).
            want_k = np.stack([t[0] for t in tokens[seq]])
            want_v = np.stack([t[1] for t in tokens[seq]])
            assert ks[b].shape == want_k.shape
            tol = {"f16": 1e-3, "i8": 0.02, "i4": 0.15, "i4_r12": 0.15}[name]
            assert np.abs(ks[b] - want_k).max() <= tol * np.abs(want_k).max()
            assert np.abs(vs[b] - want_v).max() <= tol * np.abs(want_v).max()
            if residual:
                f16 = lambda x: x[-residual:].astype(np.float16).astype(np.float64)  # noqa: E731
                np.testing.assert_array_equal(ks[b][-residual:], f16(want_k))
                np.testing.assert_array_equal(vs[b][-residual:], f16(want_v))
        ref, _ = paged_reference(q, ks, vs)
        err = np.abs(o - ref).max() / np.abs(ref).max()
        assert err <= O_TOL["f32"], f"decode error {err:.2e}"

    a = pool.create()
    append(a, 21)                     # a prompt: two full pages and a partial one (page 16) ...
    decode_and_check([a])
    b = pool.fork(a)                  # ... shared with a second request
    tokens[b] = list(tokens[a])
    if residual:                      # fork copies the ring into b's own
        ra, rb = pool.rings([a, b])
        assert ra != rb
        for r in ("k_recent", "v_recent"):
            buf = pool.buffers[f"cache_{r}"]
            np.testing.assert_array_equal(buf[rb].view(np.uint16), buf[ra].view(np.uint16))
    shared_before = pool.stats()["used_pages"]
    append(b, 1)                      # b writes into the shared partial page: copy-on-write
    assert pool.stats()["used_pages"] == shared_before + 1
    for _ in range(5):
        append(a, 1)                  # decode steps of both
        append(b, 1)
        decode_and_check([a, b])
    c = pool.fork(b)
    tokens[c] = list(tokens[b])
    append(c, 9)
    decode_and_check([c, a, b])
    pool.check()

    # A full pool refuses atomically and leaves every sequence readable.
    used = pool.stats()["used_pages"]
    with pytest.raises(AttnrtError) as e:
        (pool.append_with_rings if residual else pool.append)(a, 24 * page)
    assert e.value.status == OUT_OF_PAGES
    assert pool.stats()["used_pages"] == used
    decode_and_check([a, b, c])

    if residual:
        # A ring per live sequence: with every ring taken, fork (and create) fail atomically.
        d = pool.create()
        assert pool.stats()["free_rings"] == 0
        for fn, arg in ((pool.fork, a), (lambda _: pool.create(), None)):
            with pytest.raises(AttnrtError) as e:
                fn(arg)
            assert e.value.status == OUT_OF_PAGES
        pool.free(d)
        decode_and_check([b, a, c])

    for s in (a, b, c):
        pool.free(s)
    st = pool.stats()
    assert st["used_pages"] == 0 and st["free_pages"] == 24
    if residual:
        assert st["num_rings"] == st["free_rings"] == NUM_RINGS
    pool.check()


def test_bytes_per_token(tools, tmp_path):
    """bytes per token per layer, as the manifest, the runtime's kernel info and the page pool
    report it: int8 within 3% of half of f16 (scales included), int4 within 3% of a quarter
    of f16 plus its scales (Llama-3-8B heads, pages and K groups of 64)."""
    fmts = {"f16": ("f16", None), "i8": ("i8", 64), "i4": ("i4", 64), "fp8": ("f8E4M3FN", None)}
    src = []
    for name, (storage, g) in fmts.items():
        ct = CacheFormat(64, 8, 128, "nhd", storage, g).mlir_type()
        kt = "tensor<?x8x128xf16>"
        src.append(f"func.func @append_{name}(%k: {kt}, %v: {kt}, %s: tensor<?xi32>, "
                   f"%cache: {ct}) {{\n  attn.kv_append %k, %v, %s into %cache : {kt}, {kt}, "
                   f"tensor<?xi32>, {ct}\n  return\n}}\n")
    (tmp_path / "bytes.mlir").write_text("\n".join(src))
    r = subprocess.run([str(tools[0]), str(tmp_path / "bytes.mlir"), "--target=host", "-o",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    per_token = {}
    with Module(tmp_path) as m:
        for name in fmts:
            manifest = m.info(f"append_{name}")["kv_cache"]["bytes_per_token"]
            pool = CachePool(m, f"append_{name}", num_pages=4)
            assert pool.stats()["bytes_per_token"] == manifest
            per_token[name] = manifest
            pool.close()
    f16 = per_token["f16"]
    assert f16 == 2 * 8 * 128 * 2
    assert per_token["fp8"] == f16 / 2
    assert abs(per_token["i8"] / (f16 / 2) - 1) <= 0.03
    # int4: K scale + minimum per channel per group of 64, V scale + minimum per token (f16).
    i4_scales = 2 * 2 * 8 * 128 / 64 + 2 * 2 * 8
    assert abs(per_token["i4"] / (f16 / 4 + i4_scales) - 1) <= 0.03


def test_split_kv_count_does_not_change_results(tools, tmp_path, rng_seed):
    """The same decode kernel compiled with 1, 2, 3 and 7 split-KV partitions (and the automatic
    choice) gives the same output and LSE within f32 rounding, including a sequence with no
    pages, sequences with fewer KV tiles than partitions (empty partitions) and a long one."""
    rng = np.random.default_rng(rng_seed)
    fmt = CacheFormat(16, HKV, D, "hnd", "i8", 8)
    ct, qt, i32 = fmt.mlir_type(), f"tensor<?x{HQ}x{D}xf32>", "tensor<?xi32>"
    lt = f"tensor<{HQ}x?xf32>"
    src = (f"func.func @decode(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32})"
           f" -> ({qt}, {lt}) {{\n  %o, %lse = attn.paged_attention %q, %cache, %p, %i, %l"
           f" {{mask = #attn.mask<window = 300, sinks = 4>}}"
           f" : ({qt}, {ct}, {i32}, {i32}, {i32}) -> ({qt}, {lt})\n"
           f"  return %o, %lse : {qt}, {lt}\n}}\n")
    (tmp_path / "decode.mlir").write_text(src)
    lens = np.array([0, 1, 17, 40, 1000, 333])
    from kv_reference import append, build_page_table, sequence_slots
    table = build_page_table(rng, lens, fmt.page_size, extra_pages=3)
    pool = fmt.empty_pool(table.num_pages)
    _, _, slots = sequence_slots(table)
    k = rng.standard_normal((slots.size, HKV, D)).astype(np.float32)
    v = rng.standard_normal((slots.size, HKV, D)).astype(np.float32)
    pool = append(pool, fmt, k, v, slots)
    q = rng.standard_normal((lens.size, HQ, D)).astype(np.float32)
    args = {f"cache_{n}": a for n, a in pool.items()}
    args.update(q=q, kv_indptr=table.kv_indptr, kv_indices=table.kv_indices,
                kv_last_page_len=table.kv_last_page_len)
    results = {}
    for splits in (0, 1, 2, 3, 7):
        d = tmp_path / f"s{splits}"
        r = subprocess.run([str(tools[0]), str(tmp_path / "decode.mlir"), "--target=host",
                            f"--num-kv-splits={splits}", "-o", str(d)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        o = np.full_like(q, np.nan)
        lse = np.full((HQ, lens.size), np.nan, np.float32)
        with Module(d, num_threads=2) as m:
            m.run("decode", {**args, "o": o, "lse": lse})
        results[splits] = (o, lse)
    ks, vs = gather(pool, fmt, *table.arrays())
    from reference import Mask
    ref_o, ref_lse = paged_reference(q, ks, vs, mask=Mask(window=300, sinks=4))
    base_o, base_lse = results[1]
    assert (base_o[0] == 0).all() and np.isneginf(base_lse[:, 0]).all()
    for splits, (o, lse) in results.items():
        assert np.abs(o - ref_o).max() <= 1e-5 * np.abs(ref_o).max(), splits
        assert np.abs(o - base_o).max() <= 1e-5 * np.abs(base_o).max(), splits
        finite = np.isfinite(base_lse)
        assert (np.isfinite(lse) == finite).all(), splits
        assert np.abs(lse[finite] - base_lse[finite]).max() <= 1e-5, splits
        assert np.abs(lse[finite] - ref_lse[finite]).max() <= 1e-5, splits


def test_bad_inputs_are_errors_not_reads(module):
    """Bad page tables and buffers give attnrt validation errors (status 7) that say what is
    wrong, before the kernel runs; a full pool is status 8 (test_serving_loop)."""
    pool = CachePool(module, "append_i8", num_pages=4)
    s = pool.create()
    slots = pool.append(s, 20)
    k = np.ones((20, HKV, D), np.float32)
    module.run("append_i8", {"k_new": k, "v_new": k, "slot_mapping": slots, **pool.buffers})
    indptr, indices, last = pool.page_table([s])
    q = np.ones((1, HQ, D), np.float32)
    good = {"q": q, **pool.buffers, "kv_indptr": indptr, "kv_indices": indices,
            "kv_last_page_len": last, "o": np.empty_like(q)}
    module.run("decode_i8", good)

    def expect(changes, *words):
        with pytest.raises(AttnrtError) as e:
            module.run("decode_i8", {**good, **changes})
        assert e.value.status == 7, e.value
        for w in words:
            assert w in e.value.message, e.value.message

    bad = indices.copy()
    bad[-1] = 4
    expect({"kv_indices": bad}, "kv_indices", "4")                 # page out of range
    expect({"kv_indices": -bad}, "kv_indices")                      # negative page
    expect({"kv_last_page_len": np.array([17], np.int32)}, "kv_last_page_len", "17")
    expect({"kv_indptr": np.array([0, 3], np.int32)}, "kv_indptr")  # more pages than listed
    ks = pool.buffers["cache_k_scale"]
    expect({"cache_k_scale": np.zeros(ks.shape[:-1] + (D // 2,), ks.dtype)}, "cache_k_scale")
    expect({"cache_k_scale": np.zeros((3,) + ks.shape[1:], ks.dtype)}, "num_pages")
    with pytest.raises(AttnrtError) as e:                           # slot past the pool
        module.run("append_i8", {"k_new": k[:1], "v_new": k[:1],
                                 "slot_mapping": np.array([4 * 16], np.int32), **pool.buffers})
    assert e.value.status == 7 and "slot_mapping" in e.value.message
    pool.free(s)
    pool.close()
