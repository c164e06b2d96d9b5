"""The few pieces of CuPy that jitgemm's CuPy paths touch, over host memory, for CPU tests with the
stand-in backend (which never reads device memory): arrays with CuPy's type name, module, attributes and
__cuda_array_interface__ (naming the current stream, as CuPy's does), empty/asarray, Device, the current
stream. Install with `monkeypatch.setitem(sys.modules, "cupy", fake_cupy.module())`."""
import types

import numpy as np

CURRENT_STREAM = 0x7000
current = types.SimpleNamespace(ptr=CURRENT_STREAM)  # the current stream: set .ptr to switch streams


class Device:
    def __init__(self, i: int = 0):
        self.id = i

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class ndarray:  # noqa: N801  (CuPy's name: jitgemm recognises CuPy arrays by it)
    def __init__(self, host: np.ndarray):
        self._h = host
        self.shape, self.dtype, self.strides = host.shape, host.dtype, host.strides
        self.device = Device(0)
        self.data = types.SimpleNamespace(ptr=host.ctypes.data, device_id=0)

    @property
    def __cuda_array_interface__(self) -> dict:
        strides = None if self._h.flags.c_contiguous else self._h.strides
        return {"shape": self.shape, "strides": strides, "typestr": self._h.dtype.str,
                "data": (self._h.ctypes.data, False), "version": 3, "stream": current.ptr}

    def get(self) -> np.ndarray:
        return self._h.copy()

    def __getitem__(self, index) -> "ndarray":
        return ndarray(self._h[index])

    def __len__(self) -> int:
        return len(self._h)

    @property
    def T(self) -> "ndarray":
        return ndarray(self._h.T)


ndarray.__module__ = "cupy._core.core"


def module() -> types.ModuleType:
    m = types.ModuleType("cupy")
    m.ndarray = ndarray
    m.empty = lambda shape, dtype=np.float64: ndarray(np.zeros(shape, dtype))
    m.asarray = lambda a: ndarray(np.array(a))
    current.ptr = CURRENT_STREAM
    m.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDevice=lambda: 0),
                                   get_current_stream=lambda *device: current)
    return m
