"""End-to-end sparsity (docs/sparsity.md): per-head masks and block-sparse (BSR) masks of kernels
compiled by attnc, run through attnrt (attnrt_ctypes), against the float64 reference
sparse_reference.py, on fresh random inputs and masks every run (the seed is in every failure
message; ATTNC_TEST_SEED=N replays it).

Every kernel is compiled twice, once as is and once with `attnc --count-tiles`, each set into one
artifact per session. Every case runs both builds and checks:

- numerics: o (and LSE) against the reference at harness.O_TOL / LSE_TOL of the query dtype; rows
  with no visible key exactly 0 with LSE -inf; no NaN;
- the instrumented build gives bit-identical outputs;
- the work: tiles run == the visible tiles of the kernel's tiling (sparse_reference.count_tiles,
  the manifest's tile.block_q x tile.block_kv), and the tiles that applied the element predicate
  lie between the tiles that need it (an invisible in-sequence pair) and the tiles outside a full
  block, the mask's sink range and its window band (keys past Lk outside)
  (sparse_reference.tile_classes);
- the tiles no query can see are never loaded: their keys and values hold NaN in the kernel's
  inputs (interior tiles only: not a sequence's first or partial last tile, which neighbouring
  reads may touch), the reference sees the clean values.

Forms: dense [B, L, H, D], ragged (cu_seqlens), paged decode (BQ = 1, blocks over key positions,
spanning pages) and paged append (qo_indptr), the paged caches written by the kv_reference model.
BSR variants: random (density, empty rows, the last partial block of a sequence, full flags with
values other than 1, offsets[0] > 0, rows past a sequence's own blocks listing blocks that must be
ignored), the BSR that encodes the kernel's structured mask (same tiles as the mask alone), and
all rows empty (zeros, LSE -inf, no tile run).
"""
from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from attnrt_ctypes import Module
from harness import NP_DTYPE, compare, mask_attr
from kv_reference import CacheFormat, append, build_page_table, gather, sequence_slots
from reference import Mask
from sparse_reference import (BSR, bsr_from_masks, count_tiles, random_bsr, sparse_attention,
                              sparse_paged_reference, tile_classes, visible_matrix)

SIZES = [1, 7, 33, 100, 257]


@dataclass(frozen=True)
class Spec:
    """One kernel: an attn.attention (dense, ragged) or attn.paged_attention (decode, append)."""
    name: str
    form: str                       # dense | ragged | decode | append
    dtype: str = "f32"
    hq: int = 4
    hkv: int = 2
    d: int = 64
    mask: Mask | None = None
    head_masks: tuple | None = None
    block: tuple | None = None      # (BQ, BK, heads, with block_full)
    page_size: int = 16
    storage: str = "f16"

    @property
    def masks(self) -> list:
        """The structured mask of each KV head."""
        if self.head_masks:
            return list(self.head_masks)
        return [self.mask or Mask()] * self.hkv

    @property
    def paged(self) -> bool:
        return self.form in ("decode", "append")

    def cache_format(self) -> CacheFormat:
        return CacheFormat(self.page_size, self.hkv, self.d, "nhd", self.storage)

    def func_mlir(self) -> str:
        t, hq, hkv, d, i32 = self.dtype, self.hq, self.hkv, self.d, "tensor<?xi32>"
        if self.form == "dense":
            qt, kt = f"tensor<?x?x{hq}x{d}x{t}>", f"tensor<?x?x{hkv}x{d}x{t}>"
            lt = f"tensor<?x{hq}x?xf32>"
            ins = [("q", qt), ("k", kt), ("v", kt)]
            op, operands = "attn.attention", "%q, %k, %v"
        elif self.form == "ragged":
            qt, kt = f"tensor<?x{hq}x{d}x{t}>", f"tensor<?x{hkv}x{d}x{t}>"
            lt = f"tensor<{hq}x?xf32>"
            ins = [("q", qt), ("k", kt), ("v", kt), ("cuq", i32), ("cuk", i32)]
            op, operands = "attn.attention", "%q, %k, %v cu_seqlens(%cuq, %cuk)"
        else:
            qt, lt = f"tensor<?x{hq}x{d}x{t}>", f"tensor<{hq}x?xf32>"
            ins = [("q", qt), ("cache", self.cache_format().mlir_type()), ("indptr", i32),
                   ("indices", i32), ("last", i32)]
            op, operands = "attn.paged_attention", "%q, %cache, %indptr, %indices, %last"
            if self.form == "append":
                ins.append(("qo", i32))
                operands += " qo_indptr(%qo)"
        attrs = []
        if self.block:
            bq, bk, h, full = self.block
            ins += [("off", f"tensor<?x{h}x?xi32>"), ("idx", f"tensor<?x{h}x?xi32>")]
            operands += " block_sparse(%off, %idx)"
            if full:
                ins.append(("full", f"tensor<?x{h}x?xi8>"))
                operands += " block_full(%full)"
            attrs.append(f"block_size = array<i64: {bq}, {bk}>")
        if self.mask is not None:
            attrs.append(f"mask = {mask_attr(self.mask)}")
        if self.head_masks:
            attrs.append("head_masks = [" + ", ".join(mask_attr(m) for m in self.head_masks)
                         + "]")
        sig = ", ".join(f"%{n}: {ty}" for n, ty in ins)
        fty = f"({', '.join(ty for _, ty in ins)}) -> ({qt}, {lt})"
        attr = f" {{{', '.join(attrs)}}}" if attrs else ""
        return (f"func.func @{self.name}({sig}) -> ({qt}, {lt}) {{\n"
                f"  %o, %lse = {op} {operands}{attr} : {fty}\n"
                f"  return %o, %lse : {qt}, {lt}\n}}\n")


