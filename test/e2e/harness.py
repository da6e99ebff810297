"""Shared helpers for the end-to-end tests and benchmarks: `attn` MLIR generation, compiling with
attnc, .npy I/O (bf16 as raw uint16 bits), running attn-run and comparing with reference.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from reference import Mask

NP_DTYPE = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}
# relative tolerance on max_abs_err / max|ref| for o, absolute tolerance for finite lse
O_TOL = {"f32": 1e-5, "f16": 1e-2, "bf16": 2e-2}
LSE_TOL = {"f32": 1e-5, "f16": 1e-3, "bf16": 1e-3}


def f32(x: float) -> float:
    """Round to the nearest f32 (scale/softcap are f32 attributes)."""
    return float(np.float32(x))


def mask_attr(m: Mask) -> str:
    """`#attn.mask<...>` text for a mask."""
    parts = []
    if m.causal:
        parts.append("causal")
    if m.window >= 0:
        parts.append(f"window = {m.window}")
    if m.sinks:
        parts.append(f"sinks = {m.sinks}")
    if m.align == "top_left":
        parts.append("top_left")
    return f"#attn.mask<{', '.join(parts) or 'none'}>"


def mask_name(m: Mask) -> str:
    """Short identifier for a mask, e.g. causal_win128_s2_tl."""
    parts = (["causal"] if m.causal else []) + ([f"win{m.window}"] if m.window >= 0 else [])
    parts += [f"s{m.sinks}"] if m.sinks else []
    parts += ["tl"] if m.align == "top_left" else []
    return "_".join(parts) or "nomask"


@dataclass(frozen=True)
class KernelSpec:
    """One `attn.attention` kernel: everything that is fixed at compile time."""
    dtype: str
    hq: int
    hkv: int
    d: int
    mask: Mask = Mask()
    softcap: float = 0.0
    scale: float | None = None
    lse: bool = False
    ragged: bool = False
    static: tuple | None = None  # dense only: static (B, Lq, Lk) instead of `?`
    tag: str = ""

    @property
    def name(self) -> str:
        n = [("ragged" if self.ragged else "dense"), self.dtype, f"d{self.d}",
             f"h{self.hq}x{self.hkv}", mask_name(self.mask)]
        n += [f"cap{self.softcap:g}".replace(".", "p")] if self.softcap else []
        n += [f"sc{self.scale:g}".replace(".", "p")] if self.scale is not None else []
        n += ["lse"] if self.lse else []
        n += ["static"] if self.static else []
        n += [self.tag] if self.tag else []
        return "_".join(n)

    def func_mlir(self) -> str:
        """The kernel as a `func.func` around one `attn.attention`."""
        t = self.dtype
        if self.ragged:
            qt = f"tensor<?x{self.hq}x{self.d}x{t}>"
            kt = f"tensor<?x{self.hkv}x{self.d}x{t}>"
            lt = f"tensor<{self.hq}x?xf32>"
            ins = [("q", qt), ("k", kt), ("v", kt), ("cuq", "tensor<?xi32>"),
                   ("cuk", "tensor<?xi32>")]
        else:
            b, lq, lk = (str(x) for x in self.static) if self.static else ("?", "?", "?")
            qt = f"tensor<{b}x{lq}x{self.hq}x{self.d}x{t}>"
            kt = f"tensor<{b}x{lk}x{self.hkv}x{self.d}x{t}>"
            lt = f"tensor<{b}x{self.hq}x{lq}xf32>"
            ins = [("q", qt), ("k", kt), ("v", kt)]
        res = [qt] + ([lt] if self.lse else [])
        attrs = [f"mask = {mask_attr(self.mask)}"]
        if self.softcap:
            attrs.append(f"softcap = {f32(self.softcap)!r} : f32")
        if self.scale is not None:
            attrs.append(f"scale = {f32(self.scale)!r} : f32")
        operands = "%q, %k, %v" + (" cu_seqlens(%cuq, %cuk)" if self.ragged else "")
        sig = ", ".join(f"%{n}: {ty}" for n, ty in ins)
        rty = res[0] if len(res) == 1 else f"({', '.join(res)})"
        outs = "%o, %lse" if self.lse else "%o"
        fty = f"({', '.join(ty for _, ty in ins)}) -> {rty}"
        return (f"func.func @{self.name}({sig}) -> {rty} {{\n"
                f"  {outs} = attn.attention {operands} {{{', '.join(attrs)}}} : {fty}\n"
                f"  return {outs} : {', '.join(res)}\n}}\n")

    def reference_kwargs(self) -> dict:
        """Keyword arguments for reference.attention."""
        return dict(mask=self.mask, softcap=f32(self.softcap),
                    scale=None if self.scale is None else f32(self.scale))


def module_mlir(specs) -> str:
    """A module holding several kernels."""
    return "\n".join(s.func_mlir() for s in specs)


def tool_dir() -> Path:
    return Path(os.environ.get("ATTNC_BIN_DIR", "/work/main/build/bin"))


def compile_source(source: str, out_dir: Path, stem: str, target: str | None = None) -> Path:
    """Writes `source` to out_dir/stem.mlir and compiles it with attnc into out_dir (for the
    host, or for `target`, e.g. sm_80,sm_90); returns out_dir."""
    src = out_dir / f"{stem}.mlir"
    src.write_text(source)
    cmd = [str(tool_dir() / "attnc"), str(src), "-o", str(out_dir)]
    cmd += [f"--target={target}"] if target else []
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return out_dir


def gpu_emulator():
    """The PTX emulator (test/gpu/emulator/emulated_cuda.py) when ATTNC_GPU_EMULATOR names the
    fake CUDA driver (libattnrt_fakecuda.so): attnrt then runs the GPU tests' kernels on it
    instead of a device (the gpu_emulated ctest entries, docs/testing.md). None otherwise."""
    path = os.environ.get("ATTNC_GPU_EMULATOR")
    if not path:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu" / "emulator"))
    from emulated_cuda import EmulatedCuda
    return EmulatedCuda.enable(path)


def gpu_kernels(tmp_path_factory, stem: str, source: str):
    """For a module-scoped fixture: `source` compiled for sm_80 and sm_90 and opened by
    attnrt's GPU API (yields the attnrt_ctypes.GpuModule); without a CUDA driver or device the
    test module exits 77, which ctest reports as skipped. Under ATTNC_GPU_EMULATOR the
    kernels run on the PTX emulator (gpu_emulator)."""
    import attnrt_ctypes as rt
    import pytest

    # The emulator runs the PTX: one architecture's cubin suffices (ptxas still checks it).
    target = "sm_80" if gpu_emulator() else "sm_80,sm_90"
    ok, why = rt.cuda_available()
    if not ok:
        pytest.exit(f"no GPU: {why}", returncode=77)
    out = compile_source(source, tmp_path_factory.mktemp(stem), stem, target=target)
    with rt.GpuModule(out) as module:
        yield module


def compile_module(attnc: Path, specs, out_dir: Path, stem: str) -> Path:
    """Write specs as STEM.mlir and compile with attnc into out_dir; raises on failure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{stem}.mlir"
    src.write_text(module_mlir(specs))
    r = subprocess.run([str(attnc), str(src), "--target=host", "-o", str(out_dir)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"attnc failed (rc={r.returncode}) on {src}:\n{r.stderr[-4000:]}")
    if not (out_dir / "manifest.json").exists():
        raise RuntimeError(f"attnc wrote no manifest.json in {out_dir}")
    return out_dir


@dataclass
class KernelCache:
    """Compiles kernels once per session: all kernels of a group go into one module, groups
    compile in parallel; a group that fails is retried kernel by kernel so that only the broken
    kernels' tests fail."""
    attnc: Path
    root: Path
    jobs: int = 2
    _groups: dict = field(default_factory=dict)   # group key -> list of specs
    _dirs: dict = field(default_factory=dict)     # spec name -> dir or exception
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, specs, group_of=lambda s: f"{'ragged' if s.ragged else 'dense'}_{s.dtype}"):
        for s in specs:
            g = self._groups.setdefault(group_of(s), [])
            if s not in g:
                g.append(s)

    def _compile_group(self, key, specs):
        try:
            d = compile_module(self.attnc, specs, self.root / key, key)
            return {s.name: d for s in specs}
        except Exception:  # noqa: BLE001 - retry individually below
            out = {}
            for s in specs:
                try:
                    out[s.name] = compile_module(self.attnc, [s], self.root / s.name, s.name)
                except Exception as e:  # noqa: BLE001
                    out[s.name] = e
            return out

    def dir_for(self, spec: KernelSpec) -> Path:
        with self._lock:
            if spec.name not in self._dirs:
                if not any(spec in g for g in self._groups.values()):
                    self._groups[spec.name] = [spec]
                todo = {k: [s for s in v if s.name not in self._dirs]
                        for k, v in self._groups.items()}
                todo = {k: v for k, v in todo.items() if v}
                with ThreadPoolExecutor(self.jobs) as ex:
                    for res in ex.map(lambda kv: self._compile_group(*kv), todo.items()):
                        self._dirs.update(res)
        d = self._dirs[spec.name]
        if isinstance(d, Exception):
            raise d
        return d


