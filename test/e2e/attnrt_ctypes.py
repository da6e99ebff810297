"""ctypes wrapper over libattnrt (runtime/include/attnrt/attnrt.h) for the end-to-end tests.

Runs any kernel of a host artifact, including the kinds attn-run does not (paged_attention,
kv_append, merge). Arrays are passed zero-copy: `out` and `inout` arguments are written in place,
so the caller allocates them.

    from attnrt_ctypes import Module
    with Module("out/decode") as m:
        info = m.info("decode")            # kind, phases, args, scratch, kv_cache, attention
        m.run("decode", {"q": q, "cache_k_pages": kp, ..., "o": o})
        m.tile_stats("decode")             # (run, partial, items): attnc --count-tiles kernels

The library is $ATTNRT_LIB, else <repo>/build/runtime/libattnrt.so or <repo>/build/lib/libattnrt.so.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import ml_dtypes
import numpy as np

# attnrt_dtype values, in enum order.
DTYPES = ["f32", "f16", "bf16", "i32", "i8", "u8", "f8e4m3fn", "f8e5m2"]
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
DIRS = ["in", "out", "inout"]
# attnrt_role names, in enum order (attnrt_role_name gives the same).
ROLES = ["query", "key", "value", "cu_seqlens_q", "cu_seqlens_k", "output", "lse", "k_pages",
         "v_pages", "k_scale", "v_scale", "k_min", "v_min", "kv_indptr", "kv_indices",
         "kv_last_page_len", "qo_indptr", "k_new", "v_new", "slot_mapping", "partial_o",
         "partial_lse", "k_recent", "v_recent", "ring_slots", "kv_rings", "block_offsets",
         "block_indices", "block_full", "k_page_max", "k_page_min"]
# Block-sparse operands (docs/sparsity.md): inputs of attention/paged_attention, outputs of
# select_pages. The page summaries k_page_max/k_page_min are per-page cache components.
BSR_ROLES = ("block_offsets", "block_indices", "block_full")
SUMMARY_ROLES = ("k_page_max", "k_page_min")

ATTNRT_ERR_INVALID_ARGUMENT = 1
ATTNRT_ERR_UNSUPPORTED = 4
ATTNRT_ERR_VALIDATION = 7


class AttnrtError(RuntimeError):
    """A failing attnrt call: `status` (attnrt_status) and attnrt's one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(f"attnrt status {status}: {message}")
        self.status = status
        self.message = message


class _Dim(ctypes.Structure):
    _fields_ = [("symbol", ctypes.c_char_p), ("symbol_name", ctypes.c_char_p),
                ("value", ctypes.c_int64)]


class _ArgInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("role", ctypes.c_int), ("dir", ctypes.c_int),
                ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("shape", ctypes.POINTER(_Dim))]


class _MaskInfo(ctypes.Structure):
    _fields_ = [("causal", ctypes.c_int), ("bottom_right", ctypes.c_int),
                ("window", ctypes.c_int64), ("sinks", ctypes.c_int64)]


class _AttentionInfo(ctypes.Structure):
    _fields_ = [("ragged", ctypes.c_int), ("num_q_heads", ctypes.c_int64),
                ("num_kv_heads", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("dtype", ctypes.c_int), ("scale", ctypes.c_double),
                ("softcap", ctypes.c_double), ("causal", ctypes.c_int),
                ("bottom_right", ctypes.c_int), ("window", ctypes.c_int64),
                ("sinks", ctypes.c_int64), ("has_lse", ctypes.c_int),
                ("block_q", ctypes.c_int64), ("block_kv", ctypes.c_int64),
                ("vector_width", ctypes.c_int64), ("workspace_bytes", ctypes.c_int64),
                ("paged", ctypes.c_int), ("num_head_masks", ctypes.c_int64),
                ("head_masks", ctypes.POINTER(_MaskInfo))]


class _BlockSparseInfo(ctypes.Structure):
    _fields_ = [("block_q", ctypes.c_int64), ("block_kv", ctypes.c_int64),
                ("heads", ctypes.c_int64)]


class _SelectPagesInfo(ctypes.Structure):
    _fields_ = [("top_k", ctypes.c_int64), ("sink_pages", ctypes.c_int64),
                ("recent_pages", ctypes.c_int64)]


class _KvCacheInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("page_size", ctypes.c_int64),
                ("num_kv_heads", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("layout", ctypes.c_char_p), ("storage", ctypes.c_char_p),
                ("k_group", ctypes.c_int64), ("bytes_per_token", ctypes.c_double),
                ("residual", ctypes.c_int64)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("sizes", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64))]


