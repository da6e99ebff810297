"""Calls attnrt refuses, and how they surface: the exception classes, attnrt's message naming the
kernel, argument and problem, and nothing written on a refused call."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

import attnc

SRC = """
func.func @gqa(%q: tensor<?x?x4x64xf16>, %k: tensor<?x?x2x64xf16>,
               %v: tensor<?x?x2x64xf16>) -> tensor<?x?x4x64xf16> {
  %o = attn.attention %q, %k, %v {mask = #attn.mask<causal>}
      : (tensor<?x?x4x64xf16>, tensor<?x?x2x64xf16>, tensor<?x?x2x64xf16>)
      -> tensor<?x?x4x64xf16>
  return %o : tensor<?x?x4x64xf16>
}
"""


@pytest.fixture(scope="module")
def kernel():
    return attnc.compile(SRC).gqa


@pytest.fixture
def qkv(rng_seed):
    rng = np.random.default_rng(rng_seed)
    q = rng.standard_normal((2, 7, 4, 64)).astype(np.float16)
    k = rng.standard_normal((2, 11, 2, 64)).astype(np.float16)
    return q, k, k.copy()


def test_wrong_dtype(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(TypeError) as e:
        kernel(q.astype(np.float32), k, v)
    assert isinstance(e.value, attnc.DTypeError) and isinstance(e.value, ValueError)
    assert str(e.value) == ("kernel 'gqa' argument 'q' (#0): dtype is f32 but the kernel "
                            "expects f16; convert the tensor")
    assert e.value.status == 7 and e.value.message == str(e.value)


def test_wrong_shape(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(attnc.ValidationError,
                       match=r"argument 'k' \(#1\): shape is \[2, 11, 3, 64\] but the kernel "
                             r"expects \[batch, seqlen_k, 2, 64\]: dim 2 must be 2"):
        kernel(q, np.zeros((2, 11, 3, 64), np.float16), v)
    with pytest.raises(ValueError, match="rank is 3 but the kernel expects 4"):
        kernel(q, k[0], v)
    with pytest.raises(ValueError, match="every use of a symbol must have the same size"):
        kernel(q, k, v[:, :10])


def test_outputs_not_written_on_refusal(kernel, qkv):
    q, k, v = qkv
    o = np.full(q.shape, 3.0, np.float16)
    with pytest.raises(ValueError, match="batch"):
        kernel(q, k[:1], v[:1], o=o)
    assert (o == 3.0).all()
    kernel.validate(q, k, v, o=o)  # the checks alone: nothing runs
    assert (o == 3.0).all()
    with pytest.raises(attnc.ValidationError, match="batch"):
        kernel.validate(q, k[:1], v[:1])


def test_missing_unknown_and_extra_arguments(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(TypeError, match=r"gqa\(\) missing required argument\(s\) 'v'; its "
                                        r"arguments are q, k, v, o"):
        kernel(q, k)
    with pytest.raises(TypeError, match="missing required argument"):
        kernel(q, k, v=None)
    with pytest.raises(TypeError, match="unexpected argument 'lse'"):
        kernel(q, k, v, lse=q)
    with pytest.raises(TypeError, match="multiple values for argument 'k'"):
        kernel(q, k, v, k=k)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        kernel(q, k, v, q, q)
    with pytest.raises(TypeError, match=r"argument 'k' \(#1\): expected an array.*got list"):
        kernel(q, k.tolist(), v)


def test_layout_and_writability(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="not row-major contiguous.*make a contiguous copy"):
        kernel(q, np.ascontiguousarray(k.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3), v)
    ro = q.copy()
    ro.flags.writeable = False
    kernel(ro, k, v)  # inputs may be read-only
    out = np.zeros_like(q)
    out.flags.writeable = False
    with pytest.raises(attnc.ValidationError, match=r"argument 'o' \(#3\): is out .* the array "
                                                    r"is read-only"):
        kernel(q, k, v, o=out)


def test_outputs_may_not_alias_inputs(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="'o'.*memory"):
        kernel(q, k, v, o=q)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


class FakeCudaTensor:
    """A DLPack producer whose tensor lives on CUDA device 0 (never dereferenced)."""

    def __init__(self, shape, code=2, bits=16):
        self.shape = tuple(shape)
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._mt = _DLManagedTensor()
        t = self._mt.dl_tensor
        t.data, t.device = 0x1000, _DLDevice(2, 0)
        t.ndim, t.dtype, t.shape = len(shape), _DLDataType(code, bits, 1), self._shape

    def __dlpack__(self, **kwargs):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                       ctypes.c_void_p]
        return new(ctypes.addressof(self._mt), b"dltensor", None)

    def __dlpack_device__(self):
        return (2, 0)


def test_non_cpu_tensors_are_refused(kernel, qkv):
    q, k, v = qkv
    with pytest.raises(attnc.ValidationError,
                       match=r"argument 'q' \(#0\): the tensor is on a CUDA GPU \(DLPack device "
                             r"type 2\); this attnc runs kernels on the host CPU only"):
        kernel(FakeCudaTensor(q.shape), k, v)


def test_kernel_and_module_lookups(tmp_path):
    m = attnc.compile(SRC)
    with pytest.raises(KeyError) as e:
        m["nope"]
    assert isinstance(e.value, attnc.KernelNotFoundError)
    assert "nope" in e.value.message and "gqa" in e.value.message
    with pytest.raises(AttributeError, match="nope.*gqa"):
        m.nope
    assert "gqa" in dir(m) and not hasattr(m, "nope") and m.get("nope") is None
    with pytest.raises(attnc.AttnrtError, match="manifest.json") as e:
        attnc.Module(tmp_path)
    assert e.value.status_name == "io"


def test_arrays_without_a_tensor_view_say_why(kernel, qkv):
    """NumPy arrays nanobind cannot view as a tensor are arrays all the same: the error says what
    is wrong with them (byte order, element type, strides), not that an array was expected."""
    q, k, v = qkv
    with pytest.raises(attnc.DTypeError, match=r"argument 'q' \(#0\): dtype is >f2 \(byte order "
                                               r"not the machine's\) but the kernel expects f16"):
        kernel(q.astype(">f2"), k, v)
    with pytest.raises(attnc.DTypeError, match=r"argument 'k' \(#1\): dtype is object but the "
                                               r"kernel expects f16"):
        kernel(q, k.astype(object), v)
    odd = np.lib.stride_tricks.as_strided(np.zeros(q.size * 3, np.uint8).view(np.float16),
                                          shape=q.shape, strides=(5376, 768, 192, 3))
    with pytest.raises(attnc.ValidationError, match=r"argument 'q' \(#0\): strides \(5376, 768, "
                                                    r"192, 3\) \(bytes\) are not whole f"):
        kernel(odd, k, v)
    with pytest.raises(TypeError, match=r"argument 'v' \(#2\): expected an array \(a NumPy array "
                                        r"or a DLPack tensor\), got str"):
        kernel(q, k, "v")


def test_an_output_that_cannot_be_sized_reports_the_argument_at_fault(kernel, qkv):
    """seqlen_q, which sizes the output o, comes only from q: when q is not an array or has the
    wrong rank, attnrt's message about q is the error, not that o cannot be sized."""
    q, k, v = qkv
    with pytest.raises(attnc.ValidationError, match=r"argument 'q' \(#0\): rank is 3 but the "
                                                    r"kernel expects 4"):
        kernel(q[0], k, v)
    with pytest.raises(TypeError, match=r"argument 'q' \(#0\): expected an array"):
        kernel(q.tolist(), k, v)
    with pytest.raises(TypeError, match=r"argument 'q' \(#0\): expected an array"):
        kernel.validate(q.tolist(), k, v)


def test_kernel_names_with_a_nul_are_not_found():
    m = attnc.compile(SRC)
    with pytest.raises(KeyError):
        m["gqa\0x"]
    assert m.get("gqa\0x") is None and "gqa\0x" not in m
