"""End-to-end tests of the KV-cache kernels (docs/kv-cache.md): `attn.kv_append`,
`attn.paged_attention` (decode and append/prefill) and `attn.merge`, compiled by attnc and run
through the runtime (attnrt_ctypes) on NumPy arrays, against the exact NumPy model of the cache
(kv_reference.py) and the float64 reference.

- append: the pool the kernel writes must equal the model's pool bit for bit, every component
  (codes, scales, minima), also where groups grew and were requantized. docs/kv-cache.md fixes
  every operation and its order (f32, x / s, q * s_old / s_new, f16 rounding of what is stored,
  round-half-to-even), so a different result is a departure from the contract, not float noise
  (e.g. multiplying by a reciprocal moves codes at .5 ties by one step).
- paged attention: against float64 attention on the model's dequantized cache with the
  kernel-arithmetic tolerance of the query dtype (harness.O_TOL / LSE_TOL): this finds kernel
  bugs. For the formats of the accuracy study in its setting (Llama-3-8B-like heads, sequences of
  1000-2000 tokens; the `llama` cases) also against float64 attention on the unquantized values
  with the documented bound of the format (kv_reference.KV_O_TOL / KV_LSE_TOL, docs/kv-cache.md
  "Accuracy (measured)") plus that tolerance; the bounds were measured for long contexts and do
  not hold for a few keys or a 16-key window, where quantization errors average less. Page tables
  are shuffled, share a prefix page and contain an empty sequence; pages hold garbage outside the
  sequences (NaN in one test).
- merge: against merge_reference, with partials of LSE -inf.
- split-KV: a decode result does not depend on the split count, which the auto policy derives
  from the batch (one long sequence alone gets several splits, in a batch of many one).
- residual window (`residual = R`, docs/kv-cache.md "The residual window"): kv_append writes the
  pages and the rings (`k_recent`, `v_recent`; ring slots with -1 skips, a token's ring write
  independent of its page slot) bit for bit like the model; paged attention reads a sequence's
  last R keys from its ring (`kv_rings`, rings shuffled, some unused) and the rest from its pages:
  checked against the model's gathered values, and with the window's page codes poisoned and the
  ring slots outside every window NaN (neither may be read).

Covering design: 6 storages x 2 layouts = 12 caches; head_dim (64, 80, 128), page size
(1, 7, 16), GQA ratio (1, 4, 8), mask (none, causal, window, window + sinks), query dtype and
k_new dtype rotate over them; plus the formats of the accuracy study with 32/8 heads, D 128
(with the residual ones: i8 and i4, k_group 64, residual 128); plus residual windows (RESIDUAL:
i4, i8 and fp8, both layouts, R smaller than, equal to and larger than a page, sequences shorter
than R).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (LSE_TOL, NP_DTYPE, O_TOL, KernelCache, compare, f32,  # noqa: E402
                     mask_attr, mask_name)
from kv_reference import (CacheFormat, KVDistribution, PageTable, append,  # noqa: E402
                          build_page_table, fp8_scales, gather, kv_tolerance, merge_reference,
                          paged_reference, realistic_queries, ring_slots_for, sequence_slots,
                          slots_for, unpack_i4)
from kv_accuracy import FORMATS as STUDY_FORMATS, HQ as HQ_LLAMA  # noqa: E402
from reference import Mask  # noqa: E402

STORAGES = ["f16", "bf16", "f8E4M3FN", "f8E5M2", "i8", "i4"]
HEAD_DIMS = [64, 80, 128]
PAGES = [(16, 4), (7, 7), (1, 1), (16, 16), (7, 1)]     # (page_size, k_group for i8/i4)
HEADS = [(2, 2), (8, 2), (8, 1)]                          # GQA 1, 4, 8 (MQA)
MASKS = [Mask(), Mask(causal=True), Mask(window=16), Mask(causal=True, window=16, sinks=4)]
QDTYPES = ["f16", "bf16", "f32"]
KDTYPES = ["f32", "f16", "bf16"]
COMPONENT_ROLES = ("k_pages", "v_pages", "k_scale", "v_scale", "k_min", "v_min", "k_recent",
                   "v_recent")
EXTRA_RINGS = 2        # unused rings in every residual test pool


@dataclass(frozen=True)
class KVConfig:
    """One cache type and the attention parameters of its kernels."""
    storage: str
    layout: str
    page_size: int
    k_group: int | None
    hq: int
    hkv: int
    d: int
    qdtype: str = "f16"
    kdtype: str = "f32"
    mask: Mask = Mask()
    softcap: float = 0.0
    tag: str = ""
    residual: int | None = None

    @property
    def fmt(self) -> CacheFormat:
        return CacheFormat(self.page_size, self.hkv, self.d, self.layout, self.storage,
                           self.k_group, self.residual)

    @property
    def name(self) -> str:
        n = [self.storage.lower(), self.layout, f"p{self.page_size}"]
        n += [f"g{self.k_group}"] if self.k_group else []
        n += [f"d{self.d}", f"h{self.hq}x{self.hkv}", f"q{self.qdtype}", f"k{self.kdtype}",
              mask_name(self.mask)]
        n += [f"cap{self.softcap:g}".replace(".", "p")] if self.softcap else []
        n += [f"r{self.residual}"] if self.residual else []
        n += [self.tag] if self.tag else []
        return "_".join(n)


@dataclass(frozen=True)
class Kernel:
    """One kernel of a KVConfig: kind append, decode, prefill; or a merge kernel."""
    kind: str
    cfg: KVConfig | None = None
    merge_hq: int = 0
    merge_d: int = 0
    merge_out: str = "f32"

    @property
    def name(self) -> str:
        if self.kind == "merge":
            return f"merge_h{self.merge_hq}_d{self.merge_d}_{self.merge_out}"
        return f"{self.kind}_{self.cfg.name}"

    def func_mlir(self) -> str:
        if self.kind == "merge":
            h, d, t = self.merge_hq, self.merge_d, self.merge_out
            po, pl = f"tensor<?x?x{h}x{d}xf32>", f"tensor<?x{h}x?xf32>"
            ot, lt = f"tensor<?x{h}x{d}x{t}>", f"tensor<{h}x?xf32>"
            return (f"func.func @{self.name}(%po: {po}, %plse: {pl}) -> ({ot}, {lt}) {{\n"
                    f"  %o, %lse = attn.merge %po, %plse : ({po}, {pl}) -> ({ot}, {lt})\n"
                    f"  return %o, %lse : {ot}, {lt}\n}}\n")
        c = self.cfg
        ct = c.fmt.mlir_type()
        if self.kind == "append":
            kt = f"tensor<?x{c.hkv}x{c.d}x{c.kdtype}>"
            rs_arg = ", %ring_slots: tensor<?xi32>" if c.residual else ""
            rs_op = " ring_slots(%ring_slots : tensor<?xi32>)" if c.residual else ""
            return (f"func.func @{self.name}(%k: {kt}, %v: {kt}, %slots: tensor<?xi32>"
                    f"{rs_arg}, %cache: {ct}) {{\n"
                    f"  attn.kv_append %k, %v, %slots{rs_op} into %cache : {kt}, {kt}, "
                    f"tensor<?xi32>, {ct}\n  return\n}}\n")
        qt = f"tensor<?x{c.hq}x{c.d}x{c.qdtype}>"
        lt = f"tensor<{c.hq}x?xf32>"
        i32 = "tensor<?xi32>"
        ins = [("q", qt), ("cache", ct), ("indptr", i32), ("indices", i32), ("last", i32)]
        extra = ""
        if self.kind == "prefill":
            ins.append(("qo", i32))
            extra = " qo_indptr(%qo)"
        if c.residual:
            ins.append(("rings", i32))
            extra += " kv_rings(%rings)"
        attrs = [f"mask = {mask_attr(c.mask)}"]
        if c.softcap:
            attrs.append(f"softcap = {f32(c.softcap)!r} : f32")
        sig = ", ".join(f"%{n}: {t}" for n, t in ins)
        fty = f"({', '.join(t for _, t in ins)}) -> ({qt}, {lt})"
        return (f"func.func @{self.name}({sig}) -> ({qt}, {lt}) {{\n"
                f"  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last{extra} "
                f"{{{', '.join(attrs)}}} : {fty}\n"
                f"  return %o, %lse : {qt}, {lt}\n}}\n")


def _configs():
    out = []
    i = 0
    for si, st in enumerate(STORAGES):
        for li, layout in enumerate(["nhd", "hnd"]):
            page, g = PAGES[i % len(PAGES)]
            hq, hkv = HEADS[(i + li) % len(HEADS)]
            out.append(KVConfig(
                st, layout, page, g if st in ("i8", "i4") else None, hq, hkv,
                HEAD_DIMS[(si + 2 * li) % len(HEAD_DIMS)], QDTYPES[i % 3], KDTYPES[(i + si) % 3],
                MASKS[i % len(MASKS)], softcap=30.0 if i % 5 == 3 else 0.0))
            i += 1
    return out


CONFIGS = _configs()
# The accuracy study's formats (kv_accuracy.FORMATS: Llama-3-8B-like heads, D 128), where the
# documented bounds apply: decode and a causal append over sequences of 1000-2000 tokens.
LLAMA = [KVConfig(f.storage, f.layout, f.page_size, f.k_group, HQ_LLAMA, f.kv_heads,
                  f.head_dim, "f16", "f32", Mask(causal=True), tag="llama",
                  residual=f.residual)
         for _, f in STUDY_FORMATS]
# Residual windows: i4 and i8 in both layouts and one fp8; R smaller than a page (page 16 / R 5),
# equal to it (7 / 7), larger (16 / 20, 16 / 24) and several pages long (7 / 40); seq_lens_for
# gives sequences shorter than R (0, 1, 16 and 28 tokens against R = 40) and longer ones.
RESIDUAL = [
    KVConfig("i4", "nhd", 16, 4, 8, 2, 64, "f16", "f32", Mask(causal=True), residual=5),
    KVConfig("i4", "hnd", 7, 7, 4, 1, 80, "f32", "f16", Mask(), residual=40),
    KVConfig("i8", "hnd", 16, 16, 2, 2, 128, "bf16", "bf16", Mask(window=16), residual=24),
    KVConfig("i8", "nhd", 7, 1, 8, 1, 64, "f32", "f32", Mask(causal=True), softcap=30.0,
             residual=7),
    KVConfig("f8E4M3FN", "hnd", 16, None, 8, 2, 64, "f16", "f32",
             Mask(causal=True, window=16, sinks=4), residual=20),
]
SPLIT_CFG = KVConfig("f16", "nhd", 16, None, 8, 1, 64, "f32", "f32", Mask(causal=True),
                     tag="split")
MERGES = [Kernel("merge", merge_hq=4, merge_d=64, merge_out="f32"),
          Kernel("merge", merge_hq=8, merge_d=80, merge_out="f16")]
ALL_KERNELS = ([Kernel(k, c) for c in CONFIGS + RESIDUAL
                for k in ("append", "decode", "prefill")]
               + [Kernel(k, c) for c in LLAMA for k in ("decode", "prefill")]
               + [Kernel("append", c) for c in LLAMA if c.storage in ("i8", "i4")]
               + [Kernel("decode", SPLIT_CFG)] + MERGES)


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kv_kernels(tools, tmp_path_factory):
    """Compiles every kernel once (one module per cache config) and opens the artifacts."""
    from attnrt_ctypes import Module
    cache = KernelCache(tools[0], tmp_path_factory.mktemp("kv_kernels"),
                        jobs=int(os.environ.get("ATTNC_TEST_JOBS", "2")))
    cache.register(ALL_KERNELS, group_of=lambda k: k.cfg.name if k.cfg else "merge")
    modules = {}

    def get(kernel: Kernel):
        d = cache.dir_for(kernel)
        if d not in modules:
            modules[d] = Module(d, num_threads=2)
        return modules[d]
    yield get
    for m in modules.values():
        m.close()


# -- helpers --------------------------------------------------------------------------------------

def bind(module, kernel: Kernel, by_role: dict) -> dict:
    """{argument name: array} from {role: array} (cache components by their role)."""
    args = {}
    for a in module.info(kernel.name)["args"]:
        if a["role"] not in by_role:
            raise AssertionError(f"{kernel.name}: no array for argument {a['name']} "
                                 f"(role {a['role']})")
        arr = by_role[a["role"]]
        if arr.dtype != NP_DTYPE.get(a["dtype"], arr.dtype) and a["dtype"] in NP_DTYPE:
            raise AssertionError(f"{kernel.name}: {a['name']} is {a['dtype']}, got {arr.dtype}")
        args[a["name"]] = arr
    return args


def garbage_pool(fmt: CacheFormat, num_pages: int, rng, k_scale=None, v_scale=None,
                 nan=False, num_rings=None) -> dict:
    """A pool full of garbage: random codes, random finite positive f16 scales, random rings (or
    NaN in the float pages and the rings with nan=True). fp8 per-head scales are the given
    ones."""
    pool = fmt.empty_pool(num_pages, k_scale=k_scale, v_scale=v_scale, num_rings=num_rings)
    for name, a in pool.items():
        if fmt.storage.startswith("f8") and name in ("k_scale", "v_scale"):
            continue
        if name.endswith("_recent"):
            a[...] = np.nan if nan else rng.uniform(-4, 4, a.shape).astype(a.dtype)
        elif name.endswith("_pages"):
            if nan and fmt.storage in ("f16", "bf16", "f8E4M3FN", "f8E5M2"):
                a[...] = np.nan
            elif fmt.storage in ("f16", "bf16", "f8E4M3FN", "f8E5M2"):
                a[...] = rng.uniform(-4, 4, a.shape).astype(a.dtype)
            else:
                a.view(np.uint8)[...] = rng.integers(0, 256, a.shape, dtype=np.uint8)
        else:
            a[...] = rng.uniform(0.01, 2.0, a.shape).astype(np.float16)
    return pool


def seq_lens_for(cfg: KVConfig):
    if cfg.tag == "llama":
        return [1000, 0, 1900, 1]
    b = max(cfg.page_size, 8)
    return [5 * b + 3, 0, 2 * b, 1, 3 * b + b // 2]


def prefill_lens_for(cfg: KVConfig, lens):
    want = [16, 0, 16, 1] if cfg.tag == "llama" else [7, 0, 1, 1, 40]
    return [min(n, x) for n, x in zip(lens, want)]


def make_cache(cfg: KVConfig, rng, lens, shared=1, nan_garbage=False):
    """Realistic data appended by the model into a garbage pool behind a shuffled table with a
    shared prefix page. Returns (pool, table, k_list, v_list, kv_rings) with k/v the unquantized
    f32; with a residual, the sequences' rings are a shuffled choice of B + EXTRA_RINGS rings
    (kv_rings; None without a residual) and every token is also written to its ring."""
    fmt = cfg.fmt
    table = build_page_table(rng, lens, cfg.page_size, shared_prefix_pages=shared,
                             extra_pages=3)
    dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))
    ks, vs = [], []
    for n in lens:
        k, v = dist.sample(rng, n)
        ks.append(k.astype(NP_DTYPE[cfg.kdtype]).astype(np.float32))
        vs.append(v.astype(NP_DTYPE[cfg.kdtype]).astype(np.float32))
    n_sh = shared * cfg.page_size
    for b in range(1, len(lens)):    # sequences sharing the prefix pages share its tokens
        if shared and lens[b] >= n_sh and lens[0] >= n_sh:
            ks[b][:n_sh], vs[b][:n_sh] = ks[0][:n_sh], vs[0][:n_sh]
    sid, pos, slots = sequence_slots(table)
    k = np.stack([ks[b][p] for b, p in zip(sid, pos)]) if sid.size else None
    v = np.stack([vs[b][p] for b, p in zip(sid, pos)]) if sid.size else None
    kw = {}
    if fmt.storage.startswith("f8"):
        kw = dict(k_scale=fp8_scales(np.concatenate(ks), fmt.storage),
                  v_scale=fp8_scales(np.concatenate(vs), fmt.storage))
    rings = rs = None
    if cfg.residual:
        kw["num_rings"] = len(lens) + EXTRA_RINGS
        rings = rng.permutation(kw["num_rings"])[:len(lens)].astype(np.int32)
        rs = ring_slots_for(rings, sid, pos, cfg.residual)
    pool = garbage_pool(fmt, table.num_pages, rng, nan=nan_garbage, **kw)
    if k is not None:
        append(pool, fmt, k, v, slots, rs)
    return pool, table, ks, vs, rings


def queries(cfg: KVConfig, rng, ks, qo_lens):
    qs = [realistic_queries(rng, k, cfg.hq, n) if n else np.zeros((0, cfg.hq, cfg.d), np.float32)
          for k, n in zip(ks, qo_lens)]
    return np.concatenate(qs).astype(NP_DTYPE[cfg.qdtype])


def run_paged(module, kernel: Kernel, q, pool, table: PageTable, qo_lens=None, rings=None):
    cfg = kernel.cfg
    o = np.full(q.shape, np.nan, dtype=NP_DTYPE[cfg.qdtype])
    lse = np.full((cfg.hq, q.shape[0]), np.nan, dtype=np.float32)
    roles = {"query": q, "output": o, "lse": lse, "kv_indptr": table.kv_indptr,
             "kv_indices": table.kv_indices, "kv_last_page_len": table.kv_last_page_len}
    if qo_lens is not None:
        roles["qo_indptr"] = np.concatenate([[0], np.cumsum(qo_lens)]).astype(np.int32)
    if rings is not None:
        roles["kv_rings"] = np.asarray(rings, np.int32)
    roles.update({r: pool[r] for r in COMPONENT_ROLES if r in pool})
    module.run(kernel.name, bind(module, kernel, roles))
    return o, lse


def check_paged(cfg, o, lse, q, pool, table, ks, vs, qo_lens, ctx, rings=None):
    """The comparisons of the module docstring (the one with the unquantized values only for
    the study's setting, cfg.tag == "llama"), plus exact zeros for rows with no key."""
    fmt = cfg.fmt
    gk, gv = gather(pool, fmt, *table.arrays(), kv_rings=rings)
    kw = dict(qo_lens=qo_lens, mask=cfg.mask, softcap=f32(cfg.softcap))
    o_deq, l_deq = paged_reference(q, gk, gv, **kw)
    bad = [f"vs dequantized cache: {p}" for p in compare(cfg.qdtype, o, o_deq, lse, l_deq)]
    if cfg.tag == "llama":
        bad += check_documented(cfg, o, lse, paged_reference(q, ks, vs, **kw))
    empty = np.isneginf(l_deq)                               # [Hq, T]
    if empty.any():
        nz = np.abs(o.astype(np.float64).transpose(1, 0, 2)[empty]).max()
        if nz != 0 or not np.isneginf(lse[empty]).all():
            bad.append(f"rows with no visible key: max |o| = {nz}, lse not all -inf")
    assert not bad, f"{cfg.name}: " + "; ".join(bad) + f"\n{ctx}"


def check_documented(cfg, o, lse, ref):
    """Kernel vs float64 on the unquantized values: the documented bound of the format plus
    the kernel-arithmetic tolerance of the query dtype."""
    o_raw, l_raw = ref
    bad = []
    kv_o, kv_l = kv_tolerance(cfg.fmt)
    o_tol, l_tol = kv_o + O_TOL[cfg.qdtype], kv_l + LSE_TOL[cfg.qdtype]
    o64 = o.astype(np.float64)
    rel = float(np.abs(o64 - o_raw).max() / max(np.abs(o_raw).max(), 1e-30))
    if not rel <= o_tol:
        bad.append(f"vs unquantized: O error {rel:.3g} > {o_tol:.3g} (documented bound "
                   f"{kv_o:g} + {O_TOL[cfg.qdtype]:g})")
    fin = np.isfinite(l_raw) & np.isfinite(lse)
    if fin.any():
        lerr = float(np.abs(lse[fin] - l_raw[fin]).max())
        if not lerr <= l_tol:
            bad.append(f"vs unquantized: LSE error {lerr:.3g} > {l_tol:.3g}")
    return bad


def seed_ctx(seed):
    return f"seed={seed} (ATTNC_TEST_SEED={seed} to reproduce)"


# -- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS + RESIDUAL] + [
    pytest.param(c, id=c.name) for c in LLAMA if c.storage in ("i8", "i4")])
