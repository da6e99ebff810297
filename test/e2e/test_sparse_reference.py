"""Self-tests of sparse_reference.py against brute-force loops written directly from
docs/sparsity.md (section 2) and docs/semantics.md, on tiny sizes. Independent of the compiler.

Random cases use a fresh seed per test (printed in the failure message; ATTNC_TEST_SEED
replays)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reference import Mask, attention
from sparse_reference import (BSR, bsr_from_masks, count_tiles, count_visible_pairs,
                              kv_head_masks, mask_intervals, random_bsr, sparse_attention,
                              sparse_paged_reference, tile_classes, visible_intervals,
                              visible_matrix)

MASKS = [
    Mask(),
    Mask(causal=True),
    Mask(causal=True, align="top_left"),
    Mask(window=3),
    Mask(window=2, sinks=3),
    Mask(causal=True, window=0, sinks=1),
    Mask(window=4, align="top_left"),
    Mask(window=1, sinks=5, align="top_left"),
    Mask(sinks=2),            # sinks without a window: no effect
]

# ------------------------------------------------------------------------------------------------
# Brute force, element by element, from the documents' words
# ------------------------------------------------------------------------------------------------


def brute_mask(m: Mask, i, j, lq, lk):
    pos = i + lk - lq if m.align == "bottom_right" else i
    if m.causal or m.window >= 0:
        if j > pos:
            return False
    if m.window >= 0:
        if not (j >= pos - m.window or j < m.sinks):
            return False
    return True


def brute_listed(bsr: BSR, b, h, i, j):
    """(listed, full) of key j for query i: scan the CSR row of query block i // BQ."""
    hb = h if bsr.heads > 1 else 0
    r = i // bsr.block_q
    if r >= bsr.num_q_blocks:
        return False, False
    listed = full = False
    for n in range(int(bsr.offsets[b, hb, r]), int(bsr.offsets[b, hb, r + 1])):
        if int(bsr.indices[b, hb, n]) == j // bsr.block_kv:
            listed = True
            full = full or (bsr.full is not None and int(bsr.full[b, hb, n]) != 0)
    return listed, full


def brute_visible(lq, lk, m, bsr=None, b=0, h=0):
    vis = np.zeros((lq, lk), bool)
    for i in range(lq):
        for j in range(lk):
            if bsr is None:
                vis[i, j] = brute_mask(m, i, j, lq, lk)
            else:
                listed, full = brute_listed(bsr, b, h, i, j)
                vis[i, j] = listed and (full or brute_mask(m, i, j, lq, lk))
    return vis


def brute_attention_seq(q, k, v, masks, bsr, b, scale):
    """q [Lq,Hq,D], k/v [Lk,Hkv,D] -> o [Lq,Hq,D], lse [Hq,Lq], a loop per (i, head)."""
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    g = hq // hkv
    o = np.zeros((lq, hq, d))
    lse = np.full((hq, lq), -np.inf)
    for hh in range(hq):
        h = hh // g
        for i in range(lq):
            keys = [j for j in range(lk) if brute_visible_one(lq, lk, masks[h], bsr, b, h, i, j)]
            if not keys:
                continue
            s = [scale * float(np.dot(q[i, hh], k[j, h])) for j in keys]
            mx = max(s)
            w = [math.exp(x - mx) for x in s]
            tot = sum(w)
            o[i, hh] = sum(wi * v[j, h] for wi, j in zip(w, keys)) / tot
            lse[hh, i] = mx + math.log(tot)
    return o, lse


def brute_visible_one(lq, lk, m, bsr, b, h, i, j):
    if bsr is None:
        return brute_mask(m, i, j, lq, lk)
    listed, full = brute_listed(bsr, b, h, i, j)
    return listed and (full or brute_mask(m, i, j, lq, lk))


