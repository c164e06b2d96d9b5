"""jitgemm.CupyBf16 on the CPU, with a stand-in CuPy (tests/fake_cupy.py) and the recording stand-in
backend: bf16 bits in CuPy uint16 arrays go through every entry on the stream their interface names (CuPy's
current one), on the cached path, and results come back as CupyBf16 / CuPy arrays; wrong arguments are
refused with the rule. The GPU tests (test_gpu_streams.py) check the values."""
import sys

import ml_dtypes
import numpy as np
import pytest

import jitgemm
from jitgemm import pipeline
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend

import fake_cupy

N, M, K = 4, 64, 128


@pytest.fixture
def cp(monkeypatch):
    m = fake_cupy.module()
    monkeypatch.setitem(sys.modules, "cupy", m)
    pipeline.clear()
    with installed(NullBackend()) as be:
        m.backend = be
        yield m


def bits(cp, shape, seed=0):
    h = np.random.default_rng(seed).standard_normal(shape).astype(ml_dtypes.bfloat16)
    return cp.asarray(h.view(np.uint16))


def test_gemm_returns_cupy_bf16_on_cupys_stream_from_the_cache(cp):
    be = cp.backend
    x, w = jitgemm.CupyBf16(bits(cp, (N, K))), jitgemm.CupyBf16(bits(cp, (M, K), 1))
    y = jitgemm.gemm(x, w)
    assert isinstance(y, jitgemm.CupyBf16) and y.shape == (N, M)
    assert isinstance(y.bits, cp.ndarray) and y.bits.dtype == np.uint16
    grid, stream, device, words = be.launches[-1]
    assert stream == fake_cupy.CURRENT_STREAM and words[0] == y.bits.data.ptr
    planned = be.calls["device_info"]
    y2 = jitgemm.gemm(x, w)
    assert be.calls["device_info"] == planned, "the second call was planned again"
    assert y2.bits.data.ptr != y.bits.data.ptr and be.launches[-1][3][0] == y2.bits.data.ptr
    o = jitgemm.CupyBf16.empty((N, M))
    assert jitgemm.gemm(x, w, out=o) is o and be.launches[-1][3][0] == o.bits.data.ptr
    lin = jitgemm.Linear(w)
    assert isinstance(lin(x), jitgemm.CupyBf16)
    assert isinstance(jitgemm.matmul(x, w.T), jitgemm.CupyBf16)


def test_cached_calls_follow_cupys_current_stream(cp):
    """The hot path reads CuPy's current stream per call (a CupyBf16 has its own signature and stream rule,
    not the interface dict), and a layout or device the first call did not have is planned anew."""
    be = cp.backend
    x, w, o = (jitgemm.CupyBf16(bits(cp, s)) for s in ((N, K), (M, K), (N, M)))
    for ptr in (0x7000, 0x8000, 0):
        fake_cupy.current.ptr = ptr
        jitgemm.gemm(x, w, out=o)
        assert be.launches[-1][1] == ptr
    assert len(pipeline._ENTRIES) == 1
    jitgemm.gemm(x, w, out=o, stream=0x9000)
    assert be.launches[-1][1] == 0x9000, "an explicit stream= wins"
    padded = jitgemm.CupyBf16(cp.asarray(np.zeros((N, K + 8), np.uint16)))[:, :K]
    jitgemm.gemm(padded, w, out=o)
    assert len(pipeline._ENTRIES) == 2, "another row pitch is another signature"
    with pytest.raises(ValueError, match="x row pitch must be a multiple of 8 elements"):
        jitgemm.gemm(jitgemm.CupyBf16(cp.asarray(np.zeros((N, K + 1), np.uint16)))[:, :K], w, out=o)
    # the same signature as x, but 2 bytes past a 16-byte boundary: the per-call alignment check refuses it
    base = np.zeros(N * K + 8, np.uint16)
    assert base.ctypes.data % 16 == 0
    shifted = jitgemm.CupyBf16(fake_cupy.ndarray(base[1:N * K + 1].reshape(N, K)))
    assert signature_of(shifted)[1] == signature_of(x)[1]
    with pytest.raises(ValueError, match="x data pointer must be 16-byte aligned"):
        jitgemm.gemm(shifted, w, out=o)


def signature_of(a):
    return jitgemm.CupyBf16.jitgemm_signature(a)


def test_fp8_results_for_cupy_bf16_tokens_are_cupy_arrays(cp):
    x = jitgemm.CupyBf16(bits(cp, (N, K)))
    q, s = jitgemm.quantize_fp8(x)
    assert isinstance(q, cp.ndarray) and q.dtype == np.uint8 and q.shape == (N, K)
    assert isinstance(s, cp.ndarray) and s.dtype == np.float32 and s.shape == (N,)


def test_views_share_the_bits(cp):
    b = bits(cp, (N, K))
    x = jitgemm.CupyBf16(b)
    rows = x[1:3]
    assert isinstance(rows, jitgemm.CupyBf16) and rows.shape == (2, K)
    assert rows.__cuda_array_interface__["data"][0] == b.data.ptr + K * 2
    assert x.T.shape == (K, N) and len(x) == N
    assert "CupyBf16(shape=(4, 128)" in repr(x)


def test_from_host_rounds_to_nearest_even_and_get_returns_the_values(cp):
    h = np.array([[1.0, 1.00390625, 1.01171875, -3.3e38, np.nan, 1e-40]], np.float32)
    x = jitgemm.CupyBf16.from_host(h)
    want = h.astype(ml_dtypes.bfloat16)
    assert np.array_equal(x.bits.get(), want.view(np.uint16))
    got = x.get()
    assert got.dtype == ml_dtypes.bfloat16 and np.array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("bad,what", [
    (lambda cp: np.zeros((2, 2), np.uint16), "numpy.ndarray of dtype uint16"),
    (lambda cp: cp.asarray(np.zeros((2, 2), np.float16)), "cupy._core.core.ndarray of dtype float16"),
    (lambda cp: [1, 2], "builtins.list of dtype None"),
])
def test_only_cupy_uint16_arrays_are_wrapped(cp, bad, what):
    with pytest.raises(TypeError, match=rf"CupyBf16 wraps a CuPy uint16 array \(the bf16 bits\), got {what}"):
        jitgemm.CupyBf16(bad(cp))


def test_from_host_refuses_device_arrays(cp):
    with pytest.raises(TypeError, match="CupyBf16.from_host takes a host array; ndarray is on the device"):
        jitgemm.CupyBf16.from_host(cp.asarray(np.zeros((2, 2), np.float32)))