def find_library() -> Path:
    """$ATTNRT_LIB, else the default build tree's libattnrt.so."""
    if os.environ.get("ATTNRT_LIB"):
        return Path(os.environ["ATTNRT_LIB"])
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo / "build" / "runtime" / "libattnrt.so",
                  repo / "build" / "lib" / "libattnrt.so"]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError("libattnrt.so not found in " + ", ".join(map(str, candidates)) +
                            "; build attnrt or set ATTNRT_LIB")


_lib = None


class _CacheComponent(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("paged", ctypes.c_int), ("bytes", ctypes.c_int64)]


class _CacheStats(ctypes.Structure):
    _fields_ = [("page_size", ctypes.c_int64), ("num_pages", ctypes.c_int64),
                ("free_pages", ctypes.c_int64), ("used_pages", ctypes.c_int64),
                ("num_sequences", ctypes.c_int64), ("bytes_per_page", ctypes.c_int64),
                ("bytes_per_token", ctypes.c_double), ("bytes_in_use", ctypes.c_int64),
                ("num_rings", ctypes.c_int64), ("free_rings", ctypes.c_int64)]

# attnrt_cache_component.paged values.
CACHE_TOTAL, CACHE_PER_PAGE, CACHE_PER_RING = 0, 1, 2
# Roles of the per-sequence ring components (residual window).
RING_ROLES = ("k_recent", "v_recent")


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(str(find_library()))
    P, c_int, c_char_p = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    sigs = {
        "attnrt_last_error": (c_char_p, []),
        "attnrt_open": (c_int, [c_char_p, c_int, ctypes.POINTER(P)]),
        "attnrt_close": (None, [P]),
        "attnrt_num_kernels": (c_int, [P]),
        "attnrt_kernel_at": (P, [P, c_int]),
        "attnrt_kernel_name": (c_char_p, [P]),
        "attnrt_kernel_kind": (c_char_p, [P]),
        "attnrt_kernel_num_phases": (c_int, [P]),
        "attnrt_kernel_num_args": (c_int, [P]),
        "attnrt_kernel_arg": (ctypes.POINTER(_ArgInfo), [P, c_int]),
        "attnrt_kernel_num_scratch": (c_int, [P]),
        "attnrt_kernel_scratch": (ctypes.POINTER(_ArgInfo), [P, c_int]),
        "attnrt_kernel_attention": (ctypes.POINTER(_AttentionInfo), [P]),
        "attnrt_kernel_kv_cache": (ctypes.POINTER(_KvCacheInfo), [P]),
        "attnrt_kernel_block_sparse": (ctypes.POINTER(_BlockSparseInfo), [P]),
        "attnrt_kernel_select_pages": (ctypes.POINTER(_SelectPagesInfo), [P]),
        "attnrt_kernel_has_tile_stats": (c_int, [P]),
        "attnrt_kernel_tile_stats": (c_int, [P, ctypes.POINTER(ctypes.c_int64)]),
        "attnrt_kernel_reset_tile_stats": (c_int, [P]),
        "attnrt_role_name": (c_char_p, [c_int]),
        "attnrt_run": (c_int, [P, P, ctypes.POINTER(_Tensor), c_int, c_int]),
        # KV-cache page pool (attnrt_cache.h)
        "attnrt_cache_pool_create": (c_int, [ctypes.c_int64, ctypes.POINTER(_CacheComponent),
                                             c_int, ctypes.c_int64, ctypes.POINTER(P)]),
        "attnrt_cache_pool_create_with_rings": (c_int, [ctypes.c_int64,
                                                        ctypes.POINTER(_CacheComponent), c_int,
                                                        ctypes.c_int64, ctypes.c_int64,
                                                        ctypes.c_int64, ctypes.POINTER(P)]),
        "attnrt_cache_pool_destroy": (None, [P]),
        "attnrt_cache_pool_buffer": (c_int, [P, c_int, ctypes.POINTER(P),
                                             ctypes.POINTER(ctypes.c_int64)]),
        "attnrt_cache_pool_stats": (c_int, [P, ctypes.POINTER(_CacheStats)]),
        "attnrt_cache_pool_check": (c_int, [P]),
        "attnrt_cache_seq_create": (c_int, [P, ctypes.POINTER(ctypes.c_int64)]),
        "attnrt_cache_seq_fork": (c_int, [P, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]),
        "attnrt_cache_seq_free": (c_int, [P, ctypes.c_int64]),
        "attnrt_cache_seq_trim": (c_int, [P, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]),
        "attnrt_cache_seq_append": (c_int, [P, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.POINTER(ctypes.c_int32)]),
        "attnrt_cache_seq_append_with_rings": (c_int, [P, ctypes.c_int64, ctypes.c_int64,
                                                       ctypes.POINTER(ctypes.c_int32),
                                                       ctypes.POINTER(ctypes.c_int32)]),
        "attnrt_cache_rings": (c_int, [P, ctypes.POINTER(ctypes.c_int64), c_int,
                                       ctypes.POINTER(ctypes.c_int32)]),
        "attnrt_cache_page_table_size": (c_int, [P, ctypes.POINTER(ctypes.c_int64), c_int,
                                                 ctypes.POINTER(ctypes.c_int64)]),
        "attnrt_cache_page_table": (c_int, [P, ctypes.POINTER(ctypes.c_int64), c_int,
                                            ctypes.POINTER(ctypes.c_int32),
                                            ctypes.POINTER(ctypes.c_int32), ctypes.c_int64,
                                            ctypes.POINTER(ctypes.c_int32)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _lib = lib
    return lib


def _check(status: int) -> None:
    if status != 0:
        raise AttnrtError(status, _load().attnrt_last_error().decode())


def _arg_dict(a: _ArgInfo, lib) -> dict:
    shape = []
    for i in range(a.rank):
        d = a.shape[i]
        shape.append(d.symbol.decode() if d.symbol else d.value)
    return {"name": a.name.decode(), "role": lib.attnrt_role_name(a.role).decode(),
            "dir": DIRS[a.dir], "dtype": DTYPES[a.dtype], "shape": shape}


class Module:
    """An open artifact directory (attnrt_open); close() or use as a context manager."""

    def __init__(self, directory, num_threads: int = 0):
        lib = _load()
        handle = ctypes.c_void_p()
        _check(lib.attnrt_open(str(directory).encode(), num_threads, ctypes.byref(handle)))
        self._lib, self._handle = lib, handle
        self._kernels = {}
        for i in range(lib.attnrt_num_kernels(handle)):
            k = lib.attnrt_kernel_at(handle, i)
            self._kernels[lib.attnrt_kernel_name(k).decode()] = k

    def close(self) -> None:
        if self._handle:
            self._lib.attnrt_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None):
            self.close()

    @property
    def kernels(self) -> list[str]:
        return list(self._kernels)

    def _kernel(self, name: str):
        if not self._handle:
            raise AttnrtError(ATTNRT_ERR_INVALID_ARGUMENT, "the module is closed")
        if name not in self._kernels:
            raise AttnrtError(6, f"no kernel named '{name}'; available: "
                                 + ", ".join(self._kernels))
        return self._kernels[name]

    def info(self, name: str) -> dict:
        """kind, phases, args/scratch ({name, role, dir, dtype, shape}), kv_cache and attention
        (dicts of the C structs' fields, or None). kv_cache["residual"] (R) is present only for
        a cache with a residual window: use kv_cache.get("residual", 0). attention["head_masks"]
        lists the per-KV-head masks ({causal, align, window, sinks}; [] with one mask);
        block_sparse ({block_q, block_kv, heads}) and select_pages ({top_k, sink_pages,
        recent_pages}) are dicts or None; tile_stats says whether the kernel counts tiles."""
        lib, k = self._lib, self._kernel(name)
        args = [_arg_dict(lib.attnrt_kernel_arg(k, i).contents, lib)
                for i in range(lib.attnrt_kernel_num_args(k))]
        scratch = []
        for i in range(lib.attnrt_kernel_num_scratch(k)):
            s = _arg_dict(lib.attnrt_kernel_scratch(k, i).contents, lib)
            scratch.append({key: s[key] for key in ("name", "dtype", "shape")})
        at = lib.attnrt_kernel_attention(k)
        attention = None
        if at:
            a = at.contents
            attention = {f: getattr(a, f) for f, _ in _AttentionInfo._fields_}
            attention["dtype"] = DTYPES[a.dtype]
            attention["layout"] = "paged" if a.paged else "ragged" if a.ragged else "dense"
            attention["align"] = "bottom_right" if a.bottom_right else "top_left"
            del attention["num_head_masks"]
            attention["head_masks"] = [
                {"causal": bool(hm.causal),
                 "align": "bottom_right" if hm.bottom_right else "top_left",
                 "window": hm.window, "sinks": hm.sinks}
                for hm in (a.head_masks[i] for i in range(a.num_head_masks))]
        kv = lib.attnrt_kernel_kv_cache(k)
        kv_cache = None
        if kv:
            c = kv.contents
            kv_cache = {f: getattr(c, f) for f, _ in _KvCacheInfo._fields_}
            for f in ("name", "layout", "storage"):
                kv_cache[f] = kv_cache[f].decode()
            if not kv_cache["residual"]:
                del kv_cache["residual"]  # only caches with a residual window have one
        bs, sp = lib.attnrt_kernel_block_sparse(k), lib.attnrt_kernel_select_pages(k)
        block_sparse = {f: getattr(bs.contents, f) for f, _ in _BlockSparseInfo._fields_} \
            if bs else None
        select_pages = {f: getattr(sp.contents, f) for f, _ in _SelectPagesInfo._fields_} \
            if sp else None
        return {"name": name, "kind": lib.attnrt_kernel_kind(k).decode(),
                "phases": lib.attnrt_kernel_num_phases(k), "args": args, "scratch": scratch,
                "kv_cache": kv_cache, "attention": attention, "block_sparse": block_sparse,
                "select_pages": select_pages,
                "tile_stats": bool(lib.attnrt_kernel_has_tile_stats(k))}

    def tile_stats(self, name: str) -> tuple:
        """(tiles run, tiles that applied the element predicate, work items) of a kernel built
        with attnc --count-tiles, summed since the library was loaded or last reset (the
        counters live in the library, shared by every Module of the same artifact path).
        AttnrtError (status ATTNRT_ERR_UNSUPPORTED) for a kernel without counters."""
        out = (ctypes.c_int64 * 3)()
        _check(self._lib.attnrt_kernel_tile_stats(self._kernel(name), out))
        return tuple(out)

    def reset_tile_stats(self, name: str) -> None:
        """Zeroes the tile counters of kernel `name` (see tile_stats)."""
        _check(self._lib.attnrt_kernel_reset_tile_stats(self._kernel(name)))

    def run(self, name: str, args, num_threads: int = 0) -> None:
        """Runs kernel `name` on `args`: a dict {argument name: array} or a list in manifest
        order. Arrays must be C-contiguous NumPy arrays of the argument's dtype; out/inout arrays
        must be writable and are written in place. Raises AttnrtError on any failure."""
        k = self._kernel(name)
        specs = self.info(name)["args"]
        names = [a["name"] for a in specs]
        if isinstance(args, dict):
            unknown = sorted(set(args) - set(names))
            missing = [n for n in names if n not in args]
            if unknown or missing:
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"kernel '{name}': " +
                                  (f"unknown argument(s) {', '.join(unknown)}; " if unknown else "") +
                                  (f"missing argument(s) {', '.join(missing)}; " if missing else "") +
                                  f"its arguments are {', '.join(names)}")
            arrays = [args[n] for n in names]
        else:
            arrays = list(args)
            if len(arrays) != len(names):
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"kernel '{name}' takes {len(names)} arguments "
                                  f"({', '.join(names)}) but {len(arrays)} were given")
        tensors = (_Tensor * max(1, len(arrays)))()
        keep = []  # size arrays must outlive the call
        for i, (spec, a) in enumerate(zip(specs, arrays)):
            where = f"kernel '{name}' argument '{spec['name']}'"
            if not isinstance(a, np.ndarray):
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"{where}: expected a numpy array, got {type(a).__name__}")
            if a.dtype not in NP_DTYPES.values():
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"{where}: numpy dtype {a.dtype} has no attnrt dtype; "
                                  f"convert it to {NP_DTYPES[spec['dtype']]}")
            if not a.flags.c_contiguous:
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"{where}: array is not C-contiguous; pass "
                                  "np.ascontiguousarray(x) (and copy results back for outputs)")
            if spec["dir"] != "in" and not a.flags.writeable:
                raise AttnrtError(ATTNRT_ERR_VALIDATION,
                                  f"{where}: is {spec['dir']} but the array is read-only")
            dtype = DTYPES[[NP_DTYPES[d] for d in DTYPES].index(a.dtype)]
            sizes = (ctypes.c_int64 * max(1, a.ndim))(*a.shape)
            keep.append(sizes)
            tensors[i].data = a.ctypes.data
            tensors[i].dtype = DTYPES.index(dtype)
            tensors[i].rank = a.ndim
            tensors[i].sizes = sizes
            tensors[i].strides = None  # contiguous
        _check(self._lib.attnrt_run(self._handle, k, tensors, len(arrays), num_threads))


