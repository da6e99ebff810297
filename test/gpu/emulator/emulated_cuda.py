"""attnrt's GPU path on the PTX emulator (tests only): the fake CUDA driver
(test/unit/fakecuda) stands in for libcuda, and its launch hook runs each launch's PTX in
ptx_emulator.py over the fake's device memory (host memory). attnrt itself is unchanged: it
loads the artifact's PTX, checks the arguments, picks num_splits and launches the kernels
(and the split-KV merge) exactly as on a device.

    emulator = EmulatedCuda.enable("build/test/unit/fakecuda/libattnrt_fakecuda.so")
    # ... attnrt_gpu_open / attnrt_gpu_run as usual ...

`enable` must run before attnrt opens the driver: it points ATTNRT_LIBCUDA at the fake and
gives the fake device compute capability 8.6, for which the artifacts (sm_80, sm_90) have no
cubin, so attnrt loads their PTX, which the emulator runs.
"""
from __future__ import annotations

import ctypes
import os
import sys
import traceback

import numpy as np

from ptx_emulator import EmulationError, GlobalMemory, launch, parse_module

CUDA_ERROR_ILLEGAL_ADDRESS = 700
CUDA_ERROR_MISALIGNED_ADDRESS = 716
CUDA_ERROR_LAUNCH_FAILED = 719


class FakeLaunch(ctypes.Structure):
    """fakecuda_launch (FakeCuda.h)."""
    _fields_ = [("name", ctypes.c_char * 128), ("grid", ctypes.c_uint * 3),
                ("block", ctypes.c_uint * 3), ("smem_bytes", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("num_params", ctypes.c_int),
                ("param_size", ctypes.c_int * 32), ("param", (ctypes.c_ubyte * 8) * 32)]


HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(FakeLaunch), ctypes.c_char_p,
                        ctypes.c_void_p)


class EmulatedCuda:
    """The installed launch hook and what it ran: launches, steps (instructions issued, each
    for every lane at its program counter) and the errors it turned into CUDA errors."""

    _instance: "EmulatedCuda | None" = None

    @classmethod
    def enable(cls, fake_path: str, compute_capability: str = "8.6", sms: int = 8):
        """Installs the emulator once per process; `sms` is the fake device's SM count, which
        attnrt's split-KV choice reads (few SMs keep emulated grids small)."""
        if cls._instance is None:
            os.environ["ATTNRT_LIBCUDA"] = fake_path
            os.environ["FAKECUDA_CC"] = compute_capability
            os.environ["FAKECUDA_SMS"] = str(sms)
            cls._instance = cls(fake_path)
        return cls._instance

    def __init__(self, fake_path: str):
        self.lib = ctypes.CDLL(fake_path)
        self.lib.fakecuda_allocations.argtypes = [ctypes.POINTER(ctypes.c_ulonglong),
                                                  ctypes.POINTER(ctypes.c_ulonglong),
                                                  ctypes.c_int]
        self.lib.fakecuda_set_launch_hook.argtypes = [HOOK, ctypes.c_void_p]
        self.modules: dict[bytes, dict] = {}
        self.launches = 0
        self.steps = 0
        self.errors: list[str] = []
        self._hook = HOOK(self._on_launch)  # kept alive as long as the hook is installed
        self.lib.fakecuda_set_launch_hook(self._hook, None)

    def _allocations(self):
        n = self.lib.fakecuda_allocations(None, None, 0)
        bases = (ctypes.c_ulonglong * n)()
        sizes = (ctypes.c_ulonglong * n)()
        self.lib.fakecuda_allocations(bases, sizes, n)
        return [(int(b), np.ctypeslib.as_array((ctypes.c_uint8 * int(s)).from_address(int(b))))
                for b, s in zip(bases, sizes)]

    def _on_launch(self, launch_ptr, image, _user) -> int:
        # Exceptions must not escape a ctypes callback (they would be printed and the launch
        # reported as a success).
        try:
            l = launch_ptr.contents
            kernels = self.modules.get(image)
            if kernels is None:
                kernels = self.modules[image] = parse_module(image.decode())
            name = l.name.decode()
            params = [bytes(l.param[i][:l.param_size[i]]) for i in range(l.num_params)]
            self.steps += launch(kernels[name], list(l.grid), list(l.block), l.smem_bytes,
                                 params, GlobalMemory(self._allocations()))
            self.launches += 1
            return 0
        except EmulationError as e:
            self.errors.append(str(e))
            print(f"PTX emulator: {e}", file=sys.stderr)
            text = str(e)
            if "misaligned" in text:
                return CUDA_ERROR_MISALIGNED_ADDRESS
            return CUDA_ERROR_ILLEGAL_ADDRESS if "illegal address" in text else \
                CUDA_ERROR_LAUNCH_FAILED
        except Exception:  # noqa: BLE001 - any failure is the launch's
            self.errors.append(traceback.format_exc())
            print(f"PTX emulator failed:\n{self.errors[-1]}", file=sys.stderr)
            return CUDA_ERROR_LAUNCH_FAILED
