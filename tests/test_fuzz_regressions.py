"""The package bugs the fuzz found (tests/fuzz_catalogue.py's KNOWN_BUGS, all fixed), one deterministic repro
each: a rule that fires before any device work, with the argument and the rule in the message."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import jitgemm

from fuzz_catalogue import (assert_names, dev)


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("where", ["gemm-device", "gemm-numpy", "scaled-device", "quantize-device", "linear-device"])
def test_bad_stream_is_a_type_error_before_device_work(where):
    x, w = np.ones((2, 64), ml_dtypes.bfloat16), np.ones((32, 64), ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match="stream") as e:
        if where == "gemm-device":
            jitgemm.gemm(dev((2, 64)), dev((32, 64)), stream="abc")
        elif where == "gemm-numpy":
            jitgemm.gemm(x, w, stream="abc")
        elif where == "scaled-device":
            jitgemm.scaled_gemm(dev((2, 64), "float8_e4m3fn"), dev((32, 64), "float8_e4m3fn"), stream="abc")
        elif where == "quantize-device":
            jitgemm.quantize_fp8(dev((2, 64)), stream="abc")
        else:
            jitgemm.Linear(dev((32, 64)))(dev((2, 64)), stream=object())
    assert_names(e, "stream")


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("where", ["fp8_format-numpy", "fp8_format-device", "inner-stride-device"])
def test_quantize_fp8_rules_fire_before_device_work(where):
    with pytest.raises(ValueError) as e:
        if where == "fp8_format-numpy":
            jitgemm.quantize_fp8(np.ones((2, 64), np.float16), fp8_format="e5m2")
        elif where == "fp8_format-device":
            jitgemm.quantize_fp8(dev((2, 64), "float16"), fp8_format="e5m2")
        else:
            jitgemm.quantize_fp8(dev((2, 64), "float16", strides=(128, 2)))
    assert_names(e, "fp8_format" if where.startswith("fp8") else "x")


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("kw,name", [({"w": np.ones(64, np.float32)}, "w"),
                                     ({"w": np.ones((2, 2, 64), np.float32)}, "w"),
                                     ({"fp8_format": "e5m2"}, "fp8_format"),
                                     ({"activation": "static"}, "activation")],
                         ids=["w-1d", "w-3d", "fp8_format", "activation"])
def test_linear_from_float_rules_fire_before_device_work(kw, name):
    kw = {"w": np.ones((32, 64), np.float32), **kw}
    with pytest.raises(ValueError) as e:
        jitgemm.Linear.from_float(kw.pop("w"), **kw)
    assert_names(e, name)


@pytest.mark.usefixtures("no_device")
def test_linear_device_weight_with_numpy_bias_is_refused():
    """Refused at construction, or at the latest when called with numpy x (before any device work)."""
    with pytest.raises(ValueError) as e:
        layer = jitgemm.Linear(dev((32, 64)), np.zeros(32, ml_dtypes.bfloat16))
        layer(np.ones((2, 64), ml_dtypes.bfloat16))
    assert_names(e, "bias")


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("call,name", [
    (lambda: jitgemm.gemm(dev((1, 8)), dev((2**31, 8))), "M"),
    (lambda: jitgemm.gemm(dev((1, 2**31)), dev((4, 2**31))), "K"),
    (lambda: jitgemm.scaled_gemm(dev((1, 16), "float8_e4m3fn"), dev((2**31, 16), "float8_e4m3fn")), "M"),
    (lambda: jitgemm.scaled_gemm(dev((1, 2**32), "float8_e4m3fn"), dev((4, 2**32), "float8_e4m3fn")), "K"),
    (lambda: jitgemm.quantize_fp8(dev((1, 2**31), "float16")), "K"),
], ids=["gemm-M", "gemm-K", "scaled-M", "scaled-K", "quantize-K"])
def test_dimensions_past_int32_are_refused(call, name):
    with pytest.raises(ValueError) as e:
        call()
    assert_names(e, name)


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("which", ["gemm-bias", "scaled-bias", "scaled-scale_w", "scaled-scale_x"])
def test_misaligned_device_bias_and_scales_are_refused(which):
    with pytest.raises(ValueError, match="align") as e:
        if which == "gemm-bias":
            jitgemm.gemm(dev((2, 64)), dev((32, 64)), dev((32,), offset=1))
        elif which == "scaled-bias":
            jitgemm.scaled_gemm(dev((2, 64), "float8_e4m3fn"), dev((32, 64), "float8_e4m3fn"),
                                bias=dev((32,), offset=3))
        elif which == "scaled-scale_w":
            jitgemm.scaled_gemm(dev((2, 64), "float8_e4m3fn"), dev((32, 64), "float8_e4m3fn"), 1.0,
                                dev((32,), "float32", offset=2))
        else:
            jitgemm.scaled_gemm(dev((2, 64), "float8_e4m3fn"), dev((32, 64), "float8_e4m3fn"),
                                dev((2,), "float32", offset=1), 1.0)
    assert_names(e, which.split("-")[1])


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("which", ["scale_w", "scale_x"])
def test_scale_with_an_extent_past_int64_is_a_value_error(which):
    m = 2**64
    w = dev((m, 16), "float8_e4m3fn")
    scale = dev((m,) if which == "scale_w" else (1, m), "float32")
    with pytest.raises((ValueError, TypeError)) as e:
        if which == "scale_w":
            jitgemm.scaled_gemm(dev((1, 16), "float8_e4m3fn"), w, 1.0, scale)
        else:
            jitgemm.scaled_gemm(dev((1, 16), "float8_e4m3fn"), dev((4, 16), "float8_e4m3fn"), scale, 1.0)
    assert_names(e, which)


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("kw,name", [({"out_dtype": ["bf16"]}, "out_dtype"), ({"fp8_format": ["e4m3fn"]}, "fp8_format")])
def test_list_valued_options_name_the_argument(kw, name):
    x8 = np.ones((2, 64), ml_dtypes.float8_e4m3fn)
    with pytest.raises((TypeError, ValueError)) as e:
        jitgemm.scaled_gemm(x8, x8, **kw)
    assert_names(e, name)


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("out", [np.zeros((2, 4), np.float32), [[0.0] * 3] * 2, np.zeros((2, 3), np.int8)],
                         ids=["shape", "list", "dtype-int8"])
def test_matmul_fallback_checks_out(out):
    a, b = np.ones((2, 64), np.float32), np.ones((64, 3), np.float32)
    with pytest.raises((TypeError, ValueError)) as e:
        jitgemm.matmul(a, b, out=out)
    assert_names(e, "out")


@pytest.mark.usefixtures("no_device")
def test_prepare_refuses_numpy_operands_before_device_work():
    x, w = np.ones((2, 64), np.float16), np.ones((32, 64), np.float16)
    with pytest.raises(ValueError, match="device arrays"):
        jitgemm.prepare(x, w, out=np.zeros((2, 32), np.float16))


def _q4_weight(m=32, k=64):
    from fuzz_catalogue import Dims, W4Spec
    return W4Spec("q4_sym", 32).make(Dims(1, m, k))


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("which,name,rule", [
    ("x-misaligned", "x", "aligned"), ("x-inner", "x", "unit stride"), ("x-pitch", "x", "multiple of 8"),
    ("out-misaligned", "out", "aligned"), ("out-inner", "out", "unit stride")])
def test_w4_gemm_checks_layouts_before_device_work(which, name, rule):
    """KNOWN_BUGS w4-late-layout: these reached the planner (a device query) first."""
    w = _q4_weight()
    x = {"x-misaligned": dev((2, 64), "float16", offset=4), "x-inner": dev((2, 64), "float16", strides=(128, 2)),
         "x-pitch": dev((2, 64), "float16", strides=(68, 1))}.get(which, dev((2, 64), "float16"))
    out = {"out-misaligned": dev((2, 32), "float16", offset=1),
           "out-inner": dev((2, 32), "float16", strides=(64, 2))}.get(which)
    with pytest.raises(ValueError, match=rule) as e:
        jitgemm.w4_gemm(x, w, out=out)
    assert_names(e, name)


@pytest.mark.usefixtures("no_device")
@pytest.mark.parametrize("which", ["gemm-x", "gemm-w", "gemm-out", "scaled-x", "w4-x", "w4-bias"])
@pytest.mark.parametrize("pitch", [2**63, 2**69])
def test_an_extent_past_a_64_bit_offset_is_refused(which, pitch):
    """KNOWN_BUGS pitch-past-int64: the pitch wrapped in the kernel's int64 argument."""
    api, name = which.split("-")
    far = (pitch, 1)
    with pytest.raises(ValueError, match="64-bit byte offset") as e:
        if api == "gemm":
            jitgemm.gemm(dev((2, 64), strides=far if name == "x" else None),
                         dev((32, 64), strides=far if name == "w" else None),
                         out=dev((2, 32), strides=far if name == "out" else None))
        elif api == "scaled":
            jitgemm.scaled_gemm(dev((2, 64), "float8_e4m3fn", strides=far), dev((32, 64), "float8_e4m3fn"))
        elif name == "x":
            jitgemm.w4_gemm(dev((2, 64), "float16", strides=far), _q4_weight())
        else:  # host tokens with a device bias: a path that never reaches pipeline.placement
            jitgemm.w4_gemm(np.zeros((2, 64), np.float16), _q4_weight(), dev((2, 32), "float16", strides=far))
    assert_names(e, name)
