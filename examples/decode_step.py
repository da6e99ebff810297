#!/usr/bin/env python3
"""Writes one decode step of a whole model as an attn step function.

Every layer reads its own paged KV cache (a step argument with its pool size,
`attn.num_pages`) through one page table shared by the layers, and returns
its attention output. The memory planner (attnc --emit=plan, or any
compilation of the module) decides which caches stay in HBM and which stream
from host memory; nothing here says so (docs/memory-planning.md).

  python3 examples/decode_step.py --model llama3-8b --context 32768 > step.mlir
  python3 examples/decode_step.py --model llama3-70b --context 131072 \\
      --storage i4 --target h100-80gb > step70b.mlir
  attnc step70b.mlir --emit=plan
"""

import argparse
import sys

MODELS = {
    # layers, query heads, KV heads, head size
    "llama3-8b": (32, 32, 8, 128),
    "llama3-70b": (80, 64, 8, 128),
}

DTYPES = {"f16": "f16", "bf16": "bf16"}


def cache_type(args, kv_heads, head_dim):
    extra = ""
    if args.storage in ("i8", "i4"):
        extra = f", k_group = {args.page_size}"
    return (f"!attn.kv_cache<page_size = {args.page_size}, "
            f"kv_heads = {kv_heads}, head_dim = {head_dim}, layout = nhd, "
            f"storage = {args.storage}{extra}>")


def explicit_target(args):
    f = args.explicit
    return ("#attn.target<sm_count = 1, tensor_flops = {tf}, "
            "smem_per_block = 65536, smem_per_sm = 65536, "
            "hbm_bytes = {hbm}, hbm_bandwidth = {hbw}, "
            "host_bytes = {host}, link_bandwidth = {link}>").format(
                tf=int(f[0]), hbm=int(f[1]), hbw=int(f[2]), host=int(f[3]),
                link=int(f[4]))


def step_module(args):
    layers, hq, hkv, d = MODELS[args.model]
    if args.layers:
        layers = args.layers
    batch = args.batch
    pages_per_seq = -(-args.context // args.page_size)
    pages = batch * pages_per_seq
    dtype = args.dtype
    cache = cache_type(args, hkv, d)
    target = (explicit_target(args) if args.explicit else
              f'#attn.target<"{args.target}">')
    q = f"tensor<{batch}x{hq}x{d}x{dtype}>"
    params = [
        f'%kv_indptr: tensor<{batch + 1}xi32> {{attn.name = "kv_indptr"}}',
        f'%kv_indices: tensor<{pages}xi32> {{attn.name = "kv_indices"}}',
        f'%kv_last_page_len: tensor<{batch}xi32> '
        f'{{attn.name = "kv_last_page_len"}}',
    ]
    for layer in range(layers):
        params.append(f'%q{layer}: {q} {{attn.name = "q{layer}"}}')
        params.append(f'%cache{layer}: {cache} {{attn.name = "cache{layer}", '
                      f'attn.num_pages = {pages} : i64}}')
    results = ", ".join(f'{q} {{attn.name = "o{layer}"}}'
                        for layer in range(layers))
    out = [
        f"// {args.model}: one decode step, batch {batch}, {args.context} "
        f"tokens of context per sequence,",
        f"// {args.storage} KV cache in pages of {args.page_size} tokens "
        f"({pages} pages per layer). Written by examples/decode_step.py.",
        f"module attributes {{attn.target = {target}}} {{",
        f"func.func @decode_step(" + ",\n    ".join(params) +
        f")\n    -> ({results}) attributes {{attn.step}} {{",
    ]
    for layer in range(layers):
        out.append(
            f"  %o{layer} = attn.paged_attention %q{layer}, %cache{layer}, "
            f"%kv_indptr, %kv_indices, %kv_last_page_len "
            f"{{mask = #attn.mask<causal>}}\n"
            f"      : ({q}, {cache}, tensor<{batch + 1}xi32>, "
            f"tensor<{pages}xi32>, tensor<{batch}xi32>) -> {q}")
    out.append("  return " + ", ".join(f"%o{layer}" for layer in range(layers))
               + " : " + ", ".join([q] * layers))
    out.append("}")
    out.append("}")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="llama3-8b")
    parser.add_argument("--layers", type=int, default=0,
                        help="override the model's layer count")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--context", type=int, default=32768)
    parser.add_argument("--page-size", type=int, default=64)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f16",
                        help="query and output element type")
    parser.add_argument("--storage", default="f16",
                        help="KV cache storage: f16, bf16, f8E4M3FN, i8, i4")
    parser.add_argument("--target", default="h100-80gb",
                        help="an #attn.target preset")
    parser.add_argument("--explicit", type=float, nargs=5,
                        metavar=("TENSOR_FLOPS", "HBM_BYTES", "HBM_BW",
                                 "HOST_BYTES", "LINK_BW"),
                        help="an explicit target instead of a preset")
    args = parser.parse_args()
    sys.stdout.write(step_module(args))


if __name__ == "__main__":
    main()
