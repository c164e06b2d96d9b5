"""The array adapters (jitgemm.arrays): numpy, DLPack (a hand-made capsule: device types, bf16/fp8 codes,
byte_offset, lanes) and __cuda_array_interface__, on the CPU."""
import ctypes

import ml_dtypes
import numpy as np
import pytest

import jitgemm
from jitgemm.arrays import DLDataType, DLDevice, DLTensor, _from_dlpack, as_view, dtype_name

BF16, F16 = ml_dtypes.bfloat16, np.float16


# ---- array adapters ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape,strides", [
    (lambda a: a, (8, 64), (64, 1)),
    (lambda a: a[:, 8:40], (8, 32), (64, 1)),
    (lambda a: a[::2], (4, 64), (128, 1)),
    (lambda a: a.T, (64, 8), (1, 64)),
    (lambda a: a[1::3, ::4], (3, 16), (192, 4)),
    (lambda a: a[0], (64,), (1,)),
])
def test_as_view_numpy_element_strides(make, shape, strides):
    base = np.zeros((8, 64), BF16)
    arr = make(base)
    v = as_view(arr, "x")
    assert (v.shape, v.strides, v.dtype, v.device, v.kind) == (shape, strides, "bfloat16", None, "numpy")
    assert v.ptr == arr.ctypes.data and v.obj is arr and v.itemsize == 2


def test_dtype_names():
    assert dtype_name(BF16) == "bfloat16" and dtype_name(np.float16) == "float16"
    assert dtype_name(ml_dtypes.float8_e4m3fn) == "float8_e4m3fn"
    assert dtype_name(np.float64) is None and dtype_name("torch.bfloat16") == "bfloat16"
    v = as_view(np.zeros((2, 2)), "x")
    assert v.dtype is None and v.raw_dtype == "float64" and v.itemsize == 0


class DL:
    """Only __dlpack__: forces as_view down the DLPack path."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, *args, **kwargs):
        return self.a.__dlpack__(*args, **kwargs)


@pytest.mark.parametrize("sl", [np.s_[:, :], np.s_[:, 8:40], np.s_[::2, :], np.s_[2:5, 1::3]])
@pytest.mark.parametrize("dt,name", [(np.float16, "float16"), (np.float32, "float32"), (np.uint8, "uint8")])
def test_dlpack_parser_on_numpy(sl, dt, name):
    base = np.arange(8 * 64).reshape(8, 64).astype(dt)
    arr = base[sl]
    for v in (_from_dlpack(arr), as_view(DL(arr), "x")):
        assert v.kind == "dlpack" and v.device is None and v.vendor is None
        assert v.shape == arr.shape
        assert v.strides == tuple(s // arr.itemsize for s in arr.strides)
        assert v.dtype == name and v.raw_dtype == name
        assert v.ptr == arr.ctypes.data
        assert v.keep is not None  # the capsule stays alive with the view


# A hand-made DLPack capsule: device types, bf16/fp8 codes, byte_offset and lanes without any library.
_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_CAPSULE_NAME = ctypes.create_string_buffer(b"dltensor")


class FakeDL:
    def __init__(self, shape, strides=None, devtype=2, devid=0, code=4, bits=16, lanes=1, data=0x7000_0000,
                 offset=0):
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._strides = (ctypes.c_int64 * len(shape))(*strides) if strides else None
        self.t = DLTensor(data, DLDevice(devtype, devid), len(shape), DLDataType(code, bits, lanes),
                           ctypes.cast(self._shape, ctypes.POINTER(ctypes.c_int64)),
                           ctypes.cast(self._strides, ctypes.POINTER(ctypes.c_int64)) if strides else None,
                           offset)

    def __dlpack__(self, *a, **k):
        return _PyCapsule_New(ctypes.addressof(self.t), _CAPSULE_NAME, None)


def test_dlpack_device_bf16_with_offset_and_no_strides():
    v = as_view(FakeDL((4, 64), devtype=2, devid=3, offset=256), "x")
    assert (v.shape, v.strides, v.dtype, v.device, v.vendor) == ((4, 64), (64, 1), "bfloat16", 3, "cuda")
    assert v.ptr == 0x7000_0000 + 256


@pytest.mark.parametrize("devtype,device,vendor", [(2, 1, "cuda"), (13, 1, "cuda"), (10, 1, "hip"), (1, None, None),
                                                   (3, None, None)])
def test_dlpack_device_types(devtype, device, vendor):
    v = as_view(FakeDL((2, 8), (16, 1), devtype=devtype, devid=1, code=2, bits=16), "x")
    assert (v.device, v.vendor, v.dtype, v.strides) == (device, vendor, "float16", (16, 1))


def test_dlpack_rejections_and_unknown_dtypes():
    with pytest.raises(TypeError, match="2 lanes"):
        as_view(FakeDL((2, 8), lanes=2), "x")
    with pytest.raises(TypeError, match="DLPack device type 4"):
        as_view(FakeDL((2, 8), devtype=4), "x")
    v = as_view(FakeDL((2, 8), code=2, bits=64), "x")
    assert v.dtype is None and v.raw_dtype == "dlpack(code=2, bits=64)"
    assert as_view(FakeDL((2, 8), code=10, bits=8), "x").dtype == "float8_e4m3fn"


def test_dlpack_device_operands_go_through_the_rules(tripwire):
    x = FakeDL((2, 64), devtype=2, devid=0)
    w = FakeDL((32, 64), devtype=2, devid=1)
    with pytest.raises(ValueError, match="same device: x on cuda:0, w on cuda:1"):
        jitgemm.gemm(x, w)
    with pytest.raises(TypeError, match="x and w must have the same dtype"):
        jitgemm.gemm(x, FakeDL((32, 64), code=2, bits=16))


class FakeCAI:
    def __init__(self, shape, typestr="<f2", strides=None, dtype=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x5000_0000, False),
                                         "strides": strides, "version": 3}
        if dtype is not None:
            self.dtype = dtype


def test_cuda_array_interface_adapter():
    v = as_view(FakeCAI((4, 64)), "x")
    assert (v.shape, v.strides, v.dtype, v.device, v.vendor, v.kind) == ((4, 64), (64, 1), "float16", -1, "cuda", "cai")
    v = as_view(FakeCAI((4, 64), "<V2", (144, 2), dtype="bfloat16"), "x")
    assert (v.strides, v.dtype) == ((72, 1), "bfloat16")
    with pytest.raises(ValueError, match="not multiples of the element size 2"):
        as_view(FakeCAI((4, 64), "<f2", (129, 2)), "x")