def test_append_matches_model(cfg, kv_kernels, rng_seed):
    """Three kv_append calls (interleaved sequences, -1 padding, a shared prefix page written
    once) into a garbage pool: the kernel's pool equals the model's. With a residual also the
    rings: shuffled rings, a ring slot written several times in one call (the last write wins),
    shared-prefix tokens that skip their page (-1) but not their ring, and ring slots of -1 for
    some tokens that still write their page."""
    kern = Kernel("append", cfg)
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    fmt = cfg.fmt
    lens = seq_lens_for(cfg)
    table = build_page_table(rng, lens, cfg.page_size, shared_prefix_pages=1, extra_pages=2)
    dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))
    sid, pos, slots = sequence_slots(table)
    k, v = dist.sample(rng, sid.size)
    kw = {}
    if fmt.storage.startswith("f8"):
        kw = dict(k_scale=fp8_scales(k, fmt.storage), v_scale=fp8_scales(v, fmt.storage))
    k, v = k.astype(NP_DTYPE[cfg.kdtype]), v.astype(NP_DTYPE[cfg.kdtype])
    rslots = None
    if cfg.residual:
        kw["num_rings"] = len(lens) + EXTRA_RINGS
        rings = rng.permutation(kw["num_rings"])[:len(lens)]
        rslots = ring_slots_for(rings, sid, pos, cfg.residual)
        rslots[(rng.random(rslots.size) < 0.1) & (slots >= 0)] = -1
        assert ((slots == -1) & (rslots >= 0)).any()       # the shared prefix: ring only
    pool_k = garbage_pool(fmt, table.num_pages, rng, **kw)
    pool_m = {n: a.copy() for n, a in pool_k.items()}
    # three calls: the first third of every sequence, the rest, then padding only; within a
    # call the sequences interleave randomly (each one's tokens in order), -1 slots anywhere
    first = pos < np.take(np.array(lens) // 3, sid)
    for sel in (np.flatnonzero(first), np.flatnonzero(~first), np.zeros(0, int)):
        idx = interleave(rng, sid, sel)
        pad = int(rng.integers(0, 3)) + (sel.size == 0)
        at = np.sort(rng.integers(0, idx.size + 1, pad))
        src = np.insert(idx, at, -1)
        ss = np.where(src >= 0, slots[np.maximum(src, 0)], -1).astype(np.int32)
        kk = np.ascontiguousarray(k[np.maximum(src, 0)])
        vv = np.ascontiguousarray(v[np.maximum(src, 0)])
        roles = {"k_new": kk, "v_new": vv, "slot_mapping": ss}
        rs = None
        if cfg.residual:
            rs = np.where(src >= 0, rslots[np.maximum(src, 0)], -1).astype(np.int32)
            roles["ring_slots"] = rs
        roles.update({r: pool_k[r] for r in COMPONENT_ROLES if r in pool_k})
        m.run(kern.name, bind(m, kern, roles))
        append(pool_m, fmt, kk, vv, ss, rs)
    problems = compare_pools(fmt, pool_k, pool_m)
    assert not problems, f"{cfg.name}: " + "; ".join(problems) + "\n" + seed_ctx(rng_seed)


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in RESIDUAL])
@pytest.mark.parametrize("kind", ["decode", "prefill"])
def test_residual_reads_ring_not_pages(cfg, kind, kv_kernels, rng_seed):
    """With a residual, the page entries of a sequence's last R tokens are poisoned (random
    codes, NaN per-token V scales and minima, NaN fp8 codes) and the ring slots outside every
    window are NaN: the kernel must read the window from the rings and nothing else from them
    (the model's gather reads the same values it did before the poisoning)."""
    kern = Kernel(kind, cfg)
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    fmt = cfg.fmt
    lens = seq_lens_for(cfg)
    pool, table, ks, vs, rings = make_cache(cfg, rng, lens, shared=0)
    before = gather(pool, fmt, *table.arrays(), kv_rings=rings)
    R = cfg.residual
    live = np.zeros(pool["k_recent"].shape[:2], bool)            # [num_rings, R]
    sid = np.concatenate([np.full(min(n, R), b) for b, n in enumerate(lens)]).astype(int)
    pos = np.concatenate([np.arange(max(0, n - R), n) for n in lens]).astype(int)
    live[rings[sid], pos % R] = True
    pool["k_recent"][~live] = np.nan
    pool["v_recent"][~live] = np.nan
    win = slots_for(table, sid, pos).astype(np.int64)
    pg, off = np.divmod(win, cfg.page_size)
    for name in ("k_pages", "v_pages"):
        a = pool[name] if fmt.layout == "nhd" else pool[name].transpose(0, 2, 1, 3)
        if fmt.storage.startswith("f8"):
            a[pg, off] = np.nan
        else:
            a.view(np.uint8)[pg, off] = rng.integers(0, 256, a[pg, off].shape, dtype=np.uint8)
    for name in ("v_scale", "v_min"):
        if name in pool and pool[name].ndim == 3:
            pool[name][pg, off] = np.nan
    after = gather(pool, fmt, *table.arrays(), kv_rings=rings)
    for x, y in zip(before[0] + before[1], after[0] + after[1]):
        np.testing.assert_array_equal(x, y)
    qo_lens = [1] * len(lens) if kind == "decode" else prefill_lens_for(cfg, lens)
    q = queries(cfg, rng, ks, qo_lens)
    o, lse = run_paged(m, kern, q, pool, table, None if kind == "decode" else qo_lens, rings)
    assert np.isfinite(o.astype(np.float32)).all(), f"{cfg.name}: NaN in the output"
    check_paged(cfg, o, lse, q, pool, table, ks, vs, None if kind == "decode" else qo_lens,
                seed_ctx(rng_seed), rings)


