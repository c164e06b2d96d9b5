"""Cold operands on the GPU for benchmarks: enough weight copies that their total is >= 4x L2
(and >= 256 MB), so each timed call reads weights that are not in L2. 16-bit data lives in CuPy
uint16 buffers (CuPy has no bf16) and is handed to jitgemm as Views with the real dtype."""
from __future__ import annotations

import numpy as np

from ..arrays import View
from . import timing


def n_copies(weight_bytes: int, l2_bytes: int) -> int:
    """Copies of a weight whose total is >= 4x L2 and >= 256 MB, but never more than a timed loop rotates
    over: a timer's launch i reads copy i (i < its call count), so further copies are never read and only
    cost memory and one prepare each (a one-row 4-bit weight asked for 60,000: the 4-bit sweep of the
    one-row tails spent minutes preparing them). A weight that small is read partly from L2 either way."""
    need = max(4 * l2_bytes, 256 << 20)
    return min(max(2, -(-need // max(weight_bytes, 1))), max(timing.B2B_CALLS, timing.GRAPH_CALLS))


def random_16bit(cp, shape, dtype: str, scale: float = 1.0):
    """Random values rounded to fp16/bf16, as uint16 bits on the device (never zeros)."""
    f = cp.random.standard_normal(shape, dtype=cp.float32) * cp.float32(scale)
    if dtype == "float16":
        return f.astype(cp.float16).view(cp.uint16)
    u = f.view(cp.uint32)
    return ((u + cp.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(cp.uint16)


def view(a, dtype: str) -> View:
    """A jitgemm View of a CuPy array holding `dtype` bits (uint16 for 16-bit, uint8 for fp8,
    float32 for scales)."""
    cai = a.__cuda_array_interface__
    strides = tuple(s // a.dtype.itemsize for s in a.strides)
    return View(int(cai["data"][0]), tuple(a.shape), strides, dtype, dtype, int(a.device.id), "device", a,
                vendor="cuda")


def to_host(a, dtype: str) -> np.ndarray:
    import ml_dtypes
    bits = a.get()
    return bits.view(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)


def torch_view(a, dtype: str):
    import torch
    return torch.from_dlpack(a).view(torch.float16 if dtype == "float16" else torch.bfloat16)


def check_rows(cp, w, x, out, dtype: str, label: str) -> float:
    """Relative error of out[n, m] = x[n, k] . w[m, k]^T (16-bit bits in uint16 arrays, already computed)
    on 192 random rows and the last 64 against float64; raises AssertionError past the rounding bound."""
    m, k = w.shape
    n = x.shape[0]
    rows = np.unique(np.concatenate([np.random.default_rng(n).integers(0, m, 192), np.arange(max(0, m - 64), m)]))
    wh = to_host(w[cp.asarray(rows)], dtype).astype(np.float64)
    xh = to_host(x, dtype).astype(np.float64)
    got = to_host(out, dtype).astype(np.float64)[:, rows]
    ref = xh @ wh.T
    bound = (2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10) * np.abs(ref) + k * 2.0 ** -23 * (np.abs(xh) @ np.abs(wh).T)
    err = np.abs(got - ref)
    if np.isnan(got).any() or (err > bound + 1e-30).any():
        raise AssertionError(f"{label} {dtype}: wrong result (max err {err.max():.3g})")
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
