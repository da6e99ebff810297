"""End-to-end tests of query-aware page selection (docs/sparsity.md section 3): the page summaries
`kv_append` keeps for a `summary = minmax` cache, `attn.select_pages`, and paged decode over the
selected pages (`attn.paged_attention` with `block_sparse`), compiled by attnc and run through
attnrt (attnrt_ctypes) against the NumPy model (kv_reference.py, sparse_reference.py).

- append: the pool the kernel writes equals the model's bit for bit, the summaries
  `k_page_max` / `k_page_min` included, for every storage format (the summaries come from the
  input K, never from the stored codes): interleaved sequences, -1 padding, a page restarted from
  offset 0 (its stale summary replaced), a fork's copy-on-write page (attnrt's pool copies the
  summaries with the page).
- select_pages: the kernel's block lists equal the model's selection. The kernel sums the scores
  in f32 in its own order, the model in float64, so two pages whose scores differ by less than
  the f32 rounding may come out in either order: where the lists differ, the test checks that
  the difference is such a near-tie (the rule holds within SCORE_RTOL of the scores' scale) and
  counts it; with random data it is rare. Exact ties (pages with equal summaries) must go to the
  lower page. Odd sizes: batch 3, page sizes 1, 7 and 16, head_dim 64 and 80, G = 1 and 4,
  sequences shorter than top_k and empty ones, sinks and recent pages alone, together, and
  filling top_k (no page scored).
- decode over the selection: with top_k at least every sequence's page count, the sparse decode
  equals the dense one bit for bit (both compiled with block_kv = page_size and no split-KV, so
  they run the same tiles in the same order); with a smaller top_k it equals the float64
  reference on the selected pages (sparse_reference, the kernel tolerance of the query dtype);
  and on data whose attention is concentrated in three pages per (sequence, KV head) its error
  against full attention is within the bound that the softmax mass outside the selected pages
  gives (see test_sparse_decode_concentrated_close_to_full).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import LSE_TOL, NP_DTYPE, O_TOL, compare  # noqa: E402
from kv_reference import (CacheFormat, KVDistribution, PageTable, append,  # noqa: E402
                          build_page_table, fp8_scales, gather, paged_reference, page_scores,
                          ring_slots_for, select_pages, sequence_slots)
from sparse_reference import BSR, sparse_paged_reference  # noqa: E402
from test_kv_cache import bind, compare_pools, garbage_pool, interleave  # noqa: E402

COMPONENT_ROLES = ("k_pages", "v_pages", "k_scale", "v_scale", "k_min", "v_min", "k_recent",
                   "v_recent", "k_page_max", "k_page_min")
# Scores within this fraction of sum_d |q_d| max(|kmax_d|, |kmin_d|) (the scale of a score's f32
# rounding error, ~D * 2^-24 of it) count as tied.
SCORE_RTOL = 1e-5


@dataclass(frozen=True)
class SPConfig:
    """One summary cache and its select / append / decode kernels."""
    storage: str
    layout: str
    page_size: int
    k_group: int | None
    hq: int
    hkv: int
    d: int
    qdtype: str
    kdtype: str
    top_k: int
    sinks: int
    recent: int
    residual: int | None = None
    tag: str = ""

    @property
    def fmt(self) -> CacheFormat:
        return CacheFormat(self.page_size, self.hkv, self.d, self.layout, self.storage,
                           self.k_group, self.residual, summary="minmax")

    @property
    def name(self) -> str:
        n = [self.storage.lower(), self.layout, f"p{self.page_size}"]
        n += [f"g{self.k_group}"] if self.k_group else []
        n += [f"d{self.d}", f"h{self.hq}x{self.hkv}", f"q{self.qdtype}", f"k{self.kdtype}",
              f"top{self.top_k}", f"s{self.sinks}", f"r{self.recent}"]
        n += [f"res{self.residual}"] if self.residual else []
        n += [self.tag] if self.tag else []
        return "_".join(n)

    def lens(self, kind: str = "long") -> list[int]:
        """Three sequences: "long" (more pages than top_k, fewer than top_k, exactly top_k + 1
        pages with a partial last one); "short" (at most top_k pages each, one empty)."""
        s, k = self.page_size, self.top_k
        if kind == "long":
            return [3 * k * s + s // 2 + 1, max(1, (k // 2) * s - 1), k * s + 1]
        return [k * s, 0, max(1, (k - 1) * s + 1)]

    # -- MLIR ------------------------------------------------------------------------------------
    def module_mlir(self) -> str:
        ct = self.fmt.mlir_type()
        h, d, k = self.hkv, self.d, self.top_k
        qt = f"tensor<?x{self.hq}x{d}x{self.qdtype}>"
        lt = f"tensor<{self.hq}x?xf32>"
        kt = f"tensor<?x{h}x{d}x{self.kdtype}>"
        i32 = "tensor<?xi32>"
        ot, it = f"tensor<?x{h}x2xi32>", f"tensor<?x{h}x{k}xi32>"
        res = bool(self.residual)
        rs_arg = ", %ring_slots: tensor<?xi32>" if res else ""
        rs_op = " ring_slots(%ring_slots : tensor<?xi32>)" if res else ""
        rings_arg = f", %rings: {i32}" if res else ""
        rings_op = " kv_rings(%rings)" if res else ""
        rings_ty = f", {i32}" if res else ""
        table = f"%q: {qt}, %cache: {ct}, %indptr: {i32}, %indices: {i32}, %last: {i32}"
        table_ty = f"{qt}, {ct}, {i32}, {i32}, {i32}"
        n = self.name
        return (
            f"func.func @append_{n}(%k: {kt}, %v: {kt}, %slots: {i32}{rs_arg}, %cache: {ct}) {{\n"
            f"  attn.kv_append %k, %v, %slots{rs_op} into %cache : {kt}, {kt}, {i32}, {ct}\n"
            f"  return\n}}\n"
            f"func.func @select_{n}({table}) -> ({ot}, {it}) {{\n"
            f"  %o, %i = attn.select_pages %q, %cache, %indptr, %indices, %last "
            f"{{top_k = {k}, sink_pages = {self.sinks}, recent_pages = {self.recent}}} : "
            f"({table_ty}) -> ({ot}, {it})\n"
            f"  return %o, %i : {ot}, {it}\n}}\n"
            f"func.func @decode_{n}({table}{rings_arg}) -> ({qt}, {lt}) {{\n"
            f"  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last{rings_op} : "
            f"({table_ty}{rings_ty}) -> ({qt}, {lt})\n"
            f"  return %o, %lse : {qt}, {lt}\n}}\n"
            f"func.func @sparse_{n}({table}{rings_arg}, %offsets: {ot}, %sel: {it}) "
            f"-> ({qt}, {lt}) {{\n"
            f"  %o, %lse = attn.paged_attention %q, %cache, %indptr, %indices, %last{rings_op} "
            f"block_sparse(%offsets, %sel) {{block_size = array<i64: 1, {self.page_size}>}} : "
            f"({table_ty}{rings_ty}, {ot}, {it}) -> ({qt}, {lt})\n"
            f"  return %o, %lse : {qt}, {lt}\n}}\n")


CONFIGS = [
    # G = 4, sinks and recent pages, q f16
    SPConfig("f16", "nhd", 16, None, 8, 2, 64, "f16", "f32", 4, 1, 1),
    # G = 1, page 7, head_dim 80, recent only
    SPConfig("i8", "hnd", 7, 7, 2, 2, 80, "f32", "f16", 6, 0, 2),
    # MQA-like G = 4 with one KV head, i4, sinks only
    SPConfig("i4", "nhd", 16, 4, 4, 1, 64, "bf16", "bf16", 8, 2, 0),
    # page 1: every token is a page
    SPConfig("f8E4M3FN", "hnd", 1, None, 2, 2, 64, "f16", "f32", 16, 4, 4),
    # pure top-k, no forced pages
    SPConfig("bf16", "hnd", 7, None, 8, 2, 80, "f32", "f32", 3, 0, 0),
    # top_k = sink_pages + recent_pages: nothing is scored
    SPConfig("f8E5M2", "nhd", 16, None, 2, 2, 80, "f16", "bf16", 5, 3, 2),
    # a residual window next to the summaries (rings and summaries are both components)
    SPConfig("i8", "nhd", 16, 8, 8, 2, 64, "f16", "f32", 4, 1, 1, residual=24),
]
TIES = CONFIGS[4]


# -- compilation ----------------------------------------------------------------------------------

def _compile(attnc: Path, cfg: SPConfig, out: Path) -> Path:
    """All kernels of cfg in one module. block_kv = page_size and no split-KV, so the dense and
    the block-sparse decode run the same tiles in the same order."""
    out.mkdir(parents=True, exist_ok=True)
    src = out / f"{cfg.name}.mlir"
    src.write_text(cfg.module_mlir())
    cmd = [str(attnc), str(src), "--target=host", "-o", str(out),
           f"--block-kv={cfg.page_size}", "--max-kv-splits=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"attnc failed (rc={r.returncode}): {' '.join(cmd)}\n"
                           f"{r.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def sp_modules(tools, tmp_path_factory):
    """Compiles every config's module on first use (two at a time) and opens it."""
    from attnrt_ctypes import Module
    root = tmp_path_factory.mktemp("select_pages")
    jobs = int(os.environ.get("ATTNC_TEST_JOBS", "2"))
    lock = threading.Lock()
    dirs, modules = {}, {}

    def get(cfg: SPConfig):
        with lock:
            if cfg.name not in dirs:
                todo = [c for c in CONFIGS + [cfg] if c.name not in dirs]
                todo = list({c.name: c for c in todo}.values())

                def build(c):
                    try:
                        return c.name, _compile(tools[0], c, root / c.name)
                    except Exception as e:  # noqa: BLE001 - reported by the test using it
                        return c.name, e
                with ThreadPoolExecutor(jobs) as ex:
                    dirs.update(ex.map(build, todo))
            d = dirs[cfg.name]
            if isinstance(d, Exception):
                raise d
            if cfg.name not in modules:
                modules[cfg.name] = Module(d, num_threads=2)
            return modules[cfg.name]
    yield get
    for m in modules.values():
        m.close()


