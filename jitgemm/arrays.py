"""Array adapters: numpy (host), __cuda_array_interface__ (CuPy, Numba, ...), DLPack (torch and
others, read through ctypes so torch is never imported). Everything becomes a `View`: pointer,
shape, element strides, dtype name, device. Nothing here touches the GPU."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - a hard dependency, but keep the error readable
    ml_dtypes = None

# dtype names used across jitgemm
F16, BF16, F32, U8, E4M3FN, E4M3FNUZ = "float16", "bfloat16", "float32", "uint8", "float8_e4m3fn", "float8_e4m3fnuz"
ITEMSIZE = {F16: 2, BF16: 2, F32: 4, U8: 1, E4M3FN: 1, E4M3FNUZ: 1}


def numpy_dtype(name: str) -> np.dtype:
    if name in (F16, F32, U8):
        return np.dtype(name)
    return np.dtype(getattr(ml_dtypes, name))


def dtype_name(dt: Any) -> str | None:
    """jitgemm's name for a numpy/ml_dtypes/cupy/torch-ish dtype, or None if unknown."""
    try:
        name = np.dtype(dt).name
    except TypeError:
        name = str(dt).replace("torch.", "")
    return name if name in ITEMSIZE else None


@dataclass
class View:
    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]   # in elements
    dtype: str | None          # None: a dtype jitgemm does not handle (named in `raw_dtype`)
    raw_dtype: str
    device: int | None         # None: host memory
    kind: str                  # "numpy" | "cupy" | "cai" | "dlpack"
    obj: Any                   # keeps the memory alive
    vendor: str | None = None  # "cuda" | "hip" for device memory
    keep: Any = None           # extra owner (a DLPack capsule)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE.get(self.dtype, 0)


def _from_numpy(a: np.ndarray) -> View:
    dt = dtype_name(a.dtype)
    isz = a.dtype.itemsize
    strides = tuple(s // isz if isz else 0 for s in a.strides)
    return View(a.ctypes.data, tuple(a.shape), strides, dt, str(a.dtype), None, "numpy", a)


_CAI_TYPES = {"<f2": F16, "<f4": F32, "|u1": U8, "<u1": U8}


def _from_cai(obj: Any, kind: str) -> View:
    cai = obj.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    typestr = cai["typestr"]
    dt = None
    descr_dtype = getattr(obj, "dtype", None)
    if descr_dtype is not None:
        dt = dtype_name(descr_dtype)  # carries bf16/fp8 names where the library has them
    if dt is None:
        dt = _CAI_TYPES.get(typestr)
    isz = ITEMSIZE.get(dt) or int(typestr[2:] or 1)
    if cai.get("strides") is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= s
        strides = tuple(reversed(strides))
    else:
        bstr = tuple(int(s) for s in cai["strides"])
        if any(s % isz for s in bstr):
            raise ValueError(f"array strides {bstr} (bytes) are not multiples of the element size {isz}")
        strides = tuple(s // isz for s in bstr)
    ptr = int(cai["data"][0])
    device = -1  # device memory on a device found later from the pointer
    dev_attr = getattr(obj, "device", None)
    if isinstance(dev_attr, int) and not isinstance(dev_attr, bool):
        device = dev_attr  # jitgemm's DeviceArray
    elif dev_attr is not None and isinstance(getattr(dev_attr, "id", None), int):
        device = int(dev_attr.id)  # CuPy
    elif dev_attr is not None and isinstance(getattr(dev_attr, "index", None), int):
        device = int(dev_attr.index)  # torch
    return View(ptr, shape, strides, dt, typestr if dt is None else dt, device, kind, obj, vendor="cuda")


# ---- DLPack, read with ctypes ------------------------------------------------------------------
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_ROCM, _DL_CUDA_MANAGED = 1, 2, 3, 10, 13
# (code, bits) -> name; fp8 codes from DLPack 1.1
_DL_TYPES = {(2, 16): F16, (4, 16): BF16, (2, 32): F32, (1, 8): U8, (10, 8): E4M3FN, (11, 8): E4M3FNUZ}


def _from_dlpack(obj: Any) -> View:
    capsule = obj.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    addr = get(capsule, b"dltensor")
    t = _DLTensor.from_address(addr)
    if t.dtype.lanes != 1:
        raise TypeError(f"DLPack tensors with {t.dtype.lanes} lanes are not supported")
    dt = _DL_TYPES.get((t.dtype.code, t.dtype.bits))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        strides = tuple(t.strides[i] for i in range(t.ndim))
    else:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= s
        strides = tuple(reversed(strides))
    dtype_str = dt or f"dlpack(code={t.dtype.code}, bits={t.dtype.bits})"
    devtype = t.device.device_type
    if devtype in (_DL_CUDA, _DL_CUDA_MANAGED):
        device, vendor = int(t.device.device_id), "cuda"
    elif devtype == _DL_ROCM:
        device, vendor = int(t.device.device_id), "hip"
    elif devtype in (_DL_CPU, _DL_CUDA_HOST):
        device, vendor = None, None
    else:
        raise TypeError(f"DLPack device type {devtype} is not a CUDA/ROCm device or host memory")
    ptr = (t.data or 0) + t.byte_offset
    return View(ptr, shape, strides, dt, dtype_str, device, "dlpack", obj, vendor=vendor, keep=capsule)


def is_cupy(obj: Any) -> bool:
    return type(obj).__module__.startswith("cupy")


def as_view(obj: Any, arg: str) -> View:
    """Adapt one argument; `arg` names it in errors."""
    if isinstance(obj, View):
        return obj
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj)
    if hasattr(obj, "__cuda_array_interface__"):
        try:
            return _from_cai(obj, "cupy" if is_cupy(obj) else "cai")
        except (TypeError, RuntimeError):
            if not hasattr(obj, "__dlpack__"):
                raise
    if hasattr(obj, "__dlpack__"):
        return _from_dlpack(obj)
    raise TypeError(f"{arg} must be a numpy array, a CuPy array, or an object with __cuda_array_interface__ "
                    f"or __dlpack__; got {type(obj).__name__}")
