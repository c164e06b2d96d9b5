"""Linear's constructor and call rules, checked before any upload or launch, on the CPU."""
import numpy as np
import pytest

import jitgemm
from conftest import GpuTouched
from cpu_operands import BF16, F16, dview, ops


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
