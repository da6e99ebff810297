"""Hand-computed checks of reference.py (independent of the compiler)."""
import math

import numpy as np
import pytest

from reference import Mask, attention, visible, visible_pairs


def dense(lq, lk, hq=1, hkv=1, d=2, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, lq, hq, d))
    k = rng.standard_normal((1, lk, hkv, d))
    v = rng.standard_normal((1, lk, hkv, d))
    return q, k, v


def test_single_key_returns_value_and_score():
    q = np.array([[[[1.0, 2.0]]]])
    k = np.array([[[[3.0, -1.0]]]])
    v = np.array([[[[5.0, 7.0]]]])
    o, lse = attention(q, k, v)
    np.testing.assert_allclose(o[0, 0, 0], [5.0, 7.0])
    # only one key: lse is the score itself, (1*3 + 2*-1)/sqrt(2)
    assert lse.shape == (1, 1, 1)
    assert lse[0, 0, 0] == pytest.approx(1.0 / math.sqrt(2))


def test_equal_scores_average_values():
    q = np.zeros((1, 1, 1, 4))
    k = np.random.default_rng(1).standard_normal((1, 3, 1, 4))
    v = np.arange(12, dtype=float).reshape(1, 3, 1, 4)
    o, lse = attention(q, k, v)
    np.testing.assert_allclose(o[0, 0, 0], v[0, :, 0].mean(axis=0))
    assert lse[0, 0, 0] == pytest.approx(math.log(3))


def test_two_keys_softmax_weights():
    # scores 0 and 2 with scale 1: weights 1/(1+e^2), e^2/(1+e^2)
    q = np.array([[[[1.0]]]])
    k = np.array([[[[0.0]], [[2.0]]]])
    v = np.array([[[[10.0]], [[20.0]]]])
    o, lse = attention(q, k, v, scale=1.0)
    w = math.exp(2) / (1 + math.exp(2))
    assert o[0, 0, 0, 0] == pytest.approx(10 * (1 - w) + 20 * w)
    assert lse[0, 0, 0] == pytest.approx(math.log(1 + math.exp(2)))


def test_fully_masked_row_is_zero_and_minus_inf():
    # bottom-right causal with Lq=3 > Lk=1: pos(i) = i - 2, rows 0 and 1 see nothing
    q, k, v = dense(3, 1)
    o, lse = attention(q, k, v, mask=Mask(causal=True))
    assert np.all(o[0, :2] == 0) and np.all(lse[0, 0, :2] == -np.inf)
    np.testing.assert_allclose(o[0, 2, 0], v[0, 0, 0])
    assert np.isfinite(lse[0, 0, 2])
    assert not np.isnan(o).any() and not np.isnan(lse).any()


def test_empty_key_sequence():
    q, k, v = dense(2, 0)
    o, lse = attention(q, k, v)
    assert np.all(o == 0) and np.all(lse == -np.inf)


VIS_CASES = {
    # (Lq, Lk, mask): rows of the visibility table
    "causal_br": (2, 4, Mask(causal=True), ["1110", "1111"]),
    "causal_tl": (2, 4, Mask(causal=True, align="top_left"), ["1000", "1100"]),
    "causal_br_lq_gt_lk": (4, 2, Mask(causal=True), ["00", "00", "10", "11"]),
    "none": (2, 3, Mask(), ["111", "111"]),
    "sinks_without_window": (2, 3, Mask(causal=True, sinks=2), ["110", "111"]),
    "window1": (5, 5, Mask(window=1),
                ["10000", "11000", "01100", "00110", "00011"]),
    "window1_sinks1": (5, 5, Mask(window=1, sinks=1),
                       ["10000", "11000", "11100", "10110", "10011"]),
    "window0_sinks2": (4, 4, Mask(causal=True, window=0, sinks=2),
                       ["1000", "1100", "1110", "1101"]),
    "window2_tl": (3, 5, Mask(window=2, align="top_left"),
                   ["10000", "11000", "11100"]),
    "window2_br": (3, 5, Mask(window=2), ["11100", "01110", "00111"]),
}


@pytest.mark.parametrize("name", list(VIS_CASES))
def test_visibility_table(name):
    lq, lk, mask, rows = VIS_CASES[name]
    want = np.array([[c == "1" for c in r] for r in rows])
    got = visible(np.arange(lq), lq, lk, mask)
    assert (got == want).all(), f"\n{got.astype(int)}\n!=\n{want.astype(int)}"
    assert visible_pairs(lq, lk, mask) == want.sum()


