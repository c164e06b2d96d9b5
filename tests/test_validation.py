"""Input rules of gemm / matmul / Linear / explain, the array adapters and the dispatcher, all on the CPU.

Every rule must fire before any GPU work. Two ways of proving it: (1) the backend lookups jitgemm.api
uses are replaced by a tripwire, so reaching them raises `GpuTouched`; a rule that fires first raises
its own ValueError/TypeError, and the same call with the rule satisfied raises GpuTouched; (2) with no
GPU on the machine, a rule raises ValueError/TypeError rather than BackendUnavailable.
"""
import ctypes
import math

import ml_dtypes
import numpy as np
import pytest

import jitgemm
from jitgemm import config, dispatch, validate
from jitgemm.arrays import View, _from_dlpack, as_view, dtype_name
from jitgemm.errors import BackendUnavailable
from jitgemm.kernels import skinny
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend

BF16, F16 = ml_dtypes.bfloat16, np.float16


class GpuTouched(Exception):
    pass


@pytest.fixture
def tripwire():
    """Both vendors' backends replaced by stand-ins whose every device method raises GpuTouched."""
    def touched(what):
        return GpuTouched(f"GPU work reached: {what}")
    with installed(NullBackend("hip", fail=touched)), installed(NullBackend("cuda", fail=touched)):
        yield


def _has_gpu() -> bool:
    try:
        from jitgemm.runtime.backend import default_backend
        default_backend()
        return True
    except Exception:
        return False


no_gpu_only = pytest.mark.skipif(_has_gpu(), reason="checks the no-GPU path")


def ops(n=2, m=32, k=64, dtype=BF16):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((m, k)).astype(dtype)


# (name, exception, rule text, gemm kwargs builder)
def _cases():
    x, w = ops()
    return [
        ("x float32", TypeError, "x dtype must be one of float16, bfloat16, got float32",
         dict(x=x.astype(np.float32), w=w.astype(np.float32))),
        ("fp16 x, bf16 w", TypeError, "x and w must have the same dtype, got x: float16 and w: bfloat16",
         dict(x=x.astype(F16), w=w)),
        ("x 1-D", ValueError, r"x must be 2-D \[N, K\], got 1-D", dict(x=x[0], w=w)),
        ("x 3-D", ValueError, r"x must be 2-D \[N, K\], got 3-D", dict(x=x[None], w=w)),
        ("w 1-D", ValueError, r"w must be 2-D \[M, K\], got 1-D", dict(x=x, w=w[0])),
        ("K mismatch", ValueError, "x and w must agree on K", dict(x=x, w=w[:, :56])),
        ("N=0", ValueError, r"N \(tokens\) must be in 1..128, got 0", dict(x=x[:0], w=w)),
        ("N=129", ValueError, r"N \(tokens\) must be in 1..128, got 129",
         dict(x=np.ones((129, 64), BF16), w=w)),
        ("K%8", ValueError, "K must be a multiple of 8 \\(16-byte vectors\\), got 60",
         dict(x=x[:, :60], w=w[:, :60])),
        ("M=0", ValueError, "M and K must be >= 1", dict(x=x, w=w[:0])),
        ("bias [M+1]", ValueError, r"bias of shape \(33,\) does not match M=32",
         dict(x=x, w=w, bias=np.zeros(33, BF16))),
        ("bias [3, M]", ValueError, r"bias of shape \(3, 32\) does not match N=2, M=32",
         dict(x=x, w=w, bias=np.zeros((3, 32), BF16))),
        ("bias [M, 1]", ValueError, "does not match", dict(x=x, w=w, bias=np.zeros((32, 1), BF16))),
        ("bias fp16", TypeError, "bias dtype must equal the output dtype bfloat16, got float16",
         dict(x=x, w=w, bias=np.zeros(32, F16))),
        ("bias strided", ValueError, "bias must be contiguous", dict(x=x, w=w, bias=np.zeros(64, BF16)[::2])),
        ("out shape", ValueError, r"out must have shape \[N, M\] = \(2, 32\), got \(2, 31\)",
         dict(x=x, w=w, out=np.zeros((2, 31), BF16))),
        ("out transposed shape", ValueError, "out must have shape", dict(x=x, w=w, out=np.zeros((32, 2), BF16))),
        ("out 1-D", ValueError, r"out must be 2-D \[N, M\]", dict(x=x, w=w, out=np.zeros(64, BF16))),
        ("out dtype", TypeError, "out dtype must be bfloat16 \\(the input dtype\\), got float32",
         dict(x=x, w=w, out=np.zeros((2, 32), np.float32))),
        ("x list", TypeError, "x must be a numpy array, a CuPy array, or an object with __cuda_array_interface__ "
                              "or __dlpack__; got list", dict(x=x.tolist(), w=w)),
        ("w list", TypeError, "w must be a numpy array.*got list", dict(x=x, w=w.tolist())),
        ("bias list", TypeError, "bias must be a numpy array.*got list", dict(x=x, w=w, bias=[0.0] * 32)),
        ("out list", TypeError, "out must be a numpy array.*got list", dict(x=x, w=w, out=[[0.0] * 32] * 2)),
    ]


