"""bfloat16 for CuPy users. CuPy has no bfloat16 dtype, so bf16 data lives in uint16 arrays (its bits);
CupyBf16 wraps one without a copy and tells jitgemm the element type, so bf16 weights and tokens go
through gemm / Linear / scaled_gemm like CuPy fp16 arrays do: on CuPy's current stream (the stream its
__cuda_array_interface__ names), on the cached fast path, and with results of the same kind (a call
without out= returns a CupyBf16 over a new CuPy uint16 array; fp8 and float32 results are CuPy arrays,
as for CuPy inputs). CuPy is imported by the first use, never by `import jitgemm`."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .arrays import is_cupy, numpy_dtype
from .pipeline import cupy_empty


class CupyBf16:
    """bf16 values whose bits are the CuPy uint16 array `bits` (any strides; shared, not copied)."""

    __slots__ = ("bits", "shape", "device", "dtype")

    def __init__(self, bits: Any):
        if not (is_cupy(bits) and type(bits).__name__ == "ndarray" and bits.dtype == np.uint16):
            raise TypeError(f"CupyBf16 wraps a CuPy uint16 array (the bf16 bits), got "
                            f"{type(bits).__module__}.{type(bits).__name__} of dtype {getattr(bits, 'dtype', None)}; "
                            f"CupyBf16.from_host(a) uploads a numpy array as bf16")
        self.bits, self.shape, self.device = bits, bits.shape, bits.device
        self.dtype = numpy_dtype("bfloat16")

    @classmethod
    def from_host(cls, a: Any) -> "CupyBf16":
        """A host array (any float dtype, ml_dtypes' bfloat16 included) rounded to bf16 (to nearest even)
        and uploaded to CuPy's current device."""
        if is_cupy(a) or hasattr(a, "__cuda_array_interface__"):
            raise TypeError(f"CupyBf16.from_host takes a host array; {type(a).__name__} is on the device: wrap "
                            f"CuPy uint16 bits with CupyBf16(bits)")
        import cupy
        bf16 = numpy_dtype("bfloat16")
        h = np.ascontiguousarray(np.asarray(a).astype(bf16, copy=False))
        return cls(cupy.asarray(h.view(np.uint16)))

    @classmethod
    def empty(cls, shape) -> "CupyBf16":
        import cupy
        return cls(cupy.empty(shape, dtype=np.uint16))

    def get(self) -> np.ndarray:
        """The values on the host, as a numpy array of ml_dtypes' bfloat16 (synchronous, as CuPy's get)."""
        return self.bits.get().view(self.dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        return self.bits.__cuda_array_interface__

    @property
    def T(self) -> "CupyBf16":
        return CupyBf16(self.bits.T)

    def __getitem__(self, index) -> "CupyBf16":
        return CupyBf16(self.bits[index])

    def __len__(self) -> int:
        return len(self.bits)

    def __repr__(self) -> str:
        return f"CupyBf16(shape={self.shape}, device={self.device.id})"

    # ---- what the call pipeline asks of this type (found on the type: no import of this module there)
    @staticmethod
    def jitgemm_signature(a: "CupyBf16"):
        """(pointer, signature) for the hot path, read from the CuPy array's attributes: what its
        __cuda_array_interface__ says, without building that dict (twice) per call."""
        b = a.bits
        mem = b.data
        return mem.ptr, (CupyBf16, b.shape, b.strides, mem.device_id)

    @staticmethod
    def jitgemm_stream_rule(device: int):
        """stream=None: CuPy's current stream on `device` (what the interface would name), read per call."""
        get = sys.modules["cupy"].cuda.get_current_stream
        return lambda: get(device).ptr

    @staticmethod
    def jitgemm_empty(shape: tuple, dtype: str, device: int):
        """(new output, its pointer) for a call whose x is a CupyBf16 (pipeline.output_factory): CuPy
        arrays made by CuPy's allocator on `device`, bf16 ones wrapped, fp8 as uint8 bytes."""
        np_dtype = {"bfloat16": np.uint16, "float8_e4m3fn": np.uint8, "float8_e4m3fnuz": np.uint8}.get(dtype, dtype)
        a, ptr = cupy_empty(sys.modules["cupy"], device, shape, np_dtype)
        return (CupyBf16(a) if dtype == "bfloat16" else a), ptr