C, TL = Mask(causal=True), "top_left"
KERNELS = [
    # every structured mask (the tile counts of the block predicate without a BSR)
    Spec("s_none", "dense", hq=4, hkv=4, d=64, mask=Mask()),
    Spec("s_causal", "dense", hq=8, hkv=2, d=80, mask=C),
    Spec("s_causal_tl", "ragged", hq=4, hkv=1, d=128, mask=Mask(causal=True, align=TL)),
    Spec("s_win", "dense", "f16", hq=4, hkv=1, d=64, mask=Mask(window=16)),
    Spec("s_win_sinks", "ragged", hq=8, hkv=2, d=128, mask=Mask(window=16, sinks=4)),
    Spec("s_causal_win_sinks", "dense", hq=2, hkv=2, d=80,
         mask=Mask(causal=True, window=128, sinks=2)),
    Spec("s_win_tl", "dense", hq=4, hkv=4, d=64, mask=Mask(window=8, align=TL)),
    Spec("s_win0_sink", "ragged", hq=4, hkv=1, d=64, mask=Mask(causal=True, window=0, sinks=1)),
    # per-head policies: full heads next to sinks + window heads
    Spec("hm_duo", "dense", hq=8, hkv=2, d=128, head_masks=(C, Mask(window=16, sinks=4))),
    Spec("hm_ragged", "ragged", "f16", hq=4, hkv=4, d=64,
         head_masks=(C, Mask(window=8, sinks=2), Mask(), Mask(window=32))),
    Spec("hm_tl", "ragged", hq=4, hkv=2, d=80,
         head_masks=(Mask(causal=True, align=TL), Mask(window=4, sinks=3, align=TL))),
    Spec("hm_decode", "decode", hq=8, hkv=2, d=64, page_size=8,
         head_masks=(Mask(), Mask(window=24, sinks=8))),
    # block-sparse masks
    Spec("b_dense_full", "dense", hq=8, hkv=2, d=64, mask=C, block=(16, 32, 2, True)),
    Spec("b_dense_h1", "dense", "f16", hq=2, hkv=2, d=80, block=(32, 16, 1, False)),
    Spec("b_ragged_h1", "ragged", hq=4, hkv=1, d=128, mask=Mask(window=16, sinks=4),
         block=(64, 64, 1, True)),
    Spec("b_ragged_odd", "ragged", hq=2, hkv=2, d=64, mask=C, block=(3, 5, 2, True)),
    Spec("b_head_masks", "dense", hq=8, hkv=2, d=64, head_masks=(C, Mask(window=16, sinks=4)),
         block=(16, 16, 2, True)),
    Spec("b_nomask_full", "ragged", hq=4, hkv=1, d=64, block=(8, 32, 1, True)),
    Spec("b_decode", "decode", hq=8, hkv=2, d=64, page_size=16, block=(1, 16, 2, True)),
    Spec("b_decode_win", "decode", hq=4, hkv=1, d=128, page_size=16, storage="i8",
         mask=Mask(window=64, sinks=4), block=(1, 32, 1, False)),
    Spec("b_decode_f16", "decode", "f16", hq=4, hkv=4, d=80, page_size=16,
         block=(1, 8, 4, True)),                 # blocks of half a page
    Spec("b_append", "append", hq=4, hkv=2, d=64, page_size=16, mask=C, block=(16, 16, 2, True)),
    Spec("b_append_hm", "append", hq=8, hkv=2, d=128, page_size=8,
         head_masks=(C, Mask(window=16, sinks=4)), block=(8, 8, 1, False)),
]
BY_NAME = {s.name: s for s in KERNELS}


