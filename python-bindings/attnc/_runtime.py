"""Modules, kernels, memory-plan steps and KV-cache page pools over attnrt (the native half is _attnc)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import ml_dtypes
import numpy as np

from . import _attnc

#: NumPy dtype of each attnrt dtype (bf16 and fp8 from ml_dtypes).
NP_DTYPES = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "i32": np.dtype(np.int32),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "f8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "f8e5m2": np.dtype(ml_dtypes.float8_e5m2),
}

# ml_dtypes arrays have no DLPack or buffer-protocol type code: they cross as integer views of
# the same size, with the attnrt dtype (attnrt_dtype value) said explicitly.
_VIEWS = {
    np.dtype(ml_dtypes.bfloat16): (np.uint16, 2),
    np.dtype(ml_dtypes.float8_e4m3fn): (np.uint8, 6),
    np.dtype(ml_dtypes.float8_e5m2): (np.uint8, 7),
}


def _native(a: Any) -> tuple[Any, int]:
    """(object the extension reads, attnrt dtype or -1 for the object's own)."""
    if isinstance(a, np.ndarray):
        view = _VIEWS.get(a.dtype)
        if view is not None:
            return a.view(view[0]), view[1]
    return a, -1


Array = Any  # a NumPy array or any object with __dlpack__ (CPU memory)


class Kernel:
    """A compiled kernel. Call it with arrays by argument name or position (manifest order):

        o = module.prefill(q, k, v)                  # out arguments allocated and returned
        o, lse = module.decode(q=q, cache_k_pages=kp, ..., kv_last_page_len=last)
        module.append(k_new, v_new, slots, **pool.buffers)   # inout: written in place

    `in` arguments are read without a copy (NumPy arrays or CPU DLPack tensors of exactly the
    manifest dtype, C-contiguous); `out` arguments may be passed (written in place) or are
    allocated as NumPy arrays, their symbolic sizes taken from the arguments given; `inout`
    arguments are written in place. Returns the out arguments (None, one array, or a tuple in
    manifest order). The kernel runs with the GIL released. attnrt's checks raise
    ValidationError (a ValueError; DTypeError, also a TypeError, for a wrong dtype) with its
    message; nothing runs then."""

    def __init__(self, native: _attnc.Kernel, num_threads: int = 0):
        self._k = native
        self._num_threads = num_threads
        self.args: list[_attnc.ArgInfo] = native.args
        self._names = [a.name for a in self.args]

    # -- information -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._k.name

    @property
    def kind(self) -> str:
        """attention, paged_attention, kv_append, merge or select_pages."""
        return self._k.kind

    @property
    def num_phases(self) -> int:
        return self._k.num_phases

    @property
    def scratch(self) -> list[_attnc.ArgInfo]:
        return self._k.scratch

    @property
    def attention(self) -> Optional[_attnc.AttentionInfo]:
        return self._k.attention

    @property
    def kv_cache(self) -> Optional[_attnc.KVCacheInfo]:
        return self._k.kv_cache

    @property
    def block_sparse(self) -> Optional[_attnc.BlockSparseInfo]:
        return self._k.block_sparse

    @property
    def select_pages(self) -> Optional[_attnc.SelectPagesInfo]:
        return self._k.select_pages

    @property
    def inputs(self) -> list[str]:
        """Names of the arguments a call must give (dir in and inout)."""
        return [a.name for a in self.args if a.dir != "out"]

    @property
    def outputs(self) -> list[str]:
        """Names of the out arguments, in the order a call returns them."""
        return [a.name for a in self.args if a.dir == "out"]

    @property
    def has_tile_stats(self) -> bool:
        return self._k.has_tile_stats

    def tile_stats(self) -> tuple[int, int, int]:
        """(KV tiles run, tiles that applied the element predicate, work items), summed over
        the runs since the library was loaded or reset; kernels compiled with
        count_tiles=True (AttnrtError otherwise)."""
        return self._k.tile_stats()

    def reset_tile_stats(self) -> None:
        self._k.reset_tile_stats()

    def __repr__(self) -> str:
        sig = ", ".join(f"{a.name}: {a.dtype}[{', '.join(map(str, a.shape))}]"
                        for a in self.args if a.dir != "out")
        outs = ", ".join(f"{a.dtype}[{', '.join(map(str, a.shape))}]"
                         for a in self.args if a.dir == "out")
        return f"<Kernel {self.kind} {self.name}({sig}) -> ({outs})>"

    # -- calls -----------------------------------------------------------------------------
    def __call__(self, *args: Array, **kwargs: Array) -> Any:
        given = self._bind(args, kwargs)
        return self._run(given, self._num_threads)

    def run(self, args: Union[Mapping[str, Array], Sequence[Array]], *,
            num_threads: Optional[int] = None) -> Any:
        """Runs on `args` (a mapping by name, or a sequence in manifest order; out arguments
        optional in either); num_threads overrides the module's (1: the calling thread only).
        Returns what a call returns."""
        given = self._bind((), args) if isinstance(args, Mapping) else self._bind(args, {})
        return self._run(given, self._num_threads if num_threads is None else num_threads)

    def validate(self, *args: Array, **kwargs: Array) -> None:
        """attnrt's checks of the call kernel(*args, **kwargs), without running it."""
        natives, dtypes = self._prepare(self._bind(args, kwargs))
        self._k.validate(natives, dtypes)

    def _bind(self, args: Sequence[Array], kwargs: Mapping[str, Array]) -> dict:
        """Arguments by name, as Python binds a call: TypeError for too many, unknown,
        repeated or missing ones."""
        names = self._names
        if len(args) > len(names):
            raise TypeError(f"{self.name}() takes {len(names)} arguments "
                            f"({', '.join(names)}) but {len(args)} were given")
        given = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{self.name}() got an unexpected argument {name!r}; its "
                                f"arguments are {', '.join(names)}")
            if name in given:
                raise TypeError(f"{self.name}() got multiple values for argument {name!r}")
            given[name] = value
        missing = [a.name for a in self.args if a.dir != "out" and given.get(a.name) is None]
        if missing:
            raise TypeError(f"{self.name}() missing required argument(s) "
                            f"{', '.join(map(repr, missing))}; its arguments are "
                            f"{', '.join(names)}")
        return given

    def _prepare(self, given: dict) -> tuple[list, list]:
        """Outputs allocated; (objects for the extension, attnrt dtype overrides)."""
        self._allocate_outputs(given)
        return self._natives(given)

    def _natives(self, given: dict) -> tuple[list, list]:
        natives, dtypes = [], []
        for name in self._names:
            obj, dtype = _native(given[name])
            natives.append(obj)
            dtypes.append(dtype)
        return natives, dtypes

    def _run(self, given: dict, num_threads: int) -> Any:
        natives, dtypes = self._prepare(given)
        self._k.run(natives, dtypes, num_threads)
        outs = [given[a.name] for a in self.args if a.dir == "out"]
        return None if not outs else outs[0] if len(outs) == 1 else tuple(outs)

    def _allocate_outputs(self, given: dict) -> None:
        """Zero-filled NumPy arrays for the out arguments not given, sized from the symbols
        (batch, seqlen_q, ...) that the given arguments bind."""
        symbols: dict[str, int] = {}
        for a in self.args:
            shape = getattr(given.get(a.name), "shape", None)
            if shape is None or len(shape) != len(a.dims):
                continue  # attnrt reports it
            for d, size in zip(a.dims, shape):
                if d.name is not None:
                    symbols.setdefault(d.name, int(size) - d.value)
        unsized = []  # (output, symbol) of each size no argument given binds
        for a in self.args:
            if a.dir != "out" or given.get(a.name) is not None:
                continue
            shape = []
            for d in a.dims:
                if d.name is None:
                    shape.append(d.value)
                elif d.name in symbols:
                    # A negative size is an input attnrt will name; keep numpy out of it.
                    shape.append(max(0, symbols[d.name] + d.value))
                else:
                    unsized.append((a.name, d.name))
                    shape.append(0)
            given[a.name] = np.zeros(shape, NP_DTYPES[a.dtype])
        if unsized:
            # Usually an argument that should bind the symbol is not an array or has the
            # wrong rank: attnrt's message about it (raised here) says more than ours, unless
            # it is about a placeholder output.
            placeholders = {name for name, _ in unsized}
            try:
                self._k.validate(*self._natives(given))
            except _attnc.ValidationError as e:
                if not any(f"argument '{name}' (#" in e.message for name in placeholders):
                    raise
            except TypeError as e:
                if not any(f"argument '{name}' (#" in str(e) for name in placeholders):
                    raise
            name, symbol = unsized[0]
            raise ValueError(f"kernel '{self.name}': cannot size output {name!r}: no argument "
                             f"given binds {symbol!r}; pass {name!r}")


