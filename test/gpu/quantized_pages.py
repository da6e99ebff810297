"""Random KV pages for the GPU tests in every storage format (docs/kv-cache.md): the pages and
scales as the kernels take them, and the float64 values they hold, which the reference reads.
"""
from __future__ import annotations

import numpy as np

import attnrt_ctypes as rt


def random_pages(rng, storage: str, dtype: str, pages: int, page: int, heads: int, d: int,
                 head_major: bool, k_group: int):
    """K and V pages ([pages, page, heads, d], or [pages, heads, page, d] when `head_major`) in
    `storage`: i8, i4, f8E4M3FN, f8E5M2, or the queries' `dtype` (f16, bf16).

    Returns (k_pages, v_pages, scales, k_values, v_values): `scales` the cache's scale (and int4
    minimum) components in the manifest's order, `*_values` float64 arrays of the pages' shape
    holding the values the pages represent (dequantized).
    """
    nhd = (pages, page, heads, d)
    per_channel = (pages, page // k_group, heads, d)  # K scales: one per k_group tokens
    per_token = (pages, page, heads)  # V scales: one per token

    def channels(x):  # [pages, page // k_group, heads, d] -> one row per token
        return np.repeat(x.astype(np.float64), k_group, axis=1)

    def tokens(x):  # [pages, page, heads] -> broadcast over d
        return x.astype(np.float64)[..., None]

    if storage == "i4":
        # Codes 0..15, two a byte (channel 2i in the low nibble); the value is s * q + m with
        # f16 scales and minima in the manifest's order: k_scale, k_min, v_scale, v_min.
        k_codes, v_codes = (rng.integers(0, 16, nhd, dtype=np.uint8) for _ in range(2))
        k_pages, v_pages = ((c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)
                            for c in (k_codes, v_codes))
        scales = [rng.uniform(0.02, 0.2, per_channel).astype(np.float16),
                  rng.uniform(-1.5, -0.5, per_channel).astype(np.float16),
                  rng.uniform(0.02, 0.2, per_token).astype(np.float16),
                  rng.uniform(-1.5, -0.5, per_token).astype(np.float16)]
        k_values = k_codes * channels(scales[0]) + channels(scales[1])
        v_values = v_codes * tokens(scales[2]) + tokens(scales[3])
    elif storage == "i8":
        # Stored integers and f16 scales: the value is scale * q.
        k_pages, v_pages = (rng.integers(-127, 128, nhd, dtype=np.int8) for _ in range(2))
        scales = [rng.uniform(0.002, 0.02, per_channel).astype(np.float16),
                  rng.uniform(0.002, 0.02, per_token).astype(np.float16)]
        k_values = k_pages * channels(scales[0])
        v_values = v_pages * tokens(scales[1])
    elif storage.startswith("f8"):
        # fp8 values times per-head f32 scales.
        f8 = rt.NP_DTYPES[storage.lower()]
        k_pages, v_pages = ((2 * rng.standard_normal(nhd, dtype=np.float32)).astype(f8)
                            for _ in range(2))
        scales = [rng.uniform(0.2, 0.6, heads).astype(np.float32) for _ in range(2)]
        k_values = k_pages.astype(np.float64) * scales[0][:, None]
        v_values = v_pages.astype(np.float64) * scales[1][:, None]
    else:
        t = rt.NP_DTYPES[dtype]
        k_pages, v_pages = (rng.standard_normal(nhd, dtype=np.float32).astype(t)
                            for _ in range(2))
        scales = []
        k_values, v_values = k_pages.astype(np.float64), v_pages.astype(np.float64)
    if head_major:
        k_pages, v_pages, k_values, v_values = (
            np.ascontiguousarray(x.transpose(0, 2, 1, 3))
            for x in (k_pages, v_pages, k_values, v_values))
    return k_pages, v_pages, scales, k_values, v_values


def gather(values, ids, length: int, head_major: bool):
    """The first `length` tokens of pages `ids` of `values` (the pages' shape), as [length,
    heads, d]."""
    x = values[ids]
    if head_major:
        x = x.transpose(0, 2, 1, 3)
    return x.reshape(-1, *x.shape[2:])[:length]
