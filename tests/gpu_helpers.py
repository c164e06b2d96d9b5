"""Device buffers for GPU tests, built on jitgemm's own DeviceArray so bf16 and padded rows
need no array library."""
import numpy as np

from jitgemm.arrays import View
from jitgemm.device_array import DeviceArray
from jitgemm.runtime.backend import default_backend
from reference import random


def backend_device():
    b = default_backend()
    return b, b.current_device()


def to_device(host: np.ndarray, dtype: str, pad: int = 0):
    """(owner, View) of a 2-D host array on the GPU, each row padded by `pad` elements."""
    b, d = backend_device()
    rows, cols = host.shape
    buf = np.zeros((rows, cols + pad), dtype=host.dtype)
    buf[:, :cols] = host
    owner = DeviceArray.from_numpy(b, d, buf, dtype)
    v = View(owner.ptr, (rows, cols), (cols + pad, 1), dtype, dtype, d, "device", owner, vendor=b.name)
    return owner, v


def empty_device(shape, dtype: str, poison: int = 0xFF):
    """An output buffer filled with a NaN bit pattern, so unwritten elements are caught."""
    b, d = backend_device()
    owner = DeviceArray(b, d, shape, dtype)
    b.memset(owner.ptr, poison, owner.nbytes, 0, d)
    return owner, owner.view()


def sync():
    b, d = backend_device()
    b.synchronize(d)


def run_gemm(x, w, bias, dtype, pad_x=0, pad_w=0):
    """gemm on device copies of x and w (rows padded), bias [M] or [N, M]; returns the host result.
    The output starts poisoned, so an element the kernel never wrote shows up as NaN."""
    import jitgemm
    _, xv = to_device(x, dtype, pad_x)
    _, wv = to_device(w, dtype, pad_w)
    bv = None
    if bias is not None:
        _, bv = to_device(bias.reshape(-1, w.shape[0]), dtype)
        if bias.ndim == 1:
            bv.shape, bv.strides = (w.shape[0],), (1,)
    owner, ov = empty_device((x.shape[0], w.shape[0]), dtype)
    jitgemm.gemm(xv, wv, bv, out=ov)
    sync()
    return owner.to_numpy()


def chain_operands(dtype: str, n: int, widths: list[int], seed: int = 11):
    """Operands of dependent gemm calls, each one's output the next one's tokens: (x, weights, outputs),
    jitgemm DeviceArrays (bf16 needs no array library); the outputs start poisoned (NaN bits)."""
    b, d = backend_device()
    rng = np.random.default_rng(seed)
    x = DeviceArray.from_numpy(b, d, random((n, widths[0]), dtype, rng), dtype)
    ws = [DeviceArray.from_numpy(b, d, random((m, k), dtype, rng, 1.0 / np.sqrt(k)), dtype)
          for k, m in zip(widths, widths[1:])]
    outs = [empty_device((n, m), dtype)[0] for m in widths[1:]]
    return x, ws, outs


def run_chain(call, x, weights, outs, stream, graph: bool, poison) -> None:
    """x through each weight in turn, each stage's output the next one's tokens (call(t, w, out=o, stream=stream)),
    eagerly or captured on `stream` as one graph and replayed (planned and compiled before the capture); every
    output poisoned first (poison(o)), so a stage that was not run, or ran on stale tokens, shows."""
    def step():
        t = x
        for w, o in zip(weights, outs):
            call(t, w, out=o, stream=stream)
            t = o
    if graph:
        step()
        stream.synchronize()
    for o in outs:
        poison(o)
    sync()
    if graph:
        stream.begin_capture()
        step()
        stream.end_capture().launch(stream)
    else:
        step()
    stream.synchronize()