class Module(Mapping):
    """The kernels of an artifact directory (manifest.json + library), opened by attnrt; what
    attnc.compile returns. A mapping from kernel name to Kernel; kernels are also attributes
    (module.prefill). num_threads: the threads kernels run on (0: all cores)."""

    # Identity, not the Mapping's content comparison.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, path: Union[str, "os.PathLike[str]"], num_threads: int = 0):
        self._m = _attnc.Module(os.fspath(path), num_threads)
        #: The artifact directory (None when attnc.compile used a temporary one).
        self.path: Optional[Path] = Path(path)
        #: manifest.json, parsed.
        self.manifest: dict = json.loads((Path(path) / "manifest.json").read_text())
        #: Warnings and notes of the compilation (attnc.compile only).
        self.diagnostics: list[_attnc.Diagnostic] = []
        self._kernels = {name: Kernel(self._m.kernel(name), num_threads)
                         for name in self._m.kernels}

    @property
    def kernels(self) -> list[str]:
        return list(self._kernels)

    @property
    def steps(self) -> list[str]:
        """Names of the step functions of the manifest's memory plans ("steps")."""
        return self._m.steps

    def step(self, name: str) -> "Step":
        """Opens step `name` of the memory plan: its arenas (zero-filled) and copy thread."""
        return Step(_attnc.Step(self._m, name))

    def __getitem__(self, name: str) -> Kernel:
        k = self._kernels.get(name)
        if k is None:
            self._m.kernel(name)  # raises KernelNotFoundError with attnrt's message
            # attnrt found the name up to a NUL (where a C string ends): not a kernel either.
            raise KeyError(name)
        return k

    def __getattr__(self, name: str) -> Kernel:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(getattr(e, "message", repr(name))) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._kernels)

    def __len__(self) -> int:
        return len(self._kernels)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._kernels))

    def __repr__(self) -> str:
        return f"<attnc.Module {', '.join(self._kernels)}>"


