"""Float64 NumPy reference of sparse attention (docs/sparsity.md), generators of block-sparse
masks and the tile counts of the block predicate.

What is modelled:

- Per-KV-head structured masks (`head_masks`): query head `h` uses the mask of KV head `h // G`.
  A single `mask` is the same mask for every head. Masks are those of docs/semantics.md
  (`reference.Mask`: causal, window, sinks, alignment; bottom-right by default, so query `i` of
  `Lq` sits at position `i + Lk - Lq`).
- Block-sparse masks in BSR form (:class:`BSR`, docs/sparsity.md section 2): key `j` is visible
  from query `i` of sequence `b`, KV head `h` iff `j < Lk`, KV block `j // BK` is listed for
  query block `i // BQ` (`indices[b, hb, offsets[b, hb, r]:offsets[b, hb, r + 1]]`, `hb = h`
  or 0 when the BSR has one head), and the listed entry is full (`full != 0`) or the structured
  mask allows `(i, j)`.
- Dense `[B, L, H, D]`, ragged (`cu_seqlens`) and paged (per-sequence K/V lists as returned by
  `kv_reference.gather`, decode or append) forms. A query with no visible key outputs zeros and
  LSE `-inf`.
- Tile counts (:func:`count_tiles`): a kernel work item covers `tile_q` queries (of all G query
  heads of one KV head) of one sequence; a KV tile of `tile_kv` keys is *visible* when at least
  one (query, key) pair of the tile is visible, and *dense* for every tile of `[0, Lk)`. The block
  predicate of a correct kernel runs exactly the visible tiles.

Entry points: :func:`sparse_attention`, :func:`sparse_paged_reference`, :func:`visible_matrix`,
:func:`visible_intervals`, :func:`count_tiles`, :func:`random_bsr`, :func:`bsr_from_masks`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference import Mask

# ------------------------------------------------------------------------------------------------
# Masks per KV head
# ------------------------------------------------------------------------------------------------


def kv_head_masks(hkv: int, mask: Mask | None = None, head_masks=None) -> list[Mask]:
    """The structured mask of every KV head: `head_masks` (exactly hkv entries, one alignment),
    else `mask` (no mask when None) repeated."""
    if head_masks is not None:
        if mask is not None and mask != Mask():
            raise ValueError("give mask or head_masks, not both")
        hm = list(head_masks)
        if len(hm) != hkv:
            raise ValueError(f"head_masks has {len(hm)} entries for {hkv} KV heads")
        if len({m.align for m in hm}) > 1:
            raise ValueError("head_masks must share one alignment")
        return hm
    return [mask if mask is not None else Mask()] * hkv


def position(mask: Mask, i, lq: int, lk: int):
    """Position of query i (docs/semantics.md): i + Lk - Lq (bottom_right) or i (top_left)."""
    return i + (lk - lq) if mask.align == "bottom_right" else i


def mask_allows(mask: Mask, i: int, j: int, lq: int, lk: int) -> bool:
    """Scalar form of the structured mask (no sequence-length check on j)."""
    if not mask.causal and mask.window < 0:
        return True
    p = position(mask, i, lq, lk)
    if j > p:
        return False
    if mask.window >= 0 and j < p - mask.window and j >= mask.sinks:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# The block-sparse mask
# ------------------------------------------------------------------------------------------------


@dataclass
class BSR:
    """A block-sparse mask: FlexAttention's BlockMask in CSR form per (batch, head).

    offsets: i32 [B, H, num_q_blocks + 1]; indices: i32 [B, H, max_blocks]; full: i8
    [B, H, max_blocks] or None (every listed block partial). block_q = BQ and block_kv = BK in
    tokens. H is kv_heads or 1 (one pattern for every head)."""
    offsets: np.ndarray
    indices: np.ndarray
    full: np.ndarray | None
    block_q: int
    block_kv: int

    def __post_init__(self):
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int32)
        self.indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        if self.full is not None:
            self.full = np.ascontiguousarray(self.full, dtype=np.int8)
        if self.offsets.ndim != 3 or self.indices.ndim != 3:
            raise ValueError(f"offsets {self.offsets.shape} / indices {self.indices.shape} "
                             "must be [B, H, n]")
        if self.offsets.shape[:2] != self.indices.shape[:2] or self.offsets.shape[2] < 1:
            raise ValueError(f"offsets {self.offsets.shape} / indices {self.indices.shape}")
        if self.full is not None and self.full.shape != self.indices.shape:
            raise ValueError(f"full {self.full.shape} != indices {self.indices.shape}")
        if self.block_q < 1 or self.block_kv < 1:
            raise ValueError(f"block sizes must be >= 1, not {self.block_q} x {self.block_kv}")

    @property
    def batch(self) -> int:
        return self.offsets.shape[0]

    @property
    def heads(self) -> int:
        return self.offsets.shape[1]

    @property
    def num_q_blocks(self) -> int:
        return self.offsets.shape[2] - 1

    @property
    def max_blocks(self) -> int:
        return self.indices.shape[2]

    def head(self, kvh: int) -> int:
        """The BSR head of KV head kvh (0 when one pattern serves every head)."""
        return kvh if self.heads > 1 else 0

    def row(self, b: int, kvh: int, r: int):
        """(blocks, full flags as bool) listed for query block r of sequence b, KV head kvh."""
        hb = self.head(kvh)
        if r >= self.num_q_blocks:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        s, e = int(self.offsets[b, hb, r]), int(self.offsets[b, hb, r + 1])
        blocks = self.indices[b, hb, s:e].astype(np.int64)
        full = (self.full[b, hb, s:e] != 0) if self.full is not None else np.zeros(e - s, bool)
        return blocks, full

    def arrays(self) -> dict:
        """The kernel operands by role: block_offsets, block_indices (and block_full)."""
        out = {"block_offsets": self.offsets, "block_indices": self.indices}
        if self.full is not None:
            out["block_full"] = self.full
        return out

    def without_full(self) -> "BSR":
        return BSR(self.offsets, self.indices, None, self.block_q, self.block_kv)

    def validate(self, lens_q, lens_k, hkv: int) -> None:
        """attnrt's checks (docs/sparsity.md section 2); raises ValueError."""
        lens_q, lens_k = list(lens_q), list(lens_k)
        if self.batch != len(lens_q) or len(lens_k) != len(lens_q):
            raise ValueError(f"BSR batch {self.batch} for {len(lens_q)} sequences")
        if self.heads not in (1, hkv):
            raise ValueError(f"BSR heads {self.heads} must be 1 or kv_heads {hkv}")
        for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
            if self.num_q_blocks < -(-lq // self.block_q):
                raise ValueError(f"sequence {b}: {lq} queries need "
                                 f"{-(-lq // self.block_q)} query blocks, BSR has "
                                 f"{self.num_q_blocks}")
            nkb = -(-lk // self.block_kv)
            for h in range(self.heads):
                off = self.offsets[b, h]
                if off[0] < 0 or np.any(np.diff(off) < 0) or off[-1] > self.max_blocks:
                    raise ValueError(f"(b={b}, h={h}): bad offsets {off.tolist()}")
                for r in range(self.num_q_blocks):
                    row = self.indices[b, h, off[r]:off[r + 1]]
                    if np.any((row < 0) | (row >= nkb)):
                        raise ValueError(f"(b={b}, h={h}) row {r}: block outside [0, {nkb})")
                    if np.unique(row).size != row.size:
                        raise ValueError(f"(b={b}, h={h}) row {r}: a block listed twice")


# ------------------------------------------------------------------------------------------------
# Visibility
# ------------------------------------------------------------------------------------------------


def visible_matrix(lq: int, lk: int, mask: Mask = Mask(), bsr: BSR | None = None, b: int = 0,
                   kvh: int = 0) -> np.ndarray:
    """Boolean [lq, lk]: key j visible from query i for sequence b, KV head kvh (vectorized,
    straight from the definition)."""
    i = np.arange(lq, dtype=np.int64)[:, None]
    j = np.arange(lk, dtype=np.int64)[None, :]
    vis = np.ones((lq, lk), dtype=bool)
    if mask.causal or mask.window >= 0:
        p = position(mask, i, lq, lk)
        vis &= j <= p
        if mask.window >= 0:
            vis &= (j >= p - mask.window) | (j < mask.sinks)
    if bsr is None:
        return vis
    nqb, nkb = -(-lq // bsr.block_q), -(-lk // bsr.block_kv)
    listed = np.zeros((nqb, nkb), dtype=bool)
    full = np.zeros((nqb, nkb), dtype=bool)
    for r in range(nqb):
        blocks, fl = bsr.row(b, kvh, r)
        ok = (blocks >= 0) & (blocks < nkb)
        listed[r, blocks[ok]] = True
        full[r, blocks[ok]] |= fl[ok]
    rb, cb = i // bsr.block_q, j // bsr.block_kv
    return listed[rb, cb] & (full[rb, cb] | vis)


def _merge(intervals):
    """Sorted disjoint union of half-open intervals (empty ones dropped)."""
    iv = sorted((a, e) for a, e in intervals if a < e)
    out = []
    for a, e in iv:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((a, e))
    return out


def mask_intervals(mask: Mask, p_lo: int, p_hi: int, lk: int) -> list[tuple[int, int]]:
    """Keys [a, e) visible from at least one query with position in [p_lo, p_hi] under the
    structured mask, as at most two sorted disjoint intervals (closed form).

    Causal/window: a query at position p < 0 sees nothing; the window intervals
    [p - w, min(p, Lk - 1)] of consecutive positions overlap, so their union is one interval;
    the sinks add [0, min(s, p_hi + 1, Lk))."""
    if lk <= 0 or p_lo > p_hi:
        return []
    if not mask.causal and mask.window < 0:
        return [(0, lk)]
    if p_hi < 0:
        return []
    lo_p = max(p_lo, 0)
    hi = min(p_hi, lk - 1)  # inclusive
    if mask.window < 0:
        return [(0, hi + 1)]
    main = (max(0, lo_p - mask.window), hi + 1)
    sinks = (0, min(mask.sinks, p_hi + 1, lk))
    return _merge([main, sinks])


def visible_intervals(lq: int, lk: int, i_lo: int, i_hi: int, mask: Mask = Mask(),
                      bsr: BSR | None = None, b: int = 0, kvh: int = 0):
    """Keys visible from at least one query of [i_lo, i_hi] (inclusive) of one sequence, as
    sorted disjoint half-open intervals. Query ranges may cross query blocks."""
    i_lo, i_hi = max(i_lo, 0), min(i_hi, lq - 1)
    if i_lo > i_hi or lk <= 0:
        return []
    if bsr is None:
        return mask_intervals(mask, position(mask, i_lo, lq, lk), position(mask, i_hi, lq, lk),
                              lk)
    out = []
    bq, bk = bsr.block_q, bsr.block_kv
    for r in range(i_lo // bq, i_hi // bq + 1):
        s_lo, s_hi = max(i_lo, r * bq), min(i_hi, (r + 1) * bq - 1)
        m = mask_intervals(mask, position(mask, s_lo, lq, lk), position(mask, s_hi, lq, lk), lk)
        blocks, full = bsr.row(b, kvh, r)
        for c, f in zip(blocks.tolist(), full.tolist()):
            a, e = c * bk, min((c + 1) * bk, lk)
            if a >= e or c < 0:
                continue
            if f:
                out.append((a, e))
            else:
                out += [(max(a, ma), min(e, me)) for ma, me in m]
    return _merge(out)


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------


def _one_sequence(q, k, v, scale, softcap, masks, bsr, b, chunk_bytes):
    """q [Lq,Hq,D], k/v [Lk,Hkv,D] float64 -> (o [Lq,Hq,D], lse [Hq,Lq]) float64."""
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    g = hq // hkv
    o = np.zeros((lq, hq, d))
    lse = np.full((hq, lq), -np.inf)
    if lq == 0 or lk == 0:
        return o, lse
    rows = max(1, chunk_bytes // (8 * 3 * g * lk))
    for h in range(hkv):
        vis_all = visible_matrix(lq, lk, masks[h], bsr, b, h)
        qh = q[:, h * g:(h + 1) * g].transpose(1, 0, 2)      # [G, Lq, D]
        kh, vh = k[:, h], v[:, h]                            # [Lk, D]
        for r0 in range(0, lq, rows):
            r1 = min(lq, r0 + rows)
            s = scale * np.einsum("gid,jd->gij", qh[:, r0:r1], kh)
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            vis = vis_all[None, r0:r1]
            s = np.where(vis, s, -np.inf)
            m = s.max(axis=-1, keepdims=True)
            empty = ~np.isfinite(m)
            m = np.where(empty, 0.0, m)
            p = np.where(vis, np.exp(s - m), 0.0)
            den = p.sum(axis=-1, keepdims=True)
            safe = np.where(empty, 1.0, den)
            oc = np.where(empty, 0.0, np.einsum("gij,jd->gid", p, vh) / safe)
            o[r0:r1, h * g:(h + 1) * g] = oc.transpose(1, 0, 2)
            lse[h * g:(h + 1) * g, r0:r1] = np.where(empty, -np.inf, m + np.log(safe))[..., 0]
    return o, lse


def sparse_attention(q, k, v, *, scale: float | None = None, softcap: float = 0.0,
                     mask: Mask | None = None, head_masks=None, bsr: BSR | None = None,
                     cu_seqlens_q=None, cu_seqlens_k=None, chunk_bytes: int = 64 << 20):
    """Reference attention in float64 with per-head masks and a block-sparse mask.

    Dense: q [B,Lq,Hq,D], k/v [B,Lk,Hkv,D] -> o [B,Lq,Hq,D], lse [B,Hq,Lq].
    Ragged (cu_seqlens given): q [Tq,Hq,D], k/v [Tk,Hkv,D] -> o [Tq,Hq,D], lse [Hq,Tq].
    BSR batch index b is the sequence index. Returns (o, lse) float64."""
    q = np.asarray(q).astype(np.float64)
    k = np.asarray(k).astype(np.float64)
    v = np.asarray(v).astype(np.float64)
    d, hq, hkv = q.shape[-1], q.shape[-2], k.shape[-2]
    if hkv == 0 or hq % hkv:
        raise ValueError(f"Hq={hq} is not a multiple of Hkv={hkv}")
    if k.shape != v.shape or k.shape[-1] != d:
        raise ValueError(f"shape mismatch q{q.shape} k{k.shape} v{v.shape}")
    masks = kv_head_masks(hkv, mask, head_masks)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        raise ValueError("give both cu_seqlens or neither")
    if cu_seqlens_q is None:
        if q.ndim != 4 or q.shape[0] != k.shape[0]:
            raise ValueError(f"dense shapes q{q.shape} k{k.shape}")
        bsz = q.shape[0]
        if bsr is not None:
            bsr.validate([q.shape[1]] * bsz, [k.shape[1]] * bsz, hkv)
        o = np.zeros(q.shape)
        lse = np.full((bsz, hq, q.shape[1]), -np.inf)
        for b in range(bsz):
            o[b], lse[b] = _one_sequence(q[b], k[b], v[b], scale, softcap, masks, bsr, b,
                                         chunk_bytes)
        return o, lse
    cq = np.asarray(cu_seqlens_q, dtype=np.int64)
    ck = np.asarray(cu_seqlens_k, dtype=np.int64)
    if (q.ndim != 3 or cq.shape != ck.shape or cq[0] != 0 or ck[0] != 0
            or cq[-1] != q.shape[0] or ck[-1] != k.shape[0]
            or np.any(np.diff(cq) < 0) or np.any(np.diff(ck) < 0)):
        raise ValueError("bad ragged shapes or cu_seqlens")
    if bsr is not None:
        bsr.validate(np.diff(cq), np.diff(ck), hkv)
    o = np.zeros(q.shape)
    lse = np.full((hq, q.shape[0]), -np.inf)
    for b in range(cq.size - 1):
        qs, qe, ks, ke = cq[b], cq[b + 1], ck[b], ck[b + 1]
        o[qs:qe], lse[:, qs:qe] = _one_sequence(q[qs:qe], k[ks:ke], v[ks:ke], scale, softcap,
                                                masks, bsr, b, chunk_bytes)
    return o, lse


def sparse_paged_reference(q, k_list, v_list, qo_lens=None, *, mask: Mask | None = None,
                           head_masks=None, bsr: BSR | None = None, scale=None,
                           softcap: float = 0.0):
    """Paged attention in float64 (queries are the last tokens of each KV sequence, so the
    alignment is bottom-right as in `attn.paged_attention`). k_list/v_list: per sequence
    [L_b, Hkv, D] (e.g. `kv_reference.gather` of the pool). KV blocks of the BSR count key
    positions in the sequence.

    Decode (qo_lens None): q [B, Hq, D] -> o [B, Hq, D], lse [Hq, B] (BQ should be 1).
    Append: q [total_q, Hq, D] with qo_lens [B] -> o [total_q, Hq, D], lse [Hq, total_q]."""
    q = np.asarray(q).astype(np.float64)
    bsz = len(k_list)
    if qo_lens is None:
        if q.ndim != 3 or q.shape[0] != bsz:
            raise ValueError(f"decode q must be [B={bsz}, Hq, D], not {q.shape}")
        qo_lens = np.ones(bsz, dtype=np.int64)
    qo_lens = np.asarray(qo_lens, dtype=np.int64)
    hkv = k_list[0].shape[1] if bsz else 1
    d = q.shape[2]
    cq = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int64)
    ck = np.concatenate([[0], np.cumsum([x.shape[0] for x in k_list])]).astype(np.int64)
    empty = np.zeros((0, hkv, d))
    k = np.concatenate([np.asarray(x, np.float64) for x in k_list] + [empty])
    v = np.concatenate([np.asarray(x, np.float64) for x in v_list] + [empty])
    return sparse_attention(q, k, v, scale=scale, softcap=softcap, mask=mask,
                            head_masks=head_masks, bsr=bsr, cu_seqlens_q=cq, cu_seqlens_k=ck)


# ------------------------------------------------------------------------------------------------
# Tile counts
# ------------------------------------------------------------------------------------------------


class TileCount(NamedTuple):
    """Tile counts; compares equal to the tuple (visible, dense)."""
    visible: int   # tiles with at least one visible (query, key) pair
    dense: int     # every tile of [0, Lk) for every query tile


def count_tiles(lens_q, lens_k, tile_q: int, tile_kv: int, hkv: int, mask: Mask | None = None,
                head_masks=None, bsr: BSR | None = None) -> TileCount:
    """Visible and dense KV tiles over every work item (sequence b, KV head, query tile of
    tile_q queries), from per-query-tile visible key intervals (no element loop)."""
    masks = kv_head_masks(hkv, mask, head_masks)
    visible = dense = 0
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        lq, lk = int(lq), int(lk)
        nqt, nkt = -(-lq // tile_q), -(-lk // tile_kv)
        dense += hkv * nqt * nkt
        for h in range(hkv):
            for t in range(nqt):
                iv = visible_intervals(lq, lk, t * tile_q, min(lq, (t + 1) * tile_q) - 1,
                                       masks[h], bsr, b, h)
                tiles = _merge([(a // tile_kv, (e - 1) // tile_kv + 1) for a, e in iv])
                visible += sum(e - a for a, e in tiles)
    return TileCount(visible, dense)


class TileClasses(NamedTuple):
    """Tile classes of a tiling (see tile_classes)."""
    visible: int       # tiles with at least one visible pair: the tiles a kernel must run
    dense: int         # every tile of [0, Lk) for every query tile
    masked: int        # visible tiles with an invisible (query, key < Lk) pair: need the predicate
    not_whole: int     # visible tiles not wholly visible, keys past Lk counting as invisible
    not_interior: int  # visible tiles not wholly inside a full block, the mask's sink range or
                       # its window band (keys past Lk outside): may apply the predicate


def _mask_parts(lq: int, lk: int, m: Mask) -> list:
    """The structured mask's visibility [lq, lk] as the union of its parts: the window band
    (causal / window without the sinks) and, with a window, the sink range (keys j < sinks,
    j <= position)."""
    if m.window < 0 or m.sinks == 0:
        return [visible_matrix(lq, lk, m)]
    band = visible_matrix(lq, lk, Mask(m.causal, m.window, 0, m.align))
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    return [band, (j < m.sinks) & (j <= position(m, i, lq, lk))]


def tile_classes(lens_q, lens_k, tile_q: int, tile_kv: int, hkv: int, mask: Mask | None = None,
                 head_masks=None, bsr: BSR | None = None) -> TileClasses:
    """Tile classes from the element visibility matrices (O(Lq * Lk) per sequence and head; an
    independent check of count_tiles). A kernel applies the element predicate on every `masked`
    tile (else its results are wrong) and, by docs/sparsity.md section 4 (mask edges, partial
    blocks, a sequence's last tile; not for a full block or a tile inside the mask's interior),
    on at most the `not_interior` tiles. `not_whole` <= `not_interior`: a tile made whole only by
    the sinks and the window together may be treated as an edge."""
    masks = kv_head_masks(hkv, mask, head_masks)
    vis_n = dense = masked = not_whole = not_interior = 0
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        lq, lk = int(lq), int(lk)
        nqt, nkt = -(-lq // tile_q), -(-lk // tile_kv)
        dense += hkv * nqt * nkt
        if nqt == 0 or nkt == 0:
            continue
        for h in range(hkv):
            def tiles(m, pad_q: bool, pad_k: bool):
                a = np.full((nqt * tile_q, nkt * tile_kv), pad_q, bool)
                a[:, lk:] = pad_k
                a[:lq, :lk] = m
                return a.reshape(nqt, tile_q, nkt, tile_kv).transpose(0, 2, 1, 3).reshape(
                    nqt, nkt, -1)
            vis = visible_matrix(lq, lk, masks[h], bsr, b, h)
            anyv = tiles(vis, False, False).any(axis=-1)
            whole_in = tiles(vis, True, True).all(axis=-1)
            whole_pad = tiles(vis, True, False).all(axis=-1)
            interior = np.zeros_like(whole_pad)
            for part in _mask_parts(lq, lk, masks[h]):
                interior |= tiles(part, True, False).all(axis=-1)
            if bsr is not None:   # the pairs of full blocks
                full = visible_matrix(lq, lk, Mask(), _full_only(bsr), b, h)
                interior |= tiles(full, True, False).all(axis=-1)
            interior &= whole_pad
            vis_n += int(anyv.sum())
            masked += int((anyv & ~whole_in).sum())
            not_whole += int((anyv & ~whole_pad).sum())
            not_interior += int((anyv & ~interior).sum())
    return TileClasses(vis_n, dense, masked, not_whole, not_interior)


def _full_only(bsr: BSR) -> BSR:
    """The BSR restricted to its full entries (the others become block -1, never visible)."""
    idx = bsr.indices.copy()
    if bsr.full is None:
        idx[...] = -1
    else:
        idx[bsr.full == 0] = -1
    return BSR(bsr.offsets, idx, bsr.full, bsr.block_q, bsr.block_kv)


def count_visible_pairs(lens_q, lens_k, hkv: int, mask: Mask | None = None, head_masks=None,
                        bsr: BSR | None = None) -> int:
    """Visible (query, key) pairs summed over sequences and KV heads (one query head each)."""
    masks = kv_head_masks(hkv, mask, head_masks)
    n = 0
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        for h in range(hkv):
            for i in range(int(lq)):
                n += sum(e - a for a, e in visible_intervals(int(lq), int(lk), i, i, masks[h],
                                                              bsr, b, h))
    return n


# ------------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------------


def _pack(rows, heads, batch, num_q_blocks, max_blocks, with_full, rng=None, lead=0):
    """rows[b][h][r] = list of (block, full flag) -> BSR arrays. `lead` unused entries before
    each (b, h)'s first row (offsets[0] may be > 0); entries after the last row are -1."""
    need = max([sum(len(r) for r in rows[b][h]) for b in range(batch) for h in range(heads)]
               + [0]) + lead
    max_blocks = need if max_blocks is None else max_blocks
    if max_blocks < need:
        raise ValueError(f"max_blocks {max_blocks} < {need} entries needed")
    off = np.zeros((batch, heads, num_q_blocks + 1), np.int32)
    idx = np.full((batch, heads, max_blocks), -1, np.int32)
    full = np.zeros((batch, heads, max_blocks), np.int8) if with_full else None
    for b in range(batch):
        for h in range(heads):
            n = lead
            off[b, h, 0] = n
            for r in range(num_q_blocks):
                row = rows[b][h][r] if r < len(rows[b][h]) else []
                for c, f in row:
                    idx[b, h, n] = c
                    if with_full:
                        # any non-zero value means full (kernels must not test == 1)
                        full[b, h, n] = (int(rng.choice([1, 1, 1, 2, -1, 127])) if rng is not None
                                         else 1) if f else 0
                    n += 1
                off[b, h, r + 1] = n
    return off, idx, full


def random_bsr(rng, lens_q, lens_k, block_q: int, block_kv: int, heads: int,
               density: float = 0.5, *, full_prob: float | None = None,
               empty_row_prob: float = 0.15, end_prob: float = 0.5,
               num_q_blocks: int | None = None, max_blocks: int | None = None,
               pad_rows: bool = True, lead: int | None = None) -> BSR:
    """A valid random BSR for sequences of lens_q queries and lens_k keys.

    Each KV block of a needed query block is listed with probability `density`, in random
    order; a row is empty with probability `empty_row_prob`; the last (possibly partial) KV block
    is listed in the last (possibly partial) query row with probability `end_prob`. full_prob:
    None gives no `full` operand, else each listed block is full with that probability.
    num_q_blocks defaults to the largest ceil(Lq / BQ) (at least 1); rows past a sequence's
    own query blocks list random valid blocks when pad_rows (they must be ignored). max_blocks
    defaults to what is needed; `lead` (default random 0-2) unused entries come first, so
    offsets[b, h, 0] may be non-zero."""
    lens_q, lens_k = [int(x) for x in lens_q], [int(x) for x in lens_k]
    batch = len(lens_q)
    nqb_seq = [-(-lq // block_q) for lq in lens_q]
    nqb = max(nqb_seq + [1]) if num_q_blocks is None else num_q_blocks
    if lead is None:
        lead = int(rng.integers(0, 3))
    rows = []
    for b in range(batch):
        nkb = -(-lens_k[b] // block_kv)
        per_head = []
        for _ in range(heads):
            hr = []
            for r in range(nqb):
                if r >= nqb_seq[b] and not pad_rows:
                    hr.append([])
                    continue
                if nkb == 0 or rng.random() < empty_row_prob:
                    hr.append([])
                    continue
                pick = rng.random(nkb) < density
                if r == nqb_seq[b] - 1 and rng.random() < end_prob:
                    pick[nkb - 1] = True
                blocks = rng.permutation(np.flatnonzero(pick))
                fl = (rng.random(blocks.size) < full_prob) if full_prob is not None else \
                    np.zeros(blocks.size, bool)
                hr.append(list(zip(blocks.tolist(), fl.tolist())))
            per_head.append(hr)
        rows.append(per_head)
    off, idx, full = _pack(rows, heads, batch, nqb, max_blocks, full_prob is not None, rng, lead)
    return BSR(off, idx, full, block_q, block_kv)


def bsr_from_masks(lens_q, lens_k, block_q: int, block_kv: int, masks, *,
                   with_full: bool = True, num_q_blocks: int | None = None) -> BSR:
    """The BSR that encodes the structured masks exactly: one head per entry of `masks`; each
    row lists the KV blocks with at least one visible pair (ascending), flagged full (with_full)
    when every (query < Lq, key < Lk) pair of the block is visible. Gives the same attention as
    the masks themselves."""
    lens_q, lens_k = [int(x) for x in lens_q], [int(x) for x in lens_k]
    batch, heads = len(lens_q), len(masks)
    nqb = max([-(-lq // block_q) for lq in lens_q] + [1]) if num_q_blocks is None \
        else num_q_blocks
    rows = []
    for b in range(batch):
        lq, lk = lens_q[b], lens_k[b]
        per_head = []
        for m in masks:
            vis = visible_matrix(lq, lk, m)
            hr = []
            for r in range(nqb):
                blk = vis[r * block_q:(r + 1) * block_q]
                row = []
                for c in range(-(-lk // block_kv)):
                    sub = blk[:, c * block_kv:(c + 1) * block_kv]
                    if sub.any():
                        row.append((c, bool(sub.all())))
                hr.append(row)
            per_head.append(hr)
        rows.append(per_head)
    off, idx, full = _pack(rows, heads, batch, nqb, None, with_full)
    return BSR(off, idx, full, block_q, block_kv)
