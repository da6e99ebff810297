"""End-to-end numerics: compile `attn.attention` kernels with attnc, run them through attn-run on
fresh random inputs and compare with the float64 reference (reference.py).

Covering design instead of the full cartesian product: 3 dtypes x 7 masks = 21 dense kernels;
head size, GQA ratio, softcap, explicit scale and LSE rotate over them so that every value of
every axis meets several dtypes and masks. Every dense kernel runs the cheap (Lq, Lk) shapes; the
expensive ones rotate. Ragged kernels (one per mask, dtypes rotating) run batches with empty and
length-1 sequences. A few extra kernels cover edge cases (window 0, static shapes, the 32x8 GQA
prefill of the examples).
"""
from __future__ import annotations

import numpy as np
import pytest

from harness import (KernelSpec, NP_DTYPE, compare, load_npy, manifest_kernel, run_attn_run,
                     save_npy)
from reference import Mask, attention

DTYPES = ["f32", "f16", "bf16"]
HEAD_DIMS = [64, 80, 96, 128, 256]
HEADS = [(4, 4), (8, 2), (8, 1), (16, 2), (12, 3)]  # GQA ratios 1, 4, 8 (MQA), 8, 4
MASKS = [
    Mask(),
    Mask(causal=True),
    Mask(causal=True, align="top_left"),
    Mask(window=16),
    Mask(window=16, sinks=4),
    Mask(causal=True, window=128, sinks=2),
    Mask(window=8, align="top_left"),
]
CHEAP_SHAPES = [(1, 1), (1, 7), (7, 7), (7, 1), (128, 128), (1000, 7), (1, 4097), (7, 1000)]
BIG_SHAPES = [(1000, 1000), (128, 4097)]

DENSE = []
for di, dt in enumerate(DTYPES):
    for mi, m in enumerate(MASKS):
        i = di * len(MASKS) + mi
        hq, hkv = HEADS[(mi + di) % len(HEADS)]
        DENSE.append(KernelSpec(
            dtype=dt, hq=hq, hkv=hkv, d=HEAD_DIMS[(mi + 2 * di) % len(HEAD_DIMS)], mask=m,
            softcap=[0.0, 4.0][(mi + di) % 2], scale=[None, None, 0.375][i % 3],
            lse=(i % 3 != 2)))
