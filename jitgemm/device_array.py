"""A minimal owned device array for the numpy path and for results when no array library is
around. It frees its memory when collected and speaks __cuda_array_interface__."""
from __future__ import annotations

import math

import numpy as np

from . import stream_pool
from .arrays import ITEMSIZE, View, numpy_dtype

_TYPESTR = {"float16": "<f2", "float32": "<f4", "uint8": "|u1", "int32": "<i4", "bfloat16": "<V2",
            "float8_e4m3fn": "|V1", "float8_e4m3fnuz": "|V1"}


class DeviceArray:
    """`stream`: an output made for work on that stream; its memory comes from and goes back to that
    stream's blocks in stream_pool (no device-wide wait when it is dropped). None: the driver's own
    allocation, freed when collected (buffers that live long or that the host path synchronises)."""

    def __init__(self, backend, device: int, shape: tuple[int, ...], dtype: str, stream: int | None = None):
        self.backend, self.device, self.shape, self.dtype = backend, device, tuple(shape), dtype
        self.nbytes = math.prod(self.shape) * ITEMSIZE[dtype]
        if stream is None:
            self.ptr = backend.alloc(self.nbytes, device)
        else:
            self.ptr = stream_pool.take(backend, device, stream, self.nbytes)
        self.stream = stream

    @classmethod
    def from_numpy(cls, backend, device: int, a: np.ndarray, dtype: str) -> "DeviceArray":
        a = np.ascontiguousarray(a)
        d = cls(backend, device, a.shape, dtype)
        if d.nbytes:
            backend.copy_htod(d.ptr, a.ctypes.data, d.nbytes, device)
        return d

    def to_numpy(self) -> np.ndarray:
        """A host copy, after the work of the stream this array was made on (the driver's copy runs on the
        legacy default stream, which a non-blocking stream does not order with)."""
        out = np.empty(self.shape, dtype=numpy_dtype(self.dtype))
        if self.stream:  # 0: the legacy default stream, which the copy follows anyway
            self.backend.stream_synchronize(self.stream, self.device)
        if self.nbytes:
            self.backend.copy_dtoh(out.ctypes.data, self.ptr, self.nbytes, self.device)
        return out

    def view(self, kind: str = "device") -> View:
        strides, acc = [], 1
        for s in reversed(self.shape):
            strides.append(acc)
            acc *= s
        return View(self.ptr, self.shape, tuple(reversed(strides)), self.dtype, self.dtype, self.device,
                    kind, self, vendor=self.backend.name)

    @staticmethod
    def jitgemm_signature(d: "DeviceArray"):
        """(pointer, signature) for the call pipeline's hot path (arrays.signature_fn)."""
        return d.ptr, (DeviceArray, d.shape, d.dtype, d.device, d.backend.name, d.stream)  # stream: as cai_signature

    @property
    def __cuda_array_interface__(self) -> dict:
        """Version 3, with the stream an output was made on (0, the legacy default stream, as 1: the
        interface forbids 0), so a consumer orders its reads after the kernel that writes it: CuPy and
        Numba synchronise on it, and jitgemm runs a stream=None call on x's stream."""
        cai = {"shape": self.shape, "typestr": _TYPESTR[self.dtype], "data": (self.ptr, False), "strides": None,
               "version": 3}
        if self.stream is not None:
            cai["stream"] = self.stream or 1
        return cai

    def __del__(self):
        ptr, self.ptr = getattr(self, "ptr", 0), 0
        if ptr:
            try:
                if getattr(self, "stream", None) is None:
                    self.backend.free(ptr, self.device)
                else:
                    stream_pool.give_back(self.backend, self.device, self.stream, self.nbytes, ptr)
            except Exception:
                pass  # interpreter shutdown or a dead context: nothing useful to do

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.device})"