class CachePool:
    """attnrt's KV-cache page pool (attnrt_cache.h) for the cache of one kernel: its component
    buffers (the kernel's `<cache>_<component>` arguments) are NumPy views of the pool's memory,
    so kernels read and write the pool in place.

    For a cache with a residual window (kv_cache residual R > 0) the pool also has `num_rings`
    rings: every live sequence owns one (so at most num_rings sequences live at once), the ring
    components `<cache>_k_recent`/`<cache>_v_recent` are buffers [num_rings, R, H, D],
    `append_with_rings` gives the ring slots of kv_append and `rings` the kv_rings of
    paged_attention. `num_rings` is ignored for caches without a residual.

    A cache with summary = minmax has the per-page components `<cache>_k_page_max` /
    `<cache>_k_page_min` ([num_pages, H, D] f16) like any other; copy-on-write copies them.
    `trim` returns the pages a windowed paged_attention can no longer read (streaming heads)."""

    def __init__(self, module: Module, kernel: str, num_pages: int, num_rings: int = 64):
        lib = _load()
        info = module.info(kernel)
        kv = info["kv_cache"]
        if kv is None:
            raise AttnrtError(ATTNRT_ERR_INVALID_ARGUMENT, f"kernel '{kernel}' has no KV cache")
        self.page_size = kv["page_size"]
        self.residual = kv.get("residual", 0)
        self.num_rings = num_rings if self.residual else 0
        specs = [a for a in info["args"] if a["name"].startswith(kv["name"] + "_")]
        comps = (_CacheComponent * len(specs))()
        self._names = []
        counts = []  # what dim 0 of each buffer counts: pages, rings, or None (static)
        for i, a in enumerate(specs):
            if a["role"] in RING_ROLES:
                kind, count = CACHE_PER_RING, self.num_rings
            elif isinstance(a["shape"][0], str):
                kind, count = CACHE_PER_PAGE, num_pages
            else:
                kind, count = CACHE_TOTAL, None
            elems = int(np.prod([d for d in a["shape"][kind != CACHE_TOTAL:]], dtype=np.int64))
            comps[i].name = a["name"].encode()
            comps[i].paged = kind
            comps[i].bytes = elems * NP_DTYPES[a["dtype"]].itemsize
            self._names.append(a["name"])
            counts.append(count)
        handle = ctypes.c_void_p()
        if self.residual:
            _check(lib.attnrt_cache_pool_create_with_rings(
                self.page_size, comps, len(specs), num_pages, self.num_rings, self.residual,
                ctypes.byref(handle)))
        else:
            _check(lib.attnrt_cache_pool_create(self.page_size, comps, len(specs), num_pages,
                                                ctypes.byref(handle)))
        self._lib, self._handle = lib, handle
        self.buffers = {}
        for i, a in enumerate(specs):
            data, size = ctypes.c_void_p(), ctypes.c_int64()
            _check(lib.attnrt_cache_pool_buffer(handle, i, ctypes.byref(data),
                                                ctypes.byref(size)))
            dtype = NP_DTYPES[a["dtype"]]
            shape = list(a["shape"])
            if counts[i] is not None:
                shape[0] = counts[i]
            raw = (ctypes.c_char * size.value).from_address(data.value)
            self.buffers[a["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def close(self) -> None:
        if self._handle:
            self.buffers = {}
            self._lib.attnrt_cache_pool_destroy(self._handle)
            self._handle = None

    def __del__(self):
        if getattr(self, "_handle", None):
            self.close()

    def stats(self) -> dict:
        s = _CacheStats()
        _check(self._lib.attnrt_cache_pool_stats(self._handle, ctypes.byref(s)))
        return {f: getattr(s, f) for f, _ in _CacheStats._fields_}

    def check(self) -> None:
        _check(self._lib.attnrt_cache_pool_check(self._handle))

    def create(self) -> int:
        seq = ctypes.c_int64()
        _check(self._lib.attnrt_cache_seq_create(self._handle, ctypes.byref(seq)))
        return seq.value

    def fork(self, seq: int) -> int:
        out = ctypes.c_int64()
        _check(self._lib.attnrt_cache_seq_fork(self._handle, seq, ctypes.byref(out)))
        return out.value

    def free(self, seq: int) -> None:
        _check(self._lib.attnrt_cache_seq_free(self._handle, seq))

    def trim(self, seq: int, sink_tokens: int, window_tokens: int) -> None:
        """Returns the pages of seq wholly outside [0, sink_tokens) and
        [len - 1 - window_tokens, len) to the pool (attnrt_cache_seq_trim): their page-table
        entries read -1 from then on, which only a paged_attention whose masks have a window
        that cannot reach them accepts. Idempotent; call again after appends."""
        _check(self._lib.attnrt_cache_seq_trim(self._handle, seq, sink_tokens, window_tokens))

    def append(self, seq: int, num_tokens: int) -> np.ndarray:
        """Reserves num_tokens positions of seq; returns their slots (int32)."""
        slots = np.empty(max(1, num_tokens), np.int32)
        _check(self._lib.attnrt_cache_seq_append(
            self._handle, seq, num_tokens, slots.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))))
        return slots[:num_tokens]

    def append_with_rings(self, seq: int, num_tokens: int) -> tuple:
        """append for a cache with a residual window: (slots, ring_slots) (int32), the ring
        slots being ring * R + position % R of the new positions (kv_append's ring_slots)."""
        slots = np.empty(max(1, num_tokens), np.int32)
        ring_slots = np.empty(max(1, num_tokens), np.int32)
        i32 = ctypes.POINTER(ctypes.c_int32)
        _check(self._lib.attnrt_cache_seq_append_with_rings(
            self._handle, seq, num_tokens, slots.ctypes.data_as(i32),
            ring_slots.ctypes.data_as(i32)))
        return slots[:num_tokens], ring_slots[:num_tokens]

    def rings(self, seqs) -> np.ndarray:
        """The ring of each sequence of a batch (paged_attention's kv_rings, int32)."""
        ids = np.asarray(seqs, np.int64).reshape(-1)
        out = np.empty(max(1, ids.size), np.int32)
        _check(self._lib.attnrt_cache_rings(
            self._handle, ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), ids.size,
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))))
        return out[:ids.size]

    def page_table(self, seqs) -> tuple:
        """(kv_indptr, kv_indices, kv_last_page_len) of a batch of sequences."""
        ids = np.asarray(seqs, np.int64)
        p_ids = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        n = ctypes.c_int64()
        _check(self._lib.attnrt_cache_page_table_size(self._handle, p_ids, ids.size,
                                                      ctypes.byref(n)))
        indptr = np.empty(ids.size + 1, np.int32)
        indices = np.empty(max(1, n.value), np.int32)
        last = np.empty(max(1, ids.size), np.int32)
        i32 = ctypes.POINTER(ctypes.c_int32)
        _check(self._lib.attnrt_cache_page_table(
            self._handle, p_ids, ids.size, indptr.ctypes.data_as(i32),
            indices.ctypes.data_as(i32), indices.size, last.ctypes.data_as(i32)))
        return indptr, indices[:n.value], last[:ids.size]