def interleave(rng, sid, sel):
    """The tokens sel (indices) in a random interleaving of their sequences that keeps every
    sequence's tokens in their given order."""
    r = rng.random(sel.size)
    for b in np.unique(sid[sel]):
        mine = sid[sel] == b
        r[mine] = np.sort(r[mine])
    return sel[np.argsort(r, kind="stable")]


def compare_pools(fmt: CacheFormat, got: dict, want: dict) -> list[str]:
    bad = []
    for name in want:
        g, w = got[name], want[name]
        if g.shape != w.shape or g.dtype != w.dtype:
            bad.append(f"{name}: {g.dtype}{g.shape} != {w.dtype}{w.shape}")
            continue
        gb, wb = g.view(np.uint8), w.view(np.uint8)
        if np.array_equal(gb, wb):
            continue
        if name in ("k_pages", "v_pages") and fmt.storage in ("i8", "i4"):
            gq = unpack_i4(g).astype(int) if fmt.storage == "i4" else g.astype(int)
            wq = unpack_i4(w).astype(int) if fmt.storage == "i4" else w.astype(int)
            diff = np.abs(gq - wq)
            idx = tuple(int(i) for i in np.argwhere(diff > 0)[0])
            bad.append(f"{name}: {int((diff > 0).sum())} codes differ (max "
                       f"{int(diff.max())} steps; first at {idx}: kernel {gq[idx]}, model "
                       f"{wq[idx]})")
        else:
            ne = np.argwhere(gb != wb)
            first = tuple(int(i) for i in ne[0])
            bad.append(f"{name}: {len(ne)} bytes differ (first byte at {first}: kernel "
                       f"{g.reshape(g.shape)[first[:g.ndim]]!r}, model "
                       f"{w[first[:w.ndim]]!r})")
    return bad


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name)
                                 for c in CONFIGS + RESIDUAL + LLAMA])
