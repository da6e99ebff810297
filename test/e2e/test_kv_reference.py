"""Checks of the NumPy KV-cache model (kv_reference.py) against itself and against independent
facts (hand-computed values, closed forms, the float64 attention reference). No compiler needed."""
import math

import ml_dtypes
import numpy as np
import pytest

from kv_reference import (CacheFormat, KVDistribution, KV_LSE_TOL, KV_O_TOL, PageTable,
                          append, build_page_table, dequant_pages, f16r, fp8_scales, gather,
                          kv_tolerance, merge_reference, pack_i4, page_table_from_block_tables,
                          page_scores, paged_reference, realistic_queries, ring_slots_for,
                          select_pages, sequence_slots, slots_for, tol_key, unpack_i4)
from reference import Mask, attention

ALL = [("f16", None), ("bf16", None), ("f8E4M3FN", None), ("f8E5M2", None), ("i8", 4),
       ("i8", 8), ("i4", 4), ("i4", 8)]


def fmt_of(st, g, layout="nhd", page=8, h=2, d=6):
    return CacheFormat(page, h, d, layout, st, g)


def fill(fmt, lens, rng, shared=0, dist_seed=1):
    """Pool + table + per-sequence data appended through the model."""
    t = build_page_table(rng, lens, fmt.page_size, shared_prefix_pages=shared, extra_pages=3)
    dist = KVDistribution(fmt.kv_heads, fmt.head_dim, seed=dist_seed, n_outliers=1)
    ks, vs = zip(*[dist.sample(rng, n) for n in lens]) if lens else ((), ())
    ks, vs = list(ks), list(vs)
    if shared:
        n = shared * fmt.page_size
        for b in range(1, len(lens)):
            if lens[b] >= n and lens[0] >= n:
                ks[b][:n], vs[b][:n] = ks[0][:n], vs[0][:n]
    sid, pos, slots = sequence_slots(t)
    k = np.concatenate([ks[b][p][None] for b, p in zip(sid, pos)]) if sid.size else None
    v = np.concatenate([vs[b][p][None] for b, p in zip(sid, pos)]) if sid.size else None
    kw = {}
    if fmt.storage.startswith("f8"):
        kw = dict(k_scale=fp8_scales(k, fmt.storage), v_scale=fp8_scales(v, fmt.storage))
    pool = fmt.empty_pool(t.num_pages, **kw)
    if k is not None:
        append(pool, fmt, k, v, slots)
    return pool, t, ks, vs


# -- formats --------------------------------------------------------------------------------------

def test_bytes_per_token_as_documented():
    assert CacheFormat(16, 8, 128, "nhd", "f16").bytes_per_token == 4096
    assert CacheFormat(16, 8, 128, "nhd", "bf16").bytes_per_token == 4096
    assert CacheFormat(16, 8, 128, "nhd", "f8E4M3FN").bytes_per_token == 2048
    assert CacheFormat(64, 8, 128, "hnd", "i8", 64).bytes_per_token == 2096
    assert CacheFormat(64, 8, 128, "hnd", "i4", 64).bytes_per_token == 1120
    # default k_group = page_size
    assert CacheFormat(64, 8, 128, "nhd", "i8").k_group == 64


def test_components_shapes_and_dtypes():
    f = CacheFormat(16, 4, 64, "hnd", "i4", 8)
    comps = {c.name: c for c in f.components(5)}
    assert list(comps) == ["k_pages", "v_pages", "k_scale", "k_min", "v_scale", "v_min"]
    assert comps["k_pages"].shape == (5, 4, 16, 32) and comps["k_pages"].manifest_dtype == "u8"
    assert comps["k_scale"].shape == (5, 2, 4, 64) and comps["k_scale"].manifest_dtype == "f16"
    assert comps["v_min"].shape == (5, 16, 4)
    f8 = CacheFormat(16, 4, 64, "nhd", "f8e5m2")
    c8 = {c.name: c for c in f8.components(5)}
    assert c8["k_pages"].dtype == ml_dtypes.float8_e5m2 and c8["k_scale"].shape == (4,)
    pool = f8.empty_pool(5)
    assert set(pool) == {"k_pages", "v_pages", "k_scale", "v_scale"}
    assert (pool["k_scale"] == 1).all()
    for bad in [dict(storage="i4", head_dim=5), dict(storage="i8", k_group=3),
                dict(storage="f16", k_group=4), dict(page_size=257), dict(layout="hd")]:
        args = dict(page_size=16, kv_heads=2, head_dim=4, layout="nhd", storage="i8")
        args.update(bad)
        with pytest.raises(ValueError):
            CacheFormat(**args)
    assert CacheFormat(64, 8, 128, "hnd", "i8", 64).mlir_type() == (
        "!attn.kv_cache<page_size = 64, kv_heads = 8, head_dim = 128, layout = hnd, storage = i8, "
        "k_group = 64>")
    assert "k_group = 16" in CacheFormat(64, 8, 128, "hnd", "i8", 16).mlir_type()


# -- exactness / per-element error bounds ---------------------------------------------------------

@pytest.mark.parametrize("st", ["f16", "bf16"])
def test_f16_bf16_round_trip_exact(st):
    rng = np.random.default_rng(0)
    f = fmt_of(st, None, "hnd")
    pool, t, ks, vs = fill(f, [13, 0, 8, 1], rng)
    gk, gv = gather(pool, f, *t.arrays())
    t_ = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}[st]
    for b in range(4):
        np.testing.assert_array_equal(gk[b], ks[b].astype(t_).astype(np.float64))
        np.testing.assert_array_equal(gv[b], vs[b].astype(t_).astype(np.float64))