def brute_tiles(lens_q, lens_k, tq, tk, hkv, masks, bsr=None):
    vis_t = dense_t = 0
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        for h in range(hkv):
            vis = brute_visible(lq, lk, masks[h], bsr, b, h)
            for i0 in range(0, lq, tq):
                for j0 in range(0, lk, tk):
                    dense_t += 1
                    vis_t += bool(vis[i0:i0 + tq, j0:j0 + tk].any())
    return vis_t, dense_t


@pytest.fixture
def rng(rng_seed):
    return np.random.default_rng(rng_seed)


def seed_msg(rng_seed):
    return f"seed={rng_seed} (ATTNC_TEST_SEED={rng_seed} to reproduce)"


def random_mask(rng):
    return MASKS[int(rng.integers(len(MASKS)))]


# ------------------------------------------------------------------------------------------------
# Visibility
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", MASKS, ids=str)
def test_mask_matrix_and_intervals_match_brute_force(m):
    for lq in range(0, 7):
        for lk in range(0, 8):
            vis = visible_matrix(lq, lk, m)
            np.testing.assert_array_equal(vis, brute_visible(lq, lk, m), err_msg=f"{lq}x{lk}")
            # every query range: the union of its rows, as intervals
            for i0 in range(lq):
                for i1 in range(i0, lq):
                    want = vis[i0:i1 + 1].any(axis=0)
                    got = np.zeros(lk, bool)
                    for a, e in visible_intervals(lq, lk, i0, i1, m):
                        assert 0 <= a < e <= lk
                        got[a:e] = True
                    np.testing.assert_array_equal(got, want, err_msg=f"{lq}x{lk} [{i0},{i1}]")


def test_mask_intervals_closed_form_edges():
    # positions below 0 see nothing under causal masks, everything without one
    assert mask_intervals(Mask(causal=True), -3, -1, 5) == []
    assert mask_intervals(Mask(), -3, -1, 5) == [(0, 5)]
    # window 0 + sink 1: the diagonal and key 0
    assert mask_intervals(Mask(window=0, sinks=1), 4, 4, 10) == [(0, 1), (4, 5)]
    # the sinks never make a future key visible
    assert mask_intervals(Mask(window=1, sinks=8), 2, 2, 10) == [(0, 3)]
    # positions past Lk - 1 clip to the sequence
    assert mask_intervals(Mask(window=2), 12, 12, 10) == []
    assert mask_intervals(Mask(window=3), 11, 12, 10) == [(8, 10)]


def test_random_bsr_visibility_matches_brute_force(rng, rng_seed):
    for trial in range(40):
        batch = int(rng.integers(1, 4))
        hkv = int(rng.choice([1, 2, 3]))
        heads = int(rng.choice([1, hkv]))
        bq, bk = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        lens_q = rng.integers(0, 12, batch).tolist()
        lens_k = rng.integers(0, 14, batch).tolist()
        full = None if rng.random() < 0.4 else float(rng.random())
        bsr = random_bsr(rng, lens_q, lens_k, bq, bk, heads, float(rng.random()),
                         full_prob=full)
        bsr.validate(lens_q, lens_k, hkv)
        masks = [random_mask(rng) for _ in range(hkv)]
        for b in range(batch):
            for h in range(hkv):
                lq, lk = lens_q[b], lens_k[b]
                vis = visible_matrix(lq, lk, masks[h], bsr, b, h)
                want = brute_visible(lq, lk, masks[h], bsr, b, h)
                np.testing.assert_array_equal(vis, want, err_msg=f"{seed_msg(rng_seed)} t{trial}")
                for i0 in range(lq):
                    for i1 in range(i0, min(lq, i0 + 2 * bq + 1)):
                        got = np.zeros(lk, bool)
                        for a, e in visible_intervals(lq, lk, i0, i1, masks[h], bsr, b, h):
                            got[a:e] = True
                        np.testing.assert_array_equal(
                            got, want[i0:i1 + 1].any(axis=0),
                            err_msg=f"{seed_msg(rng_seed)} t{trial} b{b} h{h} [{i0},{i1}]")