CASES = _cases()


def _call(kw):
    kw = dict(kw)
    return jitgemm.gemm(kw.pop("x"), kw.pop("w"), kw.pop("bias", None), **kw)


@pytest.mark.parametrize("name,exc,rule,kw", CASES, ids=[c[0] for c in CASES])
def test_gemm_rule_fires_before_device_work(tripwire, name, exc, rule, kw):
    with pytest.raises(exc, match=rule):
        _call(kw)


@no_gpu_only
@pytest.mark.parametrize("name,exc,rule,kw", CASES, ids=[c[0] for c in CASES])
def test_gemm_rule_beats_backend_unavailable(name, exc, rule, kw):
    with pytest.raises(exc, match=rule):
        _call(kw)


@pytest.mark.parametrize("kw", [
    {}, {"bias": np.zeros(32, BF16)}, {"bias": np.zeros((1, 32), BF16)}, {"bias": np.zeros((2, 32), BF16)},
    {"out": np.zeros((2, 32), BF16)}, {"dtype": F16}, {"n": 1}, {"n": 16}, {"k": 8}, {"m": 1}])
def test_valid_gemm_calls_reach_the_device(tripwire, kw):
    """The other side of the rules: an operand set that breaks none of them gets as far as the GPU."""
    kw = dict(kw)
    n, m, k, dt = kw.pop("n", 2), kw.pop("m", 32), kw.pop("k", 64), kw.pop("dtype", BF16)
    x, w = ops(n, m, k, dt)
    with pytest.raises(GpuTouched):
        jitgemm.gemm(x, w, kw.get("bias"), out=kw.get("out"))


@no_gpu_only
def test_valid_gemm_on_this_host_raises_backend_unavailable():
    x, w = ops()
    with pytest.raises(BackendUnavailable, match="no GPU found"):
        jitgemm.gemm(x, w)


# ---- device-side rules: placement and layout ------------------------------------------------------------------------
def dview(shape, strides=None, ptr=0x10000, dtype="bfloat16", device=0, vendor="cuda"):
    if strides is None:
        strides = (shape[1], 1) if len(shape) == 2 else (1,)
    return View(ptr, tuple(shape), tuple(strides), dtype, dtype, device, "device", None, vendor=vendor)


def test_mixing_host_and_device_operands(tripwire):
    x, _ = ops()
    with pytest.raises(ValueError, match="all be host .numpy. arrays or all device arrays: x on the host, w on a device"):
        jitgemm.gemm(x, dview((32, 64)))


def test_operands_on_different_devices(tripwire):
    with pytest.raises(ValueError, match="same device: x on cuda:0, w on cuda:1"):
        jitgemm.gemm(dview((2, 64)), dview((32, 64), device=1))
    with pytest.raises(ValueError, match="same device: x on cuda:0, out on hip:0"):
        jitgemm.gemm(dview((2, 64)), dview((32, 64)), out=dview((2, 32), vendor="hip"))


