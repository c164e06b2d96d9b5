"""Operands for the CPU rule tests: host arrays of a gemm's shapes, and device Views with fake pointers."""
import ml_dtypes
import numpy as np

from jitgemm.arrays import View

BF16, F16 = ml_dtypes.bfloat16, np.float16


def ops(n=2, m=32, k=64, dtype=BF16):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((m, k)).astype(dtype)


def dview(shape, strides=None, ptr=0x10000, dtype="bfloat16", device=0, vendor="cuda"):
    if strides is None:
        strides = (shape[1], 1) if len(shape) == 2 else (1,)
    return View(ptr, tuple(shape), tuple(strides), dtype, dtype, device, "device", None, vendor=vendor)