class Step:
    """A step function of a memory plan, opened by Module.step(name): one arena per memory tier
    of exactly the planned size, the plan's copies on a copy thread and its kernels, run through
    attnrt's checks. Write the inputs (and state) through their views before a run, read the
    outputs after it:

        step = module.step("decode_step")
        step.buffer("q0")[...] = q                # a NumPy view of the arena, in place
        step.run()                                # GIL released
        o = step.buffer("o0").copy()

    The views keep the step alive; they stay valid (and keep their place) while it lives."""

    def __init__(self, native: _attnc.Step):
        self._s = native
        #: The buffers at their home places (name, dir, dtype, shape, tier, offset, bytes).
        self.buffers: list[_attnc.StepBufferInfo] = native.buffers
        self._views: dict[str, np.ndarray] = {}
        for i, b in enumerate(self.buffers):
            self._views[b.name] = native.buffer(i).view(NP_DTYPES[b.dtype]).reshape(b.shape)

    @property
    def name(self) -> str:
        return self._s.name

    @property
    def tiers(self) -> list[_attnc.StepTierInfo]:
        """The memory tiers (name, capacity, size, device), one arena each."""
        return self._s.tiers

    def buffer(self, name: str) -> np.ndarray:
        """Buffer `name` as a writable NumPy view of its arena (dtype and shape from the plan;
        bf16 and fp8 as ml_dtypes). KernelNotFoundError (a KeyError) lists the buffers when
        there is none of that name."""
        view = self._views.get(name)
        if view is None:
            self._s.find_buffer(name)  # raises with attnrt's message
            raise KeyError(name)
        return view

    def run(self, threads: int = 0) -> None:
        """Runs the program (copies, waits, kernels) with the GIL released; threads: the
        kernels' threads (0: the module's). attnrt's errors raise AttnrtError (ValidationError
        when a kernel's arguments, e.g. a page table in a buffer, are invalid)."""
        self._s.run(threads)

    @property
    def stats(self) -> dict[str, Union[int, float]]:
        """Counters and timings of the last run: runs, copies, bytes_copied, kernels,
        copy_seconds, exposed_seconds (waiting for copies), kernel_seconds, overlap_seconds
        (copy time that overlapped a kernel), total_seconds."""
        s = self._s.stats()
        return {name: getattr(s, name) for name in (
            "runs", "copies", "bytes_copied", "kernels", "copy_seconds", "exposed_seconds",
            "kernel_seconds", "overlap_seconds", "total_seconds")}

    def __repr__(self) -> str:
        tiers = ", ".join(f"{t.name} {t.size} B" for t in self.tiers)
        return f"<Step {self.name}: {tiers}; {', '.join(b.name for b in self.buffers)}>"