def test_unlisted_blocks_are_invisible_whatever_the_mask():
    # one row, block 1 of 3 listed, partial: only the mask's keys of block 1
    bsr = BSR(np.array([[[0, 1]]]), np.array([[[1]]]), None, 4, 2)
    vis = visible_matrix(1, 6, Mask(), bsr)
    np.testing.assert_array_equal(vis[0], [0, 0, 1, 1, 0, 0])
    vis = visible_matrix(1, 6, Mask(causal=True, align="top_left"), bsr)
    assert not vis.any()                       # query 0 sees key 0 only, which is not listed
    full = BSR(np.array([[[0, 1]]]), np.array([[[1]]]), np.array([[[1]]]), 4, 2)
    vis = visible_matrix(1, 6, Mask(causal=True, align="top_left"), full)
    np.testing.assert_array_equal(vis[0], [0, 0, 1, 1, 0, 0])   # full: the mask is skipped
    # a full block past Lk stays clipped to the sequence
    np.testing.assert_array_equal(visible_matrix(1, 3, Mask(), full)[0], [0, 0, 1])


def test_validate_rejects_what_attnrt_rejects():
    ok = BSR(np.array([[[0, 2]]]), np.array([[[0, 1]]]), None, 2, 2)
    ok.validate([2], [4], 1)
    with pytest.raises(ValueError, match="twice"):
        BSR(np.array([[[0, 2]]]), np.array([[[1, 1]]]), None, 2, 2).validate([2], [4], 1)
    with pytest.raises(ValueError, match="outside"):
        BSR(np.array([[[0, 1]]]), np.array([[[2]]]), None, 2, 2).validate([2], [4], 1)
    with pytest.raises(ValueError, match="query blocks"):
        ok.validate([3], [4], 1)
    with pytest.raises(ValueError, match="offsets"):
        BSR(np.array([[[0, 3]]]), np.array([[[0, 1]]]), None, 2, 2).validate([2], [4], 1)
    with pytest.raises(ValueError, match="heads"):
        BSR(np.zeros((1, 2, 2)), np.zeros((1, 2, 1)), None, 2, 2).validate([2], [4], 3)


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------


def test_attention_without_sparsity_equals_reference(rng):
    for m in MASKS:
        q = rng.standard_normal((2, 5, 4, 8))
        k = rng.standard_normal((2, 7, 2, 8))
        v = rng.standard_normal((2, 7, 2, 8))
        o1, l1 = sparse_attention(q, k, v, mask=m, softcap=2.0)
        o2, l2 = attention(q, k, v, mask=m, softcap=2.0)
        np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.isneginf(l1), np.isneginf(l2))
        np.testing.assert_allclose(l1[np.isfinite(l1)], l2[np.isfinite(l2)], rtol=1e-12)


def test_dense_attention_matches_brute_force(rng, rng_seed):
    for trial in range(12):
        batch, hkv, g = int(rng.integers(1, 3)), int(rng.choice([1, 2])), int(rng.choice([1, 3]))
        lq, lk, d = int(rng.integers(0, 9)), int(rng.integers(0, 11)), 4
        q = rng.standard_normal((batch, lq, hkv * g, d))
        k = rng.standard_normal((batch, lk, hkv, d))
        v = rng.standard_normal((batch, lk, hkv, d))
        masks = [random_mask(rng) for _ in range(hkv)]
        masks = [Mask(m.causal, m.window, m.sinks, masks[0].align) for m in masks]
        bsr = None
        if trial % 3:
            bsr = random_bsr(rng, [lq] * batch, [lk] * batch, int(rng.integers(1, 4)),
                             int(rng.integers(1, 4)), int(rng.choice([1, hkv])), 0.6,
                             full_prob=None if trial % 2 else 0.5)
        o, lse = sparse_attention(q, k, v, head_masks=masks, bsr=bsr, scale=0.7)
        assert not np.isnan(o).any() and not np.isnan(lse).any()
        for b in range(batch):
            ob, lb = brute_attention_seq(q[b], k[b], v[b], masks, bsr, b, 0.7)
            np.testing.assert_allclose(o[b], ob, atol=1e-12, err_msg=seed_msg(rng_seed))
            np.testing.assert_array_equal(np.isneginf(lse[b]), np.isneginf(lb))
            fin = np.isfinite(lb)
            np.testing.assert_allclose(lse[b][fin], lb[fin], rtol=1e-12)
            # rows without a visible key: exactly zero
            assert np.all(o[b].transpose(1, 0, 2)[np.isneginf(lb)] == 0)