def test_require_same_device_rules():
    h = as_view(np.zeros((2, 8), BF16), "h")
    assert validate.require_same_device([("a", h), ("b", h)]) == (None, None)
    assert validate.require_same_device([("a", dview((2, 8), device=3)), ("b", dview((8, 8), device=3))]) == ("cuda", 3)
    assert validate.require_same_device([("a", dview((2, 8), vendor="hip", device=1))]) == ("hip", 1)
    with pytest.raises(ValueError, match="a, c on the host, b on a device"):
        validate.require_same_device([("a", h), ("b", dview((2, 8))), ("c", h)])
    with pytest.raises(ValueError, match="a on cuda:0, b on hip:0"):
        validate.require_same_device([("a", dview((2, 8))), ("b", dview((2, 8), vendor="hip"))])


@pytest.mark.parametrize("view,rule", [
    (dview((4, 64), ptr=0x10008), "x data pointer must be 16-byte aligned, got address 0x10008 .offset 8 bytes."),
    (dview((4, 64), (68, 1)), "x row pitch must be a multiple of 8 elements .16-byte aligned rows., got 68"),
    (dview((4, 64), (32, 1)), "x row pitch 32 is smaller than its row length 64: rows overlap"),
    (dview((4, 64), (128, 2)), r"x must have unit stride along its last dimension .row-major rows., got element strides \(128, 2\)"),
    (dview((4, 64), (1, 4)), "x must have unit stride"),
])
def test_require_rows_rejects(view, rule):
    with pytest.raises(ValueError, match=rule):
        validate.require_rows(view, "x", 64, 8)


def test_require_rows_accepts_and_returns_pitch():
    assert validate.require_rows(dview((4, 64)), "x", 64, 8) == 64
    assert validate.require_rows(dview((4, 64), (72, 1)), "x", 64, 8) == 72  # padded rows
    assert validate.require_rows(dview((1, 64), (12345, 1)), "x", 64, 8) == 64  # one row: pitch unused
    assert validate.require_rows(dview((1, 8), (8, 1)), "x", 8, 8) == 8
    assert validate.require_rows(dview((3, 1), (8, 7)), "x", 1, 8) == 8  # one column: inner stride unused


def test_require_out_rows():
    assert validate.require_out_rows(dview((2, 30)), "out") == 30  # no vector rule for the output
    assert validate.require_out_rows(dview((1, 30), (0, 1)), "out") == 30
    with pytest.raises(ValueError, match="out data pointer 0x10001 is not aligned to its element size 2"):
        validate.require_out_rows(dview((2, 30), ptr=0x10001), "out")
    with pytest.raises(ValueError, match="out row pitch 20 is smaller than its row length 30"):
        validate.require_out_rows(dview((2, 30), (20, 1)), "out")
    with pytest.raises(ValueError, match="out must have unit stride"):
        validate.require_out_rows(dview((2, 30), (60, 2)), "out")


def test_bias_layout():
    m, n = 32, 4
    assert validate.bias_layout(dview((m,)), n, m, "bfloat16") == (1, m)
    assert validate.bias_layout(dview((1, m)), n, m, "bfloat16") == (1, m)
    assert validate.bias_layout(dview((n, m)), n, m, "bfloat16") == (n, m)
    assert validate.bias_layout(dview((n, m), (40, 1)), n, m, "bfloat16") == (n, 40)  # pitch, not M
    assert validate.bias_layout(dview((1, m), (999, 1)), 1, m, "bfloat16") == (1, m)
    with pytest.raises(TypeError, match="bias dtype must equal the output dtype float16, got bfloat16"):
        validate.bias_layout(dview((m,)), n, m, "float16")
    with pytest.raises(ValueError, match="expected \\[M\\], \\[1, M\\] or \\[N, M\\]"):
        validate.bias_layout(dview((2, m)), n, m, "bfloat16")
    with pytest.raises(ValueError, match="bias must have unit stride along M"):
        validate.bias_layout(dview((n, m), (64, 2)), n, m, "bfloat16")
    with pytest.raises(ValueError, match="expected"):
        validate.bias_layout(dview((1, 1, m), (m, m, 1)), n, m, "bfloat16")


