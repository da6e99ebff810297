"""attnc.compile and attnc.emit: the attnc driver in-process (attnc/Driver/Compiler.h)."""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union

from . import _attnc
from ._runtime import Module

Source = Union[str, "os.PathLike[str]"]

#: The compiler options compile() and emit() take, as keywords, with their types. They mirror
#: attnc's command line (--block-q, --block-kv, ...); unset ones keep attnc's defaults.
OPTIONS = {
    "block_q": int,         # query tokens per tile (0: chosen from the GQA group)
    "block_kv": int,        # keys per KV tile (32)
    "qk_form": str,         # auto, dot or transposed
    "max_kv_splits": int,   # paged decode: split-KV partitions at most (8)
    "num_kv_splits": int,   # paged decode: a fixed number of partitions (0: per call)
    "kernel_threads": int,  # threads the split-KV choice assumes (0: this machine's)
    "count_tiles": bool,    # tile counters (Kernel.tile_stats())
    "vector_width": int,    # f32 lanes (0: the host's widest vector unit)
}

#: Levels emit() prints for the host ("ptx" for GPU targets and "plan" are accepted too).
LEVELS = ("attn", "manifest", "tiles", "llvm", "llvm-ir")


class CompileWarning(UserWarning):
    """A warning diagnostic of a successful compilation."""


def _read_source(source_or_path: Source) -> tuple[str, str]:
    """(MLIR text, buffer name). A PathLike is a file; a str is a file when it is one line that
    names an existing file or ends in .mlir, MLIR text otherwise (named <string>)."""
    if isinstance(source_or_path, os.PathLike):
        path = os.fspath(source_or_path)
        return Path(path).read_text(), path
    if not isinstance(source_or_path, str):
        raise TypeError("source_or_path must be MLIR text (str) or a path (str or PathLike), "
                        f"not {type(source_or_path).__name__}")
    s = source_or_path
    if "\n" not in s and (s.endswith(".mlir") or os.path.isfile(s)):
        return Path(s).read_text(), s
    return s, "<string>"


def _options(function: str, options: dict) -> dict:
    for name, value in options.items():
        kind = OPTIONS.get(name)
        if kind is None:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}; the "
                            f"compiler options are {', '.join(OPTIONS)}")
        # bool is an int: keep the two apart both ways.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{function}() option {name!r} must be {kind.__name__}, "
                            f"not {type(value).__name__}")
    return options


def _warn(diagnostics) -> None:
    for d in diagnostics:
        if d.severity == "warning":
            warnings.warn(str(d), CompileWarning, stacklevel=3)


def compile(source_or_path: Source, target: str = "host", *,
            output_dir: Optional[Source] = None, num_threads: int = 0,
            stem: Optional[str] = None, **options) -> Module:
    """Compiles MLIR (text, or a path to a .mlir file) for `target` and opens the kernels.

    output_dir: where the artifacts go (libSTEM.so, STEM.h, manifest.json, as the attnc
    command line writes them); by default a temporary directory. Either way the kernels are
    loaded from a private copy, so recompiling into the same directory while an earlier
    module is open gives the new code. stem: the artifacts' name (default: the file's stem,
    "kernels" for text). num_threads: the threads kernels run on (0: all cores). options: see
    OPTIONS.

    Raises CompileError (str() = the diagnostics as attnc prints them, with locations;
    .diagnostics = the structured list) or InternalCompilerError. Runs with the GIL released.
    """
    if target.startswith("sm_"):
        # The GPU side of the package (CUDA tensors, the caller's stream) is not built
        # yet; the artifacts themselves are (docs/gpu.md).
        err = _attnc.CompileError(
            f"attnc.compile loads kernels to run them on the CPU; target {target!r} makes "
            f"GPU artifacts: use attnc.emit(source, 'ptx', target={target!r}), or the attnc "
            "command line (attnc IN.mlir --target=sm_80,sm_90 -o DIR) whose output attnrt's "
            "GPU API runs (docs/gpu.md)")
        err.diagnostics, err.status = [], 1
        raise err
    text, name = _read_source(source_or_path)
    opts = _options("compile", options)
    if stem is None:
        stem = "kernels" if name == "<string>" else ""
    # The kernels are always loaded from a private directory: dlopen hands back a library
    # already loaded from the same path, so a module still open on an earlier compilation
    # into output_dir would otherwise give its old code.
    tmp = tempfile.mkdtemp(prefix="attnc-")
    try:
        out = tmp if output_dir is None else os.fspath(output_dir)
        result = _attnc.compile(text, name, emit="artifacts", target=target, output_dir=out,
                                stem=stem, **opts)
        if output_dir is not None:
            for f in result.files:
                shutil.copy2(f, tmp)
        module = Module(tmp, num_threads=num_threads)
    finally:
        # The library is loaded: nothing reads the directory again.
        shutil.rmtree(tmp, ignore_errors=True)
    module.path = None if output_dir is None else Path(output_dir)
    module.diagnostics = list(result.diagnostics)
    _warn(result.diagnostics)
    return module


def emit(source_or_path: Source, level: str = "attn", target: str = "host", **options) -> str:
    """The text of one level: "attn" (verified input), "manifest" (manifest.json of the attn
    level, no lowering), "tiles", "llvm" (LLVM dialect) or "llvm-ir" (optimized LLVM IR); with a
    GPU target ("sm_80", ...) "ptx"; "plan" for step functions (the memory plan's table).
    Raises as compile() does."""
    if level == "artifacts":
        raise ValueError("emit() prints one level; use compile() for artifacts")
    text, name = _read_source(source_or_path)
    result = _attnc.compile(text, name, emit=level, target=target,
                            **_options("emit", options))
    _warn(result.diagnostics)
    return result.output
