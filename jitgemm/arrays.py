"""Array adapters: numpy (host), torch tensors (read through their own methods, so torch is never
imported), __cuda_array_interface__ (CuPy, Numba, ...), DLPack (others, read through ctypes).
Everything becomes a `View`: pointer, shape, element strides, dtype name, device. Nothing here
touches the GPU.

`signature_fn(type)` is the hot path's adapter: for the array types jitgemm meets in decode loops
(CuPy arrays, torch tensors, jitgemm's DeviceArray and View, other __cuda_array_interface__ objects
that name their device) a function that reads the pointer and a hashable signature (type, shape,
strides, dtype, device) straight off the object."""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


# dtype names used across jitgemm
F16, BF16, F32, U8, E4M3FN, E4M3FNUZ = "float16", "bfloat16", "float32", "uint8", "float8_e4m3fn", "float8_e4m3fnuz"
I32 = "int32"  # expert ids (w4_experts_gemm)
ITEMSIZE = {F16: 2, BF16: 2, F32: 4, U8: 1, E4M3FN: 1, E4M3FNUZ: 1, I32: 4}
SIXTEEN_BIT = (F16, BF16)  # the token/weight dtypes of gemm (and the tokens and outputs of scaled_gemm)


def _ml_dtypes():
    """ml_dtypes, imported on first need: its extension costs ~0.5 s, and `import jitgemm` (and
    every CLI call) must not pay that unless a bf16/fp8 numpy dtype is really wanted. A caller that
    passes ml_dtypes arrays has imported it already."""
    mod = sys.modules.get("ml_dtypes")
    if mod is None:
        import ml_dtypes as mod
    return mod


def numpy_dtype(name: str) -> np.dtype:
    if name in (F16, F32, U8, I32):
        return np.dtype(name)
    return np.dtype(getattr(_ml_dtypes(), name))


def dtype_name(dt: Any) -> str | None:
    """jitgemm's name for a numpy/ml_dtypes/cupy/torch-ish dtype, or None if unknown."""
    # ml_dtypes' types (bfloat16, float8_*) reach here only from a caller that imported ml_dtypes;
    # without it np.dtype refuses their names (TypeError) and the string form gives the same name.
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
    kind: str                  # "numpy" | "cupy" | "torch" | "cai" | "dlpack" | "device" (jitgemm's own)
    obj: Any                   # keeps the memory alive
    vendor: str | None = None  # "cuda" | "hip" for device memory
    keep: Any = None           # extra owner (a DLPack capsule)
    readonly: bool = False     # its producer forbids writes (numpy's writeable flag, the interface's data[1])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE.get(self.dtype, 0)

    @property
    def T(self) -> "View":
        """The transposed view (same memory), as numpy's .T: matmul(x, w.T) works on Views too."""
        return View(self.ptr, self.shape[::-1], self.strides[::-1], self.dtype, self.raw_dtype, self.device,
                    self.kind, self.obj, self.vendor, self.keep, self.readonly)


