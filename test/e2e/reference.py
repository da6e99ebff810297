"""Float64 NumPy reference for `attn.attention`, written from docs/semantics.md.

Public entry point: :func:`attention`. Inputs may be any float dtype (f32, f16, ml_dtypes
bfloat16); they are widened to float64 before any arithmetic. Scores are computed in row chunks
so that no more than ``chunk_bytes`` of score matrix exists at a time, whatever Lq and Lk are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mask:
    """Mask parameters, as in `#attn.mask<...>` and the manifest's `mask` object."""
    causal: bool = False
    window: int = -1            # -1: no sliding window
    sinks: int = 0
    align: str = "bottom_right"  # or "top_left"

    @staticmethod
    def from_manifest(d: dict) -> "Mask":
        return Mask(bool(d.get("causal", False)), int(d.get("window", -1)),
                    int(d.get("sinks", 0)), d.get("align", "bottom_right"))


def visible(rows: np.ndarray, lq: int, lk: int, mask: Mask) -> np.ndarray:
    """Boolean [len(rows), lk]: key j visible to query row i (docs/semantics.md, Mask)."""
    if mask.align not in ("bottom_right", "top_left"):
        raise ValueError(f"bad align {mask.align!r}")
    rows = np.asarray(rows, dtype=np.int64)
    pos = rows + (lk - lq) if mask.align == "bottom_right" else rows
    pos = pos[:, None]
    j = np.arange(lk, dtype=np.int64)[None, :]
    vis = np.ones((rows.size, lk), dtype=bool)
    if mask.causal or mask.window >= 0:
        vis &= j <= pos
    if mask.window >= 0:
        vis &= (j >= pos - mask.window) | (j < mask.sinks)
    return vis


def _one_sequence(q, k, v, scale, softcap, mask, chunk_bytes):
    """q [Lq,Hq,D], k/v [Lk,Hkv,D] float64 -> (o [Lq,Hq,D], lse [Hq,Lq]) float64."""
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    group = hq // hkv
    o = np.zeros((lq, hq, d), dtype=np.float64)
    lse = np.full((hq, lq), -np.inf, dtype=np.float64)
    if lq == 0 or lk == 0:
        return o, lse
    # [Hkv, G, Lq, D]: query head h = kvh * G + g uses KV head kvh = h // G.
    qh = q.transpose(1, 0, 2).reshape(hkv, group, lq, d)
    kh = k.transpose(1, 0, 2)  # [Hkv, Lk, D]
    vh = v.transpose(1, 0, 2)
    rows_per_chunk = max(1, chunk_bytes // (8 * 3 * hq * lk))
    for r0 in range(0, lq, rows_per_chunk):
        r1 = min(lq, r0 + rows_per_chunk)
        s = scale * np.einsum("hgid,hjd->hgij", qh[:, :, r0:r1], kh, optimize=True)
        if softcap > 0:
            s = softcap * np.tanh(s / softcap)
        vis = visible(np.arange(r0, r1), lq, lk, mask)[None, None]
        s = np.where(vis, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        empty = ~np.isfinite(m)                        # row has no visible key
        m = np.where(empty, 0.0, m)
        p = np.where(vis, np.exp(s - m), 0.0)
        l = p.sum(axis=-1, keepdims=True)
        acc = np.einsum("hgij,hjd->hgid", p, vh, optimize=True)
        safe_l = np.where(empty, 1.0, l)
        oc = np.where(empty, 0.0, acc / safe_l)        # [Hkv, G, rows, D]
        lc = np.where(empty, -np.inf, m + np.log(safe_l))[..., 0]
        o[r0:r1] = oc.reshape(hq, r1 - r0, d).transpose(1, 0, 2)
        lse[:, r0:r1] = lc.reshape(hq, r1 - r0)
    return o, lse


def attention(q, k, v, *, scale: float | None = None, softcap: float = 0.0,
              mask: Mask = Mask(), cu_seqlens_q=None, cu_seqlens_k=None,
              chunk_bytes: int = 256 << 20):
    """Reference attention in float64.

    Dense: q [B,Lq,Hq,D], k/v [B,Lk,Hkv,D] -> o [B,Lq,Hq,D], lse [B,Hq,Lq].
    Ragged (cu_seqlens given): q [Tq,Hq,D], k/v [Tk,Hkv,D] -> o [Tq,Hq,D], lse [Hq,Tq].
    Returns (o, lse) as float64 arrays.
    """
    q = np.asarray(q).astype(np.float64)
    k = np.asarray(k).astype(np.float64)
    v = np.asarray(v).astype(np.float64)
    d = q.shape[-1]
    hq, hkv = q.shape[-2], k.shape[-2]
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(f"Hq={hq} is not a multiple of Hkv={hkv}")
    if k.shape != v.shape or k.shape[-1] != d:
        raise ValueError(f"shape mismatch q{q.shape} k{k.shape} v{v.shape}")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    args = (scale, float(softcap), mask, chunk_bytes)
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        raise ValueError("give both cu_seqlens or neither")
    if cu_seqlens_q is None:
        if q.ndim != 4 or q.shape[0] != k.shape[0]:
            raise ValueError(f"dense shapes q{q.shape} k{k.shape}")
        outs = [_one_sequence(q[b], k[b], v[b], *args) for b in range(q.shape[0])]
        o = np.stack([x[0] for x in outs]) if outs else np.zeros(q.shape)
        lse = (np.stack([x[1] for x in outs]) if outs
               else np.zeros((0, hq, q.shape[1])))
        return o, lse
    cq = np.asarray(cu_seqlens_q, dtype=np.int64)
    ck = np.asarray(cu_seqlens_k, dtype=np.int64)
    if (q.ndim != 3 or cq.shape != ck.shape or cq[0] != 0 or ck[0] != 0
            or cq[-1] != q.shape[0] or ck[-1] != k.shape[0]
            or np.any(np.diff(cq) < 0) or np.any(np.diff(ck) < 0)):
        raise ValueError("bad ragged shapes or cu_seqlens")
    o = np.zeros(q.shape, dtype=np.float64)
    lse = np.full((hq, q.shape[0]), -np.inf, dtype=np.float64)
    for b in range(cq.size - 1):
        qs, qe, ks, ke = cq[b], cq[b + 1], ck[b], ck[b + 1]
        ob, lb = _one_sequence(q[qs:qe], k[ks:ke], v[ks:ke], *args)
        o[qs:qe] = ob
        lse[:, qs:qe] = lb
    return o, lse


def flops(lq_lk_visible: int, hq: int, d: int) -> float:
    """FLOPs of attention: 4*D per (query head, visible (i, j) pair)."""
    return 4.0 * d * hq * lq_lk_visible


def visible_pairs(lq: int, lk: int, mask: Mask, chunk: int = 4096) -> int:
    """Number of visible (i, j) pairs of one sequence (for FLOP counts)."""
    total = 0
    for r0 in range(0, lq, chunk):
        total += int(visible(np.arange(r0, min(lq, r0 + chunk)), lq, lk, mask).sum())
    return total