def test_ragged_attention_matches_brute_force(rng, rng_seed):
    lens_q, lens_k = [3, 0, 1, 6, 2], [5, 4, 0, 9, 1]
    cq = np.concatenate([[0], np.cumsum(lens_q)])
    ck = np.concatenate([[0], np.cumsum(lens_k)])
    hkv, g, d = 2, 2, 4
    q = rng.standard_normal((cq[-1], hkv * g, d))
    k = rng.standard_normal((ck[-1], hkv, d))
    v = rng.standard_normal((ck[-1], hkv, d))
    masks = [Mask(causal=True), Mask(window=1, sinks=1)]
    for bsr in [None, random_bsr(rng, lens_q, lens_k, 2, 3, hkv, 0.5, full_prob=0.5),
                random_bsr(rng, lens_q, lens_k, 4, 1, 1, 0.7)]:
        o, lse = sparse_attention(q, k, v, head_masks=masks, bsr=bsr, cu_seqlens_q=cq,
                                  cu_seqlens_k=ck)
        for b in range(len(lens_q)):
            ob, lb = brute_attention_seq(q[cq[b]:cq[b + 1]], k[ck[b]:ck[b + 1]],
                                         v[ck[b]:ck[b + 1]], masks, bsr, b, 1 / math.sqrt(d))
            np.testing.assert_allclose(o[cq[b]:cq[b + 1]], ob, atol=1e-12,
                                       err_msg=seed_msg(rng_seed))
            lr = lse[:, cq[b]:cq[b + 1]]
            np.testing.assert_array_equal(np.isneginf(lr), np.isneginf(lb))
            np.testing.assert_allclose(lr[np.isfinite(lb)], lb[np.isfinite(lb)], rtol=1e-12)


def test_empty_rows_give_zeros_and_minus_inf():
    # row 0 lists nothing; row 1 lists block 0
    bsr = BSR(np.array([[[0, 0, 1]]]), np.array([[[0]]]), None, 2, 4)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 4, 1, 2)), rng.standard_normal((1, 4, 1, 2)),
               rng.standard_normal((1, 4, 1, 2)))
    o, lse = sparse_attention(q, k, v, bsr=bsr)
    assert np.all(o[0, :2] == 0) and np.all(np.isneginf(lse[0, 0, :2]))
    assert np.all(np.isfinite(lse[0, 0, 2:]))


def test_per_head_masks_use_the_kv_head_of_each_query_head(rng):
    q = rng.standard_normal((1, 6, 4, 8))
    k = rng.standard_normal((1, 9, 2, 8))
    v = rng.standard_normal((1, 9, 2, 8))
    masks = [Mask(causal=True), Mask(window=2, sinks=1)]
    o, lse = sparse_attention(q, k, v, head_masks=masks)
    for h, m in enumerate(masks):
        oh, lh = attention(q[:, :, 2 * h:2 * h + 2], k[:, :, h:h + 1], v[:, :, h:h + 1], mask=m)
        np.testing.assert_allclose(o[:, :, 2 * h:2 * h + 2], oh, atol=1e-12)
        np.testing.assert_allclose(lse[:, 2 * h:2 * h + 2], lh, atol=1e-12)
    with pytest.raises(ValueError):
        kv_head_masks(2, head_masks=[Mask(causal=True)])
    with pytest.raises(ValueError):
        kv_head_masks(2, head_masks=[Mask(causal=True), Mask(causal=True, align="top_left")])


