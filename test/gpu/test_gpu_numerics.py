"""GPU numerics (label gpu): the prefill kernels attnc compiles for NVIDIA GPUs, run by
`attn-run --device=gpu` on fresh random inputs, against the float64 reference (test/e2e).

Every kernel the GPU target has (f16 and bf16, head_dim 64 and 128, every structured mask,
GQA ratios 1, 3, 4 and 8, with and without LSE and softcap) over the CPU suite's odd shapes.
Without a CUDA driver or device the whole module exits 77, which ctest reports as skipped,
never as passed.

    ATTNC_BIN_DIR=build/bin python -m pytest test/gpu/test_gpu_numerics.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import attnrt_ctypes as rt  # noqa: E402
from harness import (KernelSpec, NP_DTYPE, compare, gpu_emulator, load_npy,  # noqa: E402
                     module_mlir, run_attn_run, save_npy, tool_dir)
from reference import attention  # noqa: E402
from test_numerics import MASKS  # noqa: E402  (the CPU suite's 7 masks)

# GQA 3 packs positions across a tile's row boundaries (64 rows are 21 1/3 positions).
HEADS = [(4, 4), (8, 2), (8, 1), (32, 8), (6, 2)]
KERNELS = [KernelSpec(dtype=dt, hq=HEADS[(mi + di) % 5][0], hkv=HEADS[(mi + di) % 5][1],
                      d=[64, 128][(mi + di) % 2], mask=m, lse=(mi + di) % 3 != 2,
                      softcap=[0.0, 0.0, 0.0, 30.0][(mi + di) % 4])
           for di, dt in enumerate(["f16", "bf16"]) for mi, m in enumerate(MASKS)]
SHAPES = [(1, 1), (1, 7), (7, 7), (7, 1), (65, 130), (128, 128), (1000, 7), (1, 4097),
          (7, 1000), (1000, 1000), (128, 4097)]
# On the PTX emulator (ATTNC_GPU_EMULATOR, thousands of times slower than a device) the shapes
# that still cover partial and several query and KV tiles, and more keys than queries and the
# reverse; the kernels run through attnrt's API in this process (attn-run would be another).
EMULATED = bool(os.environ.get("ATTNC_GPU_EMULATOR"))
if EMULATED:
    SHAPES = [(1, 1), (7, 1), (65, 130), (130, 65), (1, 300)]


def _no_gpu(stderr: str) -> bool:
    return "could not be loaded" in stderr or "reports no device" in stderr


@pytest.fixture(scope="module")
def gpu_kernels(tmp_path_factory):
    """The kernels, compiled once for sm_80 and sm_90; exits 77 without a GPU."""
    bindir = tool_dir()
    out = tmp_path_factory.mktemp("gpu_kernels")
    src = out / "gpu_numerics.mlir"
    src.write_text(module_mlir(KERNELS))
    # The emulator runs the PTX: one architecture's cubin suffices (ptxas still checks it).
    target = "sm_80" if EMULATED else "sm_80,sm_90"
    r = subprocess.run([str(bindir / "attnc"), str(src), f"--target={target}", "-o", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    if EMULATED:
        gpu_emulator()
        ok, why = rt.cuda_available()
        assert ok, why
        return out
    probe = subprocess.run([str(bindir / "attn-run"), str(out), "--kernel", KERNELS[0].name,
                            "--device=gpu", "--random", "1", "--size", "batch=1",
                            "--size", "seqlen_q=1", "--size", "seqlen_k=1"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0 and _no_gpu(probe.stderr):
        pytest.exit(f"no GPU: {probe.stderr.strip()}", returncode=77)
    assert probe.returncode == 0, probe.stderr[-4000:]
    return out


def check_kernel(spec, kdir, tmp_path, seed, device, shapes=SHAPES):
    """Runs kernel `spec` of the artifact `kdir` through attn-run (`--device=gpu|cpu`) at
    `shapes` on fresh inputs and asserts it matches float64."""
    rng = np.random.default_rng(seed)
    manifest = json.loads((kdir / "manifest.json").read_text())
    man = next(k for k in manifest["kernels"] if k["name"] == spec.name)
    roles = {a["role"]: a["name"] for a in man["args"]}
    t = NP_DTYPE[spec.dtype]
    for lq, lk in shapes:
        b = 2 if lq * lk <= 10000 else 1
        # With softcap, queries scaled up so that the cap bites.
        q = ((3.0 if spec.softcap else 1.0) *
             rng.standard_normal((b, lq, spec.hq, spec.d), dtype=np.float32)).astype(t)
        k = rng.standard_normal((b, lk, spec.hkv, spec.d), dtype=np.float32).astype(t)
        v = rng.standard_normal((b, lk, spec.hkv, spec.d), dtype=np.float32).astype(t)
        if device == "gpu" and EMULATED:
            o, lse = run_in_process(spec, kdir, man, q, k, v)
            ctx = f"{lq}x{lk}, seed={seed} (ATTNC_TEST_SEED={seed}), on the PTX emulator"
        else:
            ins, outs = {}, {}
            for role, arr in {"query": q, "key": k, "value": v}.items():
                save_npy(tmp_path / f"{role}.npy", arr)
                ins[roles[role]] = tmp_path / f"{role}.npy"
            for role in ["output"] + (["lse"] if spec.lse else []):
                outs[roles[role]] = tmp_path / f"out_{role}.npy"
            r = run_attn_run(tool_dir() / "attn-run", kdir, spec.name, ins, outs,
                             extra=[f"--device={device}"])
            ctx = f"{lq}x{lk}, seed={seed} (ATTNC_TEST_SEED={seed})\n$ {r.cmd}"
            assert r.returncode == 0, f"attn-run failed\n{ctx}\n{r.stderr[-3000:]}"
            o = load_npy(outs[roles["output"]], spec.dtype)
            lse = load_npy(outs[roles["lse"]], "f32") if spec.lse else None
        o_ref, lse_ref = attention(q, k, v, **spec.reference_kwargs())
        bad = compare(spec.dtype, o, o_ref, lse, lse_ref)
        empty = np.isneginf(lse_ref)
        if empty.any():
            nz = np.abs(o.astype(np.float64).transpose(0, 2, 1, 3)[empty]).max()
            if nz != 0:
                bad.append(f"rows with no visible key are not zero (max |o| = {nz})")
        assert not bad, f"{spec.name}: " + "; ".join(bad) + f"\n{ctx}"


def run_in_process(spec, kdir, man, q, k, v):
    """Kernel `spec` on q, k, v through attnrt's GPU API (attnrt_gpu_run) in this process:
    the output and LSE ([B, Hq, Lq]) or None."""
    o = np.full(q.shape, np.nan, dtype=q.dtype)
    lse = (np.full((q.shape[0], spec.hq, q.shape[1]), np.nan, dtype=np.float32)
           if spec.lse else None)
    by_role = {"query": q, "key": k, "value": v, "output": o, "lse": lse}
    with rt.GpuModule(kdir) as module:
        module.run_arrays(spec.name, [by_role[a["role"]] for a in man["args"]])
    return o, lse


@pytest.mark.parametrize("spec", KERNELS, ids=lambda s: s.name)
def test_prefill_against_float64(spec, gpu_kernels, tmp_path):
    seed = int(os.environ.get("ATTNC_TEST_SEED", np.random.SeedSequence().entropy % 2**31))
    check_kernel(spec, gpu_kernels, tmp_path, seed, "gpu")