def test_decode(cfg, kv_kernels, rng_seed):
    kern = Kernel("decode", cfg)
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    lens = seq_lens_for(cfg)
    pool, table, ks, vs, rings = make_cache(cfg, rng, lens)
    q = queries(cfg, rng, ks, [1] * len(lens))
    o, lse = run_paged(m, kern, q, pool, table, rings=rings)
    check_paged(cfg, o, lse, q, pool, table, ks, vs, None, seed_ctx(rng_seed), rings)


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name)
                                 for c in CONFIGS + RESIDUAL + LLAMA])
def test_prefill(cfg, kv_kernels, rng_seed):
    """Append/prefill: several queries per sequence (the last tokens), ragged."""
    kern = Kernel("prefill", cfg)
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    lens = seq_lens_for(cfg)
    pool, table, ks, vs, rings = make_cache(cfg, rng, lens)
    qo_lens = prefill_lens_for(cfg, lens)
    q = queries(cfg, rng, ks, qo_lens)
    o, lse = run_paged(m, kern, q, pool, table, qo_lens, rings)
    check_paged(cfg, o, lse, q, pool, table, ks, vs, qo_lens, seed_ctx(rng_seed), rings)


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS
                                 if c.storage in ("f16", "f8E4M3FN")])
def test_nan_outside_sequences_is_never_read(cfg, kv_kernels, rng_seed):
    """Pages hold NaN wherever no token was written (partial last pages, unused pages)."""
    kern = Kernel("decode", cfg)
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    lens = seq_lens_for(cfg)
    pool, table, ks, vs, _ = make_cache(cfg, rng, lens, nan_garbage=True)
    q = queries(cfg, rng, ks, [1] * len(lens))
    o, lse = run_paged(m, kern, q, pool, table)
    check_paged(cfg, o, lse, q, pool, table, ks, vs, None, seed_ctx(rng_seed))