class Names:
    """Kernel names of a config."""

    def __init__(self, cfg: SPConfig):
        self.append = f"append_{cfg.name}"
        self.select = f"select_{cfg.name}"
        self.decode = f"decode_{cfg.name}"
        self.sparse = f"sparse_{cfg.name}"


class _K:
    """bind() wants an object with .name."""

    def __init__(self, name):
        self.name = name


def run(module, kernel: str, by_role: dict):
    module.run(kernel, bind(module, _K(kernel), by_role))


def seed_ctx(seed):
    return f"seed={seed} (ATTNC_TEST_SEED={seed} to reproduce)"


# -- data -----------------------------------------------------------------------------------------

@dataclass
class Cache:
    pool: dict          # the kernel's pool
    model: dict         # the model's pool
    table: PageTable
    ks: list            # per sequence K [L, H, D] f32 (the appended values)
    vs: list
    rings: np.ndarray | None


def fill_cache(m, cfg: SPConfig, rng, lens, *, ks=None, vs=None, nan_garbage=False) -> Cache:
    """Appends every sequence through the compiled kv_append (two calls, the sequences
    interleaved, -1 padding) into a garbage pool, and through the model into a copy."""
    fmt = cfg.fmt
    table = build_page_table(rng, lens, cfg.page_size, extra_pages=3)
    if ks is None:
        dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))
        ks, vs = zip(*[dist.sample(rng, n) for n in lens])
    ks = [np.asarray(k).astype(NP_DTYPE[cfg.kdtype]).astype(np.float32) for k in ks]
    vs = [np.asarray(v).astype(NP_DTYPE[cfg.kdtype]).astype(np.float32) for v in vs]
    sid, pos, slots = sequence_slots(table)
    kw, rings, rslots = {}, None, None
    if fmt.storage.startswith("f8"):
        kw = dict(k_scale=fp8_scales(np.concatenate(ks), fmt.storage),
                  v_scale=fp8_scales(np.concatenate(vs), fmt.storage))
    if cfg.residual:
        kw["num_rings"] = len(lens) + 1
        rings = rng.permutation(kw["num_rings"])[:len(lens)].astype(np.int32)
        rslots = ring_slots_for(rings, sid, pos, cfg.residual)
    pool = garbage_pool(fmt, table.num_pages, rng, nan=nan_garbage, **kw)
    model = {n: a.copy() for n, a in pool.items()}
    k = np.concatenate([ks[b][p][None] for b, p in zip(sid, pos)] + [np.zeros((0, cfg.hkv, cfg.d),
                                                                              np.float32)])
    v = np.concatenate([vs[b][p][None] for b, p in zip(sid, pos)] + [np.zeros((0, cfg.hkv, cfg.d),
                                                                              np.float32)])
    half = pos < np.take(np.array(lens) // 2, sid)
    names = Names(cfg)
    for sel in (np.flatnonzero(half), np.flatnonzero(~half)):
        idx = interleave(rng, sid, sel)
        src = np.insert(idx, np.sort(rng.integers(0, idx.size + 1, 2)), -1)
        ss = np.where(src >= 0, slots[np.maximum(src, 0)], -1).astype(np.int32)
        kk = np.ascontiguousarray(k[np.maximum(src, 0)].astype(NP_DTYPE[cfg.kdtype]))
        vv = np.ascontiguousarray(v[np.maximum(src, 0)].astype(NP_DTYPE[cfg.kdtype]))
        roles = {"k_new": kk, "v_new": vv, "slot_mapping": ss}
        rs = None
        if cfg.residual:
            rs = np.where(src >= 0, rslots[np.maximum(src, 0)], -1).astype(np.int32)
            roles["ring_slots"] = rs
        roles.update({r: pool[r] for r in COMPONENT_ROLES if r in pool})
        run(m, names.append, roles)
        append(model, fmt, kk, vv, ss, rs)
    return Cache(pool, model, table, ks, vs, rings)


def table_roles(c: Cache, q) -> dict:
    roles = {"query": q, "kv_indptr": c.table.kv_indptr, "kv_indices": c.table.kv_indices,
             "kv_last_page_len": c.table.kv_last_page_len}
    if c.rings is not None:
        roles["kv_rings"] = c.rings
    roles.update({r: c.pool[r] for r in COMPONENT_ROLES if r in c.pool})
    return roles


def run_select(m, cfg: SPConfig, c: Cache, q):
    b = c.table.batch
    offsets = np.full((b, cfg.hkv, 2), -7, np.int32)
    indices = np.full((b, cfg.hkv, cfg.top_k), -7, np.int32)
    roles = table_roles(c, q)
    roles.update(block_offsets=offsets, block_indices=indices)
    run(m, Names(cfg).select, roles)
    return offsets, indices


def run_decode(m, cfg: SPConfig, c: Cache, q, selection=None):
    o = np.full(q.shape, np.nan, dtype=q.dtype)
    lse = np.full((cfg.hq, q.shape[0]), np.nan, dtype=np.float32)
    roles = table_roles(c, q)
    roles.update(output=o, lse=lse)
    name = Names(cfg).decode
    if selection is not None:
        roles.update(block_offsets=selection[0], block_indices=selection[1])
        name = Names(cfg).sparse
    run(m, name, roles)
    return o, lse


def random_queries(cfg: SPConfig, rng, batch):
    return (rng.standard_normal((batch, cfg.hq, cfg.d)) * 0.5).astype(NP_DTYPE[cfg.qdtype])


# -- checks ---------------------------------------------------------------------------------------

def score_scale(q, pool, table, cfg) -> list:
    """Per sequence [Hkv, n]: the magnitude of a score's terms (for the near-tie tolerance)."""
    qa = np.abs(np.asarray(q).astype(np.float64))
    big = np.maximum(np.abs(pool["k_page_max"].astype(np.float64)),
                     np.abs(pool["k_page_min"].astype(np.float64)))
    G = cfg.hq // cfg.hkv
    out = []
    for b in range(table.batch):
        pages = table.pages(b)
        qb = qa[b].reshape(cfg.hkv, G, 1, -1)
        out.append((qb * big[pages].transpose(1, 0, 2)[:, None]).sum(-1).max(1))
    return out


def check_selection(cfg, q, pool, table, offsets, indices, ctx) -> int:
    """The kernel's selection against the model's; returns the number of (sequence, head) items
    that differ only by a near-tie, fails on any other difference."""
    want_o, want_i, scores = select_pages(q, pool, cfg.fmt, table.kv_indptr, table.kv_indices,
                                          cfg.top_k, cfg.sinks, cfg.recent)
    assert offsets.tolist() == want_o.tolist(), f"{cfg.name}: offsets differ\n{ctx}"
    scales = score_scale(q, pool, table, cfg)
    near = 0
    for b in range(table.batch):
        for h in range(cfg.hkv):
            got, want = indices[b, h], want_i[b, h]
            if np.array_equal(got, want):
                continue
            n = int(want_o[b, h, 1])
            npg = table.pages(b).size
            where = f"{cfg.name} sequence {b} head {h} ({npg} pages)"
            assert (got[n:] == -1).all(), f"{where}: entries past {n} are {got[n:]}\n{ctx}"
            sel = got[:n]
            assert (np.diff(sel) > 0).all() and sel.min() >= 0 and sel.max() < npg, \
                f"{where}: {sel} is not an ascending list of pages\n{ctx}"
            forced = set(range(cfg.sinks)) | set(range(npg - cfg.recent, npg))
            assert forced <= set(sel.tolist()), f"{where}: {sel} misses forced {forced}\n{ctx}"
            sc, tol = scores[b][h], SCORE_RTOL * scales[b][h].max()
            free = np.array(sorted(set(range(npg)) - forced))
            chosen = np.isin(free, sel)
            gap = sc[free[~chosen]].max() - sc[free[chosen]].min()
            assert gap <= tol, (f"{where}: kernel {sel.tolist()} vs model {want[:n].tolist()}; "
                                f"an unselected page outscores a selected one by {gap:.3g} "
                                f"(near-tie tolerance {tol:.3g})\n{ctx}")
            near += 1
    return near


# -- tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS])
def test_append_summaries_match_model(cfg, sp_modules, rng_seed):
    """Two appends into a garbage pool, then a third that restarts a page at offset 0 (a page
    freed and handed to another sequence; its stale summary must go) and widens another: the
    kernel's pool equals the model's, summaries included."""
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    c = fill_cache(m, cfg, rng, cfg.lens())
    ctx = seed_ctx(rng_seed)
    problems = compare_pools(cfg.fmt, c.pool, c.model)
    assert not problems, f"{cfg.name}: " + "; ".join(problems) + "\n" + ctx
    # the first page of sequence 0 restarted by 2 tokens, its second page widened by 1
    S = cfg.page_size
    p0, p1 = (int(x) for x in c.table.pages(0)[:2])
    slots = np.array([p0 * S, p1 * S + min(1, S - 1), p0 * S + min(1, S - 1)], np.int32)
    if S == 1:
        slots = np.array([p0, p1, -1], np.int32)
    dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))
    k, v = dist.sample(rng, 3)
    k, v = k.astype(NP_DTYPE[cfg.kdtype]), v.astype(NP_DTYPE[cfg.kdtype])
    roles = {"k_new": k, "v_new": v, "slot_mapping": slots}
    rs = None
    if cfg.residual:
        rs = np.array([0, -1, 1], np.int32)
        roles["ring_slots"] = rs
    roles.update({r: c.pool[r] for r in COMPONENT_ROLES if r in c.pool})
    before = c.pool["k_page_max"][p0].copy()
    run(m, Names(cfg).append, roles)
    append(c.model, cfg.fmt, k, v, slots, rs)
    problems = compare_pools(cfg.fmt, c.pool, c.model)
    assert not problems, f"{cfg.name} (page restart): " + "; ".join(problems) + "\n" + ctx
    assert not np.array_equal(before, c.pool["k_page_max"][p0]), "the restart changed nothing"


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS])
def test_select_matches_model(cfg, sp_modules, rng_seed):
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    ctx = seed_ctx(rng_seed)
    near = 0
    for kind in ("long", "short"):
        c = fill_cache(m, cfg, rng, cfg.lens(kind))
        problems = compare_pools(cfg.fmt, c.pool, c.model)
        assert not problems, f"{cfg.name}: " + "; ".join(problems) + "\n" + ctx
        for _ in range(3):
            q = random_queries(cfg, rng, c.table.batch)
            offsets, indices = run_select(m, cfg, c, q)
            near += check_selection(cfg, q, c.pool, c.table, offsets, indices, ctx)
    # near-ties are possible, not common: most items must match exactly
    assert near <= 2, f"{cfg.name}: {near} selections differ by near-ties\n{ctx}"


