"""Device buffers for GPU tests, built on jitgemm's own DeviceArray so bf16 and padded rows
need no array library."""
import numpy as np

from jitgemm.arrays import View
from jitgemm.device_array import DeviceArray
from jitgemm.runtime.backend import default_backend


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
