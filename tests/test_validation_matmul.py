"""matmul's rules and its host fallback (numpy semantics), on the CPU."""
import numpy as np
import pytest

import jitgemm
from conftest import GpuTouched
from cpu_operands import BF16, F16, ops


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
