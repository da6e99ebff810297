"""Dense and ragged attention compiled by attnc.compile and called from Python, against the float64
NumPy reference (test/e2e/reference.py) at odd sizes with fresh seeds; how arguments cross
(positional, by name, caller-given outputs, DLPack, no copies) and that kernels release the GIL."""
from __future__ import annotations


import ml_dtypes
import numpy as np
import pytest

import attnc
from gil import stamps_during
from harness import LSE_TOL, O_TOL, KernelSpec, compare, module_mlir
from reference import Mask, attention

SPECS = [
    KernelSpec("f32", 6, 2, 64, Mask(causal=True), lse=True, tag="py"),
    KernelSpec("f16", 5, 1, 80, Mask(causal=True, window=13, sinks=2), tag="py"),
    KernelSpec("bf16", 3, 3, 96, Mask(), softcap=20.0, scale=0.1, lse=True, tag="py"),
    KernelSpec("f32", 8, 2, 64, Mask(window=9, align="top_left"), lse=True, ragged=True,
               tag="py"),
]
NP = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


@pytest.fixture(scope="module")
def module():
    return attnc.compile(module_mlir(SPECS), num_threads=2)


def random_qkv(rng, spec: KernelSpec, b: int, lq: int, lk: int):
    t = NP[spec.dtype]
    q = rng.standard_normal((b, lq, spec.hq, spec.d)).astype(t)
    k = rng.standard_normal((b, lk, spec.hkv, spec.d)).astype(t)
    v = rng.standard_normal((b, lk, spec.hkv, spec.d)).astype(t)
    return q, k, v


def test_module_lists_kernels(module):
    assert module.kernels == [s.name for s in SPECS]
    assert len(module) == len(SPECS) and SPECS[0].name in module
    k = module[SPECS[0].name]
    assert module.__getattr__(SPECS[0].name) is k
    assert k.kind == "attention" and k.num_phases >= 1
    assert [a.name for a in k.args] == ["q", "k", "v", "o", "lse"]
    assert [a.dir for a in k.args] == ["in", "in", "in", "out", "out"]
    assert k.args[0].shape == ["batch", "seqlen_q", 6, 64]
    assert k.args[0].dims[0].name == "batch" and k.args[0].dims[2].value == 6
    assert k.inputs == ["q", "k", "v"] and k.outputs == ["o", "lse"]
    at = k.attention
    assert (at.layout, at.num_q_heads, at.num_kv_heads, at.head_dim) == ("dense", 6, 2, 64)
    assert at.mask.causal and at.mask.align == "bottom_right" and at.has_lse
    assert at.block_kv > 0 and at.workspace_bytes > 0
    assert k.kv_cache is None and k.block_sparse is None and not k.has_tile_stats
    assert module.manifest["kernels"][0]["name"] == SPECS[0].name
    assert module.path is None  # a temporary directory, gone


@pytest.mark.parametrize("spec", SPECS[:3], ids=lambda s: s.dtype)
@pytest.mark.parametrize("b,lq,lk", [(1, 1, 1), (3, 7, 37), (2, 61, 29), (1, 1, 203)])
def test_dense_matches_reference(module, spec, b, lq, lk, rng_seed):
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_qkv(rng, spec, b, lq, lk)
    res = module[spec.name](q, k, v)
    o, lse = res if spec.lse else (res, None)
    assert o.dtype == NP[spec.dtype] and o.shape == q.shape
    o_ref, lse_ref = attention(q, k, v, **spec.reference_kwargs())
    assert compare(spec.dtype, o, o_ref, lse, lse_ref if spec.lse else None) == []


def test_ragged_matches_reference(module, rng_seed):
    spec = SPECS[3]
    rng = np.random.default_rng(rng_seed)
    lens_q = rng.integers(0, 40, size=5)
    lens_k = lens_q + rng.integers(0, 30, size=5)
    cq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q = rng.standard_normal((cq[-1], spec.hq, spec.d)).astype(np.float32)
    k = rng.standard_normal((ck[-1], spec.hkv, spec.d)).astype(np.float32)
    v = rng.standard_normal((ck[-1], spec.hkv, spec.d)).astype(np.float32)
    o, lse = module[spec.name](q=q, k=k, v=v, cu_seqlens_q=cq, cu_seqlens_k=ck)
    o_ref, lse_ref = attention(q, k, v, cu_seqlens_q=cq, cu_seqlens_k=ck,
                               **spec.reference_kwargs())
    assert compare("f32", o, o_ref, lse, lse_ref) == []


def test_outputs_given_by_the_caller_are_written_in_place(module, rng_seed):
    spec = SPECS[0]
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_qkv(rng, spec, 2, 9, 11)
    o = np.full(q.shape, np.nan, np.float32)
    lse = np.full((2, spec.hq, 9), np.nan, np.float32)
    got_o, got_lse = module[spec.name].run({"q": q, "k": k, "v": v, "o": o, "lse": lse})
    assert got_o is o and got_lse is lse
    o_ref, lse_ref = attention(q, k, v, **spec.reference_kwargs())
    assert compare("f32", o, o_ref, lse, lse_ref) == []
    # positional, outputs included, and a sequence to run()
    o2, _ = module[spec.name](q, k, v, np.empty_like(o), np.empty_like(lse))
    np.testing.assert_array_equal(o2, o)
    o3, _ = module[spec.name].run([q, k, v], num_threads=1)
    np.testing.assert_array_equal(o3, o)


class DLPackOnly:
    """Exposes an array through __dlpack__ alone (as a framework tensor does)."""

    def __init__(self, a):
        self._a = a
        self.shape = a.shape
        self.calls = 0

    def __dlpack__(self, **kwargs):
        self.calls += 1
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_tensors_and_zero_copy(module, rng_seed):
    spec = SPECS[0]
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_qkv(rng, spec, 1, 5, 23)
    o_np, lse_np = module[spec.name](q, k, v)
    wrapped = [DLPackOnly(x) for x in (q, k, v)]
    o = np.zeros_like(o_np)
    out = DLPackOnly(o)  # an output through DLPack is written in place: no copy on the way
    module[spec.name](*wrapped, o=out, lse=np.zeros_like(lse_np))
    assert all(w.calls >= 1 for w in wrapped + [out])
    np.testing.assert_array_equal(o, o_np)


def test_kernels_run_without_the_gil(module, rng_seed):
    """While a kernel runs on one thread, Python code runs on another: the main thread's loop
    leaves time stamps inside the kernel's run (none could be there if it held the GIL)."""
    spec = SPECS[0]
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_qkv(rng, spec, 1, 1024, 1024)
    kernel = module[spec.name]
    kernel.run([q, k, v], num_threads=1)  # warm
    t0, t1, inside = stamps_during(lambda: kernel.run([q, k, v], num_threads=1), 0.0005)
    assert t1 - t0 > 0.02, "the kernel ran too briefly to tell"
    assert len(inside) >= 5, f"{len(inside)} stamps inside a {(t1 - t0) * 1e3:.0f} ms kernel"


def test_bf16_and_f16_arrays_of_the_wrong_type_are_refused(module, rng_seed):
    spec = SPECS[2]  # bf16
    rng = np.random.default_rng(rng_seed)
    q, k, v = random_qkv(rng, spec, 1, 3, 3)
    with pytest.raises(attnc.DTypeError, match=r"argument 'k' \(#1\): dtype is f16 but the "
                                               r"kernel expects bf16"):
        module[spec.name](q, k.astype(np.float16), v)
    with pytest.raises(TypeError, match="dtype is float64 but the kernel expects bf16"):
        module[spec.name](q.astype(np.float64), k, v)