def test_select_exact_ties_take_the_lower_page(sp_modules, rng_seed):
    """Four pages of the long sequence hold the same keys, scaled up so that they beat every
    other page: their scores are equal to the bit, and top_k = 3 (no forced pages) must keep
    the three lowest of them."""
    cfg = TIES
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    S = cfg.page_size
    lens = cfg.lens()
    dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))
    ks, vs = (list(x) for x in zip(*[dist.sample(rng, n) for n in lens]))
    n0 = lens[0] // S
    twins = sorted(rng.choice(np.arange(n0 - 1), 4, replace=False).tolist())
    hot = ks[0][twins[0] * S:(twins[0] + 1) * S] * 4
    for p in twins:
        ks[0][p * S:(p + 1) * S] = hot
    c = fill_cache(m, cfg, rng, lens, ks=ks, vs=vs)
    # queries along the hot keys' mean direction, so that the twins win
    G = cfg.hq // cfg.hkv
    q = random_queries(cfg, rng, c.table.batch).astype(np.float32)
    for h in range(cfg.hkv):
        q[0, h * G:(h + 1) * G] = hot[:, h].mean(0) + 0.01 * q[0, h * G:(h + 1) * G]
    q = q.astype(NP_DTYPE[cfg.qdtype])
    offsets, indices = run_select(m, cfg, c, q)
    scores = page_scores(q, c.pool, cfg.fmt, c.table.kv_indptr, c.table.kv_indices)[0]
    for h in range(cfg.hkv):
        assert len(set(scores[h, twins].tolist())) == 1
        assert indices[0, h].tolist() == twins[:3], (
            f"head {h}: selected {indices[0, h].tolist()}, twins {twins}\n{seed_ctx(rng_seed)}")
    check_selection(cfg, q, c.pool, c.table, offsets, indices, seed_ctx(rng_seed))


