"""Paged KV caches from Python: attnc.CachePool owns the pages, the compiled kv_append quantizes
into its buffers in place, paged decode and prefill read them; f16, int8 (nhd and hnd) and fp8
caches against the exact NumPy model of the formats and the float64 reference (kv_reference.py),
at odd lengths with fresh seeds, with prefix sharing (fork) and copy-on-write."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import attnc
from harness import O_TOL
from kv_reference import CacheFormat, append as model_append, gather, kv_tolerance, \
    paged_reference
from reference import Mask

HQ, HKV, D = 6, 2, 64
NUM_PAGES = 40
FORMATS = {
    "f16": CacheFormat(16, HKV, D, "nhd", "f16"),
    "i8": CacheFormat(16, HKV, D, "nhd", "i8", k_group=4),
    "i8_hnd": CacheFormat(8, HKV, D, "hnd", "i8"),
    "fp8": CacheFormat(16, HKV, D, "nhd", "f8E4M3FN"),  # per-head scales: non-paged buffers
}


def module_mlir() -> str:
    out = []
    kt, qt, i32 = f"tensor<?x{HKV}x{D}xf32>", f"tensor<?x{HQ}x{D}xf32>", "tensor<?xi32>"
    lt = f"tensor<{HQ}x?xf32>"
    for name, fmt in FORMATS.items():
        ct = fmt.mlir_type()
        out.append(
            f"func.func @append_{name}(%k: {kt}, %v: {kt}, %s: {i32}, %cache: {ct}) {{\n"
            f"  attn.kv_append %k, %v, %s into %cache : {kt}, {kt}, {i32}, {ct}\n"
            f"  return\n}}\n"
            f"func.func @decode_{name}(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32}, %l: {i32})"
            f" -> ({qt}, {lt}) {{\n"
            f"  %o, %lse = attn.paged_attention %q, %cache, %p, %i, %l"
            f" : ({qt}, {ct}, {i32}, {i32}, {i32}) -> ({qt}, {lt})\n"
            f"  return %o, %lse : {qt}, {lt}\n}}\n"
            f"func.func @prefill_{name}(%q: {qt}, %cache: {ct}, %p: {i32}, %i: {i32},"
            f" %l: {i32}, %qo: {i32}) -> {qt} {{\n"
            f"  %o = attn.paged_attention %q, %cache, %p, %i, %l qo_indptr(%qo)"
            f" {{mask = #attn.mask<causal>}}"
            f" : ({qt}, {ct}, {i32}, {i32}, {i32}, {i32}) -> {qt}\n"
            f"  return %o : {qt}\n}}\n")
    return "\n".join(out)


@pytest.fixture(scope="module")
def module():
    return attnc.compile(module_mlir(), num_threads=2)


def components(pool: attnc.CachePool) -> dict:
    """The pool's buffers by component name (k_pages, ...), as kv_reference names them."""
    return {name[len("cache_"):]: a for name, a in pool.buffers.items()}