# ------------------------------------------------------------------------------------------------
# GPU artifacts (attnrt_cuda.h)
# ------------------------------------------------------------------------------------------------

class _GpuGridDim(ctypes.Structure):
    _fields_ = [("symbol", ctypes.c_char_p), ("value", ctypes.c_int64),
                ("multiply", ctypes.c_int64), ("divide", ctypes.c_int64)]


class _GpuKernelInfo(ctypes.Structure):
    _fields_ = [("entry", ctypes.c_char_p), ("image", ctypes.c_char_p),
                ("image_arch", ctypes.c_char_p), ("image_is_ptx", ctypes.c_int),
                ("ptx", ctypes.c_char_p), ("ptx_arch", ctypes.c_char_p),
                ("block", ctypes.c_int64 * 3), ("grid", _GpuGridDim * 3),
                ("smem_bytes", ctypes.c_int64), ("num_params", ctypes.c_int),
                ("ptxas", ctypes.c_void_p), ("max_splits", ctypes.c_int),
                ("split_symbol", ctypes.c_char_p), ("merge_entry", ctypes.c_char_p),
                ("merge_block", ctypes.c_int64 * 3), ("merge_grid", _GpuGridDim * 3),
                ("merge_smem_bytes", ctypes.c_int64), ("merge_num_params", ctypes.c_int),
                ("merge_ptxas", ctypes.c_void_p)]