@pytest.mark.parametrize("with_full", [True, False])
def test_bsr_from_masks_equals_the_masks(rng, with_full):
    lens_q, lens_k = [7, 1, 0, 12], [7, 13, 3, 5]
    cq = np.concatenate([[0], np.cumsum(lens_q)])
    ck = np.concatenate([[0], np.cumsum(lens_k)])
    q = rng.standard_normal((cq[-1], 4, 4))
    k = rng.standard_normal((ck[-1], 2, 4))
    v = rng.standard_normal((ck[-1], 2, 4))
    for masks in [[Mask(causal=True), Mask(window=2, sinks=2)],
                  [Mask(window=3, align="top_left"), Mask(causal=True, align="top_left")],
                  [Mask(), Mask(causal=True, window=0, sinks=1)]]:
        for bq, bk in [(1, 1), (2, 3), (4, 4), (3, 16)]:
            bsr = bsr_from_masks(lens_q, lens_k, bq, bk, masks, with_full=with_full)
            bsr.validate(lens_q, lens_k, 2)
            for b in range(4):
                for h in range(2):
                    np.testing.assert_array_equal(
                        visible_matrix(lens_q[b], lens_k[b], masks[h], bsr, b, h),
                        visible_matrix(lens_q[b], lens_k[b], masks[h]))
                    if with_full:  # a full block holds only visible pairs
                        np.testing.assert_array_equal(
                            visible_matrix(lens_q[b], lens_k[b], Mask(causal=True,
                                           align="top_left", window=0), bsr, b, h)
                            | visible_matrix(lens_q[b], lens_k[b], masks[h]),
                            visible_matrix(lens_q[b], lens_k[b], masks[h]))
            kw = dict(cu_seqlens_q=cq, cu_seqlens_k=ck, head_masks=masks)
            o1, l1 = sparse_attention(q, k, v, bsr=bsr, **kw)
            o2, l2 = sparse_attention(q, k, v, **kw)
            np.testing.assert_allclose(o1, o2, atol=1e-12)
            np.testing.assert_array_equal(l1, l2)


def test_paged_reference_is_ragged_attention(rng):
    hkv, hq, d = 2, 4, 8
    lens = [5, 0, 17]
    ks = [rng.standard_normal((n, hkv, d)) for n in lens]
    vs = [rng.standard_normal((n, hkv, d)) for n in lens]
    q = rng.standard_normal((3, hq, d))
    bsr = random_bsr(rng, [1, 1, 1], lens, 1, 4, hkv, 0.6, full_prob=0.3)
    o, lse = sparse_paged_reference(q, ks, vs, bsr=bsr, mask=Mask(window=6, sinks=2))
    assert o.shape == (3, hq, d) and lse.shape == (hq, 3)
    for b, n in enumerate(lens):
        ob, lb = brute_attention_seq(q[b:b + 1], ks[b], vs[b], [Mask(window=6, sinks=2)] * hkv,
                                     bsr, b, 1 / math.sqrt(d))
        np.testing.assert_allclose(o[b:b + 1], ob, atol=1e-12)
        np.testing.assert_allclose(lse[:, b:b + 1], lb, atol=1e-12)
    # append: 3 queries per sequence (the last 3 tokens of each)
    qa = rng.standard_normal((6, hq, d))
    bsr2 = random_bsr(rng, [3, 0, 3], lens, 2, 4, 1, 0.6)
    o, lse = sparse_paged_reference(qa, ks, vs, qo_lens=[3, 0, 3], bsr=bsr2,
                                    mask=Mask(causal=True))
    o2, l2 = sparse_attention(qa, np.concatenate(ks), np.concatenate(vs), mask=Mask(causal=True),
                              bsr=bsr2, cu_seqlens_q=[0, 3, 3, 6], cu_seqlens_k=[0, 5, 5, 22])
    np.testing.assert_array_equal(o, o2)


