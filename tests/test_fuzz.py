"""Fuzzed API input (issue 8, part 1): hypothesis drives >= 10,000 calls to gemm, scaled_gemm, w4_gemm, matmul,
quantize_fp8 and Linear (+ Linear.from_float).

How the CPU tests decide what is right. Each generated case starts from a call that breaks no rule
and then applies up to two *mutations* from a catalogue (wrong dtype, 0-d/1-d/3-d operand, mismatched
or zero or negative shape, non-unit inner stride, odd row pitch, misaligned pointer, wrong scale/bias
shape or dtype, fp8 format mismatch, not-an-array, operands on another device or mixed host/device,
bad stream, huge sizes). A mutation knows which argument it broke and which rule, so:

* no mutation: the call must reach the device, i.e. raise ``BackendUnavailable`` (matmul's numpy
  fallback instead returns a result, checked against numpy / float64);
* mutations: the call must raise ValueError/TypeError whose message names a broken argument (or the
  dimension: N, M, K) and matches the broken rule;
* huge sizes and the package bugs listed in KNOWN_BUGS: only the contract that holds everywhere is
  checked: ValueError/TypeError or BackendUnavailable, never another exception type, never a crash.
  Each known bug has its own deterministic test in test_fuzz_regressions.py, so fixing one turns
  that test into an XPASS failure: then drop the xfail and the bug from KNOWN_BUGS.

Device operands are ``jitgemm.arrays.View`` objects with fake pointers (device 0, vendor cuda): the
layout rules are checked after placement and before any driver call. To keep that true on machines
with a GPU too (a fake pointer must never reach a kernel), the fuzz tests run with the `no_device` fixture
(conftest.py): a stand-in backend (jitgemm.runtime.null) whose every device method raises BackendUnavailable,
exactly what this package does on a machine without a GPU (test_valid_calls_through_the_real_stack checks
that on such a machine). The generators and the catalogue of mutations live in fuzz_catalogue.py.

GPU tests (test_gpu_fuzz.py, marker gpu) generate only valid calls on real memory and compare with float64.
The example sequence is fixed (derandomized) for CI; JITGEMM_FUZZ_RANDOM=1 draws new examples each run.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgemm
from jitgemm.errors import BackendUnavailable

from conftest import GPU
from fuzz_catalogue import (CALLS, OUTCOMES, RAN, SETTINGS, anything, call_gemm, call_scaled, call_w4,
                            check_matmul_result, check_outcome, check_w4_result, dev, from_float_case, gemm_case,
                            linear_case, matmul_case, outcome_of, quantize_case, scaled_case, takes_skinny, w4_case)


@pytest.mark.usefixtures("no_device")
@settings(max_examples=2600, **SETTINGS)
@given(case=gemm_case())
def test_fuzz_gemm(case):
    RAN.add("gemm")
    check_outcome(case, call_gemm(case))


@pytest.mark.usefixtures("no_device")
@settings(max_examples=2800, **SETTINGS)
@given(case=scaled_case())
def test_fuzz_scaled_gemm(case):
    RAN.add("scaled_gemm")
    check_outcome(case, call_scaled(case))


@pytest.mark.usefixtures("no_device")
@settings(max_examples=1500, **SETTINGS)
@given(case=w4_case())
def test_fuzz_w4_gemm(case):
    RAN.add("w4_gemm")
    a = case.args()
    check_outcome(case, call_w4(case, a), lambda got: check_w4_result(case, got, a["out"]))


@pytest.mark.usefixtures("no_device")
@settings(max_examples=1000, **SETTINGS)
@given(case=quantize_case())
def test_fuzz_quantize_fp8(case):
    RAN.add("quantize_fp8")
    a = case.args()
    out = outcome_of(lambda: jitgemm.quantize_fp8(a["x"], a["per_token"], a["fp8_format"], stream=a["stream"]),
                     "quantize_fp8")
    check_outcome(case, out)


@pytest.mark.usefixtures("no_device")
@settings(max_examples=1200, **SETTINGS)
@given(case=matmul_case())
def test_fuzz_matmul(case):
    RAN.add("matmul")
    a, b = case.ops["a"], case.ops["b"]
    out = outcome_of(lambda: jitgemm.matmul(a, b, out=case.ops.get("out")), "matmul")
    if not case.bad and not case.bugs and isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        skinny_path = takes_skinny(a, b)
        if skinny_path or (skinny_path is None and isinstance(out, BackendUnavailable)):
            assert isinstance(out, BackendUnavailable), f"skinny matmul gave {out!r}: {case.describe()}"
            return
        assert not isinstance(out, BaseException), f"numpy fallback raised {out!r}: {case.describe()}"
        check_matmul_result(case, out)
        return
    check_outcome(case, out)


@pytest.mark.usefixtures("no_device")
@settings(max_examples=1200, **SETTINGS)
@given(cases=linear_case())
def test_fuzz_linear(cases):
    RAN.add("Linear")
    ctor, call = cases
    a = ctor.args()
    layer = outcome_of(lambda: jitgemm.Linear(a["w"], a["bias"]), "Linear")
    if isinstance(layer, BaseException):
        check_outcome(ctor, layer)
        return
    assert not ctor.bad, f"Linear accepted {ctor.describe()}"
    assert not ctor.ops["w"].host, "a numpy weight is uploaded at construction: BackendUnavailable expected"
    if ctor.bugs:
        call.bugs += ctor.bugs
    c = call.args()
    out = outcome_of(lambda: layer(c["x"], out=c["out"], stream=c["stream"]), "Linear")
    check_outcome(call, out)


@pytest.mark.usefixtures("no_device")
@settings(max_examples=300, **SETTINGS)
@given(case=from_float_case())
def test_fuzz_linear_from_float(case):
    RAN.add("from_float")
    a = case.args()
    out = outcome_of(lambda: jitgemm.Linear.from_float(a["w"], a["bias"], quantize=a["quantize"],
                                                       per_channel=a["per_channel"], fp8_format=a["fp8_format"],
                                                       activation=a["activation"]), "Linear")
    check_outcome(case, out)


@pytest.mark.usefixtures("no_device")
@settings(max_examples=1200, **SETTINGS)
@given(fn=st.sampled_from(["gemm", "linear", "scaled_gemm", "w4_gemm", "quantize_fp8", "matmul", "Linear"]),
       args=st.lists(anything(), min_size=5, max_size=5),
       opt=st.sampled_from([None, "e4m3fn", "bf16", "xx", 0, 2.0]))
def test_fuzz_anything_anywhere(fn, args, opt):
    """No rule is modelled here: whatever goes in, only ValueError/TypeError/BackendUnavailable (or, for
    matmul on numpy arrays, a result) comes out."""
    RAN.add("chaos")
    a, b, c, d, e = args
    if fn == "gemm":
        call = lambda: jitgemm.gemm(a, b, c, out=d)
    elif fn == "linear":
        call = lambda: jitgemm.linear(a, b, c, out=d, stream=e)
    elif fn == "w4_gemm":
        call = lambda: jitgemm.w4_gemm(a, b, c, out=d, stream=e)
    elif fn == "scaled_gemm":
        call = lambda: jitgemm.scaled_gemm(a, b, c, d, e, out_dtype=opt if opt != "e4m3fn" else None,
                                           fp8_format=opt if opt != "bf16" else None)
    elif fn == "quantize_fp8":
        call = lambda: jitgemm.quantize_fp8(a, bool(opt), opt if isinstance(opt, str) else None)
    elif fn == "matmul":
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2 and b.ndim == 2:
            b = b.reshape(a.shape[1], -1) if a.shape[1] and b.size % a.shape[1] == 0 and b.size else b
        call = lambda: jitgemm.matmul(a, b)
    else:
        def call():
            layer = jitgemm.Linear(a, b if not isinstance(b, np.ndarray) or b.ndim == 1 else None)
            return layer(c, out=d)
    out = outcome_of(call, fn)
    if isinstance(out, BaseException):
        assert str(out).strip()
        return
    assert fn == "matmul" and isinstance(a, np.ndarray) and isinstance(b, np.ndarray), (fn, out)
    assert out.shape == (a.shape[0], b.shape[1])


# ---- the same valid calls through the real stack of a machine without a GPU ------------------------------------------
@pytest.mark.skipif(GPU, reason="checks the no-GPU path of the real backends")
@pytest.mark.parametrize("call", [
    lambda: jitgemm.gemm(np.ones((2, 64), np.float16), np.ones((32, 64), np.float16)),
    lambda: jitgemm.gemm(dev((2, 64)), dev((32, 64)), dev((32,)), out=dev((2, 32))),
    lambda: jitgemm.scaled_gemm(np.ones((2, 64), ml_dtypes.float8_e4m3fn), np.ones((32, 64), ml_dtypes.float8_e4m3fn)),
    lambda: jitgemm.scaled_gemm(dev((2, 64), "float16"), dev((32, 64), "uint8"), 0.5, dev((32,), "float32"),
                                fp8_format="e4m3fn"),
    lambda: jitgemm.quantize_fp8(np.ones((3, 40), ml_dtypes.bfloat16)),
    lambda: jitgemm.quantize_fp8(dev((3, 40))),
    lambda: jitgemm.Linear(np.ones((32, 64), np.float16)),
    lambda: jitgemm.Linear(dev((32, 64)))(np.ones((2, 64), ml_dtypes.bfloat16)),
    lambda: jitgemm.Linear(dev((32, 64)))(dev((2, 64))),
    lambda: jitgemm.Linear.from_float(np.ones((32, 64), np.float32)),
    lambda: jitgemm.matmul(np.ones((2, 64), np.float16), np.ones((32, 64), np.float16).T),
], ids=["gemm-numpy", "gemm-device", "scaled-numpy", "scaled-device", "quantize-numpy", "quantize-device",
        "linear-numpy", "linear-device-w-numpy-x", "linear-device", "from_float", "matmul-skinny"])
def test_valid_calls_through_the_real_stack(call):
    with pytest.raises(BackendUnavailable):
        call()


def test_zz_fuzz_made_at_least_10000_calls():
    """Runs last in this file: the generated calls of the tests above add up to >= 10,000."""
    everything = {"gemm", "scaled_gemm", "w4_gemm", "quantize_fp8", "matmul", "Linear", "from_float", "chaos"}
    if RAN != everything:
        pytest.skip(f"only part of the fuzz ran ({sorted(RAN)})")
    total = sum(CALLS.values())
    assert total >= 10_000, dict(CALLS)
    for name in ("gemm", "scaled_gemm", "w4_gemm", "quantize_fp8", "matmul", "Linear"):
        assert CALLS[name] >= 500, dict(CALLS)
    # the generators really produce both sides of every rule set
    for name in ("gemm", "scaled_gemm", "w4_gemm", "quantize_fp8", "Linear"):
        valid = OUTCOMES[(name, "valid", "BackendUnavailable")]
        rejected = OUTCOMES[(name, "bad", "ValueError")] + OUTCOMES[(name, "bad", "TypeError")]
        assert valid >= 100 and rejected >= 100, (name, valid, rejected, sorted(OUTCOMES.items()))
    print(sorted(OUTCOMES.items()))
