"""Memory plans (manifest "steps", docs/runtime.md): Module.steps, Module.step and Step. attnc
does not write plans yet, so they are hand-written here and appended to the manifest of kernels
attnc.compile wrote (what the outliner makes of a step function: static kernels <step>__<i>)."""
from __future__ import annotations

import json
from pathlib import Path

import time

import numpy as np
import pytest

import attnc
from gil import stamps_during

SRC = """
func.func @st__0(%q: tensor<1x16x4x32xf16>, %k: tensor<1x40x2x32xf16>,
                 %v: tensor<1x40x2x32xf16>) -> tensor<1x16x4x32xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<1x16x4x32xf16>, tensor<1x40x2x32xf16>, tensor<1x40x2x32xf16>)
      -> tensor<1x16x4x32xf16>
  return %o : tensor<1x16x4x32xf16>
}
func.func @big__0(%q: tensor<1x256x8x64xf32>, %k: tensor<1x1024x2x64xf32>,
                  %v: tensor<1x1024x2x64xf32>) -> tensor<1x256x8x64xf32> {
  %o = attn.attention %q, %k, %v
      : (tensor<1x256x8x64xf32>, tensor<1x1024x2x64xf32>, tensor<1x1024x2x64xf32>)
      -> tensor<1x256x8x64xf32>
  return %o : tensor<1x256x8x64xf32>
}
"""

Q, KV = [1, 16, 4, 32], [1, 40, 2, 32]
QB, KVB = 16 * 4 * 32 * 2, 40 * 2 * 32 * 2  # f16 bytes: 4096, 5120
BQ, BKV = [1, 256, 8, 64], [1, 1024, 2, 64]
BQB, BKVB = 256 * 8 * 64 * 4, 1024 * 2 * 64 * 4
MIB = 1 << 20


def place(tier, offset):
    return {"tier": tier, "offset": offset}


def arg(tier, offset, shape, size):
    return {"tier": tier, "offset": offset, "bytes": int(np.prod(shape)) * size,
            "shape": shape}


def buffer(name, direction, dtype, shape, tier, offset, size):
    return {"name": name, "dir": direction, "dtype": dtype, "shape": shape, "tier": tier,
            "offset": offset, "bytes": int(np.prod(shape)) * size}


def two_tier_plan():
    """K and V live in host and are copied into hbm before st__0; o stays in hbm."""
    hq, hk, hv, ho = 0, QB, QB + KVB, QB + 2 * KVB
    return {
        "name": "st",
        "tiers": [{"name": "hbm", "capacity": 80 << 30, "size": ho + QB, "device": True},
                  {"name": "host", "capacity": 1 << 40, "size": 2 * KVB, "device": False}],
        "buffers": [buffer("q", "in", "f16", Q, "hbm", hq, 2),
                    buffer("k", "in", "f16", KV, "host", 0, 2),
                    buffer("v", "in", "f16", KV, "host", KVB, 2),
                    buffer("o", "out", "f16", Q, "hbm", ho, 2)],
        "program": [
            {"op": "copy_start", "id": 0, "bytes": KVB, "from": place("host", 0),
             "to": place("hbm", hk)},
            {"op": "copy_start", "id": 1, "bytes": KVB, "from": place("host", KVB),
             "to": place("hbm", hv)},
            {"op": "copy_done", "id": 0},
            {"op": "copy_done", "id": 1},
            {"op": "kernel", "kernel": "st__0",
             "args": [arg("hbm", hq, Q, 2), arg("hbm", hk, KV, 2), arg("hbm", hv, KV, 2),
                      arg("hbm", ho, Q, 2)]},
        ],
    }