# ------------------------------------------------------------------------------------------------
# Tile counts
# ------------------------------------------------------------------------------------------------


def test_tile_counts_structured_masks_match_brute_force():
    for m in MASKS:
        for lens_q, lens_k in [([7], [7]), ([1, 9, 0], [13, 4, 5]), ([20], [3]), ([3], [33])]:
            for tq, tk in [(1, 1), (2, 3), (4, 8), (16, 32)]:
                tc = count_tiles(lens_q, lens_k, tq, tk, 2, m)
                assert (tc.visible, tc.dense) == brute_tiles(lens_q, lens_k, tq, tk, 2, [m, m]), \
                    (m, lens_q, lens_k, tq, tk)


def test_tile_counts_bsr_and_head_masks_match_brute_force(rng, rng_seed):
    for trial in range(30):
        batch, hkv = int(rng.integers(1, 4)), int(rng.choice([1, 2, 3]))
        lens_q = rng.integers(0, 15, batch).tolist()
        lens_k = rng.integers(0, 20, batch).tolist()
        masks = [random_mask(rng) for _ in range(hkv)]
        masks = [Mask(x.causal, x.window, x.sinks, masks[0].align) for x in masks]
        bsr = None
        if trial % 4:
            bq, bk = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            bsr = random_bsr(rng, lens_q, lens_k, bq, bk, int(rng.choice([1, hkv])),
                             float(rng.random()), full_prob=None if trial % 2 else 0.5)
        # kernel tiles dividing the blocks (what the lowering uses) and arbitrary ones
        for tq, tk in [(1, 1), (2, 2), (3, 4), (5, 7)]:
            tc = count_tiles(lens_q, lens_k, tq, tk, hkv, head_masks=masks, bsr=bsr)
            assert (tc.visible, tc.dense) == brute_tiles(lens_q, lens_k, tq, tk, hkv, masks,
                                                         bsr), f"{seed_msg(rng_seed)} t{trial}"


def test_tile_counts_examples():
    # causal 8x8, tiles 4x4: the upper-right tile is skipped
    assert count_tiles([8], [8], 4, 4, 1, Mask(causal=True)) == (3, 4)
    # window 0 + 1 sink, 32 queries and keys, tiles 8x8: diagonal tiles + sink column
    assert count_tiles([32], [32], 8, 8, 1, Mask(window=0, sinks=1)) == (4 + 3, 16)
    # a BSR listing one block per row, 2 KV heads
    bsr = BSR(np.array([[[0, 1, 2]]]), np.array([[[1, 0]]]), None, 4, 8)
    assert count_tiles([8], [16], 4, 4, 2, bsr=bsr) == (2 * 2 * 2, 2 * 2 * 4)
    # pairs: 4 queries x 8 keys per row, 2 rows, 2 heads
    assert count_visible_pairs([8], [16], 2, bsr=bsr) == 2 * 2 * 4 * 8


def test_bsr_from_masks_counts_the_same_tiles():
    lens_q, lens_k = [33, 1, 100], [33, 257, 7]
    masks = [Mask(causal=True), Mask(window=16, sinks=4)]
    for (bq, bk), (tq, tk) in [((16, 32), (16, 32)), ((32, 64), (16, 32)), ((1, 16), (1, 16))]:
        bsr = bsr_from_masks(lens_q, lens_k, bq, bk, masks)
        assert count_tiles(lens_q, lens_k, tq, tk, 2, head_masks=masks, bsr=bsr) == \
            count_tiles(lens_q, lens_k, tq, tk, 2, head_masks=masks)


# ------------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------------