# ---- explain / matmul / Linear ----------------------------------------------------------------------------------
def test_explain_names_the_broken_rule_host_only(tripwire):
    x, w = ops()
    s = jitgemm.explain(np.ones((129, 64), BF16), w)
    assert s.startswith("not the skinny family") and "N (tokens) must be in 1..128, got 129" in s
    assert "vendor BLAS" in s
    s = jitgemm.explain(x[:, :60], w[:, :60])
    assert "K must be a multiple of 8" in s
    s = jitgemm.explain(x, w, np.zeros(33, BF16))
    assert "does not match M=32" in s
    with pytest.raises(GpuTouched):
        jitgemm.explain(x, w)


def test_explain_float32_operands_is_explained(tripwire):
    x, w = ops()
    s = jitgemm.explain(x.astype(np.float32), w.astype(np.float32))
    assert "float16" in s and "bfloat16" in s and "float32" in s and "BLAS" in s


def test_matmul_rules(tripwire):
    x, w = ops()
    with pytest.raises(ValueError, match=r"a must be 2-D \[N, K\], got 1-D"):
        jitgemm.matmul(x[0], w.T)
    with pytest.raises(ValueError, match=r"b must be 2-D \[K, M\], got 3-D"):
        jitgemm.matmul(x, w.T[None])
    with pytest.raises(ValueError, match="a's columns must equal b's rows"):
        jitgemm.matmul(x, w)
    with pytest.raises(TypeError, match="a must be a numpy array.*got list"):
        jitgemm.matmul(x.tolist(), w.T)
    # skinny-shaped and b = w.T: matmul takes gemm's path, so gemm's out rule applies, still before the GPU
    with pytest.raises(ValueError, match="out must have shape"):
        jitgemm.matmul(x, w.T, out=np.zeros((2, 31), BF16))
    with pytest.raises(GpuTouched):
        jitgemm.matmul(x, w.T)


@pytest.mark.parametrize("case", ["n129", "not-transposed", "float32", "mixed"])
def test_matmul_host_fallback_matches_numpy(tripwire, case):
    rng = np.random.default_rng(1)
    if case == "n129":
        a, b = rng.standard_normal((129, 64)).astype(BF16), rng.standard_normal((32, 64)).astype(BF16).T
    elif case == "not-transposed":  # a row-major [K, M] b is not a transposed weight: BLAS
        a, b = rng.standard_normal((1, 64)).astype(BF16), np.ascontiguousarray(rng.standard_normal((64, 32)).astype(BF16))
    elif case == "float32":
        a, b = rng.standard_normal((4, 64)).astype(np.float32), rng.standard_normal((64, 32)).astype(np.float32)
    else:
        a, b = rng.standard_normal((4, 64)).astype(F16), rng.standard_normal((32, 64)).astype(BF16).T
    got = jitgemm.matmul(a, b)  # the tripwire proves no GPU path was taken
    want = (a.astype(np.float32) @ b.astype(np.float32)).astype(a.dtype)
    assert got.dtype == a.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))
    out = np.empty_like(want)
    assert jitgemm.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out.astype(np.float32), want.astype(np.float32))


@pytest.mark.parametrize("a,b", [(np.array([[1 + 1e-10]]), np.array([[1.0]])),
                                 (np.array([[2**25 + 1]], dtype=np.int64), np.array([[1]], dtype=np.int64))],
                         ids=["float64", "int64"])
def test_matmul_host_path_keeps_numpy_precision(a, b):
    np.testing.assert_array_equal(jitgemm.matmul(a, b), a @ b)


def test_linear_constructor_rules(tripwire):
    _, w = ops()
    with pytest.raises(TypeError, match="w dtype must be one of float16, bfloat16, got float32"):
        jitgemm.Linear(w.astype(np.float32))
    with pytest.raises(ValueError, match=r"w must be 2-D \[M, K\], got 1-D"):
        jitgemm.Linear(w[0])
    with pytest.raises(TypeError, match="w must be a numpy array"):
        jitgemm.Linear(w.tolist())
    with pytest.raises(GpuTouched):  # numpy weights are uploaded at construction
        jitgemm.Linear(w)


