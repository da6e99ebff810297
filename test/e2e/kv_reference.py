"""Exact NumPy model of the KV-cache formats of docs/kv-cache.md, page-table helpers, the paged
attention / merge references and realistic K/V/query generators.

What `append` stores is what `attn.kv_append` must store (bit for bit, see below); what `gather`
returns is what a kernel's tile load reconstructs (in f32, widened to float64 without rounding).

Precise arithmetic (docs/kv-cache.md, "Quantization"; everything in f32, `f16(x)` rounds an f32 to
the nearest f16 (half to even), `rne` is numpy's `rint`, all stored scales/minima are f16 values and
every later step reads the stored value):

- f16/bf16: the input (f32, f16 or bf16) is converted to the storage type, nearest-even.
- fp8: `q = fp8(clamp(x / s_h, -MAX, MAX))` (MAX 448 for e4m3fn, 57344 for e5m2), nearest-even;
  `x' = s_h * q` (f32 product).
- i8 V (per token and head): `s = f16(max_d |x_d| / 127)`; `q = clamp(rne(x / s), -127, 127)`,
  `q = 0` where `s == 0`; `x' = f32(s) * q`.
- i8 K (per channel, per group of `k_group` slots): at a group start (`offset % k_group == 0`)
  `s = f16(|x| / 127)`. At a later slot, with `a = |x| / 127`: if `a > s` (the stored s) then
  `s_new = f16(a)` and the group's tokens at offsets `[group start, offset)` are requantized in
  that channel: `q = clamp(rne((q * s) / s_new), -127, 127)`; then the new token is quantized
  with the (possibly new) stored scale as for V.
- i4 V: `lo = min_d x_d`, `hi = max_d x_d` (f32); `m = f16(lo)`, `s = f16((hi - lo) / 15)`;
  `q = clamp(rne((x - m) / s), 0, 15)`, `q = 0` where `s == 0`; `x' = f32(s) * q + m` (the product
  is exact in f32, so fma or not gives the same value).
- i4 K: at a group start `m = f16(x)`, `s = 0`, `q = 0`. At a later slot, with the stored (m, s):
  `top = m + 15 * s` (f32). If `x < m` or `x > top`: `lo = min(m, x)`, `hi = max(top, x)`,
  `m_new = f16(lo)`, `s_new = f16((hi - lo) / 15)` and the group's earlier tokens in that channel
  are requantized from their reconstructed values `x_r = s * q + m`:
  `q = clamp(rne((x_r - m_new) / s_new), 0, 15)` (0 where `s_new == 0`); then the new token is
  quantized with the stored (m, s) as for V.
- Slots equal to -1 are skipped; tokens are processed in call order (a later write of the same
  slot wins; the group rules see the tokens of one group in call order).
- Residual window (`residual = R`, quantized storage only): every token is also written, as f16(x)
  (the input converted to f32, then rounded to f16, half to even), to the ring slot
  `ring * R + position % R` of `ring_slots` (the `k_recent` / `v_recent` buffers
  [num_rings, R, H, D]); a ring slot of -1 skips that write only (the page write follows `slots`
  independently), the last write of a ring slot wins. Attention reads key/value `j` of a sequence
  of length `L` from its ring (`kv_rings[b]`) when `j >= L - R`, else dequantized from its page.
- Page summaries (`summary = minmax`, any storage; docs/sparsity.md section 3): `k_page_max`,
  `k_page_min` f16 [P, H, D]. Each written token (slot -1 skipped), in call order, with
  `x = f16(K)` (the input converted to f32, then rounded to f16, half to even; not the stored
  codes): at offset 0 `max = min = x`, at a later offset `max = maximum(max, x)`,
  `min = minimum(min, x)` (NaN propagates). A token written again at offset 0 resets the page.

`select_pages` is the Quest selection of docs/sparsity.md section 3 over these summaries, with the
scores in float64 (the kernel sums in f32 in its own order; `select_pages` also returns the
scores so that a test can tell a near-tie from a wrong selection).

Per-element error bounds that follow (checked by test_kv_reference.py): i8 V and a K token that
never saw its group grow: |x - x'| <= s/2 (s the stored scale). Every requantization of a token
adds at most s_new/2, so a K token that saw the scales s_1 < s_2 < ... < s_n (s_1 at its write)
has |x - x'| <= (s_1 + ... + s_n)/2 <= n * s_n / 2. i4 likewise with the step s, plus the f16
rounding of the range ends (<= 2^-11 (|m| + 15 s) per step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from reference import Mask, attention

F32 = np.float32
STORAGES = ("f16", "bf16", "f8E4M3FN", "f8E5M2", "i8", "i4")
_ALIASES = {s.lower(): s for s in STORAGES}
_ALIASES.update({"f8e4m3": "f8E4M3FN", "fp8e4m3": "f8E4M3FN", "fp8e5m2": "f8E5M2"})
PAGE_DTYPE = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16),
              "f8E4M3FN": np.dtype(ml_dtypes.float8_e4m3fn),
              "f8E5M2": np.dtype(ml_dtypes.float8_e5m2),
              "i8": np.dtype(np.int8), "i4": np.dtype(np.uint8)}
FP8_MAX = {"f8E4M3FN": 448.0, "f8E5M2": 57344.0}
# manifest dtype names (docs/kv-cache.md, "Kernel ABI additions")
MANIFEST_DTYPE = {np.dtype(np.float16): "f16", np.dtype(ml_dtypes.bfloat16): "bf16",
                  np.dtype(ml_dtypes.float8_e4m3fn): "f8e4m3fn",
                  np.dtype(ml_dtypes.float8_e5m2): "f8e5m2", np.dtype(np.int8): "i8",
                  np.dtype(np.uint8): "u8", np.dtype(np.float32): "f32",
                  np.dtype(np.int32): "i32"}


def f16r(x) -> np.ndarray:
    """Round f32 values to the nearest f16 (half to even), returned as f32."""
    return np.asarray(x, dtype=F32).astype(np.float16).astype(F32)


# ------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    name: str          # k_pages, v_pages, k_scale, v_scale, k_min, v_min, k_recent, v_recent,
                       # k_page_max, k_page_min
    dtype: np.dtype
    shape: tuple       # with the number of pages P (rings: the number of rings) substituted
    paged: bool        # first dimension is the page pool
    ring: bool = False  # first dimension is the ring pool (num_rings; residual window)

    @property
    def manifest_dtype(self) -> str:
        return MANIFEST_DTYPE[np.dtype(self.dtype)]


@dataclass(frozen=True)
class CacheFormat:
    """`!attn.kv_cache<...>` parameters (docs/kv-cache.md, "The type")."""
    page_size: int
    kv_heads: int
    head_dim: int
    layout: str = "nhd"
    storage: str = "f16"
    k_group: int | None = None   # i8/i4 only; default page_size
    residual: int | None = None  # R latest tokens also kept in f16 (quantized storage only)
    summary: str | None = None   # "minmax": per-page key minima and maxima (select_pages)

    def __post_init__(self):
        st = _ALIASES.get(str(self.storage).lower())
        if st is None:
            raise ValueError(f"unknown storage {self.storage!r}")
        object.__setattr__(self, "storage", st)
        if self.layout not in ("nhd", "hnd"):
            raise ValueError(f"layout must be nhd or hnd, not {self.layout!r}")
        if not 1 <= self.page_size <= 256:
            raise ValueError(f"page_size {self.page_size} not in 1..256")
        if self.kv_heads <= 0 or self.head_dim <= 0:
            raise ValueError("kv_heads and head_dim must be positive")
        if st == "i4" and self.head_dim % 2:
            raise ValueError("i4 needs an even head_dim")
        if st in ("i8", "i4"):
            g = self.page_size if self.k_group is None else int(self.k_group)
            if g <= 0 or self.page_size % g:
                raise ValueError(f"k_group {g} does not divide page_size {self.page_size}")
            object.__setattr__(self, "k_group", g)
        elif self.k_group is not None:
            raise ValueError("k_group is only for i8/i4 storage")
        if self.residual is not None:
            r = int(self.residual)
            if st in ("f16", "bf16"):
                raise ValueError("residual is only for quantized storage (f8*, i8, i4)")
            if not 1 <= r <= 4096:
                raise ValueError(f"residual {r} not in 1..4096")
            object.__setattr__(self, "residual", r)
        if self.summary not in (None, "minmax"):
            raise ValueError(f"summary must be None or 'minmax', not {self.summary!r}")

    # -- derived -----------------------------------------------------------------------------
    @property
    def quantized(self) -> bool:
        return self.storage in ("i8", "i4")

    @property
    def groups(self) -> int:
        """g = page_size / k_group (1 for the unquantized formats)."""
        return self.page_size // self.k_group if self.quantized else 1

    @property
    def packed_dim(self) -> int:
        return self.head_dim // 2 if self.storage == "i4" else self.head_dim

    @property
    def name(self) -> str:
        n = [self.storage, self.layout, f"p{self.page_size}", f"h{self.kv_heads}",
             f"d{self.head_dim}"]
        if self.quantized and self.k_group != self.page_size:
            n.append(f"g{self.k_group}")
        if self.residual:
            n.append(f"r{self.residual}")
        if self.summary:
            n.append("mm")
        return "_".join(n)

    def mlir_type(self) -> str:
        s = (f"!attn.kv_cache<page_size = {self.page_size}, kv_heads = {self.kv_heads}, "
             f"head_dim = {self.head_dim}, layout = {self.layout}, storage = {self.storage}")
        if self.quantized:
            s += f", k_group = {self.k_group}"
        if self.residual:
            s += f", residual = {self.residual}"
        if self.summary:
            s += f", summary = {self.summary}"
        return s + ">"

    def page_shape(self, num_pages: int) -> tuple:
        s, h, dp = self.page_size, self.kv_heads, self.packed_dim
        return (num_pages, s, h, dp) if self.layout == "nhd" else (num_pages, h, s, dp)

    def ring_shape(self, num_rings: int) -> tuple:
        """[num_rings, R, H, D] of k_recent / v_recent."""
        return (num_rings, self.residual, self.kv_heads, self.head_dim)

    def components(self, num_pages: int, num_rings: int = 1) -> list[Component]:
        """Component buffers in ABI order (docs/kv-cache.md table); with a residual the rings
        k_recent, v_recent [num_rings, R, H, D] f16 follow, then with a summary the per-page
        k_page_max, k_page_min [P, H, D] f16."""
        p, s, h, d, g = num_pages, self.page_size, self.kv_heads, self.head_dim, self.groups
        pd = PAGE_DTYPE[self.storage]
        f16 = np.dtype(np.float16)
        out = [Component("k_pages", pd, self.page_shape(p), True),
               Component("v_pages", pd, self.page_shape(p), True)]
        if self.storage in FP8_MAX:
            out += [Component("k_scale", np.dtype(F32), (h,), False),
                    Component("v_scale", np.dtype(F32), (h,), False)]
        elif self.storage == "i8":
            out += [Component("k_scale", f16, (p, g, h, d), True),
                    Component("v_scale", f16, (p, s, h), True)]
        elif self.storage == "i4":
            out += [Component("k_scale", f16, (p, g, h, d), True),
                    Component("k_min", f16, (p, g, h, d), True),
                    Component("v_scale", f16, (p, s, h), True),
                    Component("v_min", f16, (p, s, h), True)]
        if self.residual:
            out += [Component("k_recent", f16, self.ring_shape(num_rings), False, True),
                    Component("v_recent", f16, self.ring_shape(num_rings), False, True)]
        if self.summary:
            out += [Component("k_page_max", f16, (p, h, d), True),
                    Component("k_page_min", f16, (p, h, d), True)]
        return out

    @property
    def bytes_per_token(self) -> float:
        """Sum over paged components of bytes per page, / page_size (rings are not paged)."""
        tot = 0
        for c in self.components(1):
            if c.paged:
                tot += int(np.prod(c.shape)) * c.dtype.itemsize
        return tot / self.page_size

    def empty_pool(self, num_pages: int, k_scale=None, v_scale=None,
                   num_rings: int | None = None) -> dict:
        """Zero-filled component buffers; fp8 per-head scales default to 1 (or the given [H]).
        A format with a residual needs num_rings (one ring per sequence)."""
        if self.residual and num_rings is None:
            raise ValueError(f"{self.name}: a cache with a residual window needs num_rings")
        comps = self.components(num_pages, num_rings or 0)
        pool = {c.name: np.zeros(c.shape, dtype=c.dtype) for c in comps}
        if self.storage in FP8_MAX:
            for n, val in (("k_scale", k_scale), ("v_scale", v_scale)):
                pool[n][:] = 1.0 if val is None else np.asarray(val, dtype=F32)
        return pool

    def num_pages(self, pool: dict) -> int:
        return pool["k_pages"].shape[0]

    def num_rings(self, pool: dict) -> int:
        return pool["k_recent"].shape[0] if self.residual else 0

    def without_residual(self) -> "CacheFormat":
        """The same format with no residual window (the pages are written identically)."""
        return CacheFormat(self.page_size, self.kv_heads, self.head_dim, self.layout,
                           self.storage, self.k_group, summary=self.summary)

    def without_summary(self) -> "CacheFormat":
        """The same format without page summaries (the other components are written
        identically)."""
        return CacheFormat(self.page_size, self.kv_heads, self.head_dim, self.layout,
                           self.storage, self.k_group, self.residual)


def fp8_scales(x, storage: str) -> np.ndarray:
    """Per-head scale amax/448 (e4m3fn) or amax/57344 (e5m2) of x [..., H, D], as f32 [H]."""
    x = np.asarray(x, dtype=np.float64)
    amax = np.abs(x.reshape(-1, x.shape[-2], x.shape[-1])).max(axis=(0, 2))
    s = (amax / FP8_MAX[_ALIASES[storage.lower()]]).astype(F32)
    return np.where(s > 0, s, F32(1.0)).astype(F32)


# ------------------------------------------------------------------------------------------------
# Packing and per-token quantizers
# ------------------------------------------------------------------------------------------------

def pack_i4(q: np.ndarray) -> np.ndarray:
    """[..., D] values 0..15 -> [..., D/2] uint8; channel 2i in the low nibble of byte i."""
    q = np.asarray(q).astype(np.uint8)
    return (q[..., 0::2] & 0xF) | ((q[..., 1::2] & 0xF) << 4)


def unpack_i4(b: np.ndarray) -> np.ndarray:
    """[..., D/2] uint8 -> [..., D] uint8 (inverse of pack_i4)."""
    b = np.asarray(b, dtype=np.uint8)
    out = np.empty(b.shape[:-1] + (2 * b.shape[-1],), dtype=np.uint8)
    out[..., 0::2] = b & 0xF
    out[..., 1::2] = b >> 4
    return out


def _div_rne(num, den, lo, hi):
    """clamp(rint(num / den), lo, hi) in f32, 0 where den == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(num / den)
    return np.where(den == 0, F32(0), np.clip(q, lo, hi)).astype(F32)