class _GpuLaunch(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint32 * 3), ("block", ctypes.c_uint32 * 3),
                ("smem_bytes", ctypes.c_uint32), ("num_splits", ctypes.c_uint32),
                ("scratch_bytes", ctypes.c_uint64), ("merge_grid", ctypes.c_uint32 * 3),
                ("merge_block", ctypes.c_uint32 * 3), ("merge_smem_bytes", ctypes.c_uint32)]


def _load_cuda() -> ctypes.CDLL:
    lib = _load()
    if getattr(lib, "_cuda_ready", False):
        return lib
    P, c_int, c_size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    for name, res, args in [
            ("attnrt_cuda_available", c_int, []),
            ("attnrt_gpu_open", c_int, [ctypes.c_char_p, ctypes.POINTER(P)]),
            ("attnrt_gpu_close", None, [P]),
            ("attnrt_gpu_find_kernel", c_int, [P, ctypes.c_char_p, ctypes.POINTER(P)]),
            ("attnrt_kernel_gpu", ctypes.POINTER(_GpuKernelInfo), [P]),
            ("attnrt_gpu_launch_config", c_int, [P, ctypes.POINTER(_Tensor), c_int,
                                                 ctypes.POINTER(_GpuLaunch)]),
            ("attnrt_gpu_run", c_int, [P, P, ctypes.POINTER(_Tensor), c_int, P]),
            ("attnrt_gpu_set_num_splits", c_int, [P, P, c_int]),
            ("attnrt_gpu_set_scratch", c_int, [P, P, c_size]),
            ("attnrt_gpu_synchronize", c_int, [P, P]),
            ("attnrt_gpu_alloc", c_int, [P, c_size, ctypes.POINTER(P)]),
            ("attnrt_gpu_free", c_int, [P, P]),
            ("attnrt_gpu_copy_to_device", c_int, [P, P, P, c_size]),
            ("attnrt_gpu_copy_to_host", c_int, [P, P, P, c_size])]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    lib._cuda_ready = True
    return lib