@pytest.mark.parametrize("bias", [np.zeros(33, BF16), np.zeros(32, F16), np.zeros((2, 32), BF16)],
                         ids=["bias-shape", "bias-dtype", "bias-2-rows"])
def test_linear_bias_rule_fires_before_upload(tripwire, bias):
    _, w = ops()
    with pytest.raises((ValueError, TypeError), match="bias"):
        jitgemm.Linear(w, bias)


@pytest.fixture
def device_linear(tripwire):
    """A Linear over a (fake) device weight: construction does no GPU work, so __call__ can be checked."""
    lin = jitgemm.Linear(dview((32, 64)), dview((32,)))
    assert (lin.out_features, lin.in_features, lin.dtype) == (32, 64, "bfloat16")
    return lin


def test_linear_device_weight_bias_rules(tripwire):
    with pytest.raises(TypeError, match="bias dtype"):
        jitgemm.Linear(dview((32, 64)), dview((32,), dtype="float16"))
    with pytest.raises(ValueError, match="does not match"):
        jitgemm.Linear(dview((32, 64)), dview((33,)))


@pytest.mark.parametrize("x,exc,rule", [
    (np.ones((2, 64), np.float32), TypeError, "x and weight must have the same dtype"),
    (np.ones((2, 64), F16), TypeError, "x and weight must have the same dtype, got x: float16 and weight: bfloat16"),
    (np.ones(64, BF16), ValueError, r"x must be 2-D \[N, K\]"),
    (np.ones((2, 56), BF16), ValueError, "x has K=56 but this Linear expects in_features=64"),
    (np.ones((129, 64), BF16), ValueError, r"Linear: N \(tokens\) must be in 1..128, got 129"),
    (np.ones((0, 64), BF16), ValueError, r"N \(tokens\) must be in 1..128, got 0"),
    ([[0.0] * 64], TypeError, "x must be a numpy array"),
])
def test_linear_call_rules(device_linear, x, exc, rule):
    with pytest.raises(exc, match=rule):
        device_linear(x)


def test_linear_valid_call_reaches_the_device(device_linear):
    with pytest.raises(GpuTouched):
        device_linear(np.ones((4, 64), BF16))