def quant_fp8(x, s, storage):
    """x [..., H, D] f32, s [H] f32 -> fp8 array."""
    mx = F32(FP8_MAX[storage])
    y = np.clip(np.asarray(x, F32) / np.asarray(s, F32)[:, None], -mx, mx)
    return y.astype(PAGE_DTYPE[storage])


def quant_i8_token(x):
    """x [N, H, D] f32 -> (q int8 [N,H,D], s f16 [N,H])."""
    s = f16r(np.abs(x).max(axis=-1) / F32(127))
    q = _div_rne(x, s[..., None], -127, 127)
    return q.astype(np.int8), s.astype(np.float16)


def quant_i4_token(x):
    """x [N, H, D] f32 -> (packed uint8 [N,H,D/2], s f16 [N,H], m f16 [N,H])."""
    lo, hi = x.min(axis=-1), x.max(axis=-1)
    m = f16r(lo)
    s = f16r((hi - lo) / F32(15))
    q = _div_rne(x - m[..., None], s[..., None], 0, 15)
    return pack_i4(q), s.astype(np.float16), m.astype(np.float16)


# ------------------------------------------------------------------------------------------------
# append (attn.kv_append)
# ------------------------------------------------------------------------------------------------

def _token_view(a: np.ndarray, fmt: CacheFormat) -> np.ndarray:
    """Pages viewed as [P, S, H, Dp] whatever the layout (a view: writes go through)."""
    return a if fmt.layout == "nhd" else a.transpose(0, 2, 1, 3)


