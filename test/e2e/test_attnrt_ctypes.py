"""attnrt_ctypes against the hand-written fixture library (test/unit/fixture/testkernels.c),
and its GPU wrapper against the split-KV fixture (test/unit/fixture/cuda-split) on the unit
tests' fake CUDA driver.

The fixture directory is $ATTNRT_FIXTURE_DIR (ctest sets it, with $ATTNRT_LIB), else
<repo>/build/test/unit/fixture. The tests skip only when that variable is unset and the default
directory does not exist.
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attnrt_ctypes import AttnrtError, Module  # noqa: E402
from reference import Mask, attention  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    d = Path(os.environ.get("ATTNRT_FIXTURE_DIR", REPO / "build" / "test" / "unit" / "fixture"))
    if "ATTNRT_FIXTURE_DIR" not in os.environ and not d.exists():
        pytest.skip(f"ATTNRT_FIXTURE_DIR unset and {d} does not exist (build the unit tests)")
    return d


@pytest.fixture(scope="module")
def module(fixture_dir):
    with Module(fixture_dir, num_threads=3) as m:
        yield m


def test_kernels_and_info(module):
    assert module.kernels == ["dense_f32", "ragged_f32", "count", "two_phase", "append_i8",
                              "paged_f8"]
    two = module.info("two_phase")
    assert (two["kind"], two["phases"], two["attention"], two["kv_cache"]) == \
        ("merge", 3, None, None)
    assert two["scratch"] == [{"name": "partial", "dtype": "f32", "shape": ["n"]},
                              {"name": "odd", "dtype": "i8", "shape": ["n+1"]},
                              {"name": "tail", "dtype": "i32", "shape": [1]}]
    append = module.info("append_i8")
    assert append["kind"] == "kv_append"
    assert append["args"][3] == {"name": "cache_k_pages", "role": "k_pages", "dir": "inout",
                                 "dtype": "i8", "shape": ["num_pages", 4, 2, 2]}
    paged = module.info("paged_f8")
    assert paged["kind"] == "paged_attention" and paged["phases"] == 1
    assert paged["attention"]["layout"] == "paged"
    assert paged["attention"]["num_q_heads"] == 2 and paged["attention"]["scale"] == 0.5
    assert paged["kv_cache"] == {"name": "cache", "page_size": 4, "num_kv_heads": 1,
                                 "head_dim": 4, "layout": "nhd", "storage": "f8e4m3fn",
                                 "k_group": 4, "bytes_per_token": 8.0}
    assert [a["role"] for a in paged["args"]][5:9] == \
        ["kv_indptr", "kv_indices", "kv_last_page_len", "qo_indptr"]
    assert module.info("dense_f32")["attention"]["layout"] == "dense"


@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("as_list", [False, True])
def test_two_phase_with_scratch(module, n, as_list):
    x = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
    o = np.full(n, np.nan, dtype=np.float32)
    module.run("two_phase", [x, o] if as_list else {"x": x, "o": o})
    j = (7 * np.arange(n) + 3) % n
    np.testing.assert_array_equal(o, 2 * x + 2 * x[j])


def append_args(slots, pages=5):
    n = len(slots)
    rng = np.random.default_rng(1)
    return {
        "k_new": rng.uniform(-1, 1, (n, 2, 2)).astype(np.float32),
        "v_new": rng.uniform(-1, 1, (n, 2, 2)).astype(np.float32),
        "slot_mapping": np.array(slots, dtype=np.int32),
        "cache_k_pages": np.zeros((pages, 4, 2, 2), np.int8),
        "cache_v_pages": np.zeros((pages, 4, 2, 2), np.int8),
        "cache_k_scale": np.zeros((pages, 1, 2, 2), np.float16),
        "cache_v_scale": np.zeros((pages, 4, 2), np.float16),
    }


def test_append_writes_inout_in_place(module):
    a = append_args([9, -1, 3, 19])
    module.run("append_i8", a)
    kp = a["cache_k_pages"].reshape(-1, 2, 2)  # [slot, head, dim]
    expect = np.zeros_like(kp)
    for t, s in enumerate([9, -1, 3, 19]):
        if s >= 0:
            expect[s] = np.clip(np.rint(10 * a["k_new"][t]), -127, 127)
    np.testing.assert_array_equal(kp, expect)
    assert (a["cache_k_scale"][[0, 2, 4]] == np.float16(0.1)).all()
    assert (a["cache_k_scale"][[1, 3]] == 0).all()


def test_append_validation_errors(module):
    with pytest.raises(AttnrtError) as e:
        module.run("append_i8", append_args([0, 20]))
    assert e.value.status == 7
    assert "argument 'slot_mapping' (#2): entry 1 is 20 but the pool 'cache_k_pages' has 5 " \
           "pages of 4 slots" in e.value.message
    a = append_args([1])
    a["cache_v_pages"] = a["cache_k_pages"]  # inout aliasing
    with pytest.raises(AttnrtError, match="shares memory with argument 'cache_v_pages'"):
        module.run("append_i8", a)


def paged_args(indptr, indices, last, qo, pages=5, seed=0):
    rng = np.random.default_rng(seed)
    tq = qo[-1]
    f8 = ml_dtypes.float8_e4m3fn
    return {
        "q": rng.uniform(-1, 1, (tq, 2, 4)).astype(np.float32),
        "cache_k_pages": (rng.uniform(-4, 4, (pages, 4, 1, 4))).astype(f8),
        "cache_v_pages": (rng.uniform(-4, 4, (pages, 4, 1, 4))).astype(f8),
        "cache_k_scale": np.array([0.5], np.float32),
        "cache_v_scale": np.array([0.25], np.float32),
        "kv_indptr": np.array(indptr, np.int32),
        "kv_indices": np.array(indices, np.int32),
        "kv_last_page_len": np.array(last, np.int32),
        "qo_indptr": np.array(qo, np.int32),
        "o": np.full((tq, 2, 4), np.nan, np.float32),
        "lse": np.full((2, tq), np.nan, np.float32),
    }


def test_paged_f8_matches_reference(module):
    a = paged_args([0, 2, 2, 5], [3, 0, 4, 1, 3], [2, 0, 4], [0, 2, 2, 5])
    module.run("paged_f8", a, num_threads=2)
    # Gather each sequence's dequantized K/V into ragged arrays.
    ks, vs, cu_k = [], [], [0]
    for b in range(3):
        pages = a["kv_indices"][a["kv_indptr"][b]:a["kv_indptr"][b + 1]]
        n = (len(pages) - 1) * 4 + a["kv_last_page_len"][b] if len(pages) else 0
        k = a["cache_k_pages"][pages].astype(np.float32).reshape(-1, 1, 4)[:n] * 0.5
        v = a["cache_v_pages"][pages].astype(np.float32).reshape(-1, 1, 4)[:n] * 0.25
        ks.append(k)
        vs.append(v)
        cu_k.append(cu_k[-1] + n)
    o, lse = attention(a["q"], np.concatenate(ks), np.concatenate(vs), scale=0.5,
                       mask=Mask(causal=True), cu_seqlens_q=a["qo_indptr"],
                       cu_seqlens_k=np.array(cu_k))
    np.testing.assert_allclose(a["o"], o, atol=1e-5)
    np.testing.assert_allclose(a["lse"], lse, atol=1e-5)


def test_paged_validation_errors(module):
    a = paged_args([0, 2, 2, 5], [3, 0, 4, 9, 3], [2, 0, 4], [0, 2, 2, 5])
    with pytest.raises(AttnrtError, match=r"entry 3 \(sequence 2\) is page 9 but the pool "
                                          r"'cache_k_pages' has 5 pages"):
        module.run("paged_f8", a)
    assert np.isnan(a["o"]).all()  # nothing written
    a = paged_args([0, 2, 2, 5], [3, 0, 4, 1, 3], [5, 0, 4], [0, 2, 2, 5])
    with pytest.raises(AttnrtError, match="sequence 0 is longer than its pages"):
        module.run("paged_f8", a)


def test_python_side_errors(module, fixture_dir):
    a = paged_args([0, 1], [0], [1], [0, 1])
    a["q"] = np.zeros((1, 2, 8), np.float32)[:, :, ::2]  # every other float
    assert not a["q"].flags.c_contiguous
    with pytest.raises(AttnrtError, match="argument 'q': array is not C-contiguous"):
        module.run("paged_f8", a)
    a = paged_args([0, 1], [0], [1], [0, 1])
    a["cache_k_pages"] = a["cache_k_pages"].astype(ml_dtypes.float8_e5m2)
    with pytest.raises(AttnrtError, match="dtype is f8e5m2 but the kernel expects f8e4m3fn"):
        module.run("paged_f8", a)
    a["cache_k_pages"] = a["cache_k_pages"].astype(np.float64)
    with pytest.raises(AttnrtError, match="numpy dtype float64 has no attnrt dtype"):
        module.run("paged_f8", a)
    with pytest.raises(AttnrtError, match="missing argument"):
        module.run("paged_f8", {"q": a["q"]})
    with pytest.raises(AttnrtError, match="takes 2 arguments"):
        module.run("two_phase", [np.zeros(1, np.float32)])
    o = np.zeros(1, np.float32)
    o.flags.writeable = False
    with pytest.raises(AttnrtError, match="is out but the array is read-only"):
        module.run("two_phase", [np.zeros(1, np.float32), o])
    with pytest.raises(AttnrtError, match="no kernel named 'nope'"):
        module.info("nope")
    with pytest.raises(AttnrtError) as e:
        Module(fixture_dir / "nonexistent")
    assert e.value.status == 2 and "manifest.json" in e.value.message


def test_bf16_and_dense(module):
    # dense_f32 through the wrapper (dtype f32), and bf16 is rejected by attnrt by name.
    rng = np.random.default_rng(3)
    q = rng.uniform(-1, 1, (2, 3, 2, 4)).astype(np.float32)
    k = rng.uniform(-1, 1, (2, 5, 1, 4)).astype(np.float32)
    v = rng.uniform(-1, 1, (2, 5, 1, 4)).astype(np.float32)
    o = np.empty_like(q)
    lse = np.empty((2, 2, 3), np.float32)
    module.run("dense_f32", [q, k, v, o, lse])
    ref_o, ref_lse = attention(q, k, v, scale=0.5, mask=Mask(causal=True, window=2, sinks=1))
    np.testing.assert_allclose(o, ref_o, atol=1e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
    with pytest.raises(AttnrtError, match="dtype is bf16 but the kernel expects f32"):
        module.run("dense_f32", [q.astype(ml_dtypes.bfloat16), k, v, o, lse])


def test_trim_and_minus_one_entries(module):
    # paged_f8's cache: page_size 4. 23 tokens, trimmed to sinks 4 + window 6: pages 1..3 go.
    from attnrt_ctypes import CachePool
    pool = CachePool(module, "paged_f8", num_pages=8)
    s = pool.create()
    pool.append(s, 23)
    pool.trim(s, 4, 6)
    stats = pool.stats()
    assert (stats["used_pages"], stats["free_pages"]) == (3, 5)
    indptr, indices, last = pool.page_table([s])
    assert indices.tolist() == [0, -1, -1, -1, 4, 5] and last.tolist() == [3]
    pool.trim(s, 4, 6)  # idempotent
    assert pool.stats()["used_pages"] == 3
    pool.check()
    # paged_f8's mask has no window: the trimmed entries could be read.
    a = paged_args(indptr, indices, last, [0, 1], pages=8)
    for name in ("cache_k_pages", "cache_v_pages"):
        a[name] = pool.buffers[name]
    with pytest.raises(AttnrtError, match=r"entry 1 \(sequence 0\) is page -1 .* which this "
                                          r"kernel does not accept: the kernel's mask has no "
                                          r"sliding window"):
        module.run("paged_f8", a)
    with pytest.raises(AttnrtError, match="window_tokens is -1"):
        pool.trim(s, 0, -1)
    pool.free(s)
    assert pool.stats()["free_pages"] == 8
    pool.close()


def tiles_artifact(fixture_dir, tmp_path):
    """An artifact of the fixture library with its instrumented kernel `tiles` (docs/sparsity.md)
    and an uninstrumented one."""
    import json
    import shutil
    out = {"name": "x", "role": "output", "dir": "out", "dtype": "f32", "shape": ["n"]}
    manifest = {"format_version": 2, "target": "host", "library": "libtestkernels.so",
                "kernels": [
                    {"name": "tiles", "kind": "merge", "phases": 1, "entry_run": "tiles__run",
                     "entry_work_items": "tiles__work_items", "instrumented": ["tile_stats"],
                     "args": [out]},
                    {"name": "plain", "kind": "merge", "phases": 1, "entry_run": "stub__run",
                     "entry_work_items": "stub__work_items", "args": [out]}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(fixture_dir / "libtestkernels.so", tmp_path / "libtestkernels.so")
    return tmp_path


def test_tile_stats(fixture_dir, tmp_path):
    with Module(tiles_artifact(fixture_dir, tmp_path), num_threads=2) as m:
        assert m.info("tiles")["tile_stats"] and not m.info("plain")["tile_stats"]
        assert m.tile_stats("tiles") == (0, 0, 0)
        x = np.zeros(10, np.float32)
        m.run("tiles", [x])
        m.run("tiles", [x])
        # Item i counts i % 3 + 1 tiles (19 for 10 items), partial when even.
        assert m.tile_stats("tiles") == (38, 10, 20)
        m.reset_tile_stats("tiles")
        assert m.tile_stats("tiles") == (0, 0, 0)
        with pytest.raises(AttnrtError, match="kernel 'plain' has no tile counters .* compile "
                                              "it with attnc --count-tiles") as e:
            m.tile_stats("plain")
        assert e.value.status == 4


def test_sparsity_info_of_plain_kernels(module):
    paged = module.info("paged_f8")
    assert paged["attention"]["head_masks"] == []
    assert paged["block_sparse"] is None and paged["select_pages"] is None
    assert not paged["tile_stats"]
    from attnrt_ctypes import ROLES, _load
    assert [_load().attnrt_role_name(i).decode() for i in range(len(ROLES))] == ROLES


@pytest.fixture
def fake_cuda(fixture_dir, monkeypatch):
    """attnrt's GPU path on the unit tests' fake driver (test/unit/fakecuda, built beside the
    fixture): it records launches instead of running them. The handle is the instance attnrt
    loads (same path), to inspect it."""
    fake = fixture_dir.parent / "fakecuda" / "libattnrt_fakecuda.so"
    if not fake.exists():
        pytest.skip(f"{fake} does not exist (build the unit tests)")
    monkeypatch.setenv("ATTNRT_LIBCUDA", str(fake))
    lib = ctypes.CDLL(str(fake))
    lib.fakecuda_reset()
    return lib


def decode_arrays(batch):
    """Arguments of the split-KV fixture's decode kernel (test/unit/fixture/cuda-split)."""
    f16, i32 = np.float16, np.int32
    return [np.zeros((batch, 8, 128), f16), np.zeros((4, 16, 2, 128), f16),
            np.zeros((4, 16, 2, 128), f16), np.zeros(batch + 1, i32), np.zeros(4, i32),
            np.zeros(batch, i32), np.zeros((batch, 8, 128), f16),
            np.zeros((8, batch), np.float32)]


