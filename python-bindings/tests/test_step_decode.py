"""End to end: a whole decode step run through its memory plan (issue 6).

A 32-layer Llama-3-8B decode step (examples/decode_step.py: 32 query heads, 8 KV heads, head
size 128, f16 paged caches) is compiled twice: for a target whose HBM holds everything, and
for one whose HBM is a quarter of the working set, so that the planner streams most caches
from the host tier. attnrt runs both plans (separate arenas per tier, a copy thread) on the
same inputs; the outputs must be bit-identical, and match the float64 reference.

The context defaults to 4096 tokens to keep CI fast; ATTNC_STEP_CONTEXT=32768 runs the
full-size step (docs/memory-planning.md records that run).
"""

import importlib.util
import json
import os
import pathlib

import numpy as np

import attnc

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTEXT = int(os.environ.get("ATTNC_STEP_CONTEXT", "4096"))
LAYERS, HQ, HKV, D, PAGE = 32, 32, 8, 128, 64


def _generator():
    spec = importlib.util.spec_from_file_location("decode_step",
                                                  ROOT / "examples" / "decode_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source(hbm_bytes):
    gen = _generator()
    args = gen.argparse.Namespace(
        model="llama3-8b", layers=LAYERS, batch=1, context=CONTEXT, page_size=PAGE,
        dtype="f16", storage="f16", target=None,
        # A CPU-sized "device": 20 GB/s memory, a 10 GB/s link to the host tier.
        explicit=[1e12, hbm_bytes, 20e9, 64 << 30, 10e9])
    return gen.step_module(args)


def _working_set():
    pages = -(-CONTEXT // PAGE)
    cache = 2 * pages * PAGE * HKV * D * 2
    q = HQ * D * 2
    return LAYERS * (cache + 2 * q) + 4 * (pages + 3)


def _reference(q, k, v):
    """float64 decode over every key (one query at the last position sees them all)."""
    q = q.astype(np.float64).reshape(HKV, HQ // HKV, D)
    k = k.astype(np.float64).reshape(-1, HKV, D)[:CONTEXT]
    v = v.astype(np.float64).reshape(-1, HKV, D)[:CONTEXT]
    s = np.einsum("hgd,khd->hgk", q, k) / np.sqrt(D)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hgk,khd->hgd", p, v).reshape(HQ, D)


def _fill(step, rng, data):
    pages = -(-CONTEXT // PAGE)
    step.buffer("kv_indptr")[...] = [0, pages]
    step.buffer("kv_indices")[...] = np.arange(pages, dtype=np.int32)
    step.buffer("kv_last_page_len")[...] = CONTEXT - (pages - 1) * PAGE
    for layer in range(LAYERS):
        for name in (f"q{layer}", f"cache{layer}.k_pages", f"cache{layer}.v_pages"):
            if name not in data:
                shape = step.buffer(name).shape
                data[name] = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
            step.buffer(name)[...] = data[name]


def test_decode_step_at_a_quarter_of_the_working_set_is_bit_identical(tmp_path):
    total = _working_set()
    resident = attnc.compile(_source(2 * total), output_dir=tmp_path / "resident")
    streamed = attnc.compile(_source(total // 4), output_dir=tmp_path / "streamed")

    plan = json.loads((tmp_path / "streamed" / "plan.json").read_text())["steps"][0]
    hbm = next(t for t in plan["tiers"] if t["name"] == "hbm")
    assert hbm["peak"] <= total // 4
    prefetched = sum(t["bytes"] for t in plan["transfers"] if t["direction"] == "prefetch")
    exposed = sum(t["exposed_seconds"] for t in plan["transfers"])
    print(f"\n{LAYERS} layers, {CONTEXT} tokens: working set {total / 2**20:.1f} MiB, hbm "
          f"capacity {total / 4 / 2**20:.1f} MiB, peak {hbm['peak'] / 2**20:.1f} MiB (lower "
          f"bound {hbm['lower_bound'] / 2**20:.1f} MiB); {len(plan['transfers'])} transfers, "
          f"{prefetched / 2**20:.1f} MiB prefetched; predicted step {plan['step_seconds'] * 1e3:.2f}"
          f" ms (exposed transfers {exposed * 1e3:.2f} ms) vs {plan['no_offload_seconds'] * 1e3:.2f}"
          " ms without offload")
    assert prefetched >= 0.7 * total
    resident_plan = json.loads((tmp_path / "resident" / "plan.json").read_text())["steps"][0]
    assert resident_plan["transfers"] == []

    rng = np.random.default_rng()
    data = {}
    outputs = []
    for module in (resident, streamed):
        step = module.step("decode_step")
        _fill(step, rng, data)
        step.run()
        outputs.append([step.buffer(f"o{layer}").copy() for layer in range(LAYERS)])
        stats = step.stats
        print(f"{'resident' if module is resident else 'streamed'}: {stats}")
        if module is streamed:
            assert stats["copies"] == len(plan["transfers"])
            assert stats["bytes_copied"] == sum(t["bytes"] for t in plan["transfers"])
        else:
            assert stats["copies"] == 0
    for layer in range(LAYERS):
        assert np.array_equal(outputs[0][layer].view(np.uint16),
                              outputs[1][layer].view(np.uint16)), f"layer {layer}"
    for layer in (0, LAYERS - 1):
        ref = _reference(data[f"q{layer}"], data[f"cache{layer}.k_pages"],
                         data[f"cache{layer}.v_pages"])
        got = outputs[1][layer].astype(np.float64).reshape(HQ, D)
        err = np.abs(got - ref).max() / np.abs(ref).max()
        assert err < 1e-2, f"layer {layer}: max relative error {err}"