def _last_writes(slots: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct slot, in increasing index order."""
    rev = slots[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    return np.sort(slots.size - 1 - first_in_rev)


def _as_f32(x, fmt: CacheFormat, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (fmt.kv_heads, fmt.head_dim):
        raise ValueError(f"{what} must be [N, {fmt.kv_heads}, {fmt.head_dim}], not {x.shape}")
    return x.astype(F32)


def append(pool: dict, fmt: CacheFormat, k_new, v_new, slots, ring_slots=None) -> dict:
    """Quantize-on-write of N tokens into the pool (in place; also returned).

    k_new, v_new: [N, H, D] f32/f16/bf16; slots: [N] (slot = page * page_size + offset, -1 skips).
    ring_slots: [N] (ring * R + position % R, -1 skips), exactly when the format has a residual:
    each token is also written as f16 to k_recent / v_recent (independently of its page slot).
    With a summary, k_page_max / k_page_min of the written pages are updated (append_summaries).
    """
    k, v = _as_f32(k_new, fmt, "k_new"), _as_f32(v_new, fmt, "v_new")
    slots = np.asarray(slots).astype(np.int64).reshape(-1)
    if not (k.shape[0] == v.shape[0] == slots.size):
        raise ValueError(f"N mismatch: k {k.shape[0]}, v {v.shape[0]}, slots {slots.size}")
    if bool(fmt.residual) != (ring_slots is not None):
        raise ValueError("ring_slots must be given exactly when the format has a residual")
    if fmt.residual:
        append_rings(pool, fmt, k, v, ring_slots)
    npages, S = fmt.num_pages(pool), fmt.page_size
    keep = slots != -1
    bad = keep & ((slots < 0) | (slots >= npages * S))
    if bad.any():
        raise ValueError(f"slot {int(slots[bad][0])} outside the pool of {npages} x {S}")
    k, v, slots = k[keep], v[keep], slots[keep]
    if slots.size == 0:
        return pool
    if fmt.summary:
        append_summaries(pool, fmt, k, slots)
    kv_, vv_ = _token_view(pool["k_pages"], fmt), _token_view(pool["v_pages"], fmt)
    # per-token components: the last write of a slot wins
    last = _last_writes(slots)
    pg, off = np.divmod(slots[last], S)
    st = fmt.storage
    if st in ("f16", "bf16"):
        kv_[pg, off] = k[last].astype(PAGE_DTYPE[st])
        vv_[pg, off] = v[last].astype(PAGE_DTYPE[st])
        return pool
    if st in FP8_MAX:
        kv_[pg, off] = quant_fp8(k[last], pool["k_scale"], st)
        vv_[pg, off] = quant_fp8(v[last], pool["v_scale"], st)
        return pool
    if st == "i8":
        q, s = quant_i8_token(v[last])
        vv_[pg, off] = q
        pool["v_scale"][pg, off] = s
    else:
        q, s, m = quant_i4_token(v[last])
        vv_[pg, off] = q
        pool["v_scale"][pg, off] = s
        pool["v_min"][pg, off] = m
    _append_k_groups(pool, fmt, k, slots)
    return pool


def append_rings(pool: dict, fmt: CacheFormat, k_new, v_new, ring_slots) -> dict:
    """The ring part of `append` alone: f16(x) of every token to its ring slot (-1 skips; the
    last write of a slot wins). In place; also returned."""
    k, v = _as_f32(k_new, fmt, "k_new"), _as_f32(v_new, fmt, "v_new")
    rs = np.asarray(ring_slots).astype(np.int64).reshape(-1)
    if rs.size != k.shape[0]:
        raise ValueError(f"N mismatch: k {k.shape[0]}, ring_slots {rs.size}")
    R = fmt.residual
    total = fmt.num_rings(pool) * R
    keep = rs != -1
    bad = keep & ((rs < 0) | (rs >= total))
    if bad.any():
        raise ValueError(f"ring slot {int(rs[bad][0])} outside {fmt.num_rings(pool)} rings x {R}")
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return pool
    last = idx[_last_writes(rs[idx])]
    ring, off = np.divmod(rs[last], R)
    pool["k_recent"][ring, off] = k[last].astype(np.float16)
    pool["v_recent"][ring, off] = v[last].astype(np.float16)
    return pool


def append_summaries(pool: dict, fmt: CacheFormat, k, slots) -> dict:
    """The page-summary part of `append` (in place; also returned): k [N, H, D] f32 of the
    written tokens in call order, slots [N] without -1. Sequentially, token by token, offset 0
    sets the page's max/min to f16(k) and a later offset widens them; vectorized: a page's new
    summary is the max/min over its tokens from its last offset-0 write on, widened by the stored
    one when the call has no offset-0 write for it."""
    S = fmt.page_size
    k = np.asarray(k, dtype=F32)
    slots = np.asarray(slots, dtype=np.int64).reshape(-1)
    if slots.size == 0:
        return pool
    x = f16r(k)                                                  # [N, H, D]
    page, off = np.divmod(slots, S)
    n = np.arange(slots.size)
    last_reset = np.full(fmt.num_pages(pool), -1, dtype=np.int64)
    np.maximum.at(last_reset, page[off == 0], n[off == 0])
    used = np.unique(page)
    reset = last_reset[used] >= 0
    hi = pool["k_page_max"][used].astype(F32)
    lo = pool["k_page_min"][used].astype(F32)
    hi[reset], lo[reset] = -np.inf, np.inf
    live = n >= last_reset[page]                 # tokens after (and at) their page's last reset
    at = np.searchsorted(used, page[live])
    np.maximum.at(hi, at, x[live])
    np.minimum.at(lo, at, x[live])
    pool["k_page_max"][used] = hi.astype(np.float16)
    pool["k_page_min"][used] = lo.astype(np.float16)
    return pool


def _append_k_groups(pool, fmt, k, slots):
    """Per-channel group K quantization (i8/i4), tokens of one group in call order.

    Vectorized in rounds: round r handles the r-th token of every group touched by the call;
    tokens of one round belong to distinct groups and so are independent."""
    S, G, g = fmt.page_size, fmt.k_group, fmt.groups
    i4 = fmt.storage == "i4"
    page, off = np.divmod(slots, S)
    upages, pidx = np.unique(page, return_inverse=True)
    kview = _token_view(pool["k_pages"], fmt)
    work = kview[upages]
    qk = (unpack_i4(work) if i4 else work).astype(F32)          # [n, S, H, D]
    ks = pool["k_scale"][upages].astype(F32)                     # [n, g, H, D]
    km = pool["k_min"][upages].astype(F32) if i4 else None
    grp, goff = off // G, off % G
    key = pidx * g + grp
    order = np.argsort(key, kind="stable")
    skey = key[order]
    first = np.r_[True, skey[1:] != skey[:-1]]
    pos = np.arange(skey.size)
    rank = np.empty_like(pos)
    rank[order] = pos - np.maximum.accumulate(np.where(first, pos, 0))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
    for r in range(rank.max() + 1):
        a = by_rank[bounds[r]:bounds[r + 1]]
        p, gi, o, go = pidx[a], grp[a], off[a], goff[a]
        x = k[a]                                                 # [A, H, D]
        start = (go == 0)[:, None, None]
        s_old = ks[p, gi]
        if not i4:
            cand = np.abs(x) / F32(127)
            grow = ~start & (cand > s_old)
            s_new = np.where(start | grow, f16r(cand), s_old)
            m_old = m_new = None
        else:
            m_old = km[p, gi]
            top = m_old + F32(15) * s_old
            grow = ~start & ((x < m_old) | (x > top))
            lo, hi = np.minimum(m_old, x), np.maximum(top, x)
            m_new = np.where(start, f16r(x), np.where(grow, f16r(lo), m_old))
            s_new = np.where(start, F32(0), np.where(grow, f16r((hi - lo) / F32(15)), s_old))
        if grow.any():
            ai, hh, cc = np.nonzero(grow)
            cnt = go[ai]                                        # earlier tokens in the group
            tot = int(cnt.sum())
            if tot:
                rep = np.repeat(np.arange(ai.size), cnt)
                j = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                tp = p[ai][rep]
                to = (o - go)[ai][rep] + j
                th, tc = hh[rep], cc[rep]
                qo = qk[tp, to, th, tc]
                so, sn = s_old[ai, hh, cc][rep], s_new[ai, hh, cc][rep]
                if not i4:
                    qk[tp, to, th, tc] = _div_rne(qo * so, sn, -127, 127)
                else:
                    mo, mn = m_old[ai, hh, cc][rep], m_new[ai, hh, cc][rep]
                    qk[tp, to, th, tc] = _div_rne((so * qo + mo) - mn, sn, 0, 15)
        if not i4:
            qk[p, o] = _div_rne(x, s_new, -127, 127)
        else:
            qk[p, o] = _div_rne(x - m_new, s_new, 0, 15)
            km[p, gi] = m_new
        ks[p, gi] = s_new
    kview[upages] = pack_i4(qk) if i4 else qk.astype(np.int8)
    pool["k_scale"][upages] = ks.astype(np.float16)
    if i4:
        pool["k_min"][upages] = km.astype(np.float16)


# ------------------------------------------------------------------------------------------------
# Dequantization and gather
# ------------------------------------------------------------------------------------------------

def dequant_pages(pool: dict, fmt: CacheFormat, pages=None):
    """(K, V) of the given pages (default all) as f32 [n, S, H, D]: the tile load's values."""
    P = fmt.num_pages(pool)
    pages = np.arange(P) if pages is None else np.asarray(pages, dtype=np.int64)
    kp = _token_view(pool["k_pages"], fmt)[pages]
    vp = _token_view(pool["v_pages"], fmt)[pages]
    st = fmt.storage
    if st in ("f16", "bf16"):
        return kp.astype(F32), vp.astype(F32)
    if st in FP8_MAX:
        return (kp.astype(F32) * pool["k_scale"][:, None].astype(F32),
                vp.astype(F32) * pool["v_scale"][:, None].astype(F32))
    G = fmt.k_group
    ksc = np.repeat(pool["k_scale"][pages].astype(F32), G, axis=1)    # [n, S, H, D]
    vsc = pool["v_scale"][pages].astype(F32)[..., None]                # [n, S, H, 1]
    if st == "i8":
        return kp.astype(F32) * ksc, vp.astype(F32) * vsc
    kmin = np.repeat(pool["k_min"][pages].astype(F32), G, axis=1)
    vmin = pool["v_min"][pages].astype(F32)[..., None]
    return (unpack_i4(kp).astype(F32) * ksc + kmin, unpack_i4(vp).astype(F32) * vsc + vmin)


@dataclass
class PageTable:
    """CSR page table (docs/kv-cache.md, "Page tables"); arrays are int32."""
    kv_indptr: np.ndarray
    kv_indices: np.ndarray
    kv_last_page_len: np.ndarray
    page_size: int
    num_pages: int = 0            # pool size the table was built for (0: unknown)

    def __post_init__(self):
        self.kv_indptr = np.asarray(self.kv_indptr, dtype=np.int32)
        self.kv_indices = np.asarray(self.kv_indices, dtype=np.int32)
        self.kv_last_page_len = np.asarray(self.kv_last_page_len, dtype=np.int32)
        if not self.num_pages and self.kv_indices.size:
            self.num_pages = int(self.kv_indices.max()) + 1

    @property
    def batch(self) -> int:
        return self.kv_indptr.size - 1

    @property
    def seq_lens(self) -> np.ndarray:
        return seq_lens_of(self.kv_indptr, self.kv_last_page_len, self.page_size)

    def pages(self, b: int) -> np.ndarray:
        return self.kv_indices[self.kv_indptr[b]:self.kv_indptr[b + 1]]

    def arrays(self) -> tuple:
        return self.kv_indptr, self.kv_indices, self.kv_last_page_len

    def slots(self, b: int, positions) -> np.ndarray:
        """Slots of token positions of sequence b."""
        pos = np.asarray(positions, dtype=np.int64)
        pg = self.pages(b)
        if pos.size and (pos.min() < 0 or pos.max() >= pg.size * self.page_size):
            raise ValueError(f"position out of sequence {b}'s pages")
        return (pg[pos // self.page_size].astype(np.int64) * self.page_size
                + pos % self.page_size).astype(np.int32)


def seq_lens_of(kv_indptr, kv_last_page_len, page_size) -> np.ndarray:
    npg = np.diff(np.asarray(kv_indptr, dtype=np.int64))
    last = np.asarray(kv_last_page_len, dtype=np.int64)
    return np.where(npg > 0, (npg - 1) * page_size + last, 0)


def gather(pool: dict, fmt: CacheFormat, kv_indptr, kv_indices, kv_last_page_len,
           kv_rings=None):
    """Per sequence the K and V a kernel reads, [L, H, D] float64 (lists of B arrays): the
    dequantized pages, and with a residual window (kv_rings [B] given exactly then) the ring's
    exact f16 values for the last R positions j >= L - R (ring slot j % R of ring kv_rings[b]).

    For f16/bf16 storage this is an exact (dequant-free) copy of the stored elements."""
    kv_indptr = np.asarray(kv_indptr, dtype=np.int64)
    kv_indices = np.asarray(kv_indices, dtype=np.int64)
    lens = seq_lens_of(kv_indptr, kv_last_page_len, fmt.page_size)
    if bool(fmt.residual) != (kv_rings is not None):
        raise ValueError("kv_rings must be given exactly when the format has a residual")
    if fmt.residual:
        kv_rings = np.asarray(kv_rings, dtype=np.int64).reshape(-1)
        if kv_rings.size != kv_indptr.size - 1:
            raise ValueError(f"kv_rings has {kv_rings.size} entries for "
                             f"{kv_indptr.size - 1} sequences")
    ks, vs = [], []
    H, D = fmt.kv_heads, fmt.head_dim
    for b in range(kv_indptr.size - 1):
        pages = kv_indices[kv_indptr[b]:kv_indptr[b + 1]]
        if pages.size == 0:
            ks.append(np.zeros((0, H, D)))
            vs.append(np.zeros((0, H, D)))
            continue
        kd, vd = dequant_pages(pool, fmt, pages)
        L = int(lens[b])
        kb = kd.reshape(-1, H, D)[:L].astype(np.float64)
        vb = vd.reshape(-1, H, D)[:L].astype(np.float64)
        if fmt.residual:
            r = int(kv_rings[b])
            if not 0 <= r < fmt.num_rings(pool):
                raise ValueError(f"kv_rings[{b}] = {r} outside {fmt.num_rings(pool)} rings")
            j = np.arange(max(0, L - fmt.residual), L)
            kb[j] = pool["k_recent"][r, j % fmt.residual].astype(np.float64)
            vb[j] = pool["v_recent"][r, j % fmt.residual].astype(np.float64)
        ks.append(kb)
        vs.append(vb)
    return ks, vs


# ------------------------------------------------------------------------------------------------
# Page tables and slots
# ------------------------------------------------------------------------------------------------

def build_page_table(rng, seq_lens, page_size: int, shared_prefix_pages: int = 0,
                     extra_pages: int = 0) -> PageTable:
    """CSR page table for the given lengths with pages drawn from a shuffled pool.

    With shared_prefix_pages = n, every sequence of at least n * page_size tokens starts with the
    same n (full) pages (prefix sharing); the shared pages are the first sequence's such pages.
    extra_pages unused pages are added to the pool (they stay unreferenced). Sequences of length 0
    get no page and last_page_len 0."""
    lens = [int(x) for x in seq_lens]
    npg = [-(-n // page_size) for n in lens]
    shared_ok = [shared_prefix_pages > 0 and n >= shared_prefix_pages * page_size for n in lens]
    n_shared = shared_prefix_pages if any(shared_ok) else 0
    own = [n - (n_shared if ok else 0) for n, ok in zip(npg, shared_ok)]
    total = n_shared + sum(own) + int(extra_pages)
    perm = rng.permutation(total)
    shared = perm[:n_shared]
    nxt = n_shared
    indices, indptr, last = [], [0], []
    for n, ok, o in zip(lens, shared_ok, own):
        pages = list(shared) if ok else []
        pages += list(perm[nxt:nxt + o])
        nxt += o
        indices += pages
        indptr.append(len(indices))
        last.append(0 if n == 0 else n - (len(pages) - 1) * page_size)
    return PageTable(np.array(indptr), np.array(indices, dtype=np.int64), np.array(last),
                     page_size, total)


def page_table_from_block_tables(block_tables, seq_lens, page_size: int) -> PageTable:
    """vLLM padded block_tables [B, max_blocks] + seq_lens [B] -> CSR (docs/kv-cache.md)."""
    bt = np.asarray(block_tables, dtype=np.int64)
    lens = np.asarray(seq_lens, dtype=np.int64)
    if bt.ndim != 2 or lens.shape != (bt.shape[0],):
        raise ValueError(f"block_tables {bt.shape} / seq_lens {lens.shape}")
    npg = -(-lens // page_size)
    if (lens < 0).any() or (npg > bt.shape[1]).any():
        raise ValueError("seq_lens negative or longer than block_tables allows")
    indices = np.concatenate([bt[b, :npg[b]] for b in range(bt.shape[0])] + [np.zeros(0, int)])
    if (indices < 0).any():
        raise ValueError("block_tables holds a negative page inside a sequence")
    indptr = np.concatenate([[0], np.cumsum(npg)])
    last = np.where(npg > 0, lens - (npg - 1) * page_size, 0)
    return PageTable(indptr, indices, last, page_size)


def slots_for(table: PageTable, seq_ids, positions) -> np.ndarray:
    """Slots (int32) of the tokens (seq_ids[i], positions[i]); a position < 0 gives slot -1."""
    seq_ids = np.asarray(seq_ids, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    out = np.full(seq_ids.size, -1, dtype=np.int64)
    ok = positions >= 0
    indptr = table.kv_indptr.astype(np.int64)
    S = table.page_size
    pidx = indptr[seq_ids[ok]] + positions[ok] // S
    if (pidx >= indptr[seq_ids[ok] + 1]).any():
        raise ValueError("position beyond the sequence's pages")
    out[ok] = table.kv_indices[pidx].astype(np.int64) * S + positions[ok] % S
    return out.astype(np.int32)


def ring_slots_for(rings_of_seq, seq_ids, positions, residual: int) -> np.ndarray:
    """Ring slots (int32) of the tokens (seq_ids[i], positions[i]):
    rings_of_seq[seq_ids[i]] * R + positions[i] % R; a position < 0 gives -1."""
    rings = np.asarray(rings_of_seq, dtype=np.int64).reshape(-1)
    seq_ids = np.asarray(seq_ids, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if seq_ids.size != positions.size:
        raise ValueError(f"{seq_ids.size} seq_ids but {positions.size} positions")
    out = np.full(seq_ids.size, -1, dtype=np.int64)
    ok = positions >= 0
    out[ok] = rings[seq_ids[ok]] * residual + positions[ok] % residual
    return out.astype(np.int32)


def sequence_slots(table: PageTable, starts=None, ends=None, skip_shared=True):
    """(seq_ids, positions, slots) for tokens [starts[b], ends[b]) of every sequence, sequence
    by sequence. With skip_shared, a slot already produced for an earlier sequence (a shared
    prefix page) becomes -1 so that the shared tokens are written once."""
    lens = table.seq_lens
    B = table.batch
    starts = np.zeros(B, int) if starts is None else np.asarray(starts)
    ends = lens if ends is None else np.asarray(ends)
    sid = np.concatenate([np.full(int(e - s), b) for b, (s, e) in enumerate(zip(starts, ends))]
                         + [np.zeros(0, int)]).astype(np.int64)
    pos = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]
                         + [np.zeros(0, int)]).astype(np.int64)
    slots = slots_for(table, sid, pos)
    if skip_shared and slots.size:
        _, first = np.unique(slots, return_index=True)
        dup = np.ones(slots.size, bool)
        dup[first] = False
        slots = np.where(dup, -1, slots).astype(np.int32)
    return sid, pos, slots


# ------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------

def paged_reference(q, k_list, v_list, qo_lens=None, mask: Mask = Mask(), scale=None,
                    softcap: float = 0.0):
    """Float64 attention per sequence; queries are the last tokens of each KV sequence.

    Decode (qo_lens None): q [B, Hq, D] -> O [B, Hq, D], LSE [Hq, B].
    Append/prefill: q [total_q, Hq, D] with qo_lens [B] -> O [total_q, Hq, D], LSE [Hq, total_q].
    """
    q = np.asarray(q).astype(np.float64)
    B = len(k_list)
    if qo_lens is None:
        if q.ndim != 3 or q.shape[0] != B:
            raise ValueError(f"decode q must be [B={B}, Hq, D], not {q.shape}")
        qo_lens = np.ones(B, dtype=np.int64)
    qo_lens = np.asarray(qo_lens, dtype=np.int64)
    H, D = q.shape[1], q.shape[2]
    hkv = k_list[0].shape[1] if B else 1
    cq = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int64)
    ck = np.concatenate([[0], np.cumsum([k.shape[0] for k in k_list])]).astype(np.int64)
    if cq[-1] != q.shape[0]:
        raise ValueError(f"sum(qo_lens) = {cq[-1]} != q rows {q.shape[0]}")
    empty = np.zeros((0, hkv, D))
    k = np.concatenate([np.asarray(x, np.float64) for x in k_list] + [empty])
    v = np.concatenate([np.asarray(x, np.float64) for x in v_list] + [empty])
    return attention(q, k, v, scale=scale, softcap=softcap, mask=mask,
                     cu_seqlens_q=cq, cu_seqlens_k=ck)


def page_scores(q, pool: dict, fmt: CacheFormat, kv_indptr, kv_indices) -> list:
    """Quest page scores (docs/sparsity.md section 3) in float64: per sequence b an [Hkv, n_b]
    array, score[h, p] = max over the query heads g of KV head h of
    sum_d max(q[b,g,d] * kmax[page,h,d], q[b,g,d] * kmin[page,h,d]) with page = the sequence's
    p-th entry of kv_indices; -inf for a negative entry (a trimmed page)."""
    q = np.asarray(q).astype(np.float64)
    kv_indptr = np.asarray(kv_indptr, dtype=np.int64)
    kv_indices = np.asarray(kv_indices, dtype=np.int64)
    H = fmt.kv_heads
    G = q.shape[1] // H
    kmax = pool["k_page_max"].astype(np.float64)
    kmin = pool["k_page_min"].astype(np.float64)
    out = []
    for b in range(kv_indptr.size - 1):
        pages = kv_indices[kv_indptr[b]:kv_indptr[b + 1]]
        ok = pages >= 0
        sc = np.full((H, pages.size), -np.inf)
        if ok.any():
            qb = q[b].reshape(H, G, 1, -1)                       # [H, G, 1, D]
            hi = kmax[pages[ok]].transpose(1, 0, 2)[:, None]     # [H, 1, n, D]
            lo = kmin[pages[ok]].transpose(1, 0, 2)[:, None]
            sc[:, ok] = np.maximum(qb * hi, qb * lo).sum(-1).max(1)
        out.append(sc)
    return out


def select_pages(q, pool: dict, fmt: CacheFormat, kv_indptr, kv_indices, top_k: int,
                 sink_pages: int = 0, recent_pages: int = 0):
    """attn.select_pages (docs/sparsity.md section 3): (offsets [B, Hkv, 2], indices
    [B, Hkv, top_k], scores) with int32 offsets [0, n] and indices the selected logical pages in
    ascending order followed by -1; scores as page_scores. A sequence with at most top_k pages
    keeps all; otherwise the first sink_pages and last recent_pages pages, then the best scores
    of the others (ties: lower page first). For NaN-free summaries and queries (the kernel's max
    of two products keeps the second when one is NaN; NumPy's propagates it)."""
    if not (top_k >= 1 and sink_pages >= 0 and recent_pages >= 0
            and sink_pages + recent_pages <= top_k):
        raise ValueError(f"top_k {top_k}, sink_pages {sink_pages}, recent_pages {recent_pages}")
    scores = page_scores(q, pool, fmt, kv_indptr, kv_indices)
    B, H = len(scores), fmt.kv_heads
    offsets = np.zeros((B, H, 2), dtype=np.int32)
    indices = np.full((B, H, top_k), -1, dtype=np.int32)
    for b, sc in enumerate(scores):
        n = sc.shape[1]
        for h in range(H):
            if n <= top_k:
                sel = np.arange(n)
            else:
                mid = np.arange(sink_pages, n - recent_pages)
                m = top_k - sink_pages - recent_pages
                best = mid[np.lexsort((mid, -sc[h, mid]))[:m]]
                sel = np.concatenate([np.arange(sink_pages), np.sort(best),
                                      np.arange(n - recent_pages, n)])
            offsets[b, h, 1] = sel.size
            indices[b, h, :sel.size] = sel
    return offsets, indices, scores


def merge_reference(partial_o, partial_lse):
    """partial_o [Np, T, Hq, D], partial_lse [Np, Hq, T] -> (o [T, Hq, D], lse [Hq, T]) float64.

    lse = logsumexp_p lse_p; o = sum_p exp(lse_p - lse) o_p; all -inf gives zeros and -inf."""
    po = np.asarray(partial_o, dtype=np.float64)
    pl = np.asarray(partial_lse, dtype=np.float64)
    if pl.ndim != 3 or po.ndim != 4 or po.shape[0] != pl.shape[0] or \
            po.shape[1:3] != (pl.shape[2], pl.shape[1]):
        raise ValueError(f"partial_o {po.shape} / partial_lse {pl.shape}")
    if po.shape[0] == 0:
        return np.zeros(po.shape[1:]), np.full(pl.shape[1:], -np.inf)
    m = pl.max(axis=0)                                        # [Hq, T]
    fin = np.isfinite(m)
    ms = np.where(fin, m, 0.0)
    w = np.where(np.isneginf(pl), 0.0, np.exp(pl - ms[None]))  # [Np, Hq, T]
    tot = w.sum(axis=0)
    lse = np.where(fin, ms + np.log(np.where(fin, tot, 1.0)), -np.inf)
    wn = np.where(fin[None], w / np.where(fin, tot, 1.0)[None], 0.0)
    o = np.einsum("pht,pthd->thd", wn, po)
    return o, lse


# ------------------------------------------------------------------------------------------------
# Realistic data
# ------------------------------------------------------------------------------------------------

@dataclass
class KVDistribution:
    """Per-layer K/V statistics resembling an LLM's (fixed per head and channel).

    K: every channel has its own offset and spread; a few outlier channels per head have 10-20x
    the magnitude and a large offset (the reason KIVI quantizes K per channel). V: roughly
    Gaussian per token with a mild per-token spread."""
    kv_heads: int
    head_dim: int
    seed: int = 0
    n_outliers: int = 4
    k_std: np.ndarray = field(init=False)
    k_offset: np.ndarray = field(init=False)
    outliers: np.ndarray = field(init=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        H, D = self.kv_heads, self.head_dim
        self.k_std = rng.uniform(0.5, 1.5, (H, D))
        self.k_offset = rng.normal(0.0, 0.5, (H, D))
        n = min(self.n_outliers, D)
        self.outliers = np.stack([rng.choice(D, n, replace=False) for _ in range(H)])
        for h in range(H):
            mag = rng.uniform(10.0, 20.0, n)
            self.k_std[h, self.outliers[h]] = mag * rng.uniform(0.3, 0.6, n)
            self.k_offset[h, self.outliers[h]] = mag * rng.choice([-1.0, 1.0], n)

    def sample(self, rng, n: int):
        """(k, v) f32 [n, H, D]."""
        H, D = self.kv_heads, self.head_dim
        k = self.k_offset + self.k_std * rng.standard_normal((n, H, D))
        v = rng.standard_normal((n, H, D)) * rng.uniform(0.7, 1.3, (n, H, 1))
        return k.astype(F32), v.astype(F32)


def realistic_queries(rng, k, hq: int, n_q: int, score_std: float = 2.0, scale=None,
                      n_pick: int = 3):
    """n_q queries [n_q, Hq, D] (f32) correlated with the keys k [L, Hkv, D] of one sequence:
    q = (sum of a few centred keys of its KV head + noise), scaled so that the scores
    scale * q.k over the sequence have standard deviation score_std (moderately peaked softmax;
    the picked keys stand out by several score_std)."""
    k = np.asarray(k, dtype=np.float64)
    L, hkv, D = k.shape
    G = hq // hkv
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q = np.zeros((n_q, hq, D))
    if L == 0:
        return rng.standard_normal((n_q, hq, D)).astype(F32)
    kh = np.ascontiguousarray(k.transpose(1, 0, 2))            # [Hkv, L, D]
    kc = kh - kh.mean(axis=1, keepdims=True)
    for h in range(hq):
        idx = rng.integers(0, L, (n_q, min(n_pick, L)))
        u = kc[h // G][idx].sum(axis=1)
        u += rng.standard_normal(u.shape) * (np.linalg.norm(u, axis=-1, keepdims=True)
                                             / math.sqrt(D) + 1e-3)
        s = scale * u @ kh[h // G].T                           # [n_q, L]
        sd = s.std(axis=-1, keepdims=True) if L > 1 else np.ones((n_q, 1))
        q[:, h] = u * (score_std / np.where(sd > 0, sd, 1.0))
    return q.astype(F32)


def realistic_batch(rng, dist: KVDistribution, seq_lens, hq: int, qo_lens=None,
                    score_std: float = 2.0):
    """Per sequence (k, v) f32 and the queries of the last tokens: decode q [B, Hq, D] when
    qo_lens is None, else ragged [sum(qo_lens), Hq, D]."""
    ks, vs, qs = [], [], []
    for b, n in enumerate(seq_lens):
        k, v = dist.sample(rng, int(n))
        ks.append(k)
        vs.append(v)
        nq = 1 if qo_lens is None else int(qo_lens[b])
        qs.append(realistic_queries(rng, k, hq, nq, score_std))
    q = np.concatenate(qs) if qs else np.zeros((0, hq, dist.head_dim), F32)
    return ks, vs, q


# ------------------------------------------------------------------------------------------------
# Accuracy bounds (docs/kv-cache.md, "Accuracy (measured)"): O as max_abs_err / max|ref|, LSE
# absolute, of paged attention on the dequantized cache vs float64 on the unquantized values, for
# data from KVDistribution / realistic_queries: 1.5-2x the worst of 10 seeds of
# `python test/e2e/kv_accuracy.py --seeds 10`. A kernel's own arithmetic (f32 accumulation, output
# rounding; harness.O_TOL / LSE_TOL of the query dtype) comes on top.
# ------------------------------------------------------------------------------------------------

KV_O_TOL = {"f16": 0.003, "bf16": 0.025, "f8E4M3FN": 0.4, "f8E5M2": 0.6,
            "i8_g16": 0.05, "i8_g64": 0.05, "i4_g16": 0.3, "i4_g64": 0.5,
            "i8_g64_r128": 0.05, "i4_g64_r128": 0.5}
KV_LSE_TOL = {"f16": 0.005, "bf16": 0.04, "f8E4M3FN": 0.5, "f8E5M2": 1.0,
              "i8_g16": 0.06, "i8_g64": 0.08, "i4_g16": 0.8, "i4_g64": 1.0,
              "i8_g64_r128": 0.08, "i4_g64_r128": 1.0}


def tol_key(fmt_or_storage, k_group: int | None = None, residual: int | None = None) -> str:
    """Key of KV_O_TOL / KV_LSE_TOL: the storage, with the smallest measured k_group >= the
    format's for i8/i4 (bounds were measured for k_group 16 and 64), and for i8/i4 with a residual
    window of R >= 128 the bound measured with k_group 64 and residual 128 ("i8_g64_r128"; a
    smaller k_group and a larger window only remove error). Other residual windows use the bound
    without one."""
    if isinstance(fmt_or_storage, CacheFormat):
        st, k_group = fmt_or_storage.storage, fmt_or_storage.k_group
        residual = fmt_or_storage.residual
    else:
        st = _ALIASES[str(fmt_or_storage).lower()]
    if st not in ("i8", "i4"):
        return st
    if residual and residual >= 128 and (k_group is None or k_group <= 64):
        return f"{st}_g64_r128"
    for g in (16, 64):
        if k_group is None or k_group <= g:
            return f"{st}_g{g}"
    raise ValueError(f"no measured bound for {st} with k_group {k_group} > 64")


def kv_tolerance(fmt_or_storage, k_group: int | None = None,
                 residual: int | None = None) -> tuple[float, float]:
    """(O tolerance, LSE tolerance) of the cache format (see KV_O_TOL)."""
    key = tol_key(fmt_or_storage, k_group, residual)
    return KV_O_TOL[key], KV_LSE_TOL[key]