def test_pool_copy_on_write_keeps_summaries(sp_modules, rng_seed):
    """attnrt's page pool with the compiled append: a fork shares its source's pages, its first
    append copies the shared partial last page (summaries included) and widens the copy; the
    source's page keeps its summary. Both sequences then select like the model."""
    from attnrt_ctypes import CachePool
    cfg = CONFIGS[0]
    m = sp_modules(cfg)
    names = Names(cfg)
    rng = np.random.default_rng(rng_seed)
    fmt = cfg.fmt
    pool = CachePool(m, names.append, num_pages=64)
    try:
        comp = {a["role"]: pool.buffers[a["name"]] for a in m.info(names.append)["args"]
                if a["name"] in pool.buffers}
        model = {r: np.zeros_like(a) for r, a in comp.items()}
        for r in comp:
            comp[r][...] = 0
        dist = KVDistribution(cfg.hkv, cfg.d, seed=int(rng.integers(1 << 30)))

        def put(seq, n, cow_from=None):
            slots = pool.append(seq, n)
            if cow_from is not None:
                # the pool copied the shared page's components to the fork's new page
                new_page = int(slots[0]) // cfg.page_size
                assert new_page != cow_from, "the fork's append did not copy the shared page"
                for r in model:
                    model[r][new_page] = model[r][cow_from]
            k, v = dist.sample(rng, n)
            roles = {"k_new": k, "v_new": v, "slot_mapping": slots}
            roles.update(comp)
            run(m, names.append, roles)
            append(model, fmt, k, v, slots)
        a = pool.create()
        put(a, 5 * cfg.page_size + 3)
        b = pool.fork(a)
        shared_last = int(pool.page_table([a])[1][-1])
        src = {r: comp[r][shared_last].copy() for r in ("k_page_max", "k_page_min")}
        put(b, 4, cow_from=shared_last)
        for r, x in src.items():                  # the source's page is untouched
            np.testing.assert_array_equal(comp[r][shared_last], x, r)
        put(a, 2 * cfg.page_size)
        put(b, cfg.page_size)
        indptr, indices, last = pool.page_table([a, b])
        table = PageTable(indptr, indices, last, cfg.page_size)
        problems = compare_pools(fmt, comp, model)
        assert not problems, "; ".join(problems) + "\n" + seed_ctx(rng_seed)
        q = random_queries(cfg, rng, 2)
        c = Cache(comp, model, table, [], [], None)
        offsets, sel = run_select(m, cfg, c, q)
        check_selection(cfg, q, comp, table, offsets, sel, seed_ctx(rng_seed))
        pool.check()
    finally:
        pool.close()


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS])
def test_sparse_decode_all_pages_equals_dense(cfg, sp_modules, rng_seed):
    """top_k >= every sequence's page count: the selection is every page, and decode over it is
    the dense decode bit for bit (output and LSE)."""
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    c = fill_cache(m, cfg, rng, cfg.lens("short"))
    q = random_queries(cfg, rng, c.table.batch)
    offsets, indices = run_select(m, cfg, c, q)
    npg = np.diff(c.table.kv_indptr)
    assert (offsets[:, :, 1] == npg[:, None]).all()
    o_d, l_d = run_decode(m, cfg, c, q)
    o_s, l_s = run_decode(m, cfg, c, q, (offsets, indices))
    ctx = seed_ctx(rng_seed)
    diff = np.abs(o_s.astype(np.float64) - o_d.astype(np.float64)).max()
    assert np.array_equal(o_s.view(np.uint8), o_d.view(np.uint8)), \
        f"{cfg.name}: sparse O differs from dense by up to {diff:.3g}\n{ctx}"
    assert np.array_equal(l_s.view(np.uint8), l_d.view(np.uint8)), \
        f"{cfg.name}: sparse LSE differs from dense\n{ctx}"