@pytest.mark.parametrize("out", [np.zeros((4, 31), BF16), np.zeros((4, 32), np.float32)], ids=["shape", "dtype"])
def test_linear_call_checks_out_before_device_work(device_linear, out):
    with pytest.raises((ValueError, TypeError), match="out"):
        device_linear(np.ones((4, 64), BF16), out=out)


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


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class FakeDL:
    def __init__(self, shape, strides=None, devtype=2, devid=0, code=4, bits=16, lanes=1, data=0x7000_0000,
                 offset=0):
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._strides = (ctypes.c_int64 * len(shape))(*strides) if strides else None
        self.t = _DLTensor(data, _DLDevice(devtype, devid), len(shape), _DLDataType(code, bits, lanes),
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


# ---- dispatch ----------------------------------------------------------------------------------------------------
def test_skinny_supported_messages():
    assert dispatch.skinny_supported("bfloat16", 1, 8) is None
    assert dispatch.skinny_supported("float16", 16, 4096) is None
    assert dispatch.skinny_supported("float32", 1, 8) == "dtype must be float16 or bfloat16, got float32"
    assert dispatch.skinny_supported("bfloat16", 0, 8) == "N (tokens) must be in 1..128, got 0"
    assert dispatch.skinny_supported("bfloat16", 129, 8) == "N (tokens) must be in 1..128, got 129"
    assert dispatch.skinny_supported("bfloat16", 4, 12) == "K must be a multiple of 8 (16-byte vectors), got 12"


def test_mindiv_seed_example_and_definition():
    assert skinny.mindiv(4096, 304 * 2, 16) == 7
    for m in (1, 100, 4096, 9728, 9729, 65536, 10**6):
        for div1 in (304, 608, 1216):
            r = skinny.mindiv(m, div1, 16)
            rounds = lambda w: -(-m // (div1 * w))
            assert 4 <= r <= 16
            assert rounds(r) == rounds(16)
            assert r == min(w for w in range(4, 17) if rounds(w) == rounds(16))


def test_plan_hip_seed_example():
    p = dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 1, 4096, 4096)
    assert p.family == "skinny"
    assert p.config == skinny.AmdConfig(2, 2, 16)
    assert p.instance.name == "jg_skinny_amd<jg_bf16, 1, 2, 2, 16>"
    assert p.block == (64, 7, 1)  # mindiv(4096, 304*2, 16) waves
    assert p.grid == (math.ceil(4096 / (7 * 2)), 1, 1) == (293, 1, 1)
    assert p.shared == 4096 * 2 and p.extra["lds_chunk"] == 4096
    assert "tokens whole in LDS" in p.reason and "304 CUs" in p.reason


@pytest.mark.parametrize("n,m,k,tile", [
    (4, 1024, 4096, (1, 4)),     # M <= 4 rows per CU: one row per wave, deep unroll
    (16, 1024, 4096, (1, 2)),    # ... capped for registers at N > 8
    (1, 65536, 4096, (2, 2)),    # N = 1 always 2 rows
    (4, 4096, 4096, (2, 2)),     # s_yt <= 8
    (4, 12160, 4096, (3, 2)),    # s_yt = 10 <= 12
    (4, 16384, 4096, (4, 1)),    # N = 4, s_yt > 12
    (2, 16384, 4096, (4, 2)),
    (8, 16384, 4096, (2, 2)),    # register cap for 4 < N <= 8
    (16, 16384, 4096, (1, 2)),   # register cap for N > 8
    (4, 16384, 16384, (2, 2)),   # tokens do not fit 64 KiB of LDS
])
def test_amd_tile_rules(n, m, k, tile):
    p = dispatch.plan_gemm("hip", "gfx942", 304, "float16", n, m, k)
    assert (p.config.YT, p.config.UNRL) == tile
    assert p.instance.name == f"jg_skinny_amd<jg_f16, {n}, {tile[0]}, {tile[1]}, 16>"


def test_amd_lds_chunking_depends_on_arch():
    p942 = dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 4, 16384, 16384)
    assert p942.extra["lds_chunk"] == 8192 and "K-chunks of 8192" in p942.reason
    assert p942.shared == 4 * 8192 * 2 <= 64 * 1024
    p950 = dispatch.plan_gemm("hip", "gfx950", 256, "bfloat16", 4, 16384, 16384)
    assert p950.extra["lds_chunk"] == 16384 and "tokens whole in LDS" in p950.reason
    assert p950.shared == 4 * 16384 * 2 <= 160 * 1024


def test_amd_plans_are_consistent():
    insts = set(dispatch.all_instances("hip"))
    for arch, cus in (("gfx942", 304), ("gfx942", 80), ("gfx950", 256), ("gfx90a", 104)):
        lds = skinny.amd_lds_bytes(arch)
        for n in range(1, 17):
            for m in (1, 64, 1000, 4096, 28672, 128256):
                for k in (8, 512, 4096, 14336, 65536):
                    p = dispatch.plan_gemm("hip", arch, cus, "bfloat16", n, m, k)
                    cfg, kc = p.config, p.extra["lds_chunk"]
                    assert p.instance in insts, p.instance.name  # aot compiles what dispatch picks
                    assert 1 <= p.grid[0] <= cus and p.grid[1:] == (1, 1)
                    assert p.block[0] == 64 and cfg.WAVES - 12 <= p.block[1] <= cfg.WAVES
                    assert p.shared <= lds and p.shared == n * min(kc, k) * 2
                    assert kc >= k or kc % (512 * cfg.UNRL) == 0