def _from_numpy(a: np.ndarray) -> View:
    dt = dtype_name(a.dtype)
    isz = a.dtype.itemsize
    strides = tuple(s // isz if isz else 0 for s in a.strides)
    return View(a.ctypes.data, tuple(a.shape), strides, dt, str(a.dtype), None, "numpy", a,
                readonly=not a.flags.writeable)


_CAI_TYPES = {"<f2": F16, "<f4": F32, "|u1": U8, "<u1": U8, "<i4": I32}


def _cai_device(dev_attr: Any) -> int | None:
    """The device an array's `device` attribute names: an int (jitgemm's DeviceArray), `.id` (CuPy's
    Device) or `.index` (torch's device); None if it names none (bools and int subclasses included)."""
    if type(dev_attr) is int:
        return dev_attr
    for name in ("id", "index"):
        i = getattr(dev_attr, name, None)
        if type(i) is int:
            return i
    return None


def _from_cai(obj: Any, kind: str) -> View:
    cai = obj.__cuda_array_interface__
    if cai.get("mask") is not None:
        raise ValueError(f"{type(obj).__name__}'s __cuda_array_interface__ has a mask: masked arrays are not "
                         f"supported (every element is read and written); pass the data without a mask")
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
    device = _cai_device(getattr(obj, "device", None))
    if device is None:
        device = -1  # device memory on a device found later from the pointer (placement asks the driver)
    return View(ptr, shape, strides, dt, typestr if dt is None else dt, device, kind, obj, vendor="cuda",
                readonly=bool(cai["data"][1]))


# ---- DLPack, read with ctypes ------------------------------------------------------------------
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_ROCM, _DL_CUDA_MANAGED = 1, 2, 3, 10, 13
# (code, bits) -> name; fp8 codes from DLPack 1.1
_DL_TYPES = {(2, 16): F16, (4, 16): BF16, (2, 32): F32, (1, 8): U8, (0, 32): I32, (10, 8): E4M3FN, (11, 8): E4M3FNUZ}


def _from_dlpack(obj: Any) -> View:
    capsule = obj.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    addr = get(capsule, b"dltensor")
    t = DLTensor.from_address(addr)
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


def is_torch_type(tp: type) -> bool:
    """torch.Tensor or a subclass (nn.Parameter, ...), known without importing torch."""
    return any(c.__name__ == "Tensor" and c.__module__ == "torch" for c in tp.__mro__)


def is_torch_tensor(obj: Any) -> bool:
    return is_torch_type(type(obj))


def torch_vendor() -> str:
    """'hip' for a ROCm build of torch (its tensors say device 'cuda' there too), else 'cuda'."""
    torch = sys.modules.get("torch")
    return "hip" if getattr(getattr(torch, "version", None), "hip", None) else "cuda"


def _from_torch(t: Any) -> View:
    """A torch tensor read through its own methods: no DLPack export, so tensors that require grad
    (nn.Parameter) are read as data (jitgemm is inference) and nothing is copied."""
    dev = t.get_device()
    if dev < 0:  # host memory: numpy's path, through DLPack of the detached tensor
        v = _from_dlpack(t.detach())
        v.obj = t.detach()
        return v
    dt = dtype_name(t.dtype)
    return View(t.data_ptr(), tuple(t.shape), tuple(t.stride()), dt, str(t.dtype).replace("torch.", ""), dev,
                "torch", t, vendor=torch_vendor())


def as_view(obj: Any, arg: str) -> View:
    """Adapt one argument; `arg` names it in errors."""
    if isinstance(obj, View):
        return obj
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj)
    if is_torch_tensor(obj):
        return _from_torch(obj)
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


# ---- the hot path: pointer and signature in a few attribute reads ------------------------------------
def _torch_signature(t):
    dev = t.get_device()
    if dev < 0:
        return None  # host tensors take numpy's (copying) path
    return t.data_ptr(), (type(t), t.shape, t.stride(), t.dtype, dev)


def _cupy_signature(a):
    mem = a.data
    return mem.ptr, (type(a), a.shape, a.strides, a.dtype, mem.device_id)


def _view_signature(v):
    if v.device is None or v.device < 0:
        return None  # host memory, or a device only the driver can name (asked on the cold path)
    return v.ptr, (View, v.shape, v.strides, v.dtype, v.device, v.vendor, v.kind, v.readonly)


def cai_signature(o):
    """Other objects with __cuda_array_interface__ (a wrapper that gives CuPy's uint16 bits a bfloat16
    dtype, arrays of other libraries): the interface's dict as _from_cai reads it, plus the `dtype` and
    `device` attributes that it honours. An object whose device only the driver can name, whose dtype
    attribute is not a plain numpy dtype or name, whose interface has a mask or cannot be read takes the cold
    path (which refuses a mask). The read-only flag is in the key: a read-only `out` never meets a cached entry;
    so is the stream the interface names (pipeline.named_streams: the call waits for it where it is not the
    launch's)."""
    dev = _cai_device(getattr(o, "device", None))
    dt = getattr(o, "dtype", None)
    if dev is None or not (dt is None or type(dt) is str or isinstance(dt, np.dtype)):
        return None
    try:
        cai = o.__cuda_array_interface__
        if cai.get("mask") is not None:
            return None
        strides, data = cai.get("strides"), cai["data"]
        key = (type(o), tuple(cai["shape"]), None if strides is None else tuple(strides), cai["typestr"], dt, dev,
               bool(data[1]), cai.get("stream"))  # the stream: a cached entry orders after the same ones
        return int(data[0]), key
    except (TypeError, RuntimeError, KeyError, IndexError, ValueError, AttributeError):
        return None


def _scalar_signature(s):
    return float(s), type(s)  # a scale passed by value: its value goes into the launch, its type in the key


def signature_fn(tp: type):
    """The hot-path adapter for objects of type `tp`, or None (numpy, DLPack-only and other types: the
    cold path, which adapts through as_view every call). A function returns (pointer or value, signature), or
    None for an object of that type that must take the cold path (host memory)."""
    if tp is View:
        return _view_signature
    own = getattr(tp, "jitgemm_signature", None)  # jitgemm's DeviceArray (no import: it imports this module)
    if own is not None:
        return own
    if tp in (float, int, np.float32, np.float64):
        return _scalar_signature
    if is_torch_type(tp):
        return _torch_signature
    if tp.__module__.startswith("cupy") and tp.__name__ == "ndarray":
        return _cupy_signature
    if hasattr(tp, "__cuda_array_interface__"):
        return cai_signature
    return None
