"""GPU numerics (label gpu): the prefill kernel over ragged batches, run through attnrt's GPU API
(attnrt_cuda.h, by ctypes) against the float64 reference (test/e2e/reference.py).

Ragged attention (cu_seqlens: sequences of different query and key lengths concatenated) and
paged append/prefill (qo_indptr: each sequence's queries are the last tokens of its paged KV
sequence, bottom-right aligned), f16 and bf16, head_dim 64 and 128, GQA 1, 3, 4 and 8, NHD and HND
pages in f16/bf16, int8, int4 and fp8 e4m3fn/e5m2, causal (both alignments), window with sinks, per-KV-head masks (head_masks), softcap,
with and without LSE; batches with
empty, one-token, odd and tile-straddling sequences, and more sequences than query tiles (so a
block takes several tiles). Outputs are NaN-poisoned. Without a CUDA driver or device the module
exits 77, which ctest reports as skipped; test/e2e/test_gpu_cases_on_host.py runs the same cases
against the kernels compiled for the host.

    ATTNC_BIN_DIR=build/bin ATTNRT_LIB=build/lib/libattnrt.so \\
        python -m pytest test/gpu/test_gpu_prefill_ragged.py
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import attnrt_ctypes as rt  # noqa: E402
from harness import compare, gpu_kernels  # noqa: E402
from kv_reference import build_page_table  # noqa: E402
from reference import Mask, attention  # noqa: E402
from quantized_pages import gather, random_pages  # noqa: E402

PAGE = 16
K_GROUP = 8  # int8 and int4 pages: tokens sharing one per-channel K scale
MASKS = {
    "none": ("", Mask()),
    "causal": ("#attn.mask<causal>", Mask(causal=True)),
    "causal_top_left": ("#attn.mask<causal, top_left>", Mask(causal=True, align="top_left")),
    "window_sinks": ("#attn.mask<window = 100, sinks = 4>", Mask(window=100, sinks=4)),
}
# Per-KV-head policies (head_masks, docs/sparsity.md): a retrieval head (causal) beside a
# streaming head (window and sinks), DuoAttention's split.
HEAD_MASKS = ["causal", "window_sinks"]
# (query length, key length) per sequence; paged kernels need query <= key length.
LENS = [[(1, 1)], [(0, 5), (37, 37), (64, 200), (17, 130)], [(300, 1000), (3, 4097)],
        [(1, 40)] * 70 + [(65, 65)] * 3]
# On the PTX emulator (ATTNC_GPU_EMULATOR, thousands of times slower than a device): shorter
# keys, still many sequences, partial tiles and blocks that take several tiles.
if os.environ.get("ATTNC_GPU_EMULATOR"):
    LENS = [[(1, 1)], [(0, 5), (37, 37), (64, 200), (17, 130)], [(1, 40)] * 20 + [(65, 65)] * 2]


def kernel_mlir(name, layout, dtype, d, hq, hkv, mask, lse, page_layout="nhd", softcap=0.0,
                storage=None):
    """A ragged (`layout` "ragged") or paged append (`layout` "paged") kernel, the pages in
    `storage` (default `dtype`)."""
    q = f"tensor<?x{hq}x{d}x{dtype}>"
    i = "tensor<?xi32>"
    res = f"({q}, tensor<{hq}x?xf32>)" if lse else q
    outs = "%o, %lse" if lse else "%o"
    if mask == "head_masks":
        items = [f"head_masks = [{', '.join(MASKS[m][0] for m in HEAD_MASKS)}]"]
    else:
        items = [f"mask = {MASKS[mask][0]}"] if MASKS[mask][0] else []
    items += [f"softcap = {softcap} : f32"] if softcap else []
    attrs = f" {{{', '.join(items)}}}" if items else ""
    if layout == "ragged":
        kv = f"tensor<?x{hkv}x{d}x{dtype}>"
        return (f"func.func @{name}(%q: {q}, %k: {kv}, %v: {kv}, %cu_q: {i}, %cu_k: {i})\n"
                f"    -> {res} {{\n"
                f"  {outs} = attn.attention %q, %k, %v cu_seqlens(%cu_q, %cu_k){attrs}\n"
                f"      : ({q}, {kv}, {kv}, {i}, {i}) -> {res}\n"
                f"  return {outs} : {res[1:-1] if lse else res}\n}}\n")
    storage = storage or dtype
    group = f", k_group = {K_GROUP}" if storage in ("i8", "i4") else ""
    cache = (f"!attn.kv_cache<page_size = {PAGE}, kv_heads = {hkv}, head_dim = {d}, "
             f"layout = {page_layout}, storage = {storage}{group}>")
    return (f"func.func @{name}(%q: {q}, %cache: {cache}, %indptr: {i}, %indices: {i},\n"
            f"    %last: {i}, %qo: {i}) -> {res} {{\n"
            f"  {outs} = attn.paged_attention %q, %cache, %indptr, %indices, %last "
            f"qo_indptr(%qo){attrs}\n"
            f"      : ({q}, {cache}, {i}, {i}, {i}, {i}) -> {res}\n"
            f"  return {outs} : {res[1:-1] if lse else res}\n}}\n")


HEADS = [(4, 4), (8, 2), (8, 1), (6, 2)]
KERNELS = []
for di, dtype in enumerate(["f16", "bf16"]):
    for d in (64, 128):
        for mi, mask in enumerate(MASKS):
            hq, hkv = HEADS[(di + mi) % 4]
            KERNELS.append((f"ragged_{dtype}_d{d}_{mask}", "ragged", dtype, d, hq, hkv, mask,
                            (di + mi) % 2 == 0))
        for pi, page_layout in enumerate(["nhd", "hnd"]):
            for mask in ("causal", "window_sinks"):
                KERNELS.append((f"append_{dtype}_d{d}_{page_layout}_{mask}", "paged", dtype, d,
                                8, 2, mask, (di + pi) % 2 == 1, page_layout))
    KERNELS.append((f"ragged_{dtype}_d128_causal_softcap", "ragged", dtype, 128, 8, 2, "causal",
                    True, "nhd", 20.0))
    # Per-head masks over the 2 KV heads.
    KERNELS.append((f"ragged_{dtype}_d64_head_masks", "ragged", dtype, 64, 8, 2, "head_masks",
                    dtype == "f16"))
    KERNELS.append((f"append_{dtype}_d128_head_masks", "paged", dtype, 128, 8, 2, "head_masks",
                    dtype == "bf16", "hnd"))
    # Quantized pages, dequantized into the kernel's shared tiles.
    for si, storage in enumerate(["i8", "i4", "f8E4M3FN", "f8E5M2"]):
        d, mask = [64, 128][(di + si) % 2], ["causal", "window_sinks"][si // 2]
        page_layout = ["nhd", "hnd"][(di + si // 2) % 2]
        KERNELS.append((f"append_{storage.lower()}_{dtype}_d{d}_{page_layout}_{mask}", "paged",
                        dtype, d, 8, 2, mask, si % 2 == 0, page_layout, 0.0, storage))


def reference(q, k, v, mask, **kw):
    """attention() of the reference, with `mask` a MASKS key or "head_masks": then each KV
    head's query heads under that head's mask."""
    if mask != "head_masks":
        return attention(q, k, v, mask=MASKS[mask][1], **kw)
    hkv = k.shape[-2]
    group = q.shape[-2] // hkv
    parts = [attention(q[..., h * group:(h + 1) * group, :], k[..., h:h + 1, :],
                       v[..., h:h + 1, :], mask=MASKS[HEAD_MASKS[h]][1], **kw)
             for h in range(hkv)]
    return (np.concatenate([o for o, _ in parts], axis=-2),
            np.concatenate([lse for _, lse in parts], axis=-2))


@pytest.fixture(scope="module")
def gpu_module(tmp_path_factory):
    """The kernels compiled for sm_80 and sm_90 and opened; exits 77 without a GPU."""
    yield from gpu_kernels(tmp_path_factory, "gpu_prefill_ragged",
                           "\n".join(kernel_mlir(*k) for k in KERNELS))


def random_case(rng, kernel, lens, tile_rounding=False):
    """Random inputs for one batch of `kernel`: the arguments in manifest order (outputs
    NaN-filled), the outputs, and the float64 references. With `tile_rounding` the reference
    reads quantized pages' values rounded to the query dtype, as the GPU kernel's tensor-core
    tiles hold them (docs/gpu.md, "Quantized pages in prefill"); the host kernels keep f32."""
    name, layout, dtype, d, hq, hkv, mask, lse, *rest = kernel
    page_layout, softcap, storage = (list(rest) + ["nhd", 0.0, dtype][len(rest):])
    t = rt.NP_DTYPES[dtype]
    lq = [a for a, _ in lens]
    lk = [b for _, b in lens]
    cu_q = np.concatenate([[0], np.cumsum(lq)]).astype(np.int32)
    tq = int(cu_q[-1])
    scale_q = 3.0 if softcap else 1.0  # so that the cap bites
    q = (scale_q * rng.standard_normal((tq, hq, d), dtype=np.float32)).astype(t)
    o = np.full((tq, hq, d), np.nan, dtype=t)
    lse_out = np.full((hq, tq), np.nan, dtype=np.float32) if lse else None
    if layout == "ragged":
        cu_k = np.concatenate([[0], np.cumsum(lk)]).astype(np.int32)
        k = rng.standard_normal((int(cu_k[-1]), hkv, d), dtype=np.float32).astype(t)
        v = rng.standard_normal((int(cu_k[-1]), hkv, d), dtype=np.float32).astype(t)
        args = [q, k, v, cu_q, cu_k, o] + ([lse_out] if lse else [])
        o_ref, lse_ref = reference(q, k, v, mask, softcap=softcap, cu_seqlens_q=cu_q,
                                   cu_seqlens_k=cu_k)
        return args, (o, lse_out), (o_ref, lse_ref if lse else None)

    table = build_page_table(rng, lk, PAGE, extra_pages=3)
    head_major = page_layout == "hnd"
    k_pages, v_pages, scales, k_values, v_values = random_pages(
        rng, storage, dtype, table.num_pages, PAGE, hkv, d, head_major, K_GROUP)
    args = [q, k_pages, v_pages, *scales, table.kv_indptr.astype(np.int32),
            table.kv_indices.astype(np.int32), table.kv_last_page_len.astype(np.int32), cu_q, o]
    args += [lse_out] if lse else []
    if tile_rounding and storage != dtype:
        k_values, v_values = (x.astype(t).astype(np.float64) for x in (k_values, v_values))
    # The reference over the values of each sequence's keys, gathered from its pages.
    ks, vs = [], []
    for s in range(len(lens)):
        ids = table.kv_indices[table.kv_indptr[s]:table.kv_indptr[s + 1]]
        ks.append(gather(k_values, ids, lk[s], head_major))
        vs.append(gather(v_values, ids, lk[s], head_major))
    cu_k = np.concatenate([[0], np.cumsum(lk)])
    o_ref, lse_ref = reference(q, np.concatenate(ks), np.concatenate(vs), mask, softcap=softcap,
                               cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
    return args, (o, lse_out), (o_ref, lse_ref if lse else None)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k[0])
def test_ragged_prefill_against_float64(kernel, gpu_module):
    seed = int(os.environ.get("ATTNC_TEST_SEED", np.random.SeedSequence().entropy % 2**31))
    rng = np.random.default_rng(seed)
    for lens in LENS:
        args, (o, lse), (o_ref, lse_ref) = random_case(rng, kernel, lens, tile_rounding=True)
        gpu_module.run_arrays(kernel[0], args)
        bad = compare(kernel[2], o, o_ref, lse, lse_ref)
        assert not bad, f"{kernel[0]} lens={lens} seed={seed}: " + "; ".join(bad)