class CachePool:
    """attnrt's KV-cache page pool (attnrt_cache.h) for the cache of `kernel` (a kv_append or
    paged_attention kernel): num_pages pages, plus for a cache with a residual window num_rings
    rings (default 64; at most that many live sequences). `buffers` maps each cache argument
    name (cache_k_pages, ...) to a NumPy view of the pool's memory, so

        module.append(k_new, v_new, pool.append(seq, n), **pool.buffers)

    quantizes into the pool in place and a decode reads it without a copy. Per-head fp8 scales
    start at 1.0. Not thread-safe (its calls hold the GIL; do not run kernels on its buffers
    while another thread appends)."""

    def __init__(self, kernel: Kernel, num_pages: int, num_rings: Optional[int] = None):
        self._p = _attnc.CachePool(kernel._k, num_pages, num_rings)
        self.buffers: dict[str, np.ndarray] = {}
        for i, c in enumerate(self._p.components):
            a = self._p.buffer(i).view(NP_DTYPES[c.dtype]).reshape(c.shape)
            if c.kind == "total" and c.role in ("k_scale", "v_scale"):
                a[...] = 1.0
            self.buffers[c.name] = a

    @property
    def components(self) -> list[_attnc.PoolComponent]:
        return self._p.components

    @property
    def page_size(self) -> int:
        return self._p.page_size

    @property
    def residual(self) -> int:
        return self._p.residual

    @property
    def num_rings(self) -> int:
        return self._p.num_rings

    def stats(self) -> _attnc.CacheStats:
        return self._p.stats()

    def check(self) -> None:
        """Recomputes every invariant (AttnrtError naming the first broken one)."""
        self._p.check()

    def create(self) -> int:
        """A new empty sequence (its id)."""
        return self._p.create()

    def fork(self, seq: int) -> int:
        """A new sequence sharing seq's pages (copy-on-write)."""
        return self._p.fork(seq)

    def free(self, seq: int) -> None:
        self._p.free(seq)

    def length(self, seq: int) -> int:
        return self._p.length(seq)

    def refcount(self, page: int) -> int:
        return self._p.refcount(page)

    def trim(self, seq: int, sink_tokens: int, window_tokens: int) -> None:
        """Returns the pages of seq outside [0, sink_tokens) and the last window_tokens + 1
        positions to the pool (their page-table entries read -1 from then on)."""
        self._p.trim(seq, sink_tokens, window_tokens)

    def append(self, seq: int, num_tokens: int) -> np.ndarray:
        """Reserves num_tokens positions of seq: their slots (int32, kv_append's
        slot_mapping). All or nothing (OutOfPagesError when the pool is full)."""
        return self._p.append(seq, num_tokens)

    def append_with_rings(self, seq: int, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """append for a cache with a residual window: (slots, ring_slots)."""
        return self._p.append_with_rings(seq, num_tokens)

    def rings(self, seqs: Sequence[int]) -> np.ndarray:
        """The ring of each sequence (paged_attention's kv_rings, int32)."""
        return self._p.rings([int(s) for s in seqs])

    def page_table(self, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kv_indptr, kv_indices, kv_last_page_len) of a batch of sequences (int32)."""
        return self._p.page_table([int(s) for s in seqs])


def page_table_from_block_tables(block_tables, seq_lens, page_size: int):
    """vLLM's padded block_tables [batch, max_blocks] and seq_lens [batch] -> (kv_indptr,
    kv_indices, kv_last_page_len), int32."""
    return _attnc.page_table_from_block_tables(
        _as_int32(block_tables, "block_tables"), _as_int32(seq_lens, "seq_lens"), page_size)


def _as_int32(values, name: str) -> np.ndarray:
    """values as contiguous int32, refusing what a cast would change (floats, values beyond
    int32): a truncated page id would be a valid-looking wrong page."""
    array = np.asarray(values)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, not {array.dtype}")
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{name} has values outside int32 (page ids and lengths are int32)")
    return np.ascontiguousarray(array, np.int32)
