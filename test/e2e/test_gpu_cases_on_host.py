"""The GPU tests' cases on the host (CI has no GPU): the kernels of test/gpu/test_gpu_decode.py,
test_gpu_prefill_ragged.py and test_gpu_numerics.py compiled for the CPU, run on the same random cases through the same
harness (attnrt by ctypes, attn-run --device=cpu), must match the same float64 references. This
keeps those tests' harnesses and references right (page gathering in both layouts, int8 and fp8
dequantization, masks, argument roles) where their GPU runs cannot be made; the GPU kernels
themselves are checked only on a GPU.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))

import attnrt_ctypes as rt  # noqa: E402
import test_gpu_decode as gpu_decode  # noqa: E402
import test_gpu_numerics as gpu_numerics  # noqa: E402
import test_gpu_prefill_ragged as gpu_ragged  # noqa: E402
from harness import compare, module_mlir, tool_dir  # noqa: E402


def test_gpu_decode_cases_match_the_host_kernels(tmp_path, rng_seed):
    src = tmp_path / "gpu_decode.mlir"
    src.write_text("\n".join(gpu_decode.kernel_mlir(*k) for k in gpu_decode.KERNELS))
    r = subprocess.run([str(tool_dir() / "attnc"), str(src), "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    rng = np.random.default_rng(rng_seed)
    with rt.Module(tmp_path, num_threads=2) as module:
        for kernel in gpu_decode.KERNELS:
            for lens in gpu_decode.SEQ_LENS:
                args, (o, lse), (o_ref, lse_ref) = gpu_decode.random_case(rng, kernel, lens)
                module.run(kernel[0], args)
                bad = compare(kernel[1], o, o_ref, lse, lse_ref)
                assert not bad, f"{kernel[0]} lens={lens} seed={rng_seed}: " + "; ".join(bad)


def test_gpu_prefill_cases_match_the_host_kernels(tmp_path, rng_seed):
    src = tmp_path / "gpu_numerics.mlir"
    src.write_text(module_mlir(gpu_numerics.KERNELS))
    r = subprocess.run([str(tool_dir() / "attnc"), str(src), "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    for spec in gpu_numerics.KERNELS:  # the cheap shapes: 2 cores
        gpu_numerics.check_kernel(spec, tmp_path, tmp_path, rng_seed % 2**31, "cpu",
                                  shapes=[(1, 1), (7, 1), (65, 130), (1, 4097)])


def test_gpu_ragged_prefill_cases_match_the_host_kernels(tmp_path, rng_seed):
    src = tmp_path / "gpu_prefill_ragged.mlir"
    src.write_text("\n".join(gpu_ragged.kernel_mlir(*k) for k in gpu_ragged.KERNELS))
    r = subprocess.run([str(tool_dir() / "attnc"), str(src), "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    rng = np.random.default_rng(rng_seed)
    with rt.Module(tmp_path, num_threads=2) as module:
        for kernel in gpu_ragged.KERNELS:
            for lens in gpu_ragged.LENS[:2] + gpu_ragged.LENS[3:]:  # the cheap batches
                args, (o, lse), (o_ref, lse_ref) = gpu_ragged.random_case(rng, kernel, lens)
                module.run(kernel[0], args)
                bad = compare(kernel[2], o, o_ref, lse, lse_ref)
                assert not bad, f"{kernel[0]} lens={lens} seed={rng_seed}: " + "; ".join(bad)
