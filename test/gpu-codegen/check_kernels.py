#!/usr/bin/env python3
"""The GPU kernels' resource check (issue 5; run by ctest as gpu_codegen).

Compiles the default configurations of the GPU kernels with
`attnc --target=sm_80,sm_90`: prefill (f16 and bf16, head_dim 64 and 128,
every structured mask, with and without LSE, causal with softcap, and per-KV-head
masks; decode also over int8 and int4 caches with a residual window), the
prefill over ragged batches (cu_seqlens) and over pages (qo_indptr, NHD and
HND; causal and window with sinks, with and without LSE), and paged decode (f16, bf16, int8, int4 and fp8
pages under f16 and bf16 queries, head_dim 64 and 128, NHD and HND pages of 16
tokens, with and without a window with sinks, with and without LSE), 32
query heads over 8 KV heads,
dynamic sizes, so
every kernel's PTX is assembled by ptxas for both architectures, then reads
ptxas's report from manifest.json (for the decode kernels, also their
split-KV merge's). It fails when a function spills registers,
uses a stack frame, or needs more shared memory than the architecture gives
one block (opt-in maximum: 163 KiB on sm_80, 227 KiB on sm_90). Without
ptxas it exits 77, which ctest reports as skipped.

    check_kernels.py --attnc build/bin/attnc [--keep DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

SMEM_PER_BLOCK = {"sm_80": 163 * 1024, "sm_90": 227 * 1024}
MASKS = {
    "none": None,
    "causal": "#attn.mask<causal>",
    "causal_top_left": "#attn.mask<causal, top_left>",
    "window_sinks": "#attn.mask<window = 256, sinks = 4>",
}
# Per-KV-head policies over the 8 KV heads: causal retrieval heads and window + sinks
# streaming heads, alternating.
HEAD_MASKS = "[" + ", ".join(["#attn.mask<causal>", "#attn.mask<window = 256, sinks = 4>"] * 4) + "]"


def mask_attr(mask):
    """The mask's attribute item: `mask = ...`, or `head_masks = [...]` for HEAD_MASKS."""
    return f"head_masks = {mask}" if mask.startswith("[") else f"mask = {mask}"


def kernel(name, dtype, head_dim, mask, lse, softcap=0.0):
    q = f"tensor<?x?x32x{head_dim}x{dtype}>"
    kv = f"tensor<?x?x8x{head_dim}x{dtype}>"
    lse_type = "tensor<?x32x?xf32>"
    items = [mask_attr(mask)] if mask else []
    items += [f"softcap = {softcap} : f32"] if softcap else []
    attrs = f" {{{', '.join(items)}}}" if items else ""
    results = f"({q}, {lse_type})" if lse else q
    outs = "%o, %lse" if lse else "%o"
    return (f"func.func @{name}(%q: {q}, %k: {kv}, %v: {kv}) -> {results} {{\n"
            f"  {outs} = attn.attention %q, %k, %v{attrs}\n"
            f"      : ({q}, {kv}, {kv}) -> {results}\n"
            f"  return {outs} : {results[1:-1] if lse else results}\n}}\n")


def decode_kernel(name, dtype, head_dim, layout, window, lse, storage=None, softcap=0.0,
                  residual=0):
    storage = storage or dtype
    group = ", k_group = 16" if storage in ("i8", "i4") else ""
    group += f", residual = {residual}" if residual else ""
    cache = (f"!attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = {head_dim}, "
             f"layout = {layout}, storage = {storage}{group}>")
    q = f"tensor<?x32x{head_dim}x{dtype}>"
    lse_type = "tensor<32x?xf32>"
    items = [mask_attr(window if isinstance(window, str) else
                       "#attn.mask<window = 1024, sinks = 4>")] if window else []
    items += [f"softcap = {softcap} : f32"] if softcap else []
    attrs = f" {{{', '.join(items)}}}" if items else ""
    results = f"({q}, {lse_type})" if lse else q
    outs = "%o, %lse" if lse else "%o"
    idx = "tensor<?xi32>"
    rings = f", %rings: {idx}" if residual else ""
    rings_use = " kv_rings(%rings)" if residual else ""
    rings_type = f", {idx}" if residual else ""
    return (f"func.func @{name}(%q: {q}, %cache: {cache}, %indptr: {idx}, %indices: {idx},\n"
            f"    %last: {idx}{rings}) -> {results} {{\n"
            f"  {outs} = attn.paged_attention %q, %cache, %indptr, %indices, %last"
            f"{rings_use}{attrs}\n"
            f"      : ({q}, {cache}, {idx}, {idx}, {idx}{rings_type}) -> {results}\n"
            f"  return {outs} : {results[1:-1] if lse else results}\n}}\n")