def save_npy(path: Path, a: np.ndarray) -> None:
    """np.save, with bf16 written as its raw uint16 bits."""
    if a.dtype == ml_dtypes.bfloat16:
        a = a.view(np.uint16)
    np.save(path, np.ascontiguousarray(a))


def load_npy(path: Path, dtype: str) -> np.ndarray:
    """np.load, reinterpreting 2-byte raw data as bf16 when dtype is bf16."""
    a = np.load(path)
    if dtype == "bf16" and a.dtype != ml_dtypes.bfloat16:
        if a.dtype.itemsize != 2:
            raise AssertionError(f"{path}: bf16 output stored as {a.dtype}")
        a = a.view(ml_dtypes.bfloat16)
    return a


def manifest_kernel(kdir: Path, name: str) -> dict:
    man = json.loads((kdir / "manifest.json").read_text())
    for k in man["kernels"]:
        if k["name"] == name:
            return k
    raise AssertionError(f"kernel {name} not in {kdir}/manifest.json")


def run_attn_run(attn_run: Path, kdir: Path, kernel: str, inputs: dict, outputs: dict,
                 extra=(), timeout=600) -> subprocess.CompletedProcess:
    """Run attn-run with --in ARG=FILE / --out ARG=FILE; returns the completed process."""
    cmd = [str(attn_run), str(kdir), "--kernel", kernel]
    for n, p in inputs.items():
        cmd += ["--in", f"{n}={p}"]
    for n, p in outputs.items():
        cmd += ["--out", f"{n}={p}"]
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    r.cmd = " ".join(cmd)
    return r