def test_fp8_quantization_and_saturation():
    f = fmt_of("f8E4M3FN", None, page=2, h=1, d=4)
    pool = f.empty_pool(1, k_scale=[0.5], v_scale=[2.0])
    k = np.array([[[1.0, 300.0, -1000.0, 0.26]]], np.float32)   # /0.5: 2, 600 -> 448, -2000, .52
    v = np.array([[[17.0 * 2, 19.0 * 2, -3.0, 1e9]]], np.float32)  # /2: 17 -> 16, 19 -> 20
    append(pool, f, k, v, [1])
    kd, vd = dequant_pages(pool, f)
    np.testing.assert_array_equal(kd[0, 1, 0], np.float32([1.0, 224.0, -224.0, 0.5 * 0.5]))
    np.testing.assert_array_equal(vd[0, 1, 0], np.float32([32.0, 40.0, -3.0, 896.0]))
    f5 = fmt_of("f8E5M2", None, page=1, h=1, d=2)
    p5 = f5.empty_pool(1)
    append(p5, f5, np.float32([[[1e6, -7e4]]]), np.float32([[[0.0, 5.0]]]), [0])
    np.testing.assert_array_equal(dequant_pages(p5, f5)[0][0, 0, 0], [57344.0, -57344.0])
    np.testing.assert_array_equal(dequant_pages(p5, f5)[1][0, 0, 0], [0.0, 5.0])


def test_i8_v_error_at_most_half_step():
    rng = np.random.default_rng(1)
    f = fmt_of("i8", 4, page=8, h=3, d=16)
    n = 40
    v = (rng.standard_normal((n, 3, 16)) * rng.uniform(1e-3, 1e3, (n, 3, 1))).astype(np.float32)
    v[0, 0] = 0.0                                   # all-zero token: s = 0, q = 0, exact
    pool = f.empty_pool(5)
    append(pool, f, v, v, np.arange(n))
    _, vd = dequant_pages(pool, f)
    vd = vd.reshape(-1, 3, 16)[:n]
    s = pool["v_scale"].reshape(-1, 3)[:n].astype(np.float64)
    np.testing.assert_array_equal(s, f16r(np.abs(v).max(-1) / np.float32(127)))
    err = np.abs(vd.astype(np.float64) - v)
    assert (err <= s[..., None] / 2 * (1 + 1e-6)).all()
    assert (vd[0, 0] == 0).all()
    assert np.abs(pool["v_pages"]).max() <= 127


def scale_history_bound_i8(x, k_group):
    """Independent bound for i8 K: per token, 1/2 the sum of the distinct stored scales it saw,
    with the stored scale after slot t = f16(max_{group start <= j <= t} |x_j| / 127)."""
    n = x.shape[0]
    bound = np.zeros(x.shape)
    for g0 in range(0, n, k_group):
        xs = np.abs(x[g0:g0 + k_group]).astype(np.float32) / np.float32(127)
        hist = f16r(np.maximum.accumulate(xs, axis=0)).astype(np.float64)   # [t, H, D]
        for t in range(hist.shape[0]):
            h = hist[t:]
            distinct = np.concatenate([h[:1], np.where(h[1:] > h[:-1], h[1:], 0.0)])
            bound[g0 + t] = distinct.sum(axis=0) / 2
    return bound, hist