def test_gpu_split_kv_wrapper(fake_cuda):
    from attnrt_ctypes import GpuModule
    with GpuModule(REPO / "test" / "unit" / "fixture" / "cuda-split") as m:
        assert m.gpu_info("decode") == {
            "entry": "decode", "image": "decode.ptx", "block": [128, 1, 1], "smem_bytes": 0,
            "max_splits": 32, "split_symbol": "num_splits", "merge_entry": "decode_merge"}
        # The fake: 132 SMs x 4 blocks; the grid has 2 x batch blocks besides the splits.
        cfg = m.launch_config("decode", decode_arrays(3))
        # partial_o [32, 3, 8, 128] and partial_lse [32, 8, 3] f32, each at 256-byte offsets.
        scratch = 32 * 3 * 8 * 128 * 4 + (32 * 8 * 3 * 4 + 255) // 256 * 256
        assert cfg == {"grid": [2, 3, 32], "block": [128, 1, 1], "smem_bytes": 0,
                       "num_splits": 32, "scratch_bytes": scratch,
                       "merge_grid": [3, 8, 1], "merge_block": [128, 1, 1],
                       "merge_smem_bytes": 0}
        cfg = m.launch_config("decode", decode_arrays(400))
        assert (cfg["num_splits"], cfg["scratch_bytes"], cfg["merge_grid"]) == (1, 0, [0, 0, 0])
        m.set_num_splits("decode", 3)
        assert m.launch_config("decode", decode_arrays(400))["num_splits"] == 3
        with pytest.raises(AttnrtError, match="num_splits is 33 but kernel 'decode' takes 1 "
                                              "to 32") as e:
            m.set_num_splits("decode", 33)
        assert e.value.status == 7
        m.set_num_splits("decode", 0)
        # Through device memory: the main kernel, then the merge.
        m.run_arrays("decode", decode_arrays(3))
        assert fake_cuda.fakecuda_num_launches() == 2
        # The caller's scratch, too small.
        lib = m._lib
        ptr = ctypes.c_void_p()
        assert lib.attnrt_gpu_alloc(m._handle, 4096, ctypes.byref(ptr)) == 0
        try:
            m.set_scratch(ptr, 4096)
            with pytest.raises(AttnrtError, match=f"needs {scratch} bytes of scratch "
                                                  "but the buffer given to "
                                                  "attnrt_gpu_set_scratch has 4096") as e:
                m.run_arrays("decode", decode_arrays(3))
            assert e.value.status == 7
            m.set_scratch(None, 0)
            m.run_arrays("decode", decode_arrays(3))
            assert fake_cuda.fakecuda_num_launches() == 4
        finally:
            lib.attnrt_gpu_free(m._handle, ptr)