def test_random_bsr_shapes_and_features(rng):
    lens_q, lens_k = [33, 7, 0, 100], [100, 7, 20, 257]
    seen_empty = seen_end = seen_full_values = 0
    for _ in range(20):
        bsr = random_bsr(rng, lens_q, lens_k, 16, 32, 2, 0.5, full_prob=0.5)
        bsr.validate(lens_q, lens_k, 2)
        assert bsr.num_q_blocks == 7 and bsr.offsets.dtype == np.int32
        assert bsr.full is not None and bsr.full.dtype == np.int8
        for b in range(4):
            nqb, nkb = -(-lens_q[b] // 16), -(-lens_k[b] // 32)
            for h in range(2):
                for r in range(nqb):
                    blocks, _ = bsr.row(b, h, r)
                    seen_empty += blocks.size == 0
                    seen_end += r == nqb - 1 and (nkb - 1) in blocks.tolist()
        seen_full_values |= len(set(bsr.full[bsr.full != 0].tolist())) > 1
    assert seen_empty and seen_end and seen_full_values
    assert random_bsr(rng, [5], [5], 2, 2, 1, 0.5).full is None
    b0 = random_bsr(rng, [5], [9], 2, 2, 1, 1.0, lead=2, empty_row_prob=0)
    assert b0.offsets[0, 0, 0] == 2 and b0.indices[0, 0, 0] == -1


def test_tile_classes_agree_with_count_tiles(rng, rng_seed):
    for trial in range(30):
        batch, hkv = int(rng.integers(1, 4)), int(rng.choice([1, 2]))
        lens_q = rng.integers(0, 20, batch).tolist()
        lens_k = rng.integers(0, 30, batch).tolist()
        masks = [random_mask(rng) for _ in range(hkv)]
        masks = [Mask(x.causal, x.window, x.sinks, masks[0].align) for x in masks]
        bsr = None if trial % 3 == 0 else random_bsr(
            rng, lens_q, lens_k, int(rng.integers(1, 6)), int(rng.integers(1, 6)),
            int(rng.choice([1, hkv])), float(rng.random()), full_prob=0.5)
        for tq, tk in [(1, 1), (2, 4), (3, 5)]:
            tc = tile_classes(lens_q, lens_k, tq, tk, hkv, head_masks=masks, bsr=bsr)
            assert tc[:2] == count_tiles(lens_q, lens_k, tq, tk, hkv, head_masks=masks, bsr=bsr), \
                seed_msg(rng_seed)
            assert tc.masked <= tc.not_whole <= tc.not_interior <= tc.visible <= tc.dense


def test_tile_classes_examples():
    # causal 8x8 in 4x4 tiles: two diagonal tiles are masked, the lower-left one is whole
    assert tile_classes([8], [8], 4, 4, 1, Mask(causal=True)) == (3, 4, 2, 2, 2)
    # no mask, Lk = 6 in tiles of 4: the second KV tile runs past Lk
    assert tile_classes([4], [6], 4, 4, 1) == (2, 2, 0, 1, 1)


def test_tile_classes_interior():
    # window 2 + 2 sinks, 1 query at position 4 of 5 keys, tiles of 1 x 5: every key visible
    # (sinks 0-1, window 2-4) but only by the two parts together
    tc = tile_classes([1], [5], 1, 5, 1, Mask(window=2, sinks=2))
    assert tc == (1, 1, 0, 0, 1)
    # a full block is interior, a partial one with no mask too
    full = BSR(np.array([[[0, 1]]]), np.array([[[0]]]), np.array([[[1]]]), 1, 4)
    assert tile_classes([1], [4], 1, 4, 1, Mask(causal=True, align="top_left"), bsr=full) == \
        (1, 1, 0, 0, 0)
    assert tile_classes([1], [4], 1, 4, 1, bsr=full.without_full()) == (1, 1, 0, 0, 0)
    assert tile_classes([1], [4], 1, 4, 1, Mask(causal=True, align="top_left"),
                        bsr=full.without_full()) == (1, 1, 1, 1, 1)