@pytest.mark.parametrize("k_group", [1, 4, 16])
def test_i8_k_group_growth_requantization_bound(k_group):
    rng = np.random.default_rng(2)
    f = fmt_of("i8", k_group, page=16, h=2, d=8)
    n = 48
    # growing magnitudes so that scales grow often (worst case for requantization)
    x = (rng.standard_normal((n, 2, 8)) * np.linspace(0.1, 5, n)[:, None, None]).astype(
        np.float32)
    pool = f.empty_pool(3)
    append(pool, f, x, x, np.arange(n))
    kd, _ = dequant_pages(pool, f)
    kd = kd.reshape(-1, 2, 8)[:n].astype(np.float64)
    bound, _ = scale_history_bound_i8(x, k_group)
    err = np.abs(kd - x)
    assert (err <= bound * (1 + 1e-6)).all(), float((err - bound).max())
    # the final group scale is the closed form f16(max |x| / 127) of its tokens
    s = pool["k_scale"].astype(np.float32).reshape(-1, 2, 8)          # [P*g, H, D]
    want = f16r(np.abs(x).reshape(-1, k_group, 2, 8).max(1) / np.float32(127))
    np.testing.assert_array_equal(s[:n // k_group], want)
    # a token that never saw a growth is within half its step
    if k_group > 1:
        assert (err[0] <= bound[0] + 1e-12).all()


def test_i8_k_requant_hand_case():
    # one channel, group of 4: 1.0 then 2.0 then 0.5
    f = CacheFormat(4, 1, 2, "nhd", "i8", 4)
    pool = f.empty_pool(1)
    x = np.float32([[[1.0, 0.0]], [[2.0, 0.0]], [[0.5, 0.0]]])
    append(pool, f, x, x, [0, 1, 2])
    s1 = float(np.float16(1.0 / 127))
    s2 = float(np.float16(np.float32(2.0) / np.float32(127)))
    assert pool["k_scale"][0, 0, 0, 0] == np.float16(s2)
    q0 = np.rint(np.float32(np.rint(np.float32(1.0) / np.float32(s1)) * np.float32(s1))
                 / np.float32(s2))
    assert pool["k_pages"][0, 0, 0, 0] == q0 == 64     # 127 * s1 / s2 = 63.5... -> 64 (even)
    assert pool["k_pages"][0, 1, 0, 0] == 127
    assert pool["k_pages"][0, 2, 0, 0] == np.rint(np.float32(0.5) / np.float32(s2))
    assert (pool["k_pages"][0, :3, 0, 1] == 0).all() and pool["k_scale"][0, 0, 0, 1] == 0


def test_i4_k_group_growth_bound_and_closed_forms():
    rng = np.random.default_rng(3)
    G = 8
    f = fmt_of("i4", G, page=16, h=2, d=6)
    n = 32
    x = (rng.standard_normal((n, 2, 6)) * np.linspace(0.2, 3, n)[:, None, None] + 5).astype(
        np.float32)
    pool = f.empty_pool(2)
    bound = np.zeros((n, 2, 6))
    hist = []   # per step the stored (s, m) of every group
    for t in range(n):          # token by token, recording the stored range history
        append(pool, f, x[t:t + 1], x[t:t + 1], [t])
        hist.append((pool["k_scale"].astype(np.float64).reshape(-1, 2, 6).copy(),
                     pool["k_min"].astype(np.float64).reshape(-1, 2, 6).copy()))
    for t in range(n):
        gidx = t // G
        seen = set()
        for u in range(t, (gidx + 1) * G):
            s, m = hist[u][0][gidx], hist[u][1][gidx]
            key = (s.tobytes(), m.tobytes())
            if key not in seen:
                seen.add(key)
                bound[t] += s / 2 + 2.0 ** -11 * (np.abs(m) + 15 * s) + 1e-6 * np.abs(x[t])
    kd, _ = dequant_pages(pool, f)
    err = np.abs(kd.reshape(-1, 2, 6)[:n].astype(np.float64) - x)
    assert (err <= bound).all(), float((err - bound).max())
    # closed form of the final minimum: f16(min of the group)
    np.testing.assert_array_equal(pool["k_min"].astype(np.float32).reshape(-1, 2, 6)[:n // G],
                                  f16r(x.reshape(-1, G, 2, 6).min(1)))
    # the stored range covers the group up to f16 rounding
    s = pool["k_scale"].astype(np.float64).reshape(-1, 2, 6)[:n // G]
    m = pool["k_min"].astype(np.float64).reshape(-1, 2, 6)[:n // G]
    top = x.reshape(-1, G, 2, 6).max(1)
    assert (m + 15 * s >= top - 2.0 ** -10 * (np.abs(top) + 15 * s)).all()


def test_i4_v_and_first_token_of_k_group():
    f = CacheFormat(2, 1, 4, "nhd", "i4", 2)
    pool = f.empty_pool(1)
    x = np.float32([[[-1.0, 0.0, 2.0, 14.0]]])
    append(pool, f, x, x, [0])
    # V: m = -1, s = 1: q = 0, 1, 3, 15 -> bytes (1 << 4) | 0, (15 << 4) | 3
    assert pool["v_pages"][0, 0, 0].tolist() == [0x10, 0xF3]
    assert pool["v_scale"][0, 0, 0] == 1 and pool["v_min"][0, 0, 0] == -1
    # K: the group's first token sets m = x, s = 0, q = 0 and reconstructs exactly
    assert (pool["k_pages"] == 0).all() and (pool["k_scale"] == 0).all()
    kd, vd = dequant_pages(pool, f)
    np.testing.assert_array_equal(kd[0, 0, 0], x[0, 0])
    np.testing.assert_array_equal(vd[0, 0, 0], x[0, 0])
    # constant V token: s = 0, exact via the minimum
    append(pool, f, x, np.full((1, 1, 4), 3.25, np.float32), [1])
    assert pool["v_scale"][0, 1, 0] == 0 and (dequant_pages(pool, f)[1][0, 1, 0] == 3.25).all()


def test_i4_nibble_order():
    q = np.array([1, 2, 3, 4, 15, 0], np.uint8)
    b = pack_i4(q)
    assert b.tolist() == [0x21, 0x43, 0x0F]
    np.testing.assert_array_equal(unpack_i4(b), q)
    rng = np.random.default_rng(4)
    qq = rng.integers(0, 16, (3, 5, 8)).astype(np.uint8)
    np.testing.assert_array_equal(unpack_i4(pack_i4(qq)), qq)


def test_group_start_resets():
    # a page reused: writing the group's first slot again discards the old scale
    f = CacheFormat(4, 1, 2, "hnd", "i8", 2)
    pool = f.empty_pool(1)
    big = np.full((2, 1, 2), 100.0, np.float32)
    append(pool, f, big, big, [0, 1])
    small = np.full((1, 1, 2), 1.0, np.float32)
    append(pool, f, small, small, [0])
    assert pool["k_scale"][0, 0, 0, 0] == np.float16(np.float32(1.0) / np.float32(127))
    assert pool["k_pages"][0, 0, 0, 0] == 127


@pytest.mark.parametrize("st,g", ALL)
def test_chunked_append_equals_token_by_token(st, g):
    """The vectorized rounds give exactly the per-token-in-order result, also for interleaved
    sequences, skipped slots and a slot written twice."""
    rng = np.random.default_rng(5)
    f = fmt_of(st, g, "hnd", page=8, h=2, d=6)
    t = build_page_table(rng, [21, 9, 30], 8)
    dist = KVDistribution(2, 6, seed=3, n_outliers=1)
    sid, pos, _ = sequence_slots(t)
    # a random interleaving of the sequences, each sequence's tokens in order
    queues = [list(np.flatnonzero(sid == b)) for b in range(3)]
    perm = []
    while any(queues):
        live = [q for q in queues if q]
        perm.append(live[rng.integers(len(live))].pop(0))
    perm = np.array(perm)
    slots = slots_for(t, sid[perm], pos[perm])
    k, v = dist.sample(rng, sid.size)
    slots = np.concatenate([slots, [-1, slots[3]]]).astype(np.int32)
    k = np.concatenate([k, k[:2] * 7])
    v = np.concatenate([v, v[:2] * 7])
    kw = {}
    if st.startswith("f8"):
        kw = dict(k_scale=fp8_scales(k, st), v_scale=fp8_scales(v, st))
    a, b = f.empty_pool(t.num_pages, **kw), f.empty_pool(t.num_pages, **kw)
    append(a, f, k, v, slots)
    for i in range(slots.size):
        append(b, f, k[i:i + 1], v[i:i + 1], slots[i:i + 1])
    for name in a:
        np.testing.assert_array_equal(a[name].view(np.uint8), b[name].view(np.uint8), name)


@pytest.mark.parametrize("st,g", ALL)
def test_layouts_agree(st, g):
    fa, fb = fmt_of(st, g, "nhd"), fmt_of(st, g, "hnd")
    pa, ta, _, _ = fill(fa, [17, 3], np.random.default_rng(7))
    pb, tb, _, _ = fill(fb, [17, 3], np.random.default_rng(7))
    assert pa["k_pages"].shape == pb["k_pages"].shape[:1] + (8, 2, fa.packed_dim)
    np.testing.assert_array_equal(pa["k_pages"].view(np.uint8),
                                  pb["k_pages"].transpose(0, 2, 1, 3).view(np.uint8))
    ga, gb = gather(pa, fa, *ta.arrays()), gather(pb, fb, *tb.arrays())
    for x, y in zip(ga[0] + ga[1], gb[0] + gb[1]):
        np.testing.assert_array_equal(x, y)


def test_slot_minus_one_is_skipped():
    f = fmt_of("i8", 4)
    pool = f.empty_pool(2)
    x = np.ones((3, 2, 6), np.float32)
    append(pool, f, x, x, [-1, -1, -1])
    assert all((a == 0).all() for a in pool.values())
    with pytest.raises(ValueError):
        append(pool, f, x[:1], x[:1], [16])


# -- page tables ----------------------------------------------------------------------------------

def test_block_tables_to_csr():
    bt = np.array([[7, 3, 9, -1], [2, -1, -1, -1], [5, 6, 0, 1], [4, 8, -1, -1]])
    t = page_table_from_block_tables(bt, [33, 0, 49, 16], 16)
    assert t.kv_indptr.tolist() == [0, 3, 3, 7, 8]
    assert t.kv_indices.tolist() == [7, 3, 9, 5, 6, 0, 1, 4]
    assert t.kv_last_page_len.tolist() == [1, 0, 1, 16]
    assert t.seq_lens.tolist() == [33, 0, 49, 16]
    assert t.kv_indptr.dtype == np.int32
    assert slots_for(t, [0, 0, 2, 3], [0, 32, 48, 15]).tolist() == [
        7 * 16, 9 * 16, 1 * 16, 4 * 16 + 15]
    with pytest.raises(ValueError):
        page_table_from_block_tables(bt, [33, 0, 49, 33], 16)


def test_build_page_table_shuffled_and_shared():
    rng = np.random.default_rng(8)
    t = build_page_table(rng, [40, 0, 16, 33, 5], 8, shared_prefix_pages=2, extra_pages=4)
    assert t.seq_lens.tolist() == [40, 0, 16, 33, 5]
    assert t.kv_last_page_len.tolist() == [8, 0, 8, 1, 5]
    shared = t.pages(0)[:2]
    for b in (2, 3):
        np.testing.assert_array_equal(t.pages(b)[:2], shared)
    assert not set(t.pages(4)) & set(shared)
    own = np.concatenate([t.pages(0), t.pages(2)[2:], t.pages(3)[2:], t.pages(4)])
    assert len(set(own.tolist())) == own.size            # no other page is shared
    assert t.num_pages == own.size + 4 and own.max() < t.num_pages
    assert not np.all(np.diff(own) == 1)                  # shuffled
    _, _, slots = sequence_slots(t)
    assert (slots == -1).sum() == 2 * 16                  # shared tokens written once


@pytest.mark.parametrize("st,g", [("f16", None), ("i4", 4)])
def test_gather_over_shuffled_table_equals_dense_tokens(st, g):
    rng = np.random.default_rng(9)
    f = fmt_of(st, g, "hnd", page=4)
    lens = [13, 0, 4, 9, 1]
    pool, t, ks, vs = fill(f, lens, rng, shared=1)
    gk, gv = gather(pool, f, *t.arrays())
    # dense: append each sequence alone into a fresh identity-mapped pool
    for b, n in enumerate(lens):
        npg = -(-n // 4)
        p2 = f.empty_pool(max(npg, 1))
        append(p2, f, ks[b], vs[b], np.arange(n))
        kd, vd = dequant_pages(p2, f)
        np.testing.assert_array_equal(gk[b], kd.reshape(-1, 2, 6)[:n])
        np.testing.assert_array_equal(gv[b], vd.reshape(-1, 2, 6)[:n])
        assert gk[b].shape == (n, 2, 6) and gk[b].dtype == np.float64


# -- references -----------------------------------------------------------------------------------

def test_paged_reference_layouts_match_dense_reference():
    rng = np.random.default_rng(10)
    lens = [5, 1, 0, 9]
    ks = [rng.standard_normal((n, 2, 8)) for n in lens]
    vs = [rng.standard_normal((n, 2, 8)) for n in lens]
    q = rng.standard_normal((4, 4, 8))
    m = Mask(causal=True)
    o, lse = paged_reference(q, ks, vs, mask=m, softcap=3.0)
    assert o.shape == (4, 4, 8) and lse.shape == (4, 4)
    for b in range(4):
        ob, lb = attention(q[None, b:b + 1], ks[b][None], vs[b][None], mask=m, softcap=3.0)
        np.testing.assert_allclose(o[b], ob[0, 0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(lse[:, b], lb[0, :, 0], rtol=1e-12)
    assert np.all(lse[:, 2] == -np.inf) and np.all(o[2] == 0)
    # append: queries are the last tokens, bottom-right causal
    qo = [2, 1, 0, 3]
    qr = rng.standard_normal((6, 4, 8))
    o2, l2 = paged_reference(qr, ks, vs, qo_lens=qo, mask=m)
    assert o2.shape == (6, 4, 8) and l2.shape == (4, 6)
    # sequence 0 (5 keys, 2 queries): query 0 sits at position 3, sees keys 0..3
    ob, lb = attention(qr[None, 0:1], ks[0][None, :4], vs[0][None, :4])
    np.testing.assert_allclose(o2[0], ob[0, 0], rtol=1e-12)
    np.testing.assert_allclose(l2[:, 0], lb[0, :, 0], rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_merge_of_split_equals_unsplit(seed):
    rng = np.random.default_rng(100 + seed)
    lk, lq, hq, hkv, d = 23, 4, 4, 2, 8
    q = rng.standard_normal((1, lq, hq, d)) * 2
    k = rng.standard_normal((1, lk, hkv, d))
    v = rng.standard_normal((1, lk, hkv, d))
    n_parts = 1 + seed % 5
    part_of = rng.integers(0, n_parts, lk)
    if n_parts > 2:
        part_of[part_of == n_parts - 1] = 0        # one part empty: all-masked (-inf)
    # a mask: window + sinks (some parts see nothing for some rows)
    vis = np.ones((lq, lk), bool)
    vis[:, 5:18] = False
    vis[0, :] = False                               # row 0 sees nothing at all
    o_full, l_full = _masked_attention(q[0], k[0], v[0], vis)
    po = np.zeros((n_parts, lq, hq, d))
    pl = np.full((n_parts, hq, lq), -np.inf)
    for p in range(n_parts):
        po[p], pl[p] = _masked_attention(q[0], k[0], v[0], vis & (part_of == p)[None])
    o, lse = merge_reference(po, pl)
    np.testing.assert_allclose(o, o_full, rtol=1e-12, atol=1e-13)
    fin = np.isfinite(l_full)
    np.testing.assert_array_equal(np.isneginf(lse), ~fin)
    np.testing.assert_allclose(lse[fin], l_full[fin], rtol=1e-12)
    assert (o[0] == 0).all() and np.isneginf(lse[:, 0]).all()


def _masked_attention(q, k, v, vis):
    """float64 attention of q [Lq,Hq,D] over k/v [Lk,Hkv,D] with an explicit visibility."""
    lq, hq, d = q.shape
    g = hq // k.shape[1]
    o = np.zeros((lq, hq, d))
    lse = np.full((hq, lq), -np.inf)
    for h in range(hq):
        s = q[:, h] @ k[:, h // g].T / math.sqrt(d)
        s = np.where(vis, s, -np.inf)
        for i in range(lq):
            if not vis[i].any():
                continue
            mx = s[i].max()
            p = np.exp(s[i] - mx)
            o[i, h] = p @ v[:, h // g] / p.sum()
            lse[h, i] = mx + math.log(p.sum())
    return o, lse


def test_merge_reference_against_attention_split():
    rng = np.random.default_rng(11)
    q = rng.standard_normal((1, 3, 2, 4))
    k = rng.standard_normal((1, 10, 1, 4))
    v = rng.standard_normal((1, 10, 1, 4))
    o, l = attention(q, k, v)
    parts = [(0, 3), (3, 4), (4, 10)]
    po = np.stack([attention(q, k[:, a:b], v[:, a:b])[0][0] for a, b in parts])
    pl = np.stack([attention(q, k[:, a:b], v[:, a:b])[1][0] for a, b in parts])
    om, lm = merge_reference(po, pl)
    np.testing.assert_allclose(om, o[0], rtol=1e-12)
    np.testing.assert_allclose(lm, l[0], rtol=1e-12)
    om, lm = merge_reference(np.zeros((2, 3, 2, 4)), np.full((2, 2, 3), -np.inf))
    assert (om == 0).all() and np.isneginf(lm).all()


# -- generators and tolerances --------------------------------------------------------------------

def test_realistic_data_has_outliers_and_peaked_attention():
    rng = np.random.default_rng(12)
    dist = KVDistribution(2, 64, seed=5, n_outliers=3)
    k, v = dist.sample(rng, 2000)
    amax = np.abs(k).max(axis=0)                     # [H, D]
    for h in range(2):
        out = dist.outliers[h]
        rest = np.setdiff1d(np.arange(64), out)
        assert amax[h, out].min() > 5 * np.median(amax[h, rest])
    assert abs(v.std() - 1) < 0.2
    q = realistic_queries(rng, k, 4, 8)
    s = np.einsum("qhd,khd->hqk", q.astype(np.float64),
                  np.repeat(k, 2, axis=1).astype(np.float64)) / 8
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(-1)
    assert np.median(ent) < math.log(2000) - 1.0     # far from uniform
    assert np.median(ent) > 1.0                      # and not one-hot


def test_tolerances_cover_every_format():
    assert set(KV_O_TOL) == set(KV_LSE_TOL) == {
        "f16", "bf16", "f8E4M3FN", "f8E5M2", "i8_g16", "i8_g64", "i4_g16", "i4_g64",
        "i8_g64_r128", "i4_g64_r128"}
    # a residual window of >= 128 tokens uses the residual bound (also for smaller K groups);
    # smaller windows and fp8 with a window use the bound without one
    assert tol_key(CacheFormat(64, 8, 128, "hnd", "i4", 64, 128)) == "i4_g64_r128"
    assert tol_key(CacheFormat(16, 8, 128, "hnd", "i8", 8, 256)) == "i8_g64_r128"
    assert tol_key(CacheFormat(16, 8, 128, "hnd", "i8", 8, 32)) == "i8_g16"
    assert tol_key(CacheFormat(16, 8, 128, "nhd", "f8E4M3FN", None, 128)) == "f8E4M3FN"
    for st in ("i8", "i4"):
        assert KV_O_TOL[f"{st}_g64_r128"] <= KV_O_TOL[f"{st}_g64"]
        assert KV_LSE_TOL[f"{st}_g64_r128"] <= KV_LSE_TOL[f"{st}_g64"]
    assert kv_tolerance(CacheFormat(16, 8, 128, "nhd", "i8", 8)) == (
        KV_O_TOL["i8_g16"], KV_LSE_TOL["i8_g16"])
    assert kv_tolerance(CacheFormat(64, 8, 128, "nhd", "i4")) == (
        KV_O_TOL["i4_g64"], KV_LSE_TOL["i4_g64"])
    assert KV_O_TOL["f16"] < KV_O_TOL["f8E4M3FN"] < KV_O_TOL["i4_g64"]


# -- residual window ------------------------------------------------------------------------------

def test_residual_format_type_components_and_bytes():
    f = CacheFormat(16, 4, 64, "hnd", "i4", 8, residual=32)
    assert f.mlir_type() == (
        "!attn.kv_cache<page_size = 16, kv_heads = 4, head_dim = 64, layout = hnd, storage = i4, "
        "k_group = 8, residual = 32>")
    assert CacheFormat(16, 4, 64, "nhd", "f8E5M2", residual=5).mlir_type().endswith(
        "storage = f8E5M2, residual = 5>")
    comps = f.components(5, num_rings=3)
    assert [c.name for c in comps] == ["k_pages", "v_pages", "k_scale", "k_min", "v_scale",
                                       "v_min", "k_recent", "v_recent"]
    for c in comps[-2:]:
        assert c.shape == (3, 32, 4, 64) and c.manifest_dtype == "f16"
        assert c.ring and not c.paged
    # rings are not paged: bytes per token as without the window
    assert f.bytes_per_token == f.without_residual().bytes_per_token
    assert f.name.endswith("_r32") and f.without_residual().residual is None
    pool = f.empty_pool(5, num_rings=3)
    assert pool["k_recent"].shape == (3, 32, 4, 64) and pool["v_recent"].dtype == np.float16
    assert f.num_rings(pool) == 3
    with pytest.raises(ValueError):
        f.empty_pool(5)                                      # num_rings is required
    for bad in [dict(storage="f16"), dict(storage="bf16"), dict(residual=0),
                dict(residual=4097)]:
        args = dict(page_size=16, kv_heads=2, head_dim=4, layout="nhd", storage="i8",
                    residual=8)
        args.update(bad)
        with pytest.raises(ValueError):
            CacheFormat(**args)


def test_ring_slots_for():
    rs = ring_slots_for([2, 0, 1], [0, 0, 1, 2, 1], [0, 9, 3, 4, -1], 4)
    assert rs.dtype == np.int32
    assert rs.tolist() == [8, 9, 3, 4, -1]


def test_append_writes_rings_hand_case():
    # R = 4, two rings; sequence 0 (ring 1) gets 6 tokens, sequence 1 (ring 0) gets 2
    f = CacheFormat(4, 1, 2, "nhd", "i8", 2, residual=4)
    pool = f.empty_pool(3, num_rings=2)
    x0 = (np.arange(6, dtype=np.float32)[:, None, None] + np.float32([0.1, 1e-4])).astype(
        np.float32)
    x1 = np.float32([[[7.0001, -3.0]], [[65519.0, 1e-8]]])
    k = np.concatenate([x0, x1])
    v = -k
    sid = np.array([0] * 6 + [1] * 2)
    pos = np.r_[np.arange(6), np.arange(2)]
    slots = np.r_[np.arange(6), 8, 9]
    rs = ring_slots_for([1, 0], sid, pos, 4)
    assert rs.tolist() == [4, 5, 6, 7, 4, 5, 0, 1]
    append(pool, f, k, v, slots, rs)
    # ring 1 holds positions 4, 5, 2, 3 in slots 0..3; ring 0 positions 0, 1
    want = np.zeros((2, 4, 1, 2), np.float16)
    want[1] = x0[[4, 5, 2, 3]].astype(np.float16)
    want[0, :2] = x1.astype(np.float16)
    np.testing.assert_array_equal(pool["k_recent"].view(np.uint16), want.view(np.uint16))
    np.testing.assert_array_equal(pool["v_recent"][1].view(np.uint16),
                                  (-want[1]).view(np.uint16))
    # pages are written exactly as without the window
    p2 = f.without_residual().empty_pool(3)
    append(p2, f.without_residual(), k, v, slots)
    for n in p2:
        np.testing.assert_array_equal(pool[n].view(np.uint8), p2[n].view(np.uint8), n)
    # gather: sequence 0 (L = 6) reads 2..5 from ring 1, 0..1 dequantized; sequence 1 all ring
    t = PageTable([0, 2, 3], [0, 1, 2], [2, 2], 4)
    gk, gv = gather(pool, f, *t.arrays(), kv_rings=[1, 0])
    gk2, _ = gather(p2, f.without_residual(), *t.arrays())
    np.testing.assert_array_equal(gk[0][:2], gk2[0][:2])
    np.testing.assert_array_equal(gk[0][2:], x0[2:].astype(np.float16).astype(np.float64))
    np.testing.assert_array_equal(gk[1], x1.astype(np.float16).astype(np.float64))
    np.testing.assert_array_equal(gv[1], -gk[1])
    assert not np.array_equal(gk[0][2:], gk2[0][2:])         # the ring is read, not the page
    # -1 skips the ring write only; a bad ring slot or a missing argument is an error
    append(pool, f, k[:1] * 0 + 9, v[:1], [11], [-1])
    assert (pool["k_recent"] != 9).all() and pool["k_pages"].reshape(-1, 2)[11, 0] != 0
    append(pool, f, k[:1] * 0 + 9, v[:1], [-1], [3])
    assert (pool["k_recent"][0, 3] == 9).all()
    with pytest.raises(ValueError):
        append(pool, f, k[:1], v[:1], [0], [8])
    with pytest.raises(ValueError):
        append(pool, f, k[:1], v[:1], [0])
    with pytest.raises(ValueError):
        gather(pool, f, *t.arrays())
    with pytest.raises(ValueError):
        gather(pool, f, *t.arrays(), kv_rings=[1, 2])


def test_ring_rounding_of_input_dtypes():
    f = CacheFormat(2, 1, 4, "nhd", "f8E4M3FN", residual=2)
    rng = np.random.default_rng(20)
    x = (rng.standard_normal((2, 1, 4)) * 1000).astype(np.float32)
    x[0, 0, 0] = np.float32(1 + 2.0 ** -11)                  # a tie: rounds to even (1.0)
    x[0, 0, 1] = np.float32(1 + 3 * 2.0 ** -11)              # a tie: rounds to even (1 + 2^-9)
    for dt in (np.float32, np.float16, ml_dtypes.bfloat16):
        pool = f.empty_pool(1, num_rings=1)
        xi = x.astype(dt)
        append(pool, f, xi, xi, [0, 1], [0, 1])
        want = xi.astype(np.float32).astype(np.float16)
        np.testing.assert_array_equal(pool["k_recent"][0].view(np.uint16), want.view(np.uint16))
    pool = f.empty_pool(1, num_rings=1)
    append(pool, f, x, x, [0, 1], [0, 1])
    assert pool["k_recent"][0, 0, 0, 0] == 1.0
    assert pool["k_recent"][0, 0, 0, 1] == np.float16(1 + 2.0 ** -9)


@pytest.mark.parametrize("st,g", [("i8", 4), ("i4", 8), ("f8E5M2", None)])
@pytest.mark.parametrize("R", [3, 8, 20])
def test_gather_with_residual_over_shuffled_table(st, g, R):
    """Interleaved chunked appends of several sequences (some shorter than R, a shared prefix
    page written once to the pages but to every sequence's ring): a sequence's last R tokens
    read back as f16(x), earlier ones as without the window; chunked == token by token."""
    rng = np.random.default_rng(21 + R)
    f = CacheFormat(8, 2, 6, "hnd", st, g, residual=R)
    f0 = f.without_residual()
    lens = [21, 0, 4, 9, 30, 1]
    t = build_page_table(rng, lens, 8, shared_prefix_pages=1, extra_pages=2)
    dist = KVDistribution(2, 6, seed=4, n_outliers=1)
    ks, vs = zip(*[dist.sample(rng, n) for n in lens])
    ks, vs = list(ks), list(vs)
    for b in range(1, len(lens)):
        if lens[b] >= 8:
            ks[b][:8], vs[b][:8] = ks[0][:8], vs[0][:8]
    sid, pos, slots = sequence_slots(t)
    rings = rng.permutation(len(lens) + 2)[:len(lens)]
    rs = ring_slots_for(rings, sid, pos, R)
    perm = _interleaving(rng, sid)
    k = np.stack([ks[b][p] for b, p in zip(sid, pos)])[perm]
    v = np.stack([vs[b][p] for b, p in zip(sid, pos)])[perm]
    kw = {}
    if st.startswith("f8"):
        kw = dict(k_scale=fp8_scales(k, st), v_scale=fp8_scales(v, st))
    pool = f.empty_pool(t.num_pages, num_rings=len(lens) + 2, **kw)
    pool0 = f0.empty_pool(t.num_pages, **kw)
    one = {n: a.copy() for n, a in pool.items()}
    append(pool, f, k, v, slots[perm], rs[perm])
    append(pool0, f0, k, v, slots[perm])
    for i in range(perm.size):
        append(one, f, k[i:i + 1], v[i:i + 1], slots[perm][i:i + 1], rs[perm][i:i + 1])
    for n in pool:
        np.testing.assert_array_equal(pool[n].view(np.uint8), one[n].view(np.uint8), n)
    gk, gv = gather(pool, f, *t.arrays(), kv_rings=rings)
    gk0, gv0 = gather(pool0, f0, *t.arrays())
    for b, n in enumerate(lens):
        cut = max(0, n - R)
        assert gk[b].shape == (n, 2, 6)
        np.testing.assert_array_equal(gk[b][:cut], gk0[b][:cut])
        np.testing.assert_array_equal(gv[b][:cut], gv0[b][:cut])
        np.testing.assert_array_equal(gk[b][cut:], ks[b][cut:].astype(np.float16).astype(
            np.float64))
        np.testing.assert_array_equal(gv[b][cut:], vs[b][cut:].astype(np.float16).astype(
            np.float64))


def _interleaving(rng, sid):
    """A random order of the tokens that keeps every sequence's tokens in order."""
    queues = [list(np.flatnonzero(sid == b)) for b in np.unique(sid)]
    perm = []
    while any(queues):
        live = [q for q in queues if q]
        perm.append(live[rng.integers(len(live))].pop(0))
    return np.array(perm, dtype=np.int64)


# -- page summaries and select_pages (docs/sparsity.md section 3) --------------------------------

def test_summary_format_components_and_bytes():
    f = CacheFormat(16, 4, 64, "hnd", "i4", 8, residual=32, summary="minmax")
    assert f.mlir_type() == (
        "!attn.kv_cache<page_size = 16, kv_heads = 4, head_dim = 64, layout = hnd, storage = i4, "
        "k_group = 8, residual = 32, summary = minmax>")
    comps = f.components(5, num_rings=3)
    assert [c.name for c in comps] == ["k_pages", "v_pages", "k_scale", "k_min", "v_scale",
                                       "v_min", "k_recent", "v_recent", "k_page_max",
                                       "k_page_min"]
    for c in comps[-2:]:
        assert c.shape == (5, 4, 64) and c.manifest_dtype == "f16" and c.paged and not c.ring
    # per page 2 x H x D f16: + 4 * H * D / page_size bytes per token
    assert CacheFormat(16, 8, 128, "nhd", "f16", summary="minmax").bytes_per_token == 4096 + 256
    assert f.bytes_per_token == f.without_summary().bytes_per_token + 4 * 4 * 64 / 16
    assert f.without_residual().summary == "minmax" and f.without_summary().residual == 32
    assert f.name.endswith("_r32_mm")
    assert CacheFormat(16, 2, 4, "nhd", "f16", summary="minmax").mlir_type().endswith(
        "storage = f16, summary = minmax>")
    with pytest.raises(ValueError):
        CacheFormat(16, 2, 4, "nhd", "f16", summary="mean")


def test_summary_hand_case():
    # page_size 4, one head, 2 channels; pages 0 and 1
    f = CacheFormat(4, 1, 2, "nhd", "i8", 2, summary="minmax")
    pool = f.empty_pool(2)
    pool["k_page_max"][:] = 50                       # stale: offset 0 must replace it
    pool["k_page_min"][:] = -50
    x = np.float32([[[1.0, -2.0]], [[3.0, -5.0]], [[-1.0, 1 + 2 ** -12]]])
    append(pool, f, x, x, [0, 1, 2])                 # page 0, offsets 0..2
    assert pool["k_page_max"][0, 0].tolist() == [3.0, 1.0]   # 1 + 2^-12 rounds to 1 in f16
    assert pool["k_page_min"][0, 0].tolist() == [-1.0, -5.0]
    assert pool["k_page_max"][1, 0].tolist() == [50, 50]      # untouched page
    y = np.float32([[[7.0, 7.0]]])
    append(pool, f, y, y, [3])                        # a later call widens
    assert pool["k_page_max"][0, 0].tolist() == [7.0, 7.0]
    assert pool["k_page_min"][0, 0].tolist() == [-1.0, -5.0]
    z = np.float32([[[0.5, 0.25]], [[0.75, -0.25]], [[9.0, 9.0]]])
    append(pool, f, z, z, [1, 0, -1])                 # offset 1 widens, then offset 0 resets
    assert pool["k_page_max"][0, 0].tolist() == [0.75, -0.25]
    assert pool["k_page_min"][0, 0].tolist() == [0.75, -0.25]
    # the input K, not the stored codes: fp8 with a tiny scale saturates the codes
    f8 = CacheFormat(4, 1, 2, "nhd", "f8E4M3FN", summary="minmax")
    p8 = f8.empty_pool(1, k_scale=[1e-3], v_scale=[1.0])
    append(p8, f8, x[:1] * 1000, x[:1], [0])
    assert p8["k_page_max"][0, 0].tolist() == [1000.0, -2000.0]


@pytest.mark.parametrize("st,g", ALL)
def test_summary_chunked_equals_token_by_token_and_brute_force(st, g):
    """Interleaved sequences, -1 slots, a slot written twice and a page reused from offset 0:
    one call equals token-by-token calls; after a fresh fill every page's summary is the f16
    max / min of its tokens' K, for every storage."""
    rng = np.random.default_rng(11)
    f = CacheFormat(8, 2, 6, "hnd", st, g, summary="minmax")
    t = build_page_table(rng, [21, 9, 30], 8)
    dist = KVDistribution(2, 6, seed=3, n_outliers=1)
    sid, pos, _ = sequence_slots(t)
    perm = _interleaving(rng, sid)
    slots = slots_for(t, sid[perm], pos[perm])
    k, v = dist.sample(rng, sid.size)
    kw = {}
    if st.startswith("f8"):
        kw = dict(k_scale=fp8_scales(k, st), v_scale=fp8_scales(v, st))
    fresh = f.empty_pool(t.num_pages, **kw)
    append(fresh, f, k, v, slots)
    kk = np.zeros((t.num_pages, 8, 2, 6), np.float32)
    kk[slots // 8, slots % 8] = k
    seen = np.zeros((t.num_pages, 8), bool)
    seen[slots // 8, slots % 8] = True
    for p in range(t.num_pages):
        n = seen[p].sum()
        assert seen[p, :n].all()                       # pages fill from offset 0
        want = kk[p, :n].astype(np.float16)
        np.testing.assert_array_equal(fresh["k_page_max"][p], want.max(0))
        np.testing.assert_array_equal(fresh["k_page_min"][p], want.min(0))
    # again over the filled pool: a slot written twice, padding, and a page restarted
    first_slot = int(t.pages(0)[0]) * 8
    s2 = np.concatenate([slots[:5], [-1, slots[3], first_slot, first_slot + 1]]).astype(np.int32)
    k2 = np.concatenate([k[:5], k[:1], k[:1] * 7, -k[:2] * 3])
    a = {n: x.copy() for n, x in fresh.items()}
    b = {n: x.copy() for n, x in fresh.items()}
    append(a, f, k2, k2, s2)
    for i in range(s2.size):
        append(b, f, k2[i:i + 1], k2[i:i + 1], s2[i:i + 1])
    for name in a:
        np.testing.assert_array_equal(a[name].view(np.uint8), b[name].view(np.uint8), name)
    # the summaries do not depend on the storage
    f16 = CacheFormat(8, 2, 6, "hnd", "f16", summary="minmax")
    c = f16.empty_pool(t.num_pages)
    append(c, f16, k, v, slots)
    append(c, f16, k2, k2, s2)
    for name in ("k_page_max", "k_page_min"):
        np.testing.assert_array_equal(a[name], c[name])


def test_page_scores_bound_every_key():
    """A page's score is at least q . f16(k) for every key of the page and query head of its KV
    head (the f16-rounded keys lie inside the f16 box), and equals the brute-force definition."""
    rng = np.random.default_rng(3)
    f = CacheFormat(7, 2, 16, "nhd", "i8", 7, summary="minmax")
    pool, t, ks, vs = fill(f, [40, 7, 1, 0, 15], rng)
    q = rng.standard_normal((5, 8, 16)).astype(np.float32)
    scores = page_scores(q, pool, f, t.kv_indptr, t.kv_indices)
    for b, sc in enumerate(scores):
        assert sc.shape == (2, t.pages(b).size)
        for p, page in enumerate(t.pages(b)):
            keys = ks[b][p * 7:(p + 1) * 7].astype(np.float16).astype(np.float64)  # [n, H, D]
            for h in range(2):
                qg = q[b, 4 * h:4 * h + 4].astype(np.float64)                        # [G, D]
                assert sc[h, p] >= (qg @ keys[:, h].T).max() - 1e-9
                hi = pool["k_page_max"][page, h].astype(np.float64)
                lo = pool["k_page_min"][page, h].astype(np.float64)
                want = max(np.maximum(g * hi, g * lo).sum() for g in qg)
                assert sc[h, p] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # a trimmed page (-1) scores -inf
    idx = t.kv_indices.copy()
    idx[t.kv_indptr[0] + 2] = -1
    assert np.isneginf(page_scores(q, pool, f, t.kv_indptr, idx)[0][:, 2]).all()


def _select_brute_force(sc, top_k, sinks, recent):
    """The rule of docs/sparsity.md section 3, one page at a time."""
    n = sc.size
    if n <= top_k:
        return list(range(n))
    chosen = set(range(sinks)) | set(range(n - recent, n))
    rest = [p for p in range(n) if p not in chosen]
    while len(chosen) < top_k:
        best = max(rest, key=lambda p: (sc[p], -p))       # highest score, then lower page
        chosen.add(best)
        rest.remove(best)
    return sorted(chosen)


@pytest.mark.parametrize("top_k,sinks,recent", [(1, 0, 0), (4, 1, 2), (5, 0, 5), (6, 2, 0),
                                                (16, 1, 4), (3, 3, 0)])
def test_select_pages_rule(top_k, sinks, recent):
    rng = np.random.default_rng(top_k * 100 + sinks * 10 + recent)
    f = CacheFormat(4, 2, 8, "nhd", "f16", summary="minmax")
    lens = [0, 1, 4 * top_k, 4 * top_k + 1, 37, 80]
    pool, t, ks, vs = fill(f, lens, rng)
    # ties: two pages of sequence 4 with the same keys get the same score
    p4 = t.pages(4)
    pool["k_page_max"][p4[5]] = pool["k_page_max"][p4[2]]
    pool["k_page_min"][p4[5]] = pool["k_page_min"][p4[2]]
    q = rng.standard_normal((len(lens), 4, 8)).astype(np.float16)
    offsets, indices, scores = select_pages(q, pool, f, t.kv_indptr, t.kv_indices, top_k,
                                            sinks, recent)
    assert offsets.shape == (len(lens), 2, 2) and indices.shape == (len(lens), 2, top_k)
    assert offsets.dtype == indices.dtype == np.int32
    for b in range(len(lens)):
        for h in range(2):
            want = _select_brute_force(scores[b][h], top_k, sinks, recent)
            n = len(want)
            assert n == min(top_k, t.pages(b).size)
            assert offsets[b, h].tolist() == [0, n]
            assert indices[b, h, :n].tolist() == want
            assert (indices[b, h, n:] == -1).all()
    with pytest.raises(ValueError):
        select_pages(q, pool, f, t.kv_indptr, t.kv_indices, 2, 2, 1)