@pytest.mark.parametrize("cfg", [pytest.param(c, id=c.name) for c in CONFIGS])
def test_sparse_decode_reads_exactly_the_selection(cfg, sp_modules, rng_seed):
    """top_k smaller than the long sequences' page counts: the decode equals the float64
    attention over the selected pages' keys (per KV head) of the dequantized cache."""
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    c = fill_cache(m, cfg, rng, cfg.lens("long"))
    q = random_queries(cfg, rng, c.table.batch)
    offsets, indices = run_select(m, cfg, c, q)
    assert (offsets[:, :, 1] < np.diff(c.table.kv_indptr)[:, None]).any()
    o, lse = run_decode(m, cfg, c, q, (offsets, indices))
    gk, gv = gather(c.pool, cfg.fmt, *c.table.arrays(), kv_rings=c.rings)
    bsr = BSR(offsets, np.where(indices >= 0, indices, 0), None, 1, cfg.page_size)
    o_ref, l_ref = sparse_paged_reference(q, gk, gv, bsr=bsr)
    bad = compare(cfg.qdtype, o, o_ref, lse, l_ref)
    assert not bad, f"{cfg.name}: " + "; ".join(bad) + "\n" + seed_ctx(rng_seed)


CONCENTRATED = SPConfig("f16", "nhd", 16, None, 8, 2, 64, "f32", "f32", 8, 1, 2,
                        tag="concentrated")