@pytest.mark.parametrize("n,nt", [(1, 1), (2, 1), (8, 1), (9, 2), (12, 2), (16, 2)])
def test_plan_cuda_instance_and_token_tiles(n, nt):
    insts = set(dispatch.all_instances("cuda"))
    for m, k in ((4096, 4096), (28672, 4096), (1280, 8192), (100, 8), (128256, 4096)):
        for dtype, tag in (("float16", "jg_f16"), ("bfloat16", "jg_bf16")):
            p = dispatch.plan_gemm("cuda", "sm_90a", 132, dtype, n, m, k)
            cfg = p.config
            assert p.instance.name.startswith(f"jg_skinny_nv<{tag}, {nt}, {cfg.MT}, {cfg.WK}, {cfg.U}")
            assert p.instance == cfg.instance(dtype, n)
            assert p.instance in insts  # aot compiles what dispatch picks
            assert p.grid[0] == math.ceil(m / (16 * cfg.MT)) and p.grid[2] == 1
            assert p.block == (32 * cfg.WK, 1, 1) and p.block[0] <= 1024
            assert p.instance.name in str(p)


def test_plan_cuda_heuristic_without_table(nv_tables):
    nv_tables(skinny=[], fp8=[], moderate=[])
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, 4096, 4096)
    assert "heuristic" in p.reason
    # what won almost every decode shape on the H100: 16 warps split K, 2 steps; 32-row blocks for large M
    assert p.config == skinny.NvConfig(1, 16, 2, 1)
    assert dispatch.heuristic_nv(8192, 512, 132) == skinny.NvConfig(2, 16, 2, 1)
    assert dispatch.heuristic_nv(64, 64, 132) == skinny.NvConfig(1, 16, 2, 1)
    assert dispatch.heuristic_nv(64, 64, 132) in skinny.NV_CONFIGS  # aot compiles what it picks


def test_heuristic_choices_are_in_the_aot_set(nv_tables):
    nv_tables(skinny=[], fp8=[], moderate=[])
    names = {i.name for i in dispatch.all_instances("cuda")}
    for m in (64, 4096, 8192, 28672, 128256):
        for k in (64, 512, 4096, 28672):
            assert dispatch.heuristic_nv(m, k, 132).instance("bfloat16", 1).name in names


# ---- NVIDIA launch extras: programmatic dependent launch and L2 prefetch -----------------------------------------
def test_pdl_and_prefetch_switches(monkeypatch):
    monkeypatch.setenv("JITGEMM_PDL", "1")
    monkeypatch.setenv("JITGEMM_PREFETCH", "1")
    config.reload()  # settings are a snapshot: read the environment again
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096, 50 << 20)
    assert p.extra["pdl"] is True and "programmatic dependent launch" in p.reason
    pf = p.extra["prefetch_bytes"]
    assert pf == 0 or (256 <= pf <= 2 * 4096 and pf % 16 == 0)
    # sm_80 has neither, whatever the switches say
    assert dispatch.plan_gemm("cuda", "sm_80", 108, "bfloat16", 1, 4096, 4096).extra == {"prefetch_bytes": 0, "pdl": False}
    assert dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 1, 4096, 4096).extra["pdl"] is False
    monkeypatch.setenv("JITGEMM_PDL", "0")
    monkeypatch.setenv("JITGEMM_PREFETCH", "off")
    config.reload()  # settings are a snapshot: read the environment again
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096)
    assert p.extra == {"prefetch_bytes": 0, "pdl": False} and "programmatic" not in p.reason


@pytest.mark.parametrize("arch", ["sm_100a", "sm_120"])
def test_pdl_on_archs_newer_than_sm90(monkeypatch, arch):
    monkeypatch.setenv("JITGEMM_PDL", "1")
    config.reload()  # settings are a snapshot: read the environment again
    assert dispatch.plan_gemm("cuda", arch, 148, "bfloat16", 1, 4096, 4096).extra["pdl"] is True


def test_cuda_dispatch_before_sm90_is_covered_by_aot(nv_tables):
    # a measured row whose K split uses a 2-block cluster, in the dispatcher's (M, K, (WK, U, SK), {bucket: MT}) form
    row = (4096, 4096, (8, 2, 2), {1: 1, 4: 1, 8: 1, 16: 1})
    nv_tables(skinny=[row], fp8=[], moderate=[])
    insts = set(dispatch.all_instances("cuda"))
    assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096).instance in insts
    assert dispatch.plan_gemm("cuda", "sm_80", 108, "bfloat16", 1, 4096, 4096).instance in insts