# ------------------------------------------------------------------------------------------------
# Compilation: each kernel once per session and build
# ------------------------------------------------------------------------------------------------

class Builds:
    """The kernels compiled into one artifact per build ("plain", "counted" with --count-tiles);
    when a module fails to compile, each kernel is compiled alone so only the broken ones fail."""

    def __init__(self, attnc: Path, root: Path, jobs: int = 2):
        self.attnc, self.root, self.jobs = attnc, root, jobs
        self._lock = threading.Lock()
        self._modules: dict = {}     # (build, dir) -> Module
        self._where: dict | None = None  # (build, name) -> dir or Exception

    def _compile(self, specs, out: Path, flags) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        src = out / "sparsity.mlir"
        src.write_text("\n".join(s.func_mlir() for s in specs))
        r = subprocess.run([str(self.attnc), str(src), "--target=host", "-o", str(out), *flags],
                           capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"attnc {' '.join(flags)} failed on {src}:\n{r.stderr[-3000:]}")
        return out

    def _compile_build(self, build: str):
        flags = ["--count-tiles"] if build == "counted" else []
        try:
            d = self._compile(KERNELS, self.root / build, flags)
            return {(build, s.name): d for s in KERNELS}
        except RuntimeError:
            out = {}
            for s in KERNELS:
                try:
                    out[(build, s.name)] = self._compile([s], self.root / build / s.name, flags)
                except RuntimeError as e:
                    out[(build, s.name)] = e
            return out

    def module(self, build: str, name: str) -> Module:
        with self._lock:
            if self._where is None:
                self._where = {}
                with ThreadPoolExecutor(self.jobs) as ex:
                    for res in ex.map(self._compile_build, ["plain", "counted"]):
                        self._where.update(res)
            d = self._where[(build, name)]
            if isinstance(d, Exception):
                raise d
            if (build, d) not in self._modules:
                self._modules[(build, d)] = Module(d, num_threads=2)
            return self._modules[(build, d)]

    def close(self):
        for m in self._modules.values():
            m.close()


@pytest.fixture(scope="session")
def builds(tools, tmp_path_factory):
    b = Builds(tools[0], tmp_path_factory.mktemp("sparsity"),
               jobs=int(os.environ.get("ATTNC_TEST_JOBS", "2")))
    yield b
    b.close()


# ------------------------------------------------------------------------------------------------
# One case
# ------------------------------------------------------------------------------------------------

@dataclass
class Case:
    """Inputs of one call plus what the reference needs."""
    lens_q: list
    lens_k: list
    by_role: dict           # kernel inputs by role (K/V or pool with the unread tiles poisoned)
    ref: tuple              # (o, lse) float64
    bsr: BSR | None
    out_shapes: tuple       # (o shape, lse shape)


def other_lens(rng, n, first, with_zero=True):
    """`first` then n - 1 lengths drawn from SIZES (and 0)."""
    pool = SIZES + ([0] if with_zero else [])
    return [first] + [int(rng.choice(pool)) for _ in range(n - 1)]


def make_bsr(spec: Spec, variant: str, rng, lens_q, lens_k) -> BSR | None:
    if not spec.block:
        return None
    bq, bk, heads, full = spec.block
    if variant == "random":
        return random_bsr(rng, lens_q, lens_k, bq, bk, heads, float(rng.uniform(0.1, 0.9)),
                          full_prob=float(rng.uniform(0.2, 0.8)) if full else None)
    if variant == "empty":
        return random_bsr(rng, lens_q, lens_k, bq, bk, heads, 0.0, empty_row_prob=1.0,
                          end_prob=0.0, full_prob=0.5 if full else None)
    assert variant == "from_mask"
    masks = spec.masks if heads == spec.hkv else spec.masks[:1]
    return bsr_from_masks(lens_q, lens_k, bq, bk, masks, with_full=full)


