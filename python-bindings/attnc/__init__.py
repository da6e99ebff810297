"""attnc: an MLIR-based compiler for memory-efficient attention, from Python.

    import attnc, numpy as np
    m = attnc.compile('''
      func.func @prefill(%q: tensor<?x?x8x64xf32>, %k: tensor<?x?x2x64xf32>,
                         %v: tensor<?x?x2x64xf32>) -> tensor<?x?x8x64xf32> {
        %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
            : (tensor<?x?x8x64xf32>, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>)
            -> tensor<?x?x8x64xf32>
        return %o : tensor<?x?x8x64xf32>
      }''')
    o = m.prefill(q, k, v)

compile() runs the attnc driver in-process and opens the kernels with attnrt; emit() prints one
level of the pipeline; CachePool is attnrt's KV-cache page pool; Module.step opens a step of a
memory plan. See docs/python.md.
"""
from ._attnc import (ArgInfo, AttentionInfo, AttnrtError, BlockSparseInfo, CacheStats,
                     CompileError, Diagnostic, Dim, DTypeError, InternalCompilerError,
                     KernelNotFoundError, KVCacheInfo, MaskInfo, OutOfPagesError,
                     PoolComponent, SelectPagesInfo, StepBufferInfo, StepStats,
                     StepTierInfo, ValidationError)
from ._compile import LEVELS, OPTIONS, CompileWarning, compile, emit
from ._runtime import NP_DTYPES, CachePool, Kernel, Module, Step, page_table_from_block_tables

__version__ = "0.1.0"

__all__ = [
    "ArgInfo", "AttentionInfo", "AttnrtError", "BlockSparseInfo", "CachePool", "CacheStats",
    "CompileError", "CompileWarning", "Diagnostic", "Dim", "DTypeError",
    "InternalCompilerError", "Kernel", "KernelNotFoundError", "KVCacheInfo", "LEVELS",
    "MaskInfo", "Module", "NP_DTYPES", "OPTIONS", "OutOfPagesError", "PoolComponent",
    "SelectPagesInfo", "Step", "StepBufferInfo", "StepStats", "StepTierInfo", "ValidationError",
    "compile", "emit", "page_table_from_block_tables",
]
