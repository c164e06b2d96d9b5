"""gemm's input rules on the CPU, and explain's: every rule fires before any GPU work (the tripwire
fixture: a stand-in backend that raises GpuTouched from every device method) and names the argument and the
rule; with no GPU on the machine a rule still raises ValueError/TypeError, not BackendUnavailable."""
import numpy as np
import pytest

import jitgemm
from jitgemm import validate
from jitgemm.arrays import as_view
from jitgemm.errors import BackendUnavailable
from conftest import GPU, GpuTouched
from cpu_operands import BF16, F16, dview, ops


no_gpu_only = pytest.mark.skipif(GPU, reason="checks the no-GPU path")


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