def unread_tiles(spec: Spec, tile_kv: int, lens_q, lens_k, bsr):
    """Per (sequence b, KV head h): key ranges [a, e) of the interior KV tiles (not a sequence's
    first tile, not one running past Lk) that no query of the sequence can see."""
    out = []
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        for h in range(spec.hkv):
            seen = visible_matrix(lq, lk, spec.masks[h], bsr, b, h).any(axis=0)
            for t in range(1, lk // tile_kv):
                a, e = t * tile_kv, (t + 1) * tile_kv
                if not seen[a:e].any():
                    out.append((b, h, a, e))
    return out


def make_case(spec: Spec, variant: str, lq: int, lk: int, rng, tile_kv: int) -> Case:
    npd = NP_DTYPE[spec.dtype]
    hq, hkv, d = spec.hq, spec.hkv, spec.d
    std = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    batch = int(rng.integers(1, 4))
    kw = dict(mask=spec.mask, head_masks=spec.head_masks)
    if spec.form == "dense":
        lens_q, lens_k = [lq] * batch, [lk] * batch
    elif spec.form == "ragged":
        lens_q, lens_k = other_lens(rng, batch, lq), other_lens(rng, batch, lk)
    elif spec.form == "decode":
        lens_k = other_lens(rng, batch, lk)
        lens_q = [1] * batch
    else:  # append: the queries are the last tokens of each sequence
        lens_k = other_lens(rng, batch, max(lq, lk))
        lens_q = [min(lq, n) if b == 0 else int(rng.integers(0, n + 1))
                  for b, n in enumerate(lens_k)]
    bsr = make_bsr(spec, variant, rng, lens_q, lens_k)
    poison = unread_tiles(spec, tile_kv, lens_q, lens_k, bsr)
    roles = {}
    if bsr is not None:
        roles.update(bsr.arrays())
    if spec.form in ("dense", "ragged"):
        tq, tk = sum(lens_q), sum(lens_k)
        if spec.form == "dense":
            q = std(batch, lq, hq, d).astype(npd)
            k, v = std(batch, lk, hkv, d).astype(npd), std(batch, lk, hkv, d).astype(npd)
            ref = sparse_attention(q, k, v, bsr=bsr, **kw)
            kp, vp = k.copy(), v.copy()
            for b, h, a, e in poison:
                kp[b, a:e, h] = vp[b, a:e, h] = np.nan
            shapes = ((batch, lq, hq, d), (batch, hq, lq))
        else:
            cq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
            ck = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
            q = std(tq, hq, d).astype(npd)
            k, v = std(tk, hkv, d).astype(npd), std(tk, hkv, d).astype(npd)
            ref = sparse_attention(q, k, v, bsr=bsr, cu_seqlens_q=cq, cu_seqlens_k=ck, **kw)
            kp, vp = k.copy(), v.copy()
            for b, h, a, e in poison:
                kp[ck[b] + a:ck[b] + e, h] = vp[ck[b] + a:ck[b] + e, h] = np.nan
            roles.update(cu_seqlens_q=cq, cu_seqlens_k=ck)
            shapes = ((tq, hq, d), (hq, tq))
        roles.update(query=q, key=kp, value=vp)
        return Case(lens_q, lens_k, roles, ref, bsr, shapes)
    # paged: the kv_reference model writes the pool behind a shuffled page table
    fmt = spec.cache_format()
    table = build_page_table(rng, lens_k, spec.page_size, extra_pages=2)
    pool = fmt.empty_pool(max(table.num_pages, 1))
    sid, pos, slots = sequence_slots(table)
    if sid.size:
        append(pool, fmt, std(sid.size, hkv, d), std(sid.size, hkv, d), slots)
    ks, vs = gather(pool, fmt, *table.arrays())
    tq = sum(lens_q)
    q = std(tq, hq, d).astype(npd)
    qo = None if spec.form == "decode" else lens_q
    ref = sparse_paged_reference(q, ks, vs, qo_lens=qo, bsr=bsr, **kw)
    if fmt.storage == "f16":       # NaN is representable: poison the unread tiles
        pool = {n: a.copy() for n, a in pool.items()}
        for b, h, a, e in poison:
            p = np.arange(a, e)
            pages = table.pages(b)[p // spec.page_size]
            pool["k_pages"][pages, p % spec.page_size, h] = np.nan
            pool["v_pages"][pages, p % spec.page_size, h] = np.nan
    roles.update(pool)
    roles.update(query=q, kv_indptr=table.kv_indptr, kv_indices=table.kv_indices,
                 kv_last_page_len=table.kv_last_page_len)
    if qo is not None:
        roles["qo_indptr"] = np.concatenate([[0], np.cumsum(qo)]).astype(np.int32)
    return Case(lens_q, lens_k, roles, ref, bsr, ((tq, hq, d), (hq, tq)))


def run(module: Module, spec: Spec, case: Case):
    """Runs the kernel on NaN-poisoned outputs; returns (o, lse)."""
    o = np.full(case.out_shapes[0], np.nan, dtype=NP_DTYPE[spec.dtype])
    lse = np.full(case.out_shapes[1], np.nan, dtype=np.float32)
    roles = dict(case.by_role, output=o, lse=lse)
    args = {}
    for a in module.info(spec.name)["args"]:
        assert a["role"] in roles, f"{spec.name}: no array for {a['name']} ({a['role']})"
        args[a["name"]] = roles[a["role"]]
    module.run(spec.name, args, num_threads=2)
    return o, lse


def tiling(module: Module, spec: Spec):
    at = module.info(spec.name)["attention"]
    assert at["block_q"] >= 1 and at["block_kv"] >= 1, f"{spec.name}: no tile sizes in manifest"
    return at["block_q"], at["block_kv"]


def seed_ctx(seed):
    return f"seed={seed} (ATTNC_TEST_SEED={seed} to reproduce)"


def check_case(builds, spec: Spec, variant: str, lq: int, lk: int, seed: int):
    counted = builds.module("counted", spec.name)
    plain = builds.module("plain", spec.name)
    tile_q, tile_kv = tiling(counted, spec)
    assert tiling(plain, spec) == (tile_q, tile_kv)
    rng = np.random.default_rng(seed)
    case = make_case(spec, variant, lq, lk, rng, tile_kv)
    ctx = (f"{spec.name} [{variant}] lens_q={case.lens_q} lens_k={case.lens_k} "
           f"tile {tile_q}x{tile_kv}; {seed_ctx(seed)}")
    o_ref, lse_ref = case.ref
    o, lse = run(plain, spec, case)
    bad = compare(spec.dtype, o, o_ref, lse, lse_ref)
    empty = np.isneginf(lse_ref)
    if empty.any():
        perm = (0, 2, 1, 3) if spec.form == "dense" else (1, 0, 2)   # -> [.., heads, rows, D]
        nz = np.abs(o.astype(np.float64).transpose(perm)[empty]).max()
        if nz != 0:
            bad.append(f"rows with no visible key are not zero (max |o| = {nz})")
    assert not bad, "; ".join(bad) + f"\n{ctx}"

    counted.reset_tile_stats(spec.name)
    o2, lse2 = run(counted, spec, case)
    ran, predicated, items = counted.tile_stats(spec.name)
    assert np.array_equal(o2.view(np.uint8), o.view(np.uint8)) and \
        np.array_equal(lse2.view(np.uint8), lse.view(np.uint8)), \
        f"the --count-tiles build computes different outputs\n{ctx}"
    kw = dict(mask=spec.mask, head_masks=spec.head_masks, bsr=case.bsr)
    tc = count_tiles(case.lens_q, case.lens_k, tile_q, tile_kv, spec.hkv, **kw)
    cls = tile_classes(case.lens_q, case.lens_k, tile_q, tile_kv, spec.hkv, **kw)
    assert cls[:2] == tc, f"count_tiles {tc} != tile_classes {cls}\n{ctx}"
    stats = (f"run={ran} predicated={predicated} work_items={items}; visible={tc.visible} "
             f"dense={tc.dense} need_predicate={cls.masked} not_interior={cls.not_interior}")
    assert ran == tc.visible, f"tiles run != visible tiles: {stats}\n{ctx}"
    assert predicated <= ran, f"more predicated tiles than tiles run: {stats}\n{ctx}"
    assert cls.masked <= predicated <= cls.not_interior, \
        f"element predicate applied outside [needed, not interior]: {stats}\n{ctx}"
    if variant == "from_mask":
        bq, bk, heads, full = spec.block
        # one pattern from head 0's mask is exactly every head's mask unless full flags let
        # another head's mask be skipped
        same = heads == spec.hkv or len(set(spec.masks)) == 1 or not full
        if same and bq % tile_q == 0 and bk % tile_kv == 0:
            alone = count_tiles(case.lens_q, case.lens_k, tile_q, tile_kv, spec.hkv,
                                mask=spec.mask, head_masks=spec.head_masks)
            assert ran == alone.visible, \
                f"the BSR of the mask runs {ran} tiles, the mask alone {alone.visible}\n{ctx}"
    if variant == "empty":
        assert ran == 0 and np.all(np.isneginf(lse)), f"an empty BSR ran tiles: {stats}\n{ctx}"


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------

SHAPES = [(1, 1), (7, 33), (33, 7), (100, 257), (257, 100)]
EXTRA_SHAPES = [(1, 257), (257, 257), (33, 100)]


def cases():
    for i, spec in enumerate(KERNELS):
        if spec.form == "decode":
            shapes = [(1, lk) for lk in SIZES]
        else:
            shapes = SHAPES + [EXTRA_SHAPES[i % len(EXTRA_SHAPES)]]
        variants = ["random", "from_mask", "empty"] if spec.block else ["-"]
        for v in variants:
            for j, (lq, lk) in enumerate(shapes):
                # the from_mask and empty variants on a rotating part of the shapes
                if v != "random" and v != "-" and (i + j) % 2:
                    continue
                yield pytest.param(spec.name, v, lq, lk, id=f"{spec.name}-{v}-{lq}x{lk}")


@pytest.mark.parametrize("name,variant,lq,lk", list(cases()))
def test_sparsity(builds, name, variant, lq, lk, rng_seed):
    check_case(builds, BY_NAME[name], variant, lq, lk, rng_seed)


def test_manifest_records_sparsity(builds):
    """block_sparse {block_q, block_kv, heads}, head_masks and the tile counters reach attnrt;
    kernel tiles divide the blocks."""
    for spec in KERNELS:
        for build in ("plain", "counted"):
            info = builds.module(build, spec.name).info(spec.name)
            assert info["tile_stats"] == (build == "counted"), spec.name
            hm = info["attention"]["head_masks"]
            if spec.head_masks:
                assert [Mask(m["causal"], m["window"], m["sinks"], m["align"]) for m in hm] == \
                    list(spec.head_masks), spec.name
            else:
                assert hm == [], spec.name
            bs = info["block_sparse"]
            if not spec.block:
                assert bs is None, spec.name
                continue
            bq, bk, heads, _ = spec.block
            assert bs == {"block_q": bq, "block_kv": bk, "heads": heads}, spec.name
            tq, tk = info["attention"]["block_q"], info["attention"]["block_kv"]
            assert bq % tq == 0 and bk % tk == 0, f"{spec.name}: tile {tq}x{tk}, block {bq}x{bk}"


def test_attn_run_check_and_stats(builds, attn_run, rng_seed):
    """attn-run makes a random BSR (--random, --block-density) and passes --check and --stats
    on the instrumented build (dense and ragged)."""
    seed = rng_seed % 1000000
    for spec, sizes in [
            (BY_NAME["b_dense_full"], ["--size", "batch=2", "--size", "seqlen_q=100",
                                       "--size", "seqlen_k=257"]),
            (BY_NAME["b_ragged_odd"], ["--seqlens-q", "33,0,7", "--seqlens-k", "100,5,1"]),
            (BY_NAME["hm_duo"], ["--size", "batch=1", "--size", "seqlen_q=257",
                                 "--size", "seqlen_k=257"])]:
        counted = builds.module("counted", spec.name)
        d = builds._where[("counted", spec.name)]
        assert counted is not None
        for density in ("0.3", "1"):
            cmd = [str(attn_run), str(d), "--kernel", spec.name, "--random", str(seed), *sizes,
                   "--block-density", density, "--check", "--stats", "--threads", "2"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
            assert "STATS kernel=" in r.stdout and r.stdout.count("PASS") == 3, r.stdout