def test_split_kv_does_not_change_decode(kv_kernels, rng_seed):
    """One long sequence decoded alone, in a batch of 2 and in a batch of 16: the auto policy
    (docs/kv-cache.md, Split-KV) gives it different split counts (on 2 cores: 4, 2, 1), the
    results agree within f32 rounding and match the reference."""
    cfg = SPLIT_CFG
    kern = Kernel("decode", cfg)
    m = kv_kernels(kern)
    assert m.info(kern.name)["phases"] == 2
    rng = np.random.default_rng(rng_seed)
    lens = [1500] + [40] * 15
    pool, table, ks, vs, _ = make_cache(cfg, rng, lens, shared=0)
    q = queries(cfg, rng, ks, [1] * len(lens))
    o_all, l_all = run_paged(m, kern, q, pool, table)
    ctx = seed_ctx(rng_seed)
    check_paged(cfg, o_all, l_all, q, pool, table, ks, vs, None, ctx)
    for b in (1, 2):
        sub = PageTable(table.kv_indptr[:b + 1], table.kv_indices[:table.kv_indptr[b]],
                        table.kv_last_page_len[:b], cfg.page_size)
        o, lse = run_paged(m, kern, np.ascontiguousarray(q[:b]), pool, sub)
        rel = np.abs(o[0] - o_all[0]).max() / np.abs(o_all[0]).max()
        assert rel <= O_TOL["f32"], f"batch {b} vs 16: O differs by {rel:.3g}\n{ctx}"
        lerr = np.abs(lse[:, 0] - l_all[:, 0]).max()
        assert lerr <= LSE_TOL["f32"], f"batch {b} vs 16: LSE differs by {lerr:.3g}\n{ctx}"
        check_paged(cfg, o, lse, q[:b], pool, sub, ks[:b], vs[:b], None, ctx)