def _device_tensors(args):
    """attnrt_tensor views of args, in manifest order: (device pointer, dtype name, shape)
    triples, or NumPy arrays (their host address stands in for a device pointer: for
    launch_config, which reads no data). Returns the array and what keeps it alive."""
    tensors = (_Tensor * max(1, len(args)))()
    sizes = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            ptr, dtype, shape = a.ctypes.data, next(n for n, t in NP_DTYPES.items()
                                                    if t == a.dtype), a.shape
        else:
            ptr, dtype, shape = a
        sizes.append((ctypes.c_int64 * max(1, len(shape)))(*shape))
        tensors[i].data, tensors[i].dtype = ptr, DTYPES.index(dtype)
        tensors[i].rank, tensors[i].sizes, tensors[i].strides = len(shape), sizes[-1], None
    return tensors, sizes


def cuda_available() -> tuple[bool, str]:
    """(True, "") when the CUDA driver loads and has a device, else (False, why)."""
    lib = _load_cuda()
    if lib.attnrt_cuda_available() == 0:
        return True, ""
    return False, lib.attnrt_last_error().decode()


class GpuModule:
    """An open GPU artifact directory (attnrt_gpu_open) in the calling thread's CUDA context
    (or device 0's primary context)."""

    def __init__(self, directory):
        self._lib = _load_cuda()
        handle = ctypes.c_void_p()
        _check(self._lib.attnrt_gpu_open(str(directory).encode(), ctypes.byref(handle)))
        self._handle = handle

    def close(self) -> None:
        if self._handle:
            self._lib.attnrt_gpu_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _kernel(self, name: str) -> ctypes.c_void_p:
        k = ctypes.c_void_p()
        _check(self._lib.attnrt_gpu_find_kernel(self._handle, name.encode(), ctypes.byref(k)))
        return k

    def gpu_info(self, name: str) -> dict:
        """Kernel `name`'s gpu object as loaded (attnrt_kernel_gpu): entry, image, block,
        smem_bytes, and for split-KV kernels max_splits (0 otherwise), split_symbol and
        merge_entry (None otherwise)."""
        g = self._lib.attnrt_kernel_gpu(self._kernel(name)).contents
        text = lambda b: b.decode() if b else None  # noqa: E731
        return {"entry": text(g.entry), "image": text(g.image), "block": list(g.block),
                "smem_bytes": g.smem_bytes, "max_splits": g.max_splits,
                "split_symbol": text(g.split_symbol), "merge_entry": text(g.merge_entry)}

    def set_num_splits(self, name: str, num_splits: int) -> None:
        """num_splits of every later launch of split-KV kernel `name`: 0 chooses it per call
        (the default), 1 to max_splits fixes it (attnrt_gpu_set_num_splits)."""
        _check(self._lib.attnrt_gpu_set_num_splits(self._handle, self._kernel(name),
                                                   num_splits))

    def set_scratch(self, ptr, nbytes: int) -> None:
        """Split-KV scratch: nbytes of device memory at ptr (256-byte aligned) for every later
        launch; ptr None: back to attnrt's own (attnrt_gpu_set_scratch)."""
        _check(self._lib.attnrt_gpu_set_scratch(self._handle, ptr, nbytes if ptr else 0))

    def launch_config(self, name: str, args) -> dict:
        """The launches running kernel `name` on `args` would make (attnrt_gpu_launch_config;
        touches no device): grid, block, smem_bytes, num_splits, scratch_bytes, merge_grid
        (all 0 when the merge does not run), merge_block, merge_smem_bytes. args: as for bind,
        or NumPy arrays of the arguments' shapes."""
        tensors, _ = _device_tensors(args)
        out = _GpuLaunch()
        _check(self._lib.attnrt_gpu_launch_config(self._kernel(name), tensors, len(args),
                                                  ctypes.byref(out)))
        return {"grid": list(out.grid), "block": list(out.block),
                "smem_bytes": out.smem_bytes, "num_splits": out.num_splits,
                "scratch_bytes": out.scratch_bytes, "merge_grid": list(out.merge_grid),
                "merge_block": list(out.merge_block),
                "merge_smem_bytes": out.merge_smem_bytes}

    def bind(self, name: str, args):
        """The launch of kernel `name` on `args`, ready to repeat: a function of the stream (a
        CUstream as an int; None: the default stream) that launches without waiting. The kernel
        and the argument array are looked up and built once, here, so that timed repetitions
        pay only for attnrt_gpu_run. args, in manifest order: (device pointer, dtype name,
        shape) triples."""
        k = self._kernel(name)
        tensors, sizes = _device_tensors(args)
        run, handle, count = self._lib.attnrt_gpu_run, self._handle, len(args)

        def launch(stream=None) -> None:
            _check(run(handle, k, tensors, count, stream))
        launch.sizes = sizes  # kept alive with the closure
        return launch

    def launch(self, name: str, args, stream=None) -> None:
        """Launches kernel `name` on `args` once (see bind) without waiting."""
        self.bind(name, args)(stream)

    def run_arrays(self, name: str, arrays) -> None:
        """Copies NumPy arrays (manifest order) to the device, runs, waits, and copies every
        array back, so outputs are written in place."""
        lib, device = self._lib, []
        try:
            args = []
            for a in arrays:
                ptr = ctypes.c_void_p()
                _check(lib.attnrt_gpu_alloc(self._handle, a.nbytes, ctypes.byref(ptr)))
                device.append(ptr)
                _check(lib.attnrt_gpu_copy_to_device(self._handle, ptr, a.ctypes.data,
                                                     a.nbytes))
                dtype = next(n for n, t in NP_DTYPES.items() if t == a.dtype)
                args.append((ptr, dtype, a.shape))
            self.launch(name, args)
            _check(lib.attnrt_gpu_synchronize(self._handle, None))
            for a, ptr in zip(arrays, device):
                _check(lib.attnrt_gpu_copy_to_host(self._handle, a.ctypes.data, ptr, a.nbytes))
        finally:
            for ptr in device:
                lib.attnrt_gpu_free(self._handle, ptr)
