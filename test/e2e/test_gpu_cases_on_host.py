"""The GPU tests' cases on the host (CI has no GPU): the kernels of test/gpu/test_gpu_decode.py,
test_gpu_prefill_ragged.py and test_gpu_numerics.py compiled for the CPU, run on the same random
cases through the same harnesses (attnrt by ctypes, attn-run --device=cpu), must match the same
float64 references. This keeps those tests' harnesses and references right (page gathering in
both layouts, int8, int4 and fp8 dequantization, ragged batches, masks and per-head masks,
argument roles) where their GPU runs cannot be made; the GPU kernels themselves are checked only
on a GPU.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))

import attnrt_ctypes as rt  # noqa: E402
import test_gpu_decode as gpu_decode  # noqa: E402
import test_gpu_numerics as gpu_numerics  # noqa: E402
import test_gpu_prefill_ragged as gpu_ragged  # noqa: E402
from harness import compare, compile_source, module_mlir  # noqa: E402


def run_cases_on_host(tmp_path, rng_seed, test, batches, dtype_of):
    """Compiles `test`'s kernels (a GPU test module's KERNELS and kernel_mlir) for the host and
    runs its random_case of each batch through attnrt against its float64 references."""
    compile_source("\n".join(test.kernel_mlir(*k) for k in test.KERNELS), tmp_path, "cases")
    rng = np.random.default_rng(rng_seed)
    with rt.Module(tmp_path, num_threads=2) as module:
        for kernel in test.KERNELS:
            for lens in batches:
                args, (o, lse), (o_ref, lse_ref) = test.random_case(rng, kernel, lens)
                module.run(kernel[0], args)
                bad = compare(dtype_of(kernel), o, o_ref, lse, lse_ref)
                assert not bad, f"{kernel[0]} lens={lens} seed={rng_seed}: " + "; ".join(bad)


def test_gpu_decode_cases_match_the_host_kernels(tmp_path, rng_seed):
    run_cases_on_host(tmp_path, rng_seed, gpu_decode, gpu_decode.SEQ_LENS, lambda k: k[1])


def test_gpu_ragged_prefill_cases_match_the_host_kernels(tmp_path, rng_seed):
    # The cheap batches (2 cores).
    batches = gpu_ragged.LENS[:2] + gpu_ragged.LENS[3:]
    run_cases_on_host(tmp_path, rng_seed, gpu_ragged, batches, lambda k: k[2])


def test_gpu_prefill_cases_match_the_host_kernels(tmp_path, rng_seed):
    compile_source(module_mlir(gpu_numerics.KERNELS), tmp_path, "gpu_numerics")
    for spec in gpu_numerics.KERNELS:  # the cheap shapes: 2 cores
        gpu_numerics.check_kernel(spec, tmp_path, tmp_path, rng_seed % 2**31, "cpu",
                                  shapes=[(1, 1), (7, 1), (65, 130), (1, 4097)])
