#!/usr/bin/env python3
"""attnc's GPU kernels against PyTorch SDPA (flash and cuDNN back-ends) and FlexAttention, in
one run on one device (issue 5; DESIGN.md section 7; the device's METHOD.md).

Rows:
  - prefill, bf16, 32 query over 8 KV heads, head size 128, causal, at 4k and 16k tokens
    (batch 4 x 4k, 1 x 16k): TFLOP/s over the visible (query, key) pairs;
  - paged decode, batch 64 over 8k tokens, 32/8 heads, head size 128, pages of 16 tokens, bf16
    and int8 caches: GB/s of the K/V bytes each reads and the fraction of the device's measured
    copy bandwidth. Peers read the same values contiguous in bf16 (they have no paged or int8
    kernel); attnc reads its pages (int8 with per-channel K / per-token V scales) through the
    page table from shuffled pages;
  - paged decode, batch 2 over 64k tokens, bf16: too few sequences to fill the GPU without
    split-KV (the attnc row names the num_splits attnrt chose).

Ceilings measured in the same run: device-to-device copy (bytes read + written) and a bf16
8192^3 matrix product. Every output is checked against float64 on a slice (first and last
sequence / heads), outputs are poisoned with NaN before the timed runs, inputs are random.

attnc's kernels are compiled where attnc is installed and carried:
    attnc bench/gpu_kernels.mlir --target=sm_90 -o build-gpu-bench
and attnrt is a runtime-only build (cmake -DATTNC_BUILD_COMPILER=OFF), so on the GPU machine:
    python3 bench/gpu_compare.py --artifacts build-gpu-bench --attnrt build-rt/lib/libattnrt.so
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, warmup=3, runs=20):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def ceilings():
    import torch
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_()
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x))
    copy_gbs = 2 * x.numel() / ms / 1e6
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: a @ b, runs=10)
    return copy_gbs, 2 * 8192 ** 3 / ms / 1e9


def rel_err(got, ref):
    got = got.double().cpu().numpy()
    if np.isnan(got).any():
        return float("nan")
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def reference(q, k, v, causal):
    """float64 attention of one sequence: q [L, Hq, D], k/v [Lk, Hkv, D] (torch, any device)."""
    q, k, v = (t.double().cpu().numpy() for t in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        lq, lk = q.shape[0], k.shape[0]
        pos = np.arange(lq)[:, None] + (lk - lq)
        s = np.where(np.arange(lk)[None, :] <= pos, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", p, v)


def prefill_rows(module, tokens, batch):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    hq, hkv, d = 32, 8, 128
    q = torch.randn(batch, tokens, hq, d, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(batch, tokens, hkv, d, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(batch, tokens, hkv, d, dtype=torch.bfloat16, device="cuda")
    flops = 4 * d * hq * batch * tokens * (tokens + 1) / 2
    ref_q = slice(tokens - 64, tokens)  # the last rows see every key
    ref = reference(q[0, ref_q], k[0], v[0], causal=True)
    rows = []

    o = torch.full_like(q, float("nan"))
    name = "prefill"
    args = [(q.data_ptr(), "bf16", q.shape), (k.data_ptr(), "bf16", k.shape),
            (v.data_ptr(), "bf16", v.shape), (o.data_ptr(), "bf16", o.shape)]
    stream = torch.cuda.current_stream().cuda_stream
    launch = module.bind(name, args)  # set-up outside the timed launches
    run = lambda: launch(stream)  # noqa: E731
    run()
    torch.cuda.synchronize()
    err = rel_err(o[0, ref_q], ref)
    rows.append(("attnc", median_ms(run), err))

    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    for label, backend in [("SDPA flash", SDPBackend.FLASH_ATTENTION),
                           ("SDPA cuDNN", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                f = lambda: F.scaled_dot_product_attention(  # noqa: E731
                    qt, kt, vt, is_causal=True, enable_gqa=True)
                out = f()
                rows.append((label, median_ms(f), rel_err(out.transpose(1, 2)[0, ref_q], ref)))
        except RuntimeError as e:
            rows.append((label, None, f"unavailable: {str(e).splitlines()[0][:80]}"))
    mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, tokens, tokens)
    flex = torch.compile(flex_attention)
    f = lambda: flex(qt, kt, vt, block_mask=mask, enable_gqa=True)  # noqa: E731
    out = f()
    rows.append(("FlexAttention", median_ms(f), rel_err(out.transpose(1, 2)[0, ref_q], ref)))
    return [(f"prefill {batch}x{tokens}, 32/8 heads, D 128, causal, bf16", peer, ms,
             None if ms is None else flops / ms / 1e9, err) for peer, ms, err in rows], flops


def decode_rows(module, storage, batch=64, tokens=8192):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    hq, hkv, d, page = 32, 8, 128, 16
    pages_per_seq = tokens // page
    num_pages = batch * pages_per_seq
    title = f"paged decode {batch}x{tokens}, 32/8 heads, D 128, {storage} cache"
    perm = torch.randperm(num_pages, device="cuda", dtype=torch.int32)
    shape = (num_pages, page, hkv, d)
    if storage == "bf16":
        k_pages = torch.randn(shape, dtype=torch.bfloat16, device="cuda")
        v_pages = torch.randn_like(k_pages)
        scales, k_full, v_full = [], k_pages, v_pages
        kv_bytes = 2 * k_pages.numel() * 2
    else:  # int8, per-channel K scales per 16 tokens, per-token V scales (docs/kv-cache.md)
        k_pages = torch.randint(-127, 128, shape, dtype=torch.int8, device="cuda")
        v_pages = torch.randint(-127, 128, shape, dtype=torch.int8, device="cuda")
        k_scale = (torch.rand(num_pages, 1, hkv, d, device="cuda") * 0.02 + 0.002).half()
        v_scale = (torch.rand(num_pages, page, hkv, device="cuda") * 0.02 + 0.002).half()
        scales = [(k_scale.data_ptr(), "f16", k_scale.shape),
                  (v_scale.data_ptr(), "f16", v_scale.shape)]
        # The peers read the dequantized values in bf16.
        k_full = (k_pages.float() * k_scale.float()).bfloat16()
        v_full = (v_pages.float() * v_scale.float()[..., None]).bfloat16()
        kv_bytes = 2 * k_pages.numel() + 2 * (k_scale.numel() + v_scale.numel())
    indptr = torch.arange(0, num_pages + 1, pages_per_seq, dtype=torch.int32, device="cuda")
    last = torch.full((batch,), page, dtype=torch.int32, device="cuda")
    q = torch.randn(batch, hq, d, dtype=torch.bfloat16, device="cuda")
    o = torch.full_like(q, float("nan"))
    # The same K/V contiguous per sequence, for the peers and the reference.
    k = k_full[perm.long()].view(batch, tokens, hkv, d)
    v = v_full[perm.long()].view(batch, tokens, hkv, d)
    refs = [reference(q[b][None], k[b], v[b], causal=False)[0] for b in (0, batch - 1)]
    args = [(q.data_ptr(), "bf16", q.shape),
            (k_pages.data_ptr(), storage, k_pages.shape),
            (v_pages.data_ptr(), storage, v_pages.shape), *scales,
            (indptr.data_ptr(), "i32", indptr.shape), (perm.data_ptr(), "i32", perm.shape),
            (last.data_ptr(), "i32", last.shape), (o.data_ptr(), "bf16", o.shape)]
    stream = torch.cuda.current_stream().cuda_stream
    kernel = "decode_bf16" if storage == "bf16" else "decode_i8"
    launch = module.bind(kernel, args)  # set-up outside the timed launches
    run = lambda: launch(stream)  # noqa: E731
    run()
    torch.cuda.synchronize()
    splits = module.launch_config(kernel, args)["num_splits"]  # attnrt's split-KV choice
    rows = [(f"attnc (paged, {splits} splits)", median_ms(run), kv_bytes,
             max(rel_err(o[b], r) for b, r in zip((0, batch - 1), refs)))]
    peer_bytes = 2 * k.numel() * 2  # bf16 K and V
    qt, kt, vt = q[:, :, None], k.transpose(1, 2), v.transpose(1, 2)
    f = lambda: F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)  # noqa: E731
    out = f()
    rows.append(("SDPA (contiguous bf16)", median_ms(f), peer_bytes,
                 max(rel_err(out[b, :, 0], r) for b, r in zip((0, batch - 1), refs))))
    flex = torch.compile(flex_attention)
    g = lambda: flex(qt, kt, vt, enable_gqa=True)  # noqa: E731
    out = g()
    rows.append(("FlexAttention (contiguous bf16)", median_ms(g), peer_bytes,
                 max(rel_err(out[b, :, 0], r) for b, r in zip((0, batch - 1), refs))))
    return [(title, peer, ms, nbytes / ms / 1e6, err) for peer, ms, nbytes, err in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, help="attnc --target=sm_90 output directory")
    ap.add_argument("--attnrt", required=True, help="libattnrt.so (runtime-only build)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    os.environ["ATTNRT_LIB"] = args.attnrt
    sys.path.insert(0, str(ROOT / "test" / "e2e"))
    import torch
    import attnrt_ctypes as rt

    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the primary context attnrt will share
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}")
    copy_gbs, mm_tflops = ceilings()
    print(f"ceilings: copy {copy_gbs:.0f} GB/s (read + write), bf16 matmul {mm_tflops:.0f} "
          "TFLOP/s")
    results = []
    with rt.GpuModule(args.artifacts) as module:
        for tokens, batch in [(4096, 4), (16384, 1)]:
            rows, _ = prefill_rows(module, tokens, batch)
            results += rows
        for storage in ("bf16", "i8"):
            results += decode_rows(module, storage)
        # Few sequences over a long context: split-KV's case (B x Hkv = 16 blocks unsplit).
        results += decode_rows(module, "bf16", batch=2, tokens=65536)
    # peer/attnc: the peer's time over attnc's (above 1: attnc is faster).
    print(f"\n{'row':<58} {'peer':<28} {'ms':>9} {'rate':>10} {'peer/attnc':>10} {'err':>9}")
    base = {}
    for title, peer, ms, rate, err in results:
        if peer.startswith("attnc") and ms is not None:
            base[title] = ms
    for title, peer, ms, rate, err in results:
        unit = "GB/s" if "decode" in title else "TFLOP/s"
        if ms is None:
            print(f"{title:<58} {peer:<28} {'-':>9} {'-':>10} {'-':>10} {err}")
            continue
        ratio = ms / base[title] if title in base else float("nan")
        frac = f" ({rate / copy_gbs:.2f} of copy)" if unit == "GB/s" else ""
        print(f"{title:<58} {peer:<28} {ms:9.3f} {rate:8.1f} {unit}{frac} "
              f"{ratio:10.2f} {err:9.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": props.name, "copy_gbs": copy_gbs, "bf16_matmul_tflops": mm_tflops,
             "rows": [dict(zip(("row", "peer", "ms", "rate", "err"), r)) for r in results]},
            indent=1, default=str))


if __name__ == "__main__":
    main()