@pytest.mark.parametrize("kern", [pytest.param(k, id=k.name) for k in MERGES])
@pytest.mark.parametrize("n_p,t", [(1, 1), (2, 5), (5, 33), (3, 0)])
def test_merge(kern, n_p, t, kv_kernels, rng_seed):
    m = kv_kernels(kern)
    rng = np.random.default_rng(rng_seed)
    h, d = kern.merge_hq, kern.merge_d
    po = rng.standard_normal((n_p, t, h, d)).astype(np.float32)
    pl = (rng.standard_normal((n_p, h, t)) * 5).astype(np.float32)
    if t:
        pl[rng.random((n_p, h, t)) < 0.3] = -np.inf            # empty partials
        pl[:, 0, 0] = -np.inf                                   # a row with no key at all
        po[np.broadcast_to(np.isneginf(pl).transpose(0, 2, 1)[..., None], po.shape)] = 0
    o = np.full((t, h, d), np.nan, dtype=NP_DTYPE[kern.merge_out])
    lse = np.full((h, t), np.nan, dtype=np.float32)
    roles = {"partial_o": po, "partial_lse": pl, "output": o, "lse": lse}
    m.run(kern.name, bind(m, kern, roles))
    o_ref, l_ref = merge_reference(po, pl)
    bad = compare(kern.merge_out, o, o_ref, lse, l_ref)
    if t:
        if np.abs(o[0, 0].astype(np.float64)).max() != 0:
            bad.append("row with all partials -inf is not zero")
    assert not bad, f"{kern.name} n_p={n_p} t={t}: " + "; ".join(bad) + "\n" + seed_ctx(rng_seed)