EXTRA = [
    # window 0 (only the diagonal) + sinks, bottom-right, with Lq != Lk
    KernelSpec("f32", 4, 2, 64, Mask(causal=True, window=0, sinks=1), lse=True),
    # static sizes stay static in the manifest
    KernelSpec("f32", 8, 2, 64, Mask(causal=True), lse=True, static=(2, 7, 1000)),
    # the examples' GQA prefill: 32 q heads, 8 kv heads, D=128, f16
    KernelSpec("f16", 32, 8, 128, Mask(causal=True), lse=True),
    KernelSpec("bf16", 32, 8, 128, Mask(window=128, sinks=4), softcap=30.0, lse=True),
]
RAGGED = [KernelSpec(dtype=DTYPES[mi % 3], hq=HEADS[mi % 5][0], hkv=HEADS[mi % 5][1],
                     d=HEAD_DIMS[(mi + 1) % 5], mask=m, softcap=[0.0, 4.0][mi % 2],
                     scale=[None, 0.25][(mi // 2) % 2], lse=(mi % 3 != 1), ragged=True)
          for mi, m in enumerate(MASKS)]
ALL_KERNELS = DENSE + EXTRA + RAGGED

# ragged batches: per-sequence (q lengths, k lengths)
SEQLENS = {
    "mixed": ([3, 0, 1, 7, 1], [5, 0, 9, 7, 1]),
    "lq_gt_lk": ([1, 200, 0, 9, 64], [1, 300, 17, 2, 1000]),
    "empty_sides": ([0, 1, 2, 1], [4, 0, 0, 1]),
}


def dense_cases():
    for ki, spec in enumerate(DENSE):
        shapes = CHEAP_SHAPES + [BIG_SHAPES[ki % len(BIG_SHAPES)]]
        for lq, lk in shapes:
            yield spec, (3 if lq * lk <= 64 else 2 if lq * lk <= 10000 else 1), lq, lk
    e0, e1, e2, e3 = EXTRA
    for lq, lk in [(1, 1), (7, 7), (1000, 7), (7, 1000), (128, 4097)]:
        yield e0, 2, lq, lk
    yield e1, 2, 7, 1000
    for lq, lk in [(1, 4097), (128, 4097), (1000, 1000)]:
        yield e2, 1, lq, lk
    for lq, lk in [(7, 1000), (1000, 1000)]:
        yield e3, 1, lq, lk


def random_inputs(rng, dtype, shape_q, shape_kv, softcap):
    """Fresh N(0,1) inputs in the kernel dtype (q scaled up with softcap so the cap bites)."""
    t = NP_DTYPE[dtype]
    qs = 3.0 if softcap else 1.0
    q = (qs * rng.standard_normal(shape_q, dtype=np.float32)).astype(t)
    k = rng.standard_normal(shape_kv, dtype=np.float32).astype(t)
    v = rng.standard_normal(shape_kv, dtype=np.float32).astype(t)
    return q, k, v


def run_and_check(spec, kdir, attn_run, tmp_path, seed, arrays, ref_kwargs):
    """Writes inputs, runs attn-run, compares o (and lse) against the reference."""
    man = manifest_kernel(kdir, spec.name)
    roles = {a["role"]: a["name"] for a in man["args"]}
    ins, outs = {}, {}
    for role, arr in arrays.items():
        p = tmp_path / f"{role}.npy"
        save_npy(p, arr)
        ins[roles[role]] = p
    for role in ["output"] + (["lse"] if spec.lse else []):
        outs[roles[role]] = tmp_path / f"out_{role}.npy"
    r = run_attn_run(attn_run, kdir, spec.name, ins, outs, extra=["--threads", "2"])
    ctx = f"seed={seed} (ATTNC_TEST_SEED={seed} to reproduce)\n$ {r.cmd}"
    assert r.returncode == 0, f"attn-run failed rc={r.returncode}\n{ctx}\n{r.stderr[-3000:]}"
    o_ref, lse_ref = attention(arrays["query"], arrays["key"], arrays["value"], **ref_kwargs)
    o = load_npy(outs[roles["output"]], spec.dtype)
    assert o.dtype == NP_DTYPE[spec.dtype], f"o dtype {o.dtype}\n{ctx}"
    lse = None
    if spec.lse:
        lse = load_npy(outs[roles["lse"]], "f32")
        assert lse.dtype == np.float32, f"lse dtype {lse.dtype}\n{ctx}"
    bad = compare(spec.dtype, o, o_ref, lse, lse_ref)
    # rows with no visible key must be exactly 0 (whether or not lse is returned)
    empty = np.isneginf(lse_ref)  # [B,Hq,Lq] or [Hq,Tq]
    if empty.any() and o.shape == o_ref.shape:
        perm = (1, 0, 2) if spec.ragged else (0, 2, 1, 3)  # -> [..., heads, rows, D]
        nz = np.abs(o.astype(np.float64).transpose(perm)[empty]).max()
        if nz != 0:
            bad.append(f"rows with no visible key are not zero (max |o| = {nz})")
    assert not bad, f"{spec.name}: " + "; ".join(bad) + f"\n{ctx}"


@pytest.mark.parametrize("spec,b,lq,lk", [
    pytest.param(s, b, lq, lk, id=f"{s.name}-b{b}_{lq}x{lk}") for s, b, lq, lk in dense_cases()])
def test_dense(spec, b, lq, lk, kernel_cache, attn_run, tmp_path, rng_seed):
    kernel_cache.register(ALL_KERNELS)
    kdir = kernel_cache.dir_for(spec)
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_inputs(rng, spec.dtype, (b, lq, spec.hq, spec.d), (b, lk, spec.hkv, spec.d),
                            spec.softcap)
    run_and_check(spec, kdir, attn_run, tmp_path, rng_seed,
                  {"query": q, "key": k, "value": v}, spec.reference_kwargs())


@pytest.mark.parametrize("spec,batch", [
    pytest.param(s, n, id=f"{s.name}-{n}") for s in RAGGED for n in SEQLENS])
def test_ragged(spec, batch, kernel_cache, attn_run, tmp_path, rng_seed):
    kernel_cache.register(ALL_KERNELS)
    kdir = kernel_cache.dir_for(spec)
    lens_q, lens_k = SEQLENS[batch]
    cq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_inputs(rng, spec.dtype, (cq[-1], spec.hq, spec.d),
                            (ck[-1], spec.hkv, spec.d), spec.softcap)
    arrays = {"query": q, "key": k, "value": v, "cu_seqlens_q": cq, "cu_seqlens_k": ck}
    kw = dict(spec.reference_kwargs(), cu_seqlens_q=cq, cu_seqlens_k=ck)
    run_and_check(spec, kdir, attn_run, tmp_path, rng_seed, arrays, kw)


def test_manifest_matches_source(kernel_cache):
    """The manifest records the attention parameters the source asked for."""
    kernel_cache.register(ALL_KERNELS)
    for spec in [DENSE[5], DENSE[13], EXTRA[1], RAGGED[4]]:
        a = manifest_kernel(kernel_cache.dir_for(spec), spec.name)
        att = a["attention"]
        assert att["layout"] == ("ragged" if spec.ragged else "dense")
        assert (att["num_q_heads"], att["num_kv_heads"], att["head_dim"]) == (
            spec.hq, spec.hkv, spec.d)
        assert att["dtype"] == spec.dtype and att["has_lse"] == spec.lse
        want_scale = spec.reference_kwargs()["scale"] or 1 / np.sqrt(spec.d)
        assert att["scale"] == pytest.approx(want_scale, rel=1e-6)
        assert att["softcap"] == pytest.approx(spec.softcap)
        m = att["mask"]
        assert Mask(m["causal"], m["window"], m["sinks"], m["align"]) == spec.mask
        if spec.static:
            assert a["args"][0]["shape"] == [spec.static[0], spec.static[1], spec.hq, spec.d]
