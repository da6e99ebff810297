#!/usr/bin/env python3
"""CPU comparison of attnc against IREE (llvm-cpu, iree_linalg_ext.attention) and JAX/XLA
(jax.nn.dot_product_attention), in one run on one machine, all in f32.

Usage: .venv/bin/python bench/cpu_compare.py [--quick] [--rows prefill_2k,decode] [--json PATH]

What each peer computes (printed with the results):
  attnc : the causal kernel, skipping fully masked key blocks (useful FLOPs only).
  iree  : iree_linalg_ext.attention with an explicit i1 [Lq, Lk] mask operand; the op has no
          causal mode, so it computes all Lq x Lk scores and then masks them. Compiled with
          --iree-opt-level=O3 and LLVM loop/SLP vectorization (3-5x faster than the defaults
          here). It reaches only ~1-3 GFLOP/s on this CPU path, so rows above --iree-max-gflop
          executed GFLOP are timed on one KV head (with its query heads) and scaled by Hkv.
  jax   : jax.nn.dot_product_attention(implementation='xla', is_causal=...), native GQA; it
          computes and materialises all [Hq, Lq, Lk] scores, then masks; rows where 3 copies of
          the scores would exceed a quarter of RAM run as a lax.map over KV heads.
GFLOP/s is always the useful count, 4 * D * Hq * B * visible(i, j) pairs, for every peer, so the
numbers compare time-to-solution. The ratio column is time(attnc) / time(peer): < 1 means attnc
is faster. Every peer's output is checked against the float64 reference (reference.py) on the
first and last 32 query rows, and against each other on the whole output, once per row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "e2e"))
from harness import KernelSpec, compile_module, manifest_kernel  # noqa: E402
from reference import Mask, attention, visible_pairs  # noqa: E402

DTYPE = "f32"


@dataclass(frozen=True)
class Row:
    name: str
    b: int
    lq: int
    lk: int
    hq: int
    hkv: int
    d: int
    causal: bool

    @property
    def mask(self) -> Mask:
        return Mask(causal=self.causal)

    def useful_flops(self) -> float:
        return 4.0 * self.d * self.hq * self.b * visible_pairs(self.lq, self.lk, self.mask)

    def full_flops(self) -> float:
        return 4.0 * self.d * self.hq * self.b * self.lq * self.lk


ROWS = [
    Row("prefill_2k", 1, 2048, 2048, 32, 8, 128, True),
    Row("prefill_8k", 1, 8192, 8192, 32, 8, 128, True),
    Row("decode_b16_4k", 16, 1, 4096, 32, 8, 128, False),
]


def timeit(fn, warmup: int, reps: int, budget_s: float = 90.0):
    """Returns (median_ms, min_ms, reps) of fn() over reps runs after warmup runs. When the first
    (warm-up) call takes over 10 s, further warm-ups are skipped and reps are cut to fit budget_s
    (at least 1)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > 10:
        reps = max(1, min(reps, int(budget_s // first)))
    else:
        for _ in range(warmup - 1):
            fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), float(min(ts)), reps


# ---------------------------------------------------------------- attnc (attn-run --bench)
class Attnc:
    computes = "causal kernel, masked key blocks skipped"

    def __init__(self, bin_dir: Path, work: Path, threads: int):
        self.attnc, self.run = bin_dir / "attnc", bin_dir / "attn-run"
        self.work, self.threads = work, threads
        self.dir = None

    def available(self) -> str | None:
        missing = [str(p) for p in (self.attnc, self.run) if not os.access(p, os.X_OK)]
        return f"missing {', '.join(missing)}" if missing else None

    def spec(self, row: Row) -> KernelSpec:
        return KernelSpec(DTYPE, row.hq, row.hkv, row.d, row.mask, tag="bench")

    def compile(self, rows):
        specs = list(dict.fromkeys(self.spec(r) for r in rows))
        self.dir = compile_module(self.attnc, specs, self.work / "attnc", "bench")

    def measure(self, row, q, k, v, warmup, reps):
        spec = self.spec(row)
        names = {a["role"]: a["name"] for a in manifest_kernel(self.dir, spec.name)["args"]}
        cmd = [str(self.run), str(self.dir), "--kernel", spec.name, "--threads", str(self.threads)]
        for role, arr in [("query", q), ("key", k), ("value", v)]:
            p = self.work / f"{row.name}_{role}.npy"
            np.save(p, arr)
            cmd += ["--in", f"{names[role]}={p}"]
        out = self.work / f"{row.name}_o.npy"
        r = subprocess.run(cmd + ["--out", f"{names['output']}={out}"],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"attn-run failed: {r.stderr[-2000:]}")
        o = np.load(out)
        r = subprocess.run(cmd + ["--bench", str(reps)], capture_output=True, text=True)
        m = re.search(r"BENCH .*median_ms=([\d.eE+-]+).*min_ms=([\d.eE+-]+)", r.stdout + r.stderr)
        if r.returncode or not m:
            raise RuntimeError(f"attn-run --bench failed: {r.stdout[-1000:]}{r.stderr[-2000:]}")
        return dict(median_ms=float(m.group(1)), min_ms=float(m.group(2)), reps=reps, o=o)


# ---------------------------------------------------------------- IREE
class Iree:
    computes = "full Lq x Lk scores, explicit i1 mask operand"
    flags = ["--iree-llvmcpu-target-cpu=host", "--iree-opt-level=O3",
             "--iree-llvmcpu-loop-vectorization", "--iree-llvmcpu-slp-vectorization"]

    def __init__(self, max_gflop: float):
        self.max_gflop = max_gflop
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
        from importlib.metadata import version
        self.version = version("iree-base-compiler")

    @staticmethod
    def module(row: Row) -> str:
        """iree_linalg_ext.attention on the [B, L, H, D] layout; GQA by the indexing maps
        (query heads split into [Hkv, G]), causal via a [Lq, Lk] i1 mask (true = attend)."""
        g = row.hq // row.hkv
        qt = f"tensor<{row.b}x{row.lq}x{row.hkv}x{g}x{row.d}xf32>"
        kt = f"tensor<{row.b}x{row.lk}x{row.hkv}x{row.d}xf32>"
        mt = f"tensor<{row.lq}x{row.lk}xi1>"
        dims = "(b, h, g, m, n, k1, k2)"
        maps = [f"affine_map<{dims} -> {r}>" for r in
                ["(b, m, h, g, k1)", "(b, k2, h, k1)", "(b, k2, h, n)", "()", "(m, k2)",
                 "(b, m, h, g, n)"]]
        return f"""
func.func @attn(%q: {qt}, %k: {kt}, %v: {kt}, %m: {mt}) -> {qt} {{
  %scale = arith.constant {float(np.float32(1 / np.sqrt(row.d)))!r} : f32
  %e = tensor.empty() : {qt}
  %r = iree_linalg_ext.attention <{{indexing_maps = [{", ".join(maps)}]}}>
      ins(%q, %k, %v, %scale, %m : {qt}, {kt}, {kt}, f32, {mt}) outs(%e : {qt}) {{
    ^bb0(%s: f32):
      iree_linalg_ext.yield %s : f32
  }} -> {qt}
  return %r : {qt}
}}"""

    def measure(self, row, q, k, v, warmup, reps):
        """IREE's CPU attention is slow (a few GFLOP/s here), so rows above max_gflop executed
        GFLOP run on one KV head (with its query heads) and the time is scaled by Hkv: heads are
        independent and IREE's work is the same for each."""
        full = row
        g = row.hq // row.hkv
        sub = row.hkv
        if row.full_flops() > self.max_gflop * 1e9 and row.hkv > 1:
            sub = 1
            row = Row(row.name, row.b, row.lq, row.lk, g, 1, row.d, row.causal)
            q, k, v = q[:, :, :g], k[:, :, :1], v[:, :, :1]
        res = self._run(row, q, k, v, warmup, reps)
        if sub != full.hkv:
            res["median_ms"] *= full.hkv / sub
            res["min_ms"] *= full.hkv / sub
            res["heads"] = row.hq
            res["note"] = f"timed on {sub} of {full.hkv} KV heads, x{full.hkv // sub}"
        return res

    def _run(self, row, q, k, v, warmup, reps):
        import iree.compiler as ic
        import iree.runtime as rt
        vmfb = ic.compile_str(self.module(row), target_backends=["llvm-cpu"],
                              extra_args=self.flags)
        ctx = rt.SystemContext(config=rt.Config("local-task"))
        ctx.add_vm_module(rt.VmModule.copy_buffer(ctx.instance, vmfb))
        f = ctx.modules.module["attn"]
        g = row.hq // row.hkv
        mask = np.ones((row.lq, row.lk), dtype=bool)
        if row.causal:
            mask = np.tril(mask, row.lk - row.lq)
        dev = ctx.config.device
        args = [rt.asdevicearray(dev, a) for a in
                (q.reshape(row.b, row.lq, row.hkv, g, row.d), k, v, mask)]
        o = np.asarray(f(*args).to_host()).reshape(q.shape)
        med, mn, n = timeit(lambda: f(*args), warmup, reps)
        return dict(median_ms=med, min_ms=mn, reps=n, o=o)


# ---------------------------------------------------------------- JAX
class Jax:
    def __init__(self, mem_limit: float):
        import jax
        jax.config.update("jax_platforms", "cpu")
        self.version = jax.__version__
        self.mem_limit = mem_limit
        self.computes = "xla dot_product_attention, native GQA, full scores then mask"

    def measure(self, row, q, k, v, warmup, reps):
        import jax
        import jax.numpy as jnp

        def dpa(q, k, v):
            return jax.nn.dot_product_attention(q, k, v, is_causal=row.causal,
                                                implementation="xla")
        score_bytes = 4.0 * row.b * row.hq * row.lq * row.lk
        chunked = score_bytes * 3 > self.mem_limit
        if chunked:  # one KV head (and its query heads) at a time
            g = row.hq // row.hkv

            def fn(q, k, v):
                qs = q.reshape(row.b, row.lq, row.hkv, g, row.d).transpose(2, 0, 1, 3, 4)
                ks, vs = k.transpose(2, 0, 1, 3)[:, :, :, None], v.transpose(2, 0, 1, 3)[:, :, :, None]
                o = jax.lax.map(lambda a: dpa(*a), (qs, ks, vs))   # [Hkv, B, Lq, G, D]
                return o.transpose(1, 2, 0, 3, 4).reshape(q.shape)
        else:
            fn = dpa
        f = jax.jit(fn)
        args = [jnp.asarray(a) for a in (q, k, v)]
        o = np.asarray(f(*args))
        med, mn, n = timeit(lambda: f(*args).block_until_ready(), warmup, reps)
        note = (f"lax.map over {row.hkv} KV heads ({score_bytes / 2**30:.1f} GiB of scores "
                "unchunked)") if chunked else ""
        return dict(median_ms=med, min_ms=mn, reps=n, o=o, note=note)


# ---------------------------------------------------------------- checks and driver
def sampled_reference_error(row, q, k, v, o, n=32):
    """max|o - ref| / max|ref| over the first and last n query rows (exact sub-problems)."""
    m = row.mask
    n = min(n, row.lq)
    hi_ref, _ = attention(q[:, -n:], k, v, mask=m)           # last rows see every key up to Lk
    lo_k = row.lk - row.lq + n if row.causal else row.lk     # keys the first n rows can see
    lo_ref, _ = attention(q[:, :n], k[:, :max(lo_k, 0)], v[:, :max(lo_k, 0)],
                          mask=Mask(causal=row.causal))
    ref = np.concatenate([lo_ref, hi_ref], axis=1)
    got = np.concatenate([o[:, :n], o[:, -n:]], axis=1).astype(np.float64)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def measure_ceilings(threads: int, reps: int = 5) -> dict:
    """The machine's own limits, measured here (DESIGN.md section 7): copy bandwidth with
    `threads` threads copying disjoint halves of a 512 MiB buffer (numpy releases the GIL),
    and the f32 matmul rate of numpy's BLAS at 2048^3."""
    from concurrent.futures import ThreadPoolExecutor
    n = 128 << 20  # f32 elements: 512 MiB per buffer, far beyond the caches
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    parts = np.array_split(np.arange(n), threads)
    spans = [(int(p[0]), int(p[-1]) + 1) for p in parts]
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            list(pool.map(lambda sp: np.copyto(dst[sp[0]:sp[1]], src[sp[0]:sp[1]]), spans))
        copy()
        t = min(_time(copy) for _ in range(reps))
    bw = 2 * src.nbytes / t  # read + write
    del src, dst
    m = 2048
    a, b = np.random.rand(m, m).astype(np.float32), np.random.rand(m, m).astype(np.float32)
    a @ b
    t = min(_time(lambda: a @ b) for _ in range(reps))
    return {"copy_gbs": bw / 1e9, "matmul_gflops": 2 * m ** 3 / t / 1e9}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (2 after 1 warm-up)")
    ap.add_argument("--rows", default=",".join(r.name for r in ROWS))
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--bin-dir", type=Path,
                    default=Path(os.environ.get("ATTNC_BIN_DIR", ROOT / "build" / "bin")))
    ap.add_argument("--peers", default="attnc,iree,jax")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--iree-max-gflop", type=float, default=20.0,
                    help="rows above this many executed GFLOP run IREE on one KV head, scaled")
    a = ap.parse_args()
    reps = a.reps or (2 if a.quick else 5)
    warmup = a.warmup if a.warmup is not None else 1
    rows = [r for r in ROWS if r.name in a.rows.split(",")]
    want = a.peers.split(",")
    out_json = a.json or ROOT / "bench" / "results" / \
        f"cpu_compare-{datetime.date.today().isoformat()}.json"
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    work = Path(tempfile.mkdtemp(prefix="cpu_compare_"))
    peers, notes = {}, {}
    if "attnc" in want:
        at = Attnc(a.bin_dir, work, a.threads)
        why = at.available()
        if why:
            notes["attnc"] = f"not run: {why}"
        else:
            try:
                at.compile(rows)
                peers["attnc"] = at
            except Exception as e:  # noqa: BLE001
                notes["attnc"] = f"not run: compile failed: {str(e)[:500]}"
    for name, make in [("iree", lambda: Iree(a.iree_max_gflop)),
                       ("jax", lambda: Jax(mem_total / 4))]:
        if name in want:
            try:
                peers[name] = make()
            except ImportError as e:
                notes[name] = f"not run: {e} (install with scripts/setup --bench)"

    print(f"# cpu_compare: dtype {DTYPE}, {a.threads} threads for attnc, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, median of {reps} after {warmup} warm-up")
    for n, p in peers.items():
        print(f"#   {n:5s} {getattr(p, 'version', '')}: {p.computes}")
    for n, why in notes.items():
        print(f"#   {n:5s} {why}")
    ceil = measure_ceilings(a.threads)
    print(f"# ceilings: copy {ceil['copy_gbs']:.1f} GB/s (read+write, {a.threads} threads), "
          f"f32 matmul {ceil['matmul_gflops']:.1f} GFLOP/s (numpy BLAS, 2048^3)")
    results = []
    for row in rows:
        rng = np.random.default_rng()
        q = rng.standard_normal((row.b, row.lq, row.hq, row.d), dtype=np.float32)
        k = rng.standard_normal((row.b, row.lk, row.hkv, row.d), dtype=np.float32)
        v = rng.standard_normal((row.b, row.lk, row.hkv, row.d), dtype=np.float32)
        useful = row.useful_flops()
        io_bytes = 2 * q.nbytes + k.nbytes + v.nbytes
        # The floor: the larger of compute at the matmul rate and I/O at copy bandwidth.
        floor_ms = 1e3 * max(useful / (ceil["matmul_gflops"] * 1e9), io_bytes / (ceil["copy_gbs"] * 1e9))
        outs = {}
        for name, p in peers.items():
            rec = dict(row=row.name, peer=name, shape=vars(row).copy(), dtype=DTYPE,
                       useful_gflop=useful / 1e9)
            try:
                res = p.measure(row, q, k, v, warmup, reps)
            except Exception as e:  # noqa: BLE001
                rec["error"] = str(e)[:2000]
                print(f"{row.name:14s} {name:5s} FAILED: {str(e)[:300]}", flush=True)
                results.append(rec)
                continue
            o, heads = res.pop("o"), res.pop("heads", row.hq)
            hk = heads // (row.hq // row.hkv)
            outs[name] = (o, heads)
            rec.update(res, gflops=useful / res["median_ms"] / 1e6, computes=p.computes,
                       gbs=io_bytes / res["median_ms"] / 1e6, floor_ms=floor_ms,
                       of_floor=floor_ms / res["median_ms"],
                       ref_rel_err=sampled_reference_error(
                           row, q[:, :, :heads], k[:, :, :hk], v[:, :, :hk], o))
            rec.setdefault("note", "")
            if name in ("iree", "jax"):  # both compute every score, then mask
                rec["executed_gflop"] = row.full_flops() / 1e9
            print(f"  {row.name} {name}: {rec['median_ms']:.1f} ms {rec['note']}", flush=True)
            results.append(rec)
        base_name = "attnc" if "attnc" in outs else next(iter(outs), None)
        for rec in results:
            if rec["row"] == row.name and rec["peer"] in outs:
                o, heads = outs[rec["peer"]]
                heads = min(heads, outs[base_name][1])
                base = outs[base_name][0][:, :, :heads].astype(np.float64)
                rec["base"] = base_name
                rec["rel_diff_vs_base"] = float(
                    np.abs(o[:, :, :heads] - base).max() / np.abs(base).max())
        t_attnc = next((r["median_ms"] for r in results
                        if r["row"] == row.name and r["peer"] == "attnc" and "median_ms" in r), None)
        for rec in results:
            if rec["row"] == row.name and t_attnc and "median_ms" in rec:
                rec["attnc_over_peer"] = t_attnc / rec["median_ms"]

    hdr = (f"{'row':14s} {'peer':5s} {'median ms':>10s} {'min ms':>10s} {'GFLOP/s':>8s} "
           f"{'GB/s':>6s} {'of floor':>8s} {'attnc/peer':>10s} {'ref err':>8s} {'vs base':>8s}  note")
    print(hdr + "\n" + "-" * len(hdr))
    for r in results:
        if "median_ms" not in r:
            continue
        ratio = f"{r['attnc_over_peer']:.2f}" if "attnc_over_peer" in r else "-"
        diff = f"{r['rel_diff_vs_base']:.1e}" if r["peer"] != r["base"] else "(base)"
        print(f"{r['row']:14s} {r['peer']:5s} {r['median_ms']:10.2f} {r['min_ms']:10.2f} "
              f"{r['gflops']:8.1f} {r['gbs']:6.2f} {r['of_floor']:8.2f} {ratio:>10s} {r['ref_rel_err']:8.1e} "
              f"{diff:>8s}  {r['note']}")
    bad = [r for r in results if r.get("ref_rel_err", 0) > 1e-4 or "error" in r]
    for r in bad:
        print(f"WARNING: {r['row']} {r['peer']}: "
              f"{r.get('error') or 'output differs from the reference: %.2e' % r['ref_rel_err']}")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"), dtype=DTYPE,
        cpus=os.cpu_count(), threads=a.threads, reps=reps, warmup=warmup,
        machine=platform.machine(), ceilings=ceil, peers={n: getattr(p, "computes", "") for n, p in peers.items()},
        not_run=notes, results=results), indent=1))
    print(f"wrote {out_json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
