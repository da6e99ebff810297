"""GPU numerics (label gpu): the paged decode kernels attnc compiles for NVIDIA GPUs, run through
attnrt's GPU API (attnrt_cuda.h, by ctypes) on fresh random caches and page tables, against the
float64 reference (test/e2e/reference.py) over the keys each sequence's pages hold.

Every decode kernel the GPU target has: f16, bf16, int8, int4, fp8 e4m3fn and e5m2 pages,
head_dim 64 and 128, NHD and HND, 4 and 8 query heads per KV head (4 with quantized pages), with
and without a window with sinks, per-KV-head masks, int8 and int4 caches with a residual window,
LSE and softcap; over batches with empty,
one-token and page-straddling sequences and shuffled pages. Split-KV kernels (gpu.split_kv) run every batch with num_splits
chosen by attnrt, 1, 3 and max_splits (attnrt_gpu_set_num_splits), and also over long sequences
(LONG_SEQ_LENS), whose splits hold many keys each; in short ones the later splits are empty.
Without a CUDA driver or device the module exits 77, which ctest reports as skipped.

    ATTNC_BIN_DIR=build/bin ATTNRT_LIB=build/lib/libattnrt.so \\
        python -m pytest test/gpu/test_gpu_decode.py
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

PAGE = 16
K_GROUP = 8  # int8: tokens sharing one per-channel K scale
SEQ_LENS = [[1], [0, 37, 16, 1000], [4097, 3], [300] * 5]
# GPU only (their float64 references would slow test/e2e/test_gpu_cases_on_host.py down, which
# runs SEQ_LENS on the host): long sequences beside empty and one-token ones.
LONG_SEQ_LENS = [[700, 0, 1500, 1, 3000], [3000]]
# On the PTX emulator (ATTNC_GPU_EMULATOR, thousands of times slower than a device): shorter
# sequences that still straddle pages, leave splits empty and give each split many keys.
EMULATED = bool(os.environ.get("ATTNC_GPU_EMULATOR"))
if EMULATED:
    SEQ_LENS = [[1], [0, 37, 16, 200], [500, 3]]
    LONG_SEQ_LENS = []
# Quantized caches with a residual window ("<storage>_residual"): each sequence's RESIDUAL latest
# tokens are read from its f16 ring (docs/kv-cache.md), the rest from the pages.
RESIDUAL = 32


def split_storage(storage):
    """("i8", 32) for "i8_residual", (storage, 0) otherwise."""
    if storage.endswith("_residual"):
        return storage[:-len("_residual")], RESIDUAL
    return storage, 0


def kernel_mlir(name, dtype, d, layout, hq, window, lse, storage, softcap=0.0):
    storage, residual = split_storage(storage)
    group = f", k_group = {K_GROUP}" if storage in ("i8", "i4") else ""
    group += f", residual = {residual}" if residual else ""
    cache = (f"!attn.kv_cache<page_size = {PAGE}, kv_heads = 2, head_dim = {d}, "
             f"layout = {layout}, storage = {storage}{group}>")
    q = f"tensor<?x{hq}x{d}x{dtype}>"
    res = f"({q}, tensor<{hq}x?xf32>)" if lse else q
    outs = "%o, %lse" if lse else "%o"
    if window == "head_masks":  # KV head 0 sees everything, head 1 a window with sinks
        items = ["head_masks = [#attn.mask<causal>, #attn.mask<window = 100, sinks = 4>]"]
    else:
        items = ["mask = #attn.mask<window = 100, sinks = 4>"] if window else []
    items += [f"softcap = {softcap} : f32"] if softcap else []
    attrs = f" {{{', '.join(items)}}}" if items else ""
    i = "tensor<?xi32>"
    rings = f", %rings: {i}" if residual else ""
    rings_use = " kv_rings(%rings)" if residual else ""
    rings_type = f", {i}" if residual else ""
    return (f"func.func @{name}(%q: {q}, %cache: {cache}, %indptr: {i}, %indices: {i},\n"
            f"    %last: {i}{rings}) -> {res} {{\n"
            f"  {outs} = attn.paged_attention %q, %cache, %indptr, %indices, %last{rings_use}"
            f"{attrs}\n"
            f"      : ({q}, {cache}, {i}, {i}, {i}{rings_type}) -> {res}\n"
            f"  return {outs} : {res[1:-1] if lse else res}\n}}\n")


KERNELS = []
for di, dtype in enumerate(["f16", "bf16"]):
    for d in (64, 128):
        for li, layout in enumerate(["nhd", "hnd"]):
            for window in (False, True):
                hq = [8, 16][(di + li) % 2]  # 4 or 8 query heads per KV head
                lse = (di + li + window) % 2 == 0
                suffix = f"{'_window' if window else ''}{'_lse' if lse else ''}"
                KERNELS.append((f"decode_{dtype}_d{d}_{layout}_h{hq}{suffix}",
                                dtype, d, layout, hq, window, lse, dtype))
                KERNELS.append((f"decode_i8_{dtype}_d{d}_{layout}_h8{suffix}",
                                dtype, d, layout, 8, window, not lse, "i8"))
                fp8 = ["f8E4M3FN", "f8E5M2"][(di + li) % 2]
                KERNELS.append((f"decode_{fp8.lower()}_{dtype}_d{d}_{layout}_h8{suffix}",
                                dtype, d, layout, 8, window, lse, fp8))
        # int4 pages (asymmetric: scales and minima), both layouts
        for li, layout in enumerate(["nhd", "hnd"]):
            KERNELS.append((f"decode_i4_{dtype}_d{d}_{layout}_h8", dtype, d, layout, 8,
                            li == 1, (di + li) % 2 == 0, "i4"))
        # int8 and int4 caches with a residual window
        for storage in ("i8_residual", "i4_residual"):
            KERNELS.append((f"decode_{storage}_{dtype}_d{d}", dtype, d, ["nhd", "hnd"][di], 8,
                            False, True, storage))
        # per-KV-head masks (head_masks)
        KERNELS.append((f"decode_{dtype}_d{d}_head_masks", dtype, d, "nhd", 8, "head_masks",
                        True, dtype))
        # softcap 20 over bf16 and int8 pages
        KERNELS.append((f"decode_{dtype}_d{d}_softcap", dtype, d, "nhd", 8, False, True, dtype,
                        20.0))
        KERNELS.append((f"decode_i8_{dtype}_d{d}_softcap", dtype, d, "hnd", 8, True, False, "i8",
                        20.0))


@pytest.fixture(scope="module")
def gpu_module(tmp_path_factory):
    """The kernels compiled for sm_80 and sm_90 and opened; exits 77 without a GPU."""
    yield from gpu_kernels(tmp_path_factory, "gpu_decode",
                           "\n".join(kernel_mlir(*k) for k in KERNELS))


def random_case(rng, kernel, lens):
    """Random pages (and scales), page table and queries for one batch of `kernel`: the
    arguments in manifest order (outputs NaN-filled), the outputs, and the float64 reference
    over the values the pages hold (dequantized)."""
    name, dtype, d, layout, hq, window, lse, storage, *rest = kernel
    softcap = rest[0] if rest else 0.0
    storage, residual = split_storage(storage)
    t = rt.NP_DTYPES[dtype]
    table = build_page_table(rng, lens, PAGE, extra_pages=3)
    pages = table.num_pages
    shape = (pages, PAGE, 2, d) if layout == "nhd" else (pages, 2, PAGE, d)
    scales = []
    k_codes = v_codes = None
    if storage == "i4":
        # Codes 0..15, two a byte (channel 2i in the low nibble); f16 scales and minima in the
        # manifest's order: k_scale, k_min, v_scale, v_min. The reference reads s * q + m.
        k_codes = rng.integers(0, 16, shape, dtype=np.uint8)
        v_codes = rng.integers(0, 16, shape, dtype=np.uint8)
        k_pages = (k_codes[..., 0::2] | (k_codes[..., 1::2] << 4)).astype(np.uint8)
        v_pages = (v_codes[..., 0::2] | (v_codes[..., 1::2] << 4)).astype(np.uint8)
        per_channel = (pages, PAGE // K_GROUP, 2, d)
        scales = [rng.uniform(0.02, 0.2, per_channel).astype(np.float16),
                  rng.uniform(-1.5, -0.5, per_channel).astype(np.float16),
                  rng.uniform(0.02, 0.2, (pages, PAGE, 2)).astype(np.float16),
                  rng.uniform(-1.5, -0.5, (pages, PAGE, 2)).astype(np.float16)]
    elif storage == "i8":
        # Stored integers and f16 scales; the reference reads scale * q.
        k_pages = rng.integers(-127, 128, shape, dtype=np.int8)
        v_pages = rng.integers(-127, 128, shape, dtype=np.int8)
        scales = [rng.uniform(0.002, 0.02, (pages, PAGE // K_GROUP, 2, d)).astype(np.float16),
                  rng.uniform(0.002, 0.02, (pages, PAGE, 2)).astype(np.float16)]
    elif storage.startswith("f8"):
        # fp8 values times per-head f32 scales.
        f8 = rt.NP_DTYPES[storage.lower()]
        k_pages = (2 * rng.standard_normal(shape, dtype=np.float32)).astype(f8)
        v_pages = (2 * rng.standard_normal(shape, dtype=np.float32)).astype(f8)
        scales = [rng.uniform(0.2, 0.6, 2).astype(np.float32) for _ in range(2)]
    else:
        k_pages = rng.standard_normal(shape, dtype=np.float32).astype(t)
        v_pages = rng.standard_normal(shape, dtype=np.float32).astype(t)
    b = len(lens)
    # With softcap, queries scaled up so that the cap bites.
    q = ((3.0 if softcap else 1.0) * rng.standard_normal((b, hq, d), dtype=np.float32)).astype(t)
    o = np.full((b, hq, d), np.nan, dtype=t)
    lse_out = np.full((hq, b), np.nan, dtype=np.float32) if lse else None
    rings = []
    if residual:
        # One f16 ring per sequence, in shuffled order (plus an unused one).
        ring_of = rng.permutation(b + 1)[:b].astype(np.int32)
        ring_shape = (b + 1, residual, 2, d)
        k_recent = rng.standard_normal(ring_shape, dtype=np.float32).astype(np.float16)
        v_recent = rng.standard_normal(ring_shape, dtype=np.float32).astype(np.float16)
        rings = [k_recent, v_recent]
    args = [q, k_pages, v_pages, *scales, *rings, table.kv_indptr.astype(np.int32),
            table.kv_indices.astype(np.int32), table.kv_last_page_len.astype(np.int32)]
    args += [ring_of] if residual else []
    args += [o] + ([lse_out] if lse else [])

    window_mask = Mask(window=100, sinks=4)
    mask = window_mask if window else Mask()
    head_masks = [Mask(causal=True), window_mask] if window == "head_masks" else None
    o_ref = np.zeros((b, hq, d))
    lse_ref = np.full((hq, b), -np.inf)
    for s in range(b):
        ids = table.kv_indices[table.kv_indptr[s]:table.kv_indptr[s + 1]]
        kk, vv = (k_codes[ids], v_codes[ids]) if storage == "i4" else (k_pages[ids], v_pages[ids])
        if layout == "hnd":
            kk, vv = kk.transpose(0, 2, 1, 3), vv.transpose(0, 2, 1, 3)
        kk = kk.reshape(-1, 2, d)[:lens[s]].astype(np.float64)
        vv = vv.reshape(-1, 2, d)[:lens[s]].astype(np.float64)
        def per_token(x):  # [pages, g or PAGE, 2, ...] -> one row per key
            x = np.repeat(x[ids], PAGE // x.shape[1], axis=1)
            return x.reshape(-1, *x.shape[2:])[:lens[s]].astype(np.float64)
        if storage == "i8":
            kk = kk * per_token(scales[0])
            vv = vv * per_token(scales[1])[:, :, None]
        elif storage == "i4":
            kk = kk * per_token(scales[0]) + per_token(scales[1])
            vv = vv * per_token(scales[2])[:, :, None] + per_token(scales[3])[:, :, None]
        elif storage.startswith("f8"):
            kk, vv = kk * scales[0][None, :, None], vv * scales[1][None, :, None]
        if residual:  # the latest keys from the ring, unquantized
            for j in range(max(0, lens[s] - residual), lens[s]):
                kk[j] = k_recent[ring_of[s], j % residual]
                vv[j] = v_recent[ring_of[s], j % residual]
        if head_masks:  # each KV head's query heads under its mask
            g = hq // 2
            for h, m in enumerate(head_masks):
                os_, ls = attention(q[s][None, None, h * g:(h + 1) * g], kk[None, :, h:h + 1],
                                    vv[None, :, h:h + 1], mask=m, softcap=softcap)
                o_ref[s, h * g:(h + 1) * g], lse_ref[h * g:(h + 1) * g, s] = os_[0, 0], ls[0, :, 0]
            continue
        os_, ls = attention(q[s][None, None], kk[None], vv[None], mask=mask, softcap=softcap)
        o_ref[s], lse_ref[:, s] = os_[0, 0], ls[0, :, 0]
    return args, (o, lse_out), (o_ref, lse_ref if lse else None)


def split_settings(max_splits):
    """attnrt_gpu_set_num_splits values a split-KV kernel runs with: 0 (attnrt chooses), 1,
    3 and max_splits (8 on the emulator, where the grid's empty splits cost as much as full
    ones: these sequences leave most of 8 splits empty already); [0] for other kernels."""
    if max_splits == 0:
        return [0]
    most = min(8, max_splits) if EMULATED else max_splits
    return sorted({0, 1, min(3, max_splits), most})


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k[0])
def test_decode_against_float64(kernel, gpu_module):
    seed = int(os.environ.get("ATTNC_TEST_SEED", np.random.SeedSequence().entropy % 2**31))
    rng = np.random.default_rng(seed)
    name = kernel[0]
    max_splits = gpu_module.gpu_info(name)["max_splits"]
    try:
        for lens in SEQ_LENS + (LONG_SEQ_LENS if max_splits else []):
            args, outs, (o_ref, lse_ref) = random_case(rng, kernel, lens)
            for n in split_settings(max_splits):
                gpu_module.set_num_splits(name, n)
                # Fresh NaN-poisoned outputs for each run.
                for a in outs:
                    if a is not None:
                        a.fill(np.nan)
                splits = gpu_module.launch_config(name, args)["num_splits"]
                gpu_module.run_arrays(name, args)
                o, lse = outs
                bad = compare(kernel[1], o, o_ref, lse, lse_ref)
                assert not bad, (f"{name} lens={lens} num_splits={splits} (set {n}) "
                                 f"seed={seed}: " + "; ".join(bad))
    finally:
        gpu_module.set_num_splits(name, 0)
