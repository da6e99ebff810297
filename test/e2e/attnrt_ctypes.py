"""ctypes wrapper over libattnrt (runtime/include/attnrt/attnrt.h) for the end-to-end tests.

Runs any kernel of a host artifact, including the kinds attn-run does not (paged_attention,
kv_append, merge). Arrays are passed zero-copy: `out` and `inout` arguments are written in place,
so the caller allocates them.

    from attnrt_ctypes import Module
    with Module("out/decode") as m:
        info = m.info("decode")            # kind, phases, args, scratch, kv_cache, attention
        m.run("decode", {"q": q, "cache_k_pages": kp, ..., "o": o})

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

ATTNRT_ERR_INVALID_ARGUMENT = 1
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


class _AttentionInfo(ctypes.Structure):
    _fields_ = [("ragged", ctypes.c_int), ("num_q_heads", ctypes.c_int64),
                ("num_kv_heads", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("dtype", ctypes.c_int), ("scale", ctypes.c_double),
                ("softcap", ctypes.c_double), ("causal", ctypes.c_int),
                ("bottom_right", ctypes.c_int), ("window", ctypes.c_int64),
                ("sinks", ctypes.c_int64), ("has_lse", ctypes.c_int),
                ("block_q", ctypes.c_int64), ("block_kv", ctypes.c_int64),
                ("vector_width", ctypes.c_int64), ("workspace_bytes", ctypes.c_int64),
                ("paged", ctypes.c_int)]


class _KvCacheInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("page_size", ctypes.c_int64),
                ("num_kv_heads", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("layout", ctypes.c_char_p), ("storage", ctypes.c_char_p),
                ("k_group", ctypes.c_int64), ("bytes_per_token", ctypes.c_double)]


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
        "attnrt_role_name": (c_char_p, [c_int]),
        "attnrt_run": (c_int, [P, P, ctypes.POINTER(_Tensor), c_int, c_int]),
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
        (dicts of the C structs' fields, or None)."""
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
        kv = lib.attnrt_kernel_kv_cache(k)
        kv_cache = None
        if kv:
            c = kv.contents
            kv_cache = {f: getattr(c, f) for f, _ in _KvCacheInfo._fields_}
            for f in ("name", "layout", "storage"):
                kv_cache[f] = kv_cache[f].decode()
        return {"name": name, "kind": lib.attnrt_kernel_kind(k).decode(),
                "phases": lib.attnrt_kernel_num_phases(k), "args": args, "scratch": scratch,
                "kv_cache": kv_cache, "attention": attention}

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