def ragged_kernel(name, dtype, head_dim, mask, lse):
    q = f"tensor<?x32x{head_dim}x{dtype}>"
    kv = f"tensor<?x8x{head_dim}x{dtype}>"
    idx = "tensor<?xi32>"
    lse_type = "tensor<32x?xf32>"
    attrs = f" {{{mask_attr(mask)}}}" if mask else ""
    results = f"({q}, {lse_type})" if lse else q
    outs = "%o, %lse" if lse else "%o"
    return (f"func.func @{name}(%q: {q}, %k: {kv}, %v: {kv}, %cu_q: {idx}, %cu_k: {idx})\n"
            f"    -> {results} {{\n"
            f"  {outs} = attn.attention %q, %k, %v cu_seqlens(%cu_q, %cu_k){attrs}\n"
            f"      : ({q}, {kv}, {kv}, {idx}, {idx}) -> {results}\n"
            f"  return {outs} : {results[1:-1] if lse else results}\n}}\n")


def append_kernel(name, dtype, head_dim, layout, mask, lse, storage=None):
    storage = storage or dtype
    group = ", k_group = 16" if storage in ("i8", "i4") else ""
    cache = (f"!attn.kv_cache<page_size = 16, kv_heads = 8, head_dim = {head_dim}, "
             f"layout = {layout}, storage = {storage}{group}>")
    q = f"tensor<?x32x{head_dim}x{dtype}>"
    idx = "tensor<?xi32>"
    lse_type = "tensor<32x?xf32>"
    attrs = f" {{{mask_attr(mask)}}}" if mask else ""
    results = f"({q}, {lse_type})" if lse else q
    outs = "%o, %lse" if lse else "%o"
    return (f"func.func @{name}(%q: {q}, %cache: {cache}, %indptr: {idx}, %indices: {idx},\n"
            f"    %last: {idx}, %qo: {idx}) -> {results} {{\n"
            f"  {outs} = attn.paged_attention %q, %cache, %indptr, %indices, %last qo_indptr(%qo)"
            f"{attrs}\n"
            f"      : ({q}, {cache}, {idx}, {idx}, {idx}, {idx}) -> {results}\n"
            f"  return {outs} : {results[1:-1] if lse else results}\n}}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attnc", required=True)
    parser.add_argument("--keep", help="write the artifacts here instead of a temporary dir")
    args = parser.parse_args()

    source = []
    for dtype in ("f16", "bf16"):
        for head_dim in (64, 128):
            for mask_name, mask in MASKS.items():
                for lse in (False, True):
                    name = f"{dtype}_d{head_dim}_{mask_name}{'_lse' if lse else ''}"
                    source.append(kernel(name, dtype, head_dim, mask, lse))
            source.append(kernel(f"{dtype}_d{head_dim}_head_masks", dtype, head_dim, HEAD_MASKS,
                                 True))
            source.append(ragged_kernel(f"ragged_{dtype}_d{head_dim}_head_masks", dtype,
                                        head_dim, HEAD_MASKS, False))
            source.append(append_kernel(f"append_{dtype}_d{head_dim}_head_masks", dtype,
                                        head_dim, "nhd", HEAD_MASKS, True))
            source.append(decode_kernel(f"decode_{dtype}_d{head_dim}_head_masks", dtype,
                                        head_dim, "nhd", HEAD_MASKS, True))
            # quantized caches with a residual window (KIVI) of 128 tokens
            for storage in ("i8", "i4"):
                source.append(decode_kernel(f"decode_{storage}_{dtype}_d{head_dim}_residual",
                                            dtype, head_dim, "hnd", True, True, storage,
                                            residual=128))
            # softcap (Gemma 2's 50) on the causal kernels
            source.append(kernel(f"{dtype}_d{head_dim}_causal_softcap", dtype, head_dim,
                                 MASKS["causal"], True, 50.0))
    # Ragged (cu_seqlens) prefill and paged append/prefill (qo_indptr).
    for dtype in ("f16", "bf16"):
        for head_dim in (64, 128):
            for mask_name in ("none", "causal", "window_sinks"):
                for lse in (False, True):
                    suffix = f"{dtype}_d{head_dim}_{mask_name}{'_lse' if lse else ''}"
                    source.append(ragged_kernel(f"ragged_{suffix}", dtype, head_dim,
                                                MASKS[mask_name], lse))
            for layout in ("nhd", "hnd"):
                for mask_name in ("causal", "window_sinks"):
                    for lse in (False, True):
                        name = (f"append_{dtype}_d{head_dim}_{layout}_{mask_name}"
                                f"{'_lse' if lse else ''}")
                        source.append(append_kernel(name, dtype, head_dim, layout,
                                                    MASKS[mask_name], lse))
            # quantized pages, dequantized into the shared tiles
            fp8 = "f8E4M3FN" if dtype == "f16" else "f8E5M2"
            for storage in ("i8", "i4", fp8):
                source.append(append_kernel(f"append_{storage.lower()}_{dtype}_d{head_dim}",
                                            dtype, head_dim, "nhd", MASKS["causal"], True,
                                            storage))
    for dtype in ("f16", "bf16"):
        for head_dim in (64, 128):
            for layout in ("nhd", "hnd"):
                for window in (False, True):
                    for lse in (False, True):
                        name = (f"decode_{dtype}_d{head_dim}_{layout}"
                                f"{'_window' if window else ''}{'_lse' if lse else ''}")
                        source.append(decode_kernel(name, dtype, head_dim, layout, window, lse))
                        # int8 and fp8 pages under queries of this type.
                        fp8 = "f8E4M3FN" if dtype == "f16" else "f8E5M2"
                        for storage in ("i8", "i4", fp8):
                            source.append(decode_kernel(
                                name.replace("decode_", f"decode_{storage.lower()}_"), dtype,
                                head_dim, layout, window, lse, storage))
    for storage in ("bf16", "i8"):  # softcap over 2- and 1-byte pages
        source.append(decode_kernel(f"decode_{storage}_d128_softcap", "bf16", 128, "nhd", False,
                                    True, storage, 50.0))
    out = args.keep or tempfile.mkdtemp(prefix="attnc-gpu-check-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "configs.mlir")
    with open(path, "w") as f:
        f.write("\n".join(source))
    run = subprocess.run([args.attnc, path, "--target=sm_80,sm_90", "-o", out],
                         capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        print(f"FAIL: attnc exited {run.returncode}")
        return 1
    if "no ptxas" in run.stderr:
        print(run.stderr.strip())
        print("SKIP: no ptxas, so no cubins and no report to check")
        return 77
    manifest = json.load(open(os.path.join(out, "manifest.json")))

    failures = []
    print(f"{'kernel':<34} {'arch':<6} {'regs':>4} {'spill st/ld':>11} {'stack':>5} "
          f"{'smem':>7} {'budget':>7}")
    count = 0
    for k in manifest["kernels"]:
        # A split-KV kernel's merge is a second function of the same cubin.
        launches = [(k["name"], k["gpu"])]
        if "merge" in k["gpu"]:
            launches.append((k["gpu"]["merge"]["entry"], k["gpu"]["merge"]))
        for name, gpu in launches:
            for arch in manifest["archs"]:
                count += 1
                r = gpu["ptxas"].get(arch)
                if r is None:
                    failures.append(f"{name} {arch}: no ptxas report")
                    continue
                smem = gpu["smem_bytes"] + r["static_smem_bytes"]
                budget = SMEM_PER_BLOCK[arch]
                print(f"{name:<34} {arch:<6} {r['registers']:>4} "
                      f"{r['spill_stores']:>5}/{r['spill_loads']:<5} {r['stack_bytes']:>5} "
                      f"{smem:>7} {budget:>7}")
                if r["spill_stores"] or r["spill_loads"]:
                    failures.append(f"{name} {arch}: spills {r['spill_stores']} bytes stored, "
                                    f"{r['spill_loads']} loaded")
                if r["stack_bytes"]:
                    failures.append(f"{name} {arch}: a {r['stack_bytes']}-byte stack frame")
                if smem > budget:
                    failures.append(f"{name} {arch}: {smem} bytes of shared memory, over the "
                                    f"{budget} one block may use")
    for f in failures:
        print("FAIL:", f)
    functions = count // len(manifest["archs"])
    print(f"{count} kernel builds checked ({len(manifest['kernels'])} kernels, "
          f"{functions} functions with the split-KV merges, x {len(manifest['archs'])} "
          f"architectures): {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