def test_mask_applied_in_attention():
    # window 0 + sink 0 at row 3: sees keys 0 and 3 only
    q, k, v = dense(4, 4, d=3, seed=5)
    o, _ = attention(q, k, v, mask=Mask(causal=True, window=0, sinks=1))
    sel = [0, 3]
    o2, _ = attention(q[:, 3:4], k[:, sel], v[:, sel])
    np.testing.assert_allclose(o[0, 3], o2[0, 0])
    np.testing.assert_allclose(o[0, 0, 0], v[0, 0, 0])


def test_gqa_head_mapping():
    # Hq=4, Hkv=2: query heads 0,1 -> kv head 0; heads 2,3 -> kv head 1
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 3, 4, 8))
    k = rng.standard_normal((1, 5, 2, 8))
    v = rng.standard_normal((1, 5, 2, 8))
    o, lse = attention(q, k, v, mask=Mask(causal=True))
    for h in range(4):
        kvh = h // 2
        oh, lh = attention(q[:, :, h:h + 1], k[:, :, kvh:kvh + 1], v[:, :, kvh:kvh + 1],
                           mask=Mask(causal=True))
        np.testing.assert_allclose(o[:, :, h], oh[:, :, 0])
        np.testing.assert_allclose(lse[:, h], lh[:, 0])


def test_softcap():
    q = np.array([[[[1.0]]]])
    k = np.array([[[[0.0]], [[100.0]]]])
    v = np.array([[[[0.0]], [[1.0]]]])
    o, lse = attention(q, k, v, scale=1.0, softcap=2.0)
    s1 = 2.0 * math.tanh(50.0)
    w = math.exp(s1) / (1 + math.exp(s1))
    assert o[0, 0, 0, 0] == pytest.approx(w)
    assert lse[0, 0, 0] == pytest.approx(math.log(1 + math.exp(s1)))


def test_default_scale_and_explicit_scale():
    q, k, v = dense(3, 4, d=16, seed=7)
    a, la = attention(q, k, v)
    b, lb = attention(q, k, v, scale=0.25)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(la, lb)
    c, _ = attention(q, k, v, scale=0.5)
    assert not np.allclose(a, c)


def test_ragged_matches_dense_per_sequence():
    rng = np.random.default_rng(11)
    lens_q, lens_k = [3, 0, 1, 4], [5, 2, 0, 1]
    cq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q = rng.standard_normal((cq[-1], 2, 4))
    k = rng.standard_normal((ck[-1], 1, 4))
    v = rng.standard_normal((ck[-1], 1, 4))
    m = Mask(causal=True, window=1, sinks=1)
    o, lse = attention(q, k, v, mask=m, cu_seqlens_q=cq, cu_seqlens_k=ck)
    assert o.shape == q.shape and lse.shape == (2, cq[-1])
    for b in range(4):
        qs, qe, ks, ke = cq[b], cq[b + 1], ck[b], ck[b + 1]
        ob, lb = attention(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], mask=m)
        np.testing.assert_allclose(o[qs:qe], ob[0])
        np.testing.assert_allclose(lse[:, qs:qe], lb[0])
    # sequence 2 has no keys: its query row is zero / -inf; sequence 3 (4 q, 1 k) rows 0-2 too
    assert np.all(o[3] == 0) and np.all(lse[:, 3] == -np.inf)
    assert np.all(lse[:, 4:7] == -np.inf) and np.all(np.isfinite(lse[:, 7]))


def test_chunking_does_not_change_result():
    q, k, v = dense(37, 50, hq=4, hkv=2, d=8, seed=2)
    m = Mask(causal=True, window=9, sinks=2)
    a, la = attention(q, k, v, mask=m, softcap=1.5)
    b, lb = attention(q, k, v, mask=m, softcap=1.5, chunk_bytes=1)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(la, lb, rtol=1e-13)


def test_against_naive_loops():
    """Row-by-row scalar implementation of the semantics as a cross-check."""
    q, k, v = dense(6, 9, hq=4, hkv=2, d=5, seed=9)
    m = Mask(causal=True, window=3, sinks=1, align="top_left")
    o, lse = attention(q, k, v, mask=m, softcap=0.7, scale=0.9)
    for h in range(4):
        for i in range(6):
            pos = i
            vis = [j for j in range(9)
                   if j <= pos and (j >= pos - 3 or j < 1)]
            s = np.array([0.7 * math.tanh(0.9 * q[0, i, h] @ k[0, j, h // 2] / 0.7)
                          for j in vis])
            p = np.exp(s - s.max())
            want = sum(p[n] * v[0, j, h // 2] for n, j in enumerate(vis)) / p.sum()
            np.testing.assert_allclose(o[0, i, h], want, rtol=1e-12)
            assert lse[0, h, i] == pytest.approx(s.max() + math.log(p.sum()))


def test_rejects_bad_gqa():
    q, k, v = dense(1, 1, hq=3, hkv=2)
    with pytest.raises(ValueError):
        attention(q, k, v)