def big_plan():
    """A 32 MiB copy running beside big__0, for the GIL test."""
    hq, hk, hv, ho, dst = 0, BQB, BQB + BKVB, BQB + 2 * BKVB, 4 * MIB
    return {
        "name": "big",
        "tiers": [{"name": "hbm", "capacity": 80 << 30, "size": dst + 32 * MIB, "device": True},
                  {"name": "host", "capacity": 1 << 40, "size": 32 * MIB, "device": False}],
        "buffers": [buffer("q", "in", "f32", BQ, "hbm", hq, 4),
                    buffer("k", "in", "f32", BKV, "hbm", hk, 4),
                    buffer("v", "in", "f32", BKV, "hbm", hv, 4),
                    buffer("o", "out", "f32", BQ, "hbm", ho, 4)],
        "program": [
            {"op": "copy_start", "id": 0, "bytes": 32 * MIB, "from": place("host", 0),
             "to": place("hbm", dst)},
            {"op": "kernel", "kernel": "big__0",
             "args": [arg("hbm", hq, BQ, 4), arg("hbm", hk, BKV, 4), arg("hbm", hv, BKV, 4),
                      arg("hbm", ho, BQ, 4)]},
            {"op": "copy_done", "id": 0},
        ],
    }


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The kernels as attnc wrote them, and a directory to derive planned copies from."""
    out = tmp_path_factory.mktemp("kernels")
    module = attnc.compile(SRC, output_dir=out, stem="steps")
    return module, out


def with_steps(src: Path, dst: Path, steps) -> Path:
    """A copy of the artifact in src whose manifest has `steps`."""
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["steps"] = steps
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    lib = src / manifest["library"]
    (dst / lib.name).write_bytes(lib.read_bytes())
    return dst


@pytest.fixture(scope="module")
def planned(compiled, tmp_path_factory):
    _, out = compiled
    d = with_steps(out, tmp_path_factory.mktemp("planned") / "a", [two_tier_plan(), big_plan()])
    return attnc.Module(d, num_threads=2)


def test_two_tier_plan_is_bit_identical_to_the_kernel(compiled, planned, rng_seed):
    rng = np.random.default_rng(rng_seed)
    q = rng.standard_normal(Q).astype(np.float16)
    k = rng.standard_normal(KV).astype(np.float16)
    v = rng.standard_normal(KV).astype(np.float16)
    assert planned.steps == ["st", "big"]
    step = planned.step("st")
    for name, x in (("q", q), ("k", k), ("v", v)):
        step.buffer(name)[...] = x
    step.run()
    direct = compiled[0].st__0(q, k, v)
    o = step.buffer("o")
    assert o.dtype == np.float16 and o.shape == tuple(Q)
    np.testing.assert_array_equal(o.view(np.uint16), direct.view(np.uint16))
    stats = step.stats
    assert (stats["runs"], stats["copies"], stats["bytes_copied"], stats["kernels"]) == \
        (1, 2, 2 * KVB, 1)
    assert stats["total_seconds"] >= stats["kernel_seconds"] > 0


def test_step_information(planned):
    step = planned.step("st")
    assert step.name == "st"
    assert [(t.name, t.capacity, t.size, t.device) for t in step.tiers] == \
        [("hbm", 80 << 30, 2 * QB + 2 * KVB, True), ("host", 1 << 40, 2 * KVB, False)]
    b = step.buffers[2]
    assert (b.name, b.dir, b.dtype, b.shape, b.tier, b.offset, b.bytes) == \
        ("v", "in", "f16", KV, "host", KVB, KVB)
    # Views of the arenas: writable, zero at first, the same memory every time.
    view = step.buffer("k")
    assert view.flags.writeable and not view.any()
    view[0, 0, 0, 0] = 3
    assert step.buffer("k")[0, 0, 0, 0] == 3 and np.shares_memory(view, step.buffer("k"))
    # A view keeps its step alive.
    del step
    view[0, 0, 0, 1] = 4
    assert view[0, 0, 0, :2].tolist() == [3, 4]
    # Another step object has its own arenas.
    assert not planned.step("st").buffer("k").any()


def test_steps_run_without_the_gil(planned, rng_seed):
    rng = np.random.default_rng(rng_seed)
    step = planned.step("big")
    for name in ("q", "k", "v"):
        buf = step.buffer(name)
        buf[...] = rng.standard_normal(buf.shape, dtype=np.float32)
    # Enough runs to last well over 20 ms on a fast machine too.
    start = time.perf_counter()
    step.run(threads=1)
    reps = max(1, int(0.05 / max(time.perf_counter() - start, 1e-4)) + 1)

    def runs():
        for _ in range(reps):
            step.run(threads=1)

    t0, t1, inside = stamps_during(runs, 0.0005)
    assert t1 - t0 > 0.02, "the step ran too briefly to tell"
    assert len(inside) >= 5, f"{len(inside)} stamps inside a {(t1 - t0) * 1e3:.0f} ms step"
    assert step.stats["copy_seconds"] > 0 and step.stats["bytes_copied"] == 32 * MIB


def test_a_bad_plan_fails_at_open(compiled, tmp_path):
    _, out = compiled
    plan = two_tier_plan()
    plan["program"][4]["args"][1] = arg("host", 0, KV, 2)  # K read where it lives
    d = with_steps(out, tmp_path / "bad", [plan])
    with pytest.raises(attnc.AttnrtError) as e:
        attnc.Module(d)
    assert e.value.status_name == "manifest"
    assert ("step 'st' program[4] (kernel 'st__0') arg 1 ('k'): is in tier 'host', which "
            "kernels cannot read (not a device tier); kernels read 'hbm'") in str(e.value)


def test_unknown_names(planned):
    with pytest.raises(attnc.KernelNotFoundError, match=r"no step named 'nope' .* available: "
                                                        r"'st', 'big'"):
        planned.step("nope")
    with pytest.raises(KeyError, match=r"step 'st' has no buffer named 'x'; its buffers: 'q', "
                                       r"'k', 'v', 'o'"):
        planned.step("st").buffer("x")
    assert attnc.Module(planned.path).steps == ["st", "big"]