class Serving:
    """A pool, the kernels of one format and every token appended to each sequence."""

    def __init__(self, module, name, rng):
        self.fmt = FORMATS[name]
        self.append_k = module[f"append_{name}"]
        self.decode_k = module[f"decode_{name}"]
        self.prefill_k = module[f"prefill_{name}"]
        self.pool = attnc.CachePool(self.append_k, NUM_PAGES)
        self.rng = rng
        self.tokens: dict[int, list] = {}

    def append(self, seq, n):
        k = self.rng.standard_normal((n, HKV, D)).astype(np.float32)
        v = self.rng.standard_normal((n, HKV, D)).astype(np.float32)
        slots = self.pool.append(seq, n)
        assert self.append_k(k, v, slots, **self.pool.buffers) is None
        self.tokens.setdefault(seq, []).extend(zip(k, v))
        return k, v, slots

    def cached(self, seqs):
        """Page table and per sequence the K/V the kernels read (dequantized, float64)."""
        table = self.pool.page_table(seqs)
        ks, vs = gather(components(self.pool), self.fmt, *table)
        return table, ks, vs

    def appended(self, seqs):
        ks = [np.stack([t[0] for t in self.tokens[s]]).astype(np.float64) for s in seqs]
        vs = [np.stack([t[1] for t in self.tokens[s]]).astype(np.float64) for s in seqs]
        return ks, vs

    def check_decode(self, seqs):
        (indptr, indices, last), ks, vs = self.cached(seqs)
        q = self.rng.standard_normal((len(seqs), HQ, D)).astype(np.float32)
        o, lse = self.decode_k(q, **self.pool.buffers, kv_indptr=indptr, kv_indices=indices,
                               kv_last_page_len=last)
        assert o.shape == q.shape and lse.shape == (HQ, len(seqs))
        # what the kernel read, in float64: tight
        o_ref, lse_ref = paged_reference(q, ks, vs)
        assert np.abs(o - o_ref).max() <= O_TOL["f32"] * np.abs(o_ref).max()
        assert np.abs(lse - lse_ref).max() <= 1e-5
        # what was appended (unquantized): within the format's measured bound
        o_full, _ = paged_reference(q, *self.appended(seqs))
        o_tol, _ = kv_tolerance(self.fmt)
        assert np.abs(o - o_full).max() <= o_tol * np.abs(o_full).max()

    def check_prefill(self, seqs, qo_lens):
        (indptr, indices, last), ks, vs = self.cached(seqs)
        qo = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
        q = self.rng.standard_normal((int(qo[-1]), HQ, D)).astype(np.float32)
        o = self.prefill_k(q, **self.pool.buffers, kv_indptr=indptr, kv_indices=indices,
                           kv_last_page_len=last, qo_indptr=qo)
        o_ref, _ = paged_reference(q, ks, vs, qo_lens=qo_lens, mask=Mask(causal=True))
        assert np.abs(o - o_ref).max() <= O_TOL["f32"] * np.abs(o_ref).max()


@pytest.mark.parametrize("name", list(FORMATS))
def test_pool_serving(module, name, rng_seed):
    s = Serving(module, name, np.random.default_rng(rng_seed))
    pool, fmt = s.pool, s.fmt
    assert set(pool.buffers) == {a.name for a in s.decode_k.args if a.name.startswith("cache_")}
    assert pool.buffers["cache_k_pages"].shape == fmt.page_shape(NUM_PAGES)
    assert pool.stats().bytes_per_token == s.append_k.kv_cache.bytes_per_token \
        == fmt.bytes_per_token

    # A prompt of 37 tokens: the pool holds exactly what the format's model writes.
    a = pool.create()
    model = fmt.empty_pool(NUM_PAGES)
    k, v, slots = s.append(a, 37)
    model_append(model, fmt, k, v, slots)
    for comp, want in model.items():
        np.testing.assert_array_equal(components(pool)[comp].view(np.uint8),
                                      want.view(np.uint8), err_msg=comp)
    s.check_decode([a])

    # Prefix sharing and copy-on-write of the shared partial page.
    b = pool.fork(a)
    s.tokens[b] = list(s.tokens[a])
    used = pool.stats().used_pages
    s.append(b, 3)  # into a copy of the shared last page (5 of 8 or 16 tokens)
    assert pool.stats().used_pages == used + 1
    c = pool.create()
    s.append(c, 50)
    s.append(c, 11)
    for _ in range(3):
        for seq in (a, b, c):
            s.append(seq, 1)
        s.check_decode([c, a, b])
    # Chunked prefill of new tokens against everything cached.
    for seq, n in ((a, 3), (b, 1), (c, 7)):
        s.append(seq, n)
    s.check_prefill([a, b, c], [3, 1, 7])
    pool.check()

    # A full pool refuses atomically.
    with pytest.raises(attnc.OutOfPagesError) as e:
        pool.append(a, NUM_PAGES * fmt.page_size)
    assert e.value.status_name == "out_of_pages" and pool.stats().used_pages > 0
    assert pool.length(a) == 37 + 3 + 3
    s.check_decode([a, b, c])
    for seq in (a, b, c):
        pool.free(seq)
    assert pool.stats().used_pages == 0 and pool.stats().free_pages == NUM_PAGES
    with pytest.raises(attnc.AttnrtError, match="sequence .* has been freed"):
        pool.append(a, 1)