HOT_PAGES = 3


def test_sparse_decode_concentrated_close_to_full(sp_modules, rng_seed):
    """Keys aligned with the query in 3 pages per (sequence, KV head), far from the sinks and
    recent pages; top_k = 8 (1 sink, 2 recent, 5 chosen) of 50-120 pages.

    Bound: with p the full softmax and eps the mass of the keys outside the selected pages,
    o_full = (1 - eps) o_sel + eps o_rest, so |o_full - o_sel| = eps |o_rest - o_sel| <=
    2 eps max|v| per element. The test asserts that the selection holds the hot pages, that
    eps is small for this data (< 1e-2, measured below in the message) and that the kernel's
    error against float64 full attention is within 2 eps max|v| plus the kernel tolerance
    (harness O_TOL f32 relative to max|o|)."""
    cfg = CONCENTRATED
    m = sp_modules(cfg)
    rng = np.random.default_rng(rng_seed)
    S, D, G, H = cfg.page_size, cfg.d, cfg.hq // cfg.hkv, cfg.hkv
    lens = [50 * S + 5, 120 * S, 77 * S + 11]
    scale = 1.0 / math.sqrt(D)
    ks, vs, hot, q = [], [], [], np.zeros((3, cfg.hq, D), np.float32)
    for b, n in enumerate(lens):
        k = rng.standard_normal((n, H, D)).astype(np.float32)
        v = rng.standard_normal((n, H, D)).astype(np.float32)
        npg = -(-n // S)
        hb = []
        for h in range(H):
            u = rng.standard_normal(D)
            u /= np.linalg.norm(u)
            pages = rng.choice(np.arange(cfg.sinks + 2, npg - cfg.recent - 2), HOT_PAGES,
                               replace=False)
            hb.append(sorted(pages.tolist()))
            for p in pages:
                k[p * S:(p + 1) * S, h] = 20.0 * u + rng.standard_normal((S, D))
            # scores: hot keys 4 * 20 / sqrt(64) = 10 (+- 0.5), the others N(0, 0.5^2)
            q[b, h * G:(h + 1) * G] = 4.0 * u + 0.05 * rng.standard_normal((G, D))
        ks.append(k)
        vs.append(v)
        hot.append(hb)
    c = fill_cache(m, cfg, rng, lens, ks=ks, vs=vs)
    offsets, indices = run_select(m, cfg, c, q)
    ctx = seed_ctx(rng_seed)
    for b in range(3):
        for h in range(H):
            sel = set(indices[b, h, :offsets[b, h, 1]].tolist())
            assert set(hot[b][h]) <= sel, f"sequence {b} head {h}: {sorted(sel)} misses " \
                                          f"hot pages {hot[b][h]}\n{ctx}"
    o, lse = run_decode(m, cfg, c, q, (offsets, indices))
    gk, gv = gather(c.pool, cfg.fmt, *c.table.arrays())
    o_full, l_full = paged_reference(q, gk, gv)
    # eps: the softmax mass outside the selection, per (sequence, query head)
    eps = 0.0
    for b in range(3):
        for g in range(cfg.hq):
            h = g // G
            s = scale * (gk[b][:, h] @ q[b, g].astype(np.float64))
            p = np.exp(s - s.max())
            p /= p.sum()
            keep = np.zeros(s.size, bool)
            for pg in indices[b, h, :offsets[b, h, 1]]:
                keep[pg * S:(pg + 1) * S] = True
            eps = max(eps, float(p[~keep].sum()))
    vmax = max(float(np.abs(x).max()) for x in gv)
    err = float(np.abs(o.astype(np.float64) - o_full).max())
    bound = 2 * eps * vmax + O_TOL["f32"] * float(np.abs(o_full).max())
    msg = f"eps {eps:.3g}, max|v| {vmax:.3g}, error {err:.3g}, bound {bound:.3g}\n{ctx}"
    assert eps < 1e-2, "the data is not concentrated as planned: " + msg
    assert err <= bound, "sparse decode vs full attention: " + msg
    lse_err = float(np.abs(lse.astype(np.float64) - l_full).max())
    # dropping mass eps lowers the LSE by -log(1 - eps)
    assert lse_err <= -math.log1p(-eps) + LSE_TOL["f32"], f"LSE error {lse_err:.3g}; " + msg


def test_configs_cover_the_brief():
    """The odd sizes the configs are meant to cover."""
    assert {c.page_size for c in CONFIGS} >= {1, 7, 16}
    assert {c.d for c in CONFIGS} >= {64, 80}
    assert {c.hq // c.hkv for c in CONFIGS} >= {1, 4}
    assert any(c.sinks and c.recent for c in CONFIGS)
    assert any(c.sinks and not c.recent for c in CONFIGS)
    assert any(c.recent and not c.sinks for c in CONFIGS)
    assert any(not c.sinks and not c.recent for c in CONFIGS)
    assert any(c.sinks + c.recent == c.top_k for c in CONFIGS)
    assert {c.storage for c in CONFIGS} == {"f16", "bf16", "f8E4M3FN", "f8E5M2", "i8", "i4"}
    for c in CONFIGS:
        long_pages = [-(-n // c.page_size) for n in c.lens("long")]
        short_pages = [-(-n // c.page_size) for n in c.lens("short")]
        assert len(long_pages) == 3 and max(long_pages) > c.top_k
        assert min(long_pages) < c.top_k and c.top_k + 1 in long_pages
        assert max(short_pages) <= c.top_k and 0 in short_pages
    assert len({c.name for c in CONFIGS + [CONCENTRATED]}) == len(CONFIGS) + 1