def compare(dtype: str, o: np.ndarray, o_ref: np.ndarray, lse, lse_ref) -> list[str]:
    """Checks o (and lse when given) against the reference; returns a list of problems."""
    bad = []
    o = o.astype(np.float64)
    if o.shape != o_ref.shape:
        return [f"o shape {o.shape} != {o_ref.shape}"]
    if np.isnan(o).any() or np.isinf(o).any():
        bad.append(f"o has {np.isnan(o).sum()} NaN / {np.isinf(o).sum()} inf")
    denom = float(np.abs(o_ref).max()) if o_ref.size else 0.0
    err = float(np.abs(o - o_ref).max()) if o.size else 0.0
    rel = err / denom if denom > 0 else err
    if not rel <= O_TOL[dtype]:
        idx = tuple(int(i) for i in np.unravel_index(np.nanargmax(np.abs(o - o_ref)), o.shape))
        bad.append(f"o: max_abs_err/max|ref| = {rel:.3g} > {O_TOL[dtype]} "
                   f"(worst at {idx}: got {float(o[idx])!r}, want {float(o_ref[idx])!r})")
    if lse is not None:
        lse = lse.astype(np.float64)
        if lse.shape != lse_ref.shape:
            return bad + [f"lse shape {lse.shape} != {lse_ref.shape}"]
        if np.isnan(lse).any():
            bad.append(f"lse has {np.isnan(lse).sum()} NaN")
        ninf_ref, ninf = np.isneginf(lse_ref), np.isneginf(lse)
        if (ninf_ref != ninf).any():
            bad.append(f"lse -inf pattern differs at {int((ninf_ref != ninf).sum())} places "
                       f"(first {np.argwhere(ninf_ref != ninf)[0].tolist()})")
        fin = ~ninf_ref & ~ninf
        if fin.any():
            lerr = float(np.abs(lse[fin] - lse_ref[fin]).max())
            if not lerr <= LSE_TOL[dtype]:
                bad.append(f"lse: max_abs_err {lerr:.3g} > {LSE_TOL[dtype]}")
    return bad