def test_pool_buffers_are_views_that_keep_the_pool(module):
    pool = attnc.CachePool(module["append_i8"], 4)
    kp = pool.buffers["cache_k_pages"]
    assert kp.dtype == np.int8 and kp.flags.c_contiguous and kp.flags.writeable
    raw = pool._p.buffer(0)
    assert np.shares_memory(kp, raw) and kp.ctypes.data == raw.ctypes.data
    kp[1, 2, 1, 3] = 7
    del pool, raw
    gc.collect()
    assert kp[1, 2, 1, 3] == 7  # still readable: the view holds the pool


def test_page_tables(module, rng_seed):
    rng = np.random.default_rng(rng_seed)
    pool = attnc.CachePool(module["decode_f16"], 16)
    seqs = [pool.create() for _ in range(3)]
    for seq, n in zip(seqs, rng.integers(0, 50, size=3)):
        pool.append(seq, int(n))
    indptr, indices, last = pool.page_table(seqs)
    lens = [pool.length(s) for s in seqs]
    pages = np.diff(indptr)
    block_tables = np.full((3, int(pages.max()) + 2), -7, np.int32)
    for b in range(3):
        block_tables[b, :pages[b]] = indices[indptr[b]:indptr[b + 1]]
    got = attnc.page_table_from_block_tables(block_tables, lens, 16)
    for x, y in zip(got, (indptr, indices, last)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(attnc.AttnrtError, match="seq_len"):
        attnc.page_table_from_block_tables(block_tables, [-1, 0, 0], 16)
    # A cast would make these valid-looking wrong pages: refused instead.
    with pytest.raises(TypeError, match="block_tables must hold integers"):
        attnc.page_table_from_block_tables(block_tables.astype(np.float64) + 0.5, lens, 16)
    with pytest.raises(ValueError, match="block_tables has values outside int32"):
        attnc.page_table_from_block_tables(block_tables.astype(np.int64) + (1 << 32), lens, 16)


def test_paged_validation_errors(module, rng_seed):
    rng = np.random.default_rng(rng_seed)
    pool = attnc.CachePool(module["append_i8"], 8)
    seq = pool.create()
    pool.append(seq, 20)
    indptr, indices, last = pool.page_table([seq])
    q = rng.standard_normal((1, HQ, D)).astype(np.float32)
    decode = module["decode_i8"]
    bad = indices.copy()
    bad[0] = 8
    with pytest.raises(attnc.ValidationError, match=r"kv_indices.*8") as e:
        decode(q, **pool.buffers, kv_indptr=indptr, kv_indices=bad, kv_last_page_len=last)
    assert e.value.status_name == "validation"
    with pytest.raises(ValueError, match="longer than its pages"):
        decode(q, **pool.buffers, kv_indptr=indptr, kv_indices=indices,
               kv_last_page_len=last + 16)
    with pytest.raises(ValueError, match="has no KV cache"):
        attnc.CachePool(attnc.compile(_DENSE)["sdpa"], 4)


_DENSE = """
func.func @sdpa(%q: tensor<?x?x4x64xf32>, %k: tensor<?x?x2x64xf32>,
                %v: tensor<?x?x2x64xf32>) -> tensor<?x?x4x64xf32> {
  %o = attn.attention %q, %k, %v : (tensor<?x?x4x64xf32>, tensor<?x?x2x64xf32>,
                                    tensor<?x?x2x64xf32>) -> tensor<?x?x4x64xf32>
  return %o : tensor<?x?x4x64xf32>
}
"""