def test_slots_and_tables_used_by_these_tests():
    """The page tables the tests build really are shuffled and share pages."""
    rng = np.random.default_rng(0)
    cfg = CONFIGS[0]
    t = build_page_table(rng, seq_lens_for(cfg), cfg.page_size, shared_prefix_pages=1)
    assert t.pages(0)[0] == t.pages(2)[0]
    assert slots_for(t, [0], [0])[0] == t.pages(0)[0] * cfg.page_size
    assert len({c.name for c in CONFIGS}) == len(CONFIGS)
    assert {c.storage for c in CONFIGS} == set(STORAGES)
    assert {(c.storage, c.layout) for c in CONFIGS} >= {(s, lay) for s in STORAGES
                                                         for lay in ("nhd", "hnd")}
    # the residual configs: i4, i8 and fp8 in both layouts, windows smaller and larger than a
    # page, sequences shorter than the window
    assert {(c.storage, c.layout) for c in RESIDUAL} >= {(s, lay) for s in ("i4", "i8")
                                                         for lay in ("nhd", "hnd")}
    assert any(c.storage.startswith("f8") for c in RESIDUAL)
    assert any(c.residual < c.page_size for c in RESIDUAL)
    assert any(c.residual > 2 * c.page_size for c in RESIDUAL)
    assert all(min(n for n in seq_lens_for(c) if n) < c.residual for c in RESIDUAL)
    assert any(c.residual for c in LLAMA)
    assert len({c.name for c in CONFIGS + RESIDUAL + LLAMA}) == len(CONFIGS + RESIDUAL + LLAMA)
