"""The fuzz catalogue (issue 8): operand specs, the mutations that break one rule each (and know which argument
and rule they broke), the case generators of every public entry (gemm, scaled_gemm, w4_gemm, quantize_fp8, matmul,
Linear, Linear.from_float) and the outcome check. The tests that drive them: test_fuzz.py (CPU), test_gpu_fuzz.py (GPU);
the bugs they found: test_fuzz_regressions.py."""
from __future__ import annotations

import collections
import itertools
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable
import ml_dtypes
import numpy as np
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import jitgemm
from jitgemm.kernels import fp8, skinny, w4
from jitgemm.arrays import ITEMSIZE, View, as_view
from jitgemm.errors import BackendUnavailable


HALF = ("float16", "bfloat16")


FP8 = ("float8_e4m3fn", "float8_e4m3fnuz")


SHORT = {"float8_e4m3fn": "e4m3fn", "float8_e4m3fnuz": "e4m3fnuz"}


NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64,
      "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "bool": np.bool_,
      "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
      "complex64": np.complex64}


NOT_HALF = ("float32", "float64", "int8", "uint8", "int16", "bool", "float8_e4m3fn", "float8_e4m3fnuz", "complex64")


# gemm's token limit (16, or more where the NVIDIA kernel tiles tokens); scaled_gemm's (its token tiles
# repeated over blockIdx.z)
GEMM_MAX_N = getattr(skinny, "MAX_N_MODERATE", skinny.MAX_N)
SCALED_MAX_N = fp8.MAX_N


BASE_PTR = 0x7F00_0000_0000  # fake device addresses: 256-byte aligned base + the case's offset
REGION = 1 << 44              # each operand made at its own base (an out over an input is refused): a
_REGIONS = itertools.count()  # layer's weights and its calls' operands too


# Package bugs this file found, all fixed since; each keeps a regression test below, and the
# generated cases that would hit one are held to the full contract.
KNOWN_BUGS = {
    "late-stream": "stream is validated after planning (device) or never (numpy operands): stream='abc' "
                   "raises BackendUnavailable without a GPU and is silently ignored for numpy operands",
    "late-quantize": "quantize_fp8 checks fp8_format and the device unit-stride rule only after reaching the "
                     "backend (and, on a GPU, after compiling the kernel)",
    "late-from-float": "Linear.from_float validates w's shape, fp8_format and activation only after reaching "
                       "the backend (activation after uploading the weights)",
    "linear-host-bias": "Linear(device w, numpy bias) is accepted; called with numpy x it hands the numpy "
                        "bias's host address to the kernel",
    "i32-dims": "M or K >= 2^31 pass validation but reach the kernel as 32-bit ints (silently wrong or "
                "out-of-bounds); they should be refused with ValueError",
    "unaligned-bias-scale": "device bias / scale pointers are not checked for alignment (a misaligned one "
                            "reaches the kernel)",
    "unhashable-option": "out_dtype / fp8_format given as a list raise TypeError('unhashable type') that "
                         "names neither the argument nor the rule",
    "scale-overflow": "scaled_gemm raises OverflowError (from np.prod(shape, dtype=int64)) for a scale whose "
                      "shape has an extent >= 2^64, instead of a ValueError",
    "matmul-out": "matmul's numpy fallback writes out[...] = result unchecked: a wrong shape raises numpy's "
                  "broadcast error (no 'out' in it), a list raises 'list indices ...', a wrong dtype is cast",
    "w4-late-layout": "w4_gemm checks x's rows (unit stride, pitch, 16-byte alignment) and out's alignment only "
                      "after planning, which asks the device (and compiles the kernel on a GPU)",
    "pitch-past-int64": "a device operand whose extent passes 2^63 bytes (a row pitch only a made-up "
                        "__cuda_array_interface__ can claim) is accepted, and its pitch wraps in the int64 "
                        "kernel argument (2^69 arrives as 0)",
}


# hypothesis keeps a cache (constants it found in the source) under .hypothesis/: not in the checkout
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "jitgemm-hypothesis"))


CALLS: collections.Counter = collections.Counter()   # calls made per API, for the >= 10,000 check


RAN: set = set()


OUTCOMES: collections.Counter = collections.Counter()  # (api, valid/bad/bug/huge, outcome type)


# ---- operand specs -------------------------------------------------------------------------------------------------
@dataclass
class Dims:
    n: int
    m: int
    k: int


@dataclass
class Op:
    """One operand: shape(dims) -> tuple; host numpy or a fake device View."""
    shape: Callable[[Dims], tuple]
    dtype: str
    host: bool
    pad: int = 0            # device: row pitch = last dim + pad (2-D); host: ignored
    pitch: int | None = None  # device: an explicit row pitch (mutations)
    inner: int = 1          # element stride of the last dim (host: a [:, ::inner] slice)
    offset: int = 0         # device: bytes past an aligned base
    device: int = 0
    vendor: str = "cuda"
    junk: Any = None        # not an array at all
    is_junk: bool = False
    huge_host: bool = False  # host: zero strides (no memory behind the shape)

    def make(self, d: Dims, region: int = 0):
        if self.is_junk:
            return self.junk
        shape = tuple(self.shape(d))
        host = self.host
        count = math.prod(shape)
        if host and (any(s < 0 for s in shape) or count * 16 >= 2**62):
            host = False  # numpy cannot hold this extent: a host-placed View (device None) can
        if host:
            dt = NP[self.dtype]
            if self.huge_host or count > 1 << 24:  # no memory behind a huge shape: zero strides
                return np.lib.stride_tricks.as_strided(np.zeros(1, dt), shape=shape, strides=(0,) * len(shape))
            if self.inner != 1 and len(shape) >= 1:
                base = np.zeros(shape[:-1] + (shape[-1] * self.inner,), dt)
                return base[..., ::self.inner]
            return np.zeros(shape, dt)
        strides, acc = [], 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= max(s, 1)
        strides = list(reversed(strides))
        if len(shape) >= 1:
            strides[-1] = self.inner
        if len(shape) == 2:
            strides[0] = self.pitch if self.pitch is not None else shape[1] * self.inner + self.pad
        name = self.dtype if self.dtype in ITEMSIZE else None
        if self.host:
            return View(BASE_PTR + region * REGION + self.offset, shape, tuple(strides), name, self.dtype, None,
                        "numpy", None)
        return View(BASE_PTR + region * REGION + self.offset, shape, tuple(strides), name, self.dtype, self.device,
                    "fuzz", None, vendor=self.vendor)


class FakeStream:
    def __init__(self, ptr):
        self.ptr = ptr

    def __repr__(self):
        return f"FakeStream({self.ptr!r})"


JUNK = [None, 3, 2.5, "abc", b"xy", [1.0, 2.0], [[0.0] * 8] * 2, {"a": 1}, object(), 1j, (1, 2)]


JUNK_NOT_NONE = [j for j in JUNK if j is not None]


@dataclass
class Bad:
    names: tuple          # argument (or dimension) names the message may use
    rule: str             # regex the message must match


@dataclass
class Case:
    api: str
    dims: Dims
    ops: dict             # name -> Op | plain value
    bad: list = field(default_factory=list)
    bugs: list = field(default_factory=list)
    huge: bool = False

    def args(self):
        return {name: (o.make(self.dims, next(_REGIONS) % 2048) if isinstance(o, (Op, W4Spec)) else o)
                for name, o in self.ops.items()}

    def describe(self):
        parts = []
        for name, o in self.ops.items():
            if isinstance(o, Op):
                if o.is_junk:
                    parts.append(f"{name}=junk {o.junk!r}")
                else:
                    lay = "host" if o.host else f"dev{o.device}/{o.vendor} pad={o.pad} pitch={o.pitch} off={o.offset}"
                    parts.append(f"{name}={o.dtype}{tuple(o.shape(self.dims))} inner={o.inner} {lay}")
            else:
                parts.append(f"{name}={o!r}")
        return f"{self.api}({', '.join(parts)}) bad={self.bad} bugs={self.bugs} huge={self.huge}"


def _word(name: str, msg: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", msg) is not None


def outcome_of(fn: Callable[[], Any], api_name: str, tolerate: tuple = ()):
    """The call's result or its ValueError/TypeError/BackendUnavailable; anything else fails the test
    (`tolerate`: exception types a known package bug of this case raises instead)."""
    CALLS[api_name] += 1
    try:
        return fn()
    except (BackendUnavailable, ValueError, TypeError) as e:
        return e
    except tolerate as e:
        return e
    except Exception as e:  # noqa: BLE001 - the contract: nothing else may come out
        raise AssertionError(f"{api_name} raised {type(e).__name__}: {e}") from e


def check_outcome(case: Case, out, result_ok: Callable[[Any], None] | None = None):
    """The contract of one call (see the module docstring)."""
    desc = case.describe()
    kind = "bug" if case.bugs else "huge" if case.huge else "bad" if case.bad else "valid"
    OUTCOMES[(case.api.split(".")[0], kind, type(out).__name__ if isinstance(out, BaseException) else "result")] += 1
    if isinstance(out, BaseException):
        assert str(out).strip(), f"empty message from {desc}"
    if case.huge:
        assert isinstance(out, BaseException), f"returned {out!r}: {desc}"
        return
    if case.bugs:
        # a call that ran into one of the (fixed) KNOWN_BUGS: it is invalid, and now refused as such
        # (that rule may fire before any other rule the case breaks)
        assert isinstance(out, (ValueError, TypeError)), \
            f"a call once hitting {case.bugs} gave {type(out).__name__}: {out} -- {desc}"
        return
    if not case.bad:
        if case.api == "Linear.from_float" and isinstance(out, ValueError) and "multiple of 16" in str(out):
            return  # fp8 weights need K % 16 == 0 (the fuzz's model of from_float predates that rule)
        if result_ok is not None and not isinstance(out, BaseException):
            result_ok(out)
            return
        assert isinstance(out, BackendUnavailable), f"a valid call gave {type(out).__name__}: {out} -- {desc}"
        return
    assert isinstance(out, (ValueError, TypeError)), \
        f"an invalid call gave {type(out).__name__}: {out if isinstance(out, BaseException) else ''} -- {desc}"
    msg = str(out)
    ok = any(any(_word(nm, msg) for nm in b.names) and re.search(b.rule, msg, re.S) for b in case.bad)
    assert ok, f"message {msg!r} names none of the broken rules {case.bad} -- {desc}"


# CI runs a fixed example sequence; JITGEMM_FUZZ_RANDOM=1 draws fresh examples on every run (to fuzz further)
DERANDOMIZE = os.environ.get("JITGEMM_FUZZ_RANDOM", "") in ("", "0")


SETTINGS = dict(deadline=None, database=None, derandomize=DERANDOMIZE, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


def _mutations(catalogue):
    """0, 1 or 2 distinct mutation names (about a quarter of the cases stay valid)."""
    count = st.sampled_from([0, 1, 1, 2])
    return count.flatmap(lambda c: st.lists(st.sampled_from(sorted(catalogue)), min_size=c, max_size=c, unique=True))


# ---- shared mutation helpers ----------------------------------------------------------------------------------------
def _set_junk(op: Op, value):
    op.is_junk, op.junk = True, value


def _ndim_change(op: Op, draw, dims_fn):
    """Make the operand 0-d, 1-d or 3-d (its shape otherwise derived from dims_fn)."""
    nd = draw(st.sampled_from([0, 1, 3]))
    if nd == 0:
        op.shape = lambda d: ()
    elif nd == 1:
        op.shape = lambda d, f=dims_fn: (f(d)[-1],)
    else:
        op.shape = lambda d, f=dims_fn: (1,) + tuple(f(d))
    op.pad, op.pitch = 0, None
    return nd


def _layout_mutation(draw, op: Op, name: str, vec: int, rows: int, cols: int):
    """A device layout rule broken on a 2-D operand with `rows` x `cols`; None if not applicable."""
    if cols < 1 or rows < 1:
        return None  # an empty operand: the shape rule fires first, no layout to break
    choices = []
    if cols > 1:
        choices.append("inner")
    if rows > 1:
        choices += ["pitch-odd", "pitch-short"]
    choices.append("misaligned")
    kind = draw(st.sampled_from(choices))
    if kind == "inner":
        op.inner = draw(st.sampled_from([2, 3, 0]))
        op.pitch = cols * max(op.inner, 1) * 2 + 16 * vec  # big enough and vector-aligned: only the inner stride is wrong
        return Bad((name,), r"unit stride|stride")
    if kind == "pitch-odd":
        op.pitch = cols + draw(st.integers(1, vec - 1)) if vec > 1 else None
        if op.pitch is None:
            return None
        return Bad((name,), r"pitch.*multiple|multiple of")
    if kind == "pitch-short":
        op.pitch = draw(st.integers(-cols, cols - 1))
        return Bad((name,), r"pitch.*smaller|overlap|multiple of")
    op.offset = draw(st.sampled_from([1, 2, 4, 8, 15]))
    return Bad((name,), r"aligned|alignment")


def _stream_values(host: bool):
    good = [None, 0, 7, FakeStream(12345)] if not host else [None, 0]
    return st.sampled_from(good)


BAD_STREAMS = ["abc", 1.5, FakeStream(None), FakeStream("x"), object(), [1]]


def _bias_op(kind: str, dt: str, host: bool, draw) -> Op | None:
    if kind == "none":
        return None
    shape = {"m": lambda d: (d.m,), "1m": lambda d: (1, d.m), "nm": lambda d: (d.n, d.m)}[kind]
    op = Op(shape, dt, host)
    if not host and kind == "nm":
        op.pad = draw(st.integers(0, 3))
    if not host:
        op.offset = 2 * draw(st.integers(0, 3))
    return op


def _bias_shape_mutation(draw, case: Case, dt: str):
    """A bias whose shape matches no [M], [1, M], [N, M]."""
    d = case.dims
    host = case.ops["x"].host if isinstance(case.ops.get("x"), Op) else True
    choices = [lambda d: (d.m + 1,), lambda d: (d.m, 2) if d.m != 2 else (d.m, 3), lambda d: (1, 1, d.m),
               lambda d: (), lambda d: (0,)]
    if d.n != 1:
        choices.append(lambda d: (d.n + 1, d.m))
    if d.m > 1:
        choices.append(lambda d: (d.m, 1))
    shape = draw(st.sampled_from(choices))
    case.ops["bias"] = Op(shape, dt, host)
    return Bad(("bias",), r"bias.*(match|expected|shape)|must be \[M\]")


# ---- gemm ---------------------------------------------------------------------------------------------------------------
@st.composite
def gemm_case(draw, mutate=True):
    host = draw(st.booleans())
    dt = draw(st.sampled_from(HALF))
    n = draw(st.integers(1, 16)) if draw(st.integers(0, 7)) else draw(st.integers(1, GEMM_MAX_N))
    dims = Dims(n, draw(st.integers(1, 200)), 8 * draw(st.integers(1, 40)))
    x, w = Op(lambda d: (d.n, d.k), dt, host), Op(lambda d: (d.m, d.k), dt, host)
    out = Op(lambda d: (d.n, d.m), dt, host) if draw(st.booleans()) else None
    if not host:
        x.pad, w.pad = 8 * draw(st.integers(0, 3)), 8 * draw(st.integers(0, 3))
        x.offset, w.offset = 16 * draw(st.integers(0, 2)), 16 * draw(st.integers(0, 2))
        if out is not None:
            out.pad, out.offset = draw(st.integers(0, 5)), 2 * draw(st.integers(0, 3))
    bias = _bias_op(draw(st.sampled_from(["none", "m", "1m", "nm"])), dt, host, draw)
    case = Case("gemm", dims, {"x": x, "w": w, "bias": bias, "out": out, "stream": draw(_stream_values(host))})
    if mutate:
        for mut in draw(_mutations(GEMM_MUTATIONS)):
            GEMM_MUTATIONS[mut](draw, case, dt, host)
    return case


def _g_dtype(draw, case, dt, host):
    bad = draw(st.sampled_from(NOT_HALF))
    who = draw(st.sampled_from(["x", "w", "both"]))
    for name in (("x", "w") if who == "both" else (who,)):
        case.ops[name].dtype = bad
    case.bad.append(Bad(("x", "w"), r"dtype"))


def _g_mixed_half(draw, case, dt, host):
    case.ops["w"].dtype = "float16" if dt == "bfloat16" else "bfloat16"
    case.bad.append(Bad(("x", "w"), r"same dtype"))


def _g_ndim(draw, case, dt, host):
    name = draw(st.sampled_from(["x", "w"]))
    op = case.ops[name]
    _ndim_change(op, draw, op.shape)
    case.bad.append(Bad((name,), r"2-D"))


def _g_k_mismatch(draw, case, dt, host):
    delta = 8 * draw(st.sampled_from([-1, 1, 2]))
    if case.dims.k + delta < 8:
        delta = 8
    case.ops["w"].shape = lambda d, dl=delta: (d.m, d.k + dl)
    case.bad.append(Bad(("x", "w", "K"), r"agree on K|K"))


def _g_n(draw, case, dt, host):
    case.dims.n = draw(st.sampled_from([0, GEMM_MAX_N + 1, GEMM_MAX_N + 2, 4 * GEMM_MAX_N] + ([] if host else [-1, -5])))
    case.bad.append(Bad(("N", "x"), r"N \(tokens\)"))


def _g_k8(draw, case, dt, host):
    case.dims.k = draw(st.sampled_from([1, 4, 12, 20, 100, 1001]))
    case.bad.append(Bad(("K",), r"multiple of 8"))


def _g_zero(draw, case, dt, host):
    which = draw(st.sampled_from(["m", "k"] + ([] if host else ["m-neg", "k-neg"])))
    if which == "m":
        case.dims.m = 0
    elif which == "k":
        case.dims.k = 0
    elif which == "m-neg":
        case.dims.m = -draw(st.integers(1, 100))
    else:
        case.dims.k = -8 * draw(st.integers(1, 10))
    case.bad.append(Bad(("M", "K"), r">= 1|must be"))


def _g_bias_shape(draw, case, dt, host):
    case.bad.append(_bias_shape_mutation(draw, case, dt))


def _g_bias_dtype(draw, case, dt, host):
    bad = draw(st.sampled_from([t for t in NOT_HALF + HALF if t != dt]))
    case.ops["bias"] = Op(lambda d: (d.m,), bad, host)
    case.bad.append(Bad(("bias",), r"dtype"))


def _g_bias_strided(draw, case, dt, host):
    case.dims.m = max(case.dims.m, 2)
    case.ops["bias"] = Op(draw(st.sampled_from([lambda d: (d.m,), lambda d: (1, d.m)])), dt, host,
                          inner=draw(st.sampled_from([2, 3])))
    case.bad.append(Bad(("bias",), r"contiguous|unit stride"))


def _g_out(draw, case, dt, host):
    kind = draw(st.sampled_from(["shape", "transposed", "dtype", "ndim"]))
    if kind == "shape":
        case.ops["out"] = Op(lambda d: (d.n, d.m + 1), dt, host)
        case.bad.append(Bad(("out",), r"shape"))
    elif kind == "transposed":
        case.dims.m = case.dims.n + 1 if case.dims.m == case.dims.n else case.dims.m
        case.ops["out"] = Op(lambda d: (d.m, d.n), dt, host)
        case.bad.append(Bad(("out",), r"shape"))
    elif kind == "dtype":
        case.ops["out"] = Op(lambda d: (d.n, d.m), draw(st.sampled_from([t for t in NOT_HALF + HALF if t != dt])), host)
        case.bad.append(Bad(("out",), r"dtype"))
    else:
        op = Op(lambda d: (d.n, d.m), dt, host)
        _ndim_change(op, draw, lambda d: (d.n, d.m))
        case.ops["out"] = op
        case.bad.append(Bad(("out",), r"2-D"))


def _g_junk(draw, case, dt, host):
    name = draw(st.sampled_from(["x", "w", "bias", "out"]))
    value = draw(st.sampled_from(JUNK_NOT_NONE if name in ("bias", "out") else JUNK))
    op = Op(lambda d: (), dt, host)
    _set_junk(op, value)
    case.ops[name] = op
    case.bad.append(Bad((name,), r"must be a numpy array|__cuda_array_interface__"))


def _g_layout(draw, case, dt, host):
    if host:
        # numpy operands are copied: a non-contiguous inner dimension is fine there (still a valid call)
        case.ops["x"].inner = 2
        return
    name = draw(st.sampled_from(["x", "w", "out"]))
    d = case.dims
    if name == "out":
        if case.ops["out"] is None:
            case.ops["out"] = Op(lambda d: (d.n, d.m), dt, host)
        op = case.ops["out"]
        kind = draw(st.sampled_from(["inner", "short", "odd-ptr"]))
        if kind == "inner" and d.m > 1:
            op.inner, op.pitch = 2, 4 * d.m
            case.bad.append(Bad(("out",), r"unit stride"))
        elif kind == "short" and d.n > 1:
            op.pitch = draw(st.integers(0, d.m - 1)) if d.m > 1 else 0
            case.bad.append(Bad(("out",), r"smaller|overlap"))
        else:
            op.offset = 1
            case.bad.append(Bad(("out",), r"aligned"))
        return
    op = case.ops[name]
    rows = d.n if name == "x" else d.m
    b = _layout_mutation(draw, op, name, 8, rows, d.k)
    if b is not None:
        case.bad.append(b)


def _g_placement(draw, case, dt, host):
    kind = draw(st.sampled_from(["mixed", "other-device", "other-vendor"]))
    names = [n for n in ("x", "w", "bias", "out") if isinstance(case.ops.get(n), Op) and not case.ops[n].is_junk]
    name = draw(st.sampled_from(names))
    if kind == "mixed":
        case.ops[name].host = not host
        case.bad.append(Bad(tuple(names), r"host.*device|device.*host"))
    else:
        if host:
            for n in names:  # move everything to a device first
                case.ops[n].host = False
        case.ops[name].device, case.ops[name].vendor = ((1, "cuda") if kind == "other-device" else (0, "hip"))
        case.bad.append(Bad(tuple(names), r"same device"))


def _g_stream(draw, case, dt, host):
    case.ops["stream"] = draw(st.sampled_from(BAD_STREAMS))
    case.bugs.append("late-stream")


def _g_huge(draw, case, dt, host):
    """Sizes far past memory (and past 2^63 as products): a clean answer, whatever it is."""
    for n in ("x", "w", "bias", "out"):
        if isinstance(case.ops.get(n), Op):
            case.ops[n].host = False
    which = draw(st.sampled_from(["m", "k", "both", "pitch"]))
    if which in ("m", "both"):
        case.dims.m = 2 ** draw(st.integers(31, 70)) + draw(st.integers(0, 3))
    if which in ("k", "both"):
        case.dims.k = 8 * 2 ** draw(st.integers(28, 66))
    if which == "pitch":
        case.ops["w"].pitch = 8 * 2 ** draw(st.integers(40, 66))
    case.huge = True


GEMM_MUTATIONS = {"dtype": _g_dtype, "mixed-half": _g_mixed_half, "ndim": _g_ndim, "k-mismatch": _g_k_mismatch,
                  "n": _g_n, "k8": _g_k8, "zero": _g_zero, "bias-shape": _g_bias_shape, "bias-dtype": _g_bias_dtype,
                  "bias-strided": _g_bias_strided, "out": _g_out, "junk": _g_junk, "layout": _g_layout,
                  "placement": _g_placement, "stream": _g_stream, "huge": _g_huge}


def call_gemm(case: Case):
    a = case.args()
    return outcome_of(lambda: jitgemm.gemm(a["x"], a["w"], a["bias"], out=a["out"], stream=a["stream"]), "gemm")


# ---- w4_gemm --------------------------------------------------------------------------------------------------------
W4_FORMS = (("mxfp4", 32), ("q4_sym", 32), ("q4_sym", 128), ("q4_min", 32), ("q4_zp", 128))
W4_MAX_N = w4.MAX_N
_W4_WEIGHTS: dict = {}


@dataclass
class W4Spec:
    """w4_gemm's weight: a Q4Device of (format, group) at the case's M and K. Its memory is real (a working
    null device 0, kept for the session); the call itself runs under the fuzz's no-device backend, so a
    device-token call that passes every rule ends in BackendUnavailable, and host tokens, copied next to
    the weight, run on that null device."""
    fmt: str
    group: int

    def make(self, d: Dims, region: int = 0):  # region: unused (the weight's memory is real)
        from jitgemm.runtime.backend import installed
        from jitgemm.runtime.null import NullBackend
        from jitgemm.w4gemm import Q4Device
        key = (self.fmt, self.group, d.m, d.k)
        if key not in _W4_WEIGHTS:
            if "null" not in _W4_WEIGHTS:
                _W4_WEIGHTS["null"] = NullBackend()
            with installed(_W4_WEIGHTS["null"]):
                _W4_WEIGHTS[key] = Q4Device.upload(_zero_q4(self.fmt, self.group, d.m, d.k))
        return _W4_WEIGHTS[key]


def _zero_q4(fmt: str, group: int, m: int, k: int):
    from jitgemm import quant4
    g = (m, k // group)
    scales = np.zeros(g, np.uint8 if fmt == "mxfp4" else np.float16)
    return quant4.Q4Weight(fmt, np.zeros((m, k // 2), np.uint8), scales, group,
                           mins=np.zeros(g, np.float16) if fmt == "q4_min" else None,
                           zeros=np.zeros(g, np.uint8) if fmt == "q4_zp" else None)


@st.composite
def w4_case(draw, mutate=True):
    """A w4_gemm call (x fp16/bf16 [N, K], a Q4Device [M, K], bias, out, stream), then up to two mutations."""
    host = draw(st.booleans())
    dt = draw(st.sampled_from(HALF))
    fmt, group = draw(st.sampled_from(W4_FORMS))
    n = draw(st.integers(1, 16)) if draw(st.integers(0, 3)) else draw(st.integers(1, W4_MAX_N))
    dims = Dims(n, draw(st.integers(1, 96)), group * draw(st.integers(1, 512 // group)))
    x = Op(lambda d: (d.n, d.k), dt, host)
    out = Op(lambda d: (d.n, d.m), dt, host) if draw(st.booleans()) else None
    if not host:
        x.pad, x.offset = 8 * draw(st.integers(0, 3)), 16 * draw(st.integers(0, 2))
        if out is not None:
            out.pad, out.offset = draw(st.integers(0, 5)), 2 * draw(st.integers(0, 3))
    bias = _bias_op(draw(st.sampled_from(["none", "m", "1m", "nm"])), dt, host, draw)
    case = Case("w4_gemm", dims, {"x": x, "w": W4Spec(fmt, group), "bias": bias, "out": out,
                                  "stream": draw(_stream_values(host))})
    if mutate:
        for mut in draw(_mutations(W4_MUTATIONS)):
            W4_MUTATIONS[mut](draw, case, dt, host)
    return case


def _w_dtype(draw, case, dt, host):
    case.ops["x"].dtype = draw(st.sampled_from(NOT_HALF))
    case.bad.append(Bad(("x",), r"dtype"))


def _w_ndim(draw, case, dt, host):
    _ndim_change(case.ops["x"], draw, case.ops["x"].shape)
    case.bad.append(Bad(("x",), r"2-D"))


def _w_k_mismatch(draw, case, dt, host):
    delta = draw(st.sampled_from([-8, 8, 32, -32]))
    if case.dims.k + delta < 8:
        delta = 8
    case.ops["x"].shape = lambda d, dl=delta: (d.n, d.k + dl)
    case.bad.append(Bad(("x", "w", "K"), r"agree on K"))


def _w_n(draw, case, dt, host):
    case.dims.n = draw(st.sampled_from([0, W4_MAX_N + 1, 4 * W4_MAX_N] + ([] if host else [-1])))
    case.bad.append(Bad(("N", "x"), r"N \(tokens\)"))


def _w_weight(draw, case, dt, host):
    """Not a Q4Device: a 16-bit or packed uint8 array, or junk."""
    kind = draw(st.sampled_from(["half", "packed", "junk"]))
    if kind == "junk":
        op = Op(lambda d: (), dt, host)
        _set_junk(op, draw(st.sampled_from(JUNK)))
    else:
        op = Op((lambda d: (d.m, d.k)) if kind == "half" else (lambda d: (d.m, d.k // 2)),
                dt if kind == "half" else "uint8", host)
    case.ops["w"] = op
    case.bad.append(Bad(("w",), r"Q4Device"))


def _w_junk(draw, case, dt, host):
    name = draw(st.sampled_from(["x", "bias", "out"]))
    op = Op(lambda d: (), dt, host)
    _set_junk(op, draw(st.sampled_from(JUNK_NOT_NONE if name in ("bias", "out") else JUNK)))
    case.ops[name] = op
    case.bad.append(Bad((name,), r"must be a numpy array|__cuda_array_interface__"))


def _w_layout(draw, case, dt, host):
    x = case.ops["x"]
    if x.is_junk:
        return
    if x.host:  # (where x is now: a placement mutation may have moved it)
        x.inner = 2  # numpy tokens are copied: still a valid call
        return
    d = case.dims
    if draw(st.booleans()):
        b = _layout_mutation(draw, x, "x", 8, d.n, d.k)
    else:
        if case.ops["out"] is None:
            case.ops["out"] = Op(lambda d: (d.n, d.m), dt, host, device=x.device)
        case.ops["out"].offset = 1
        b = Bad(("out",), r"aligned")
    if b is not None:
        case.bad.append(b)


def _w_placement(draw, case, dt, host):
    """bias or out on the other side of x (host/device), or the device operands on another device than the
    weight's. (A device bias with host tokens is valid: it is read where the weight is, device 0.)"""
    names = [n for n in ("x", "bias", "out") if isinstance(case.ops.get(n), Op) and not case.ops[n].is_junk]
    others = [n for n in names if n != "x" and not (n == "bias" and host)]
    if host and "bias" in names and draw(st.integers(0, 2)) == 0:
        case.ops["bias"].host = False  # valid: a device bias is read where the weight is, with host tokens
        return
    if others and draw(st.booleans()):
        case.ops[draw(st.sampled_from(others))].host = not host
        case.bad.append(Bad(tuple(names), r"host.*device|device.*host"))
    else:
        for nm in names:
            if case.ops[nm].host:
                case.ops[nm].inner = 1  # a strided host x is valid (copied); on a device it would break a second rule
            case.ops[nm].host = False
            case.ops[nm].device = 1
        case.bad.append(Bad(tuple(names) + ("w",), r"same device|device"))


def _w_out(draw, case, dt, host):
    """out of the wrong shape, dtype or rank (validate.out_view: its shape or its dtype message, or the rank's)."""
    kind = draw(st.sampled_from(["shape", "dtype", "ndim"]))
    op = Op(lambda d: (d.n, d.m + 1), dt, host)
    if kind == "dtype":
        op = Op(lambda d: (d.n, d.m), draw(st.sampled_from([t for t in NOT_HALF + HALF if t != dt])), host)
    elif kind == "ndim":
        op = Op(lambda d: (d.n, d.m), dt, host)
        _ndim_change(op, draw, lambda d: (d.n, d.m))
    case.ops["out"] = op
    case.bad.append(Bad(("out",), r"out must have shape|out dtype must be|2-D"))


def _w_stream(draw, case, dt, host):
    case.ops["stream"] = draw(st.sampled_from(BAD_STREAMS))
    case.bad.append(Bad(("stream",), r"stream"))


def _w_huge(draw, case, dt, host):
    """A huge N or row pitch: a clean answer, whatever it is."""
    case.ops["x"].host = False
    if draw(st.booleans()):
        case.dims.n = 2 ** draw(st.integers(31, 70))
    else:
        case.ops["x"].pitch = 8 * 2 ** draw(st.integers(40, 66))
    case.huge = True


W4_MUTATIONS = {"dtype": _w_dtype, "ndim": _w_ndim, "k-mismatch": _w_k_mismatch, "n": _w_n, "weight": _w_weight,
                "bias-shape": _g_bias_shape, "bias-dtype": _g_bias_dtype, "bias-strided": _g_bias_strided,
                "out": _w_out, "junk": _w_junk, "layout": _w_layout, "placement": _w_placement, "stream": _w_stream,
                "huge": _w_huge}


def call_w4(case: Case, a: dict | None = None):
    a = case.args() if a is None else a
    return outcome_of(lambda: jitgemm.w4_gemm(a["x"], a["w"], a["bias"], out=a["out"], stream=a["stream"]), "w4_gemm")


def check_w4_result(case: Case, got, out=None):
    """A valid call with host tokens ran on the null device: the given out itself, else a new array of out's
    shape and x's dtype, comes back (the null device computes nothing, so the values are not checked here:
    tests/test_gpu_w4.py does that)."""
    if out is not None:
        assert got is out, f"returned {type(got).__name__}, not the out given -- {case.describe()}"
    d = case.dims
    assert isinstance(got, np.ndarray) and got.shape == (d.n, d.m), f"{type(got)} {getattr(got, 'shape', '')}"
    assert got.dtype == NP[case.ops["x"].dtype], f"{got.dtype} -- {case.describe()}"


# ---- scaled_gemm --------------------------------------------------------------------------------------------------------
def _scale_value(draw, length: int, host: bool, name: str):
    """A valid scale for a vector of `length` (tokens or rows): a number or a float32 array/View."""
    kind = draw(st.sampled_from(["float", "int", "np32", "np64", "arr0", "arr1", "arrL", "arrL1", "arr1L"]))
    if kind == "float":
        return draw(st.floats(1e-6, 1e3))
    if kind == "int":
        return draw(st.integers(1, 4))
    if kind == "np32":
        return np.float32(0.5)
    if kind == "np64":
        return np.float64(0.25)
    if kind == "arr0":
        return Op(lambda d: (), "float32", True)
    shape = {"arr1": lambda d: (1,), "arrL": lambda d, L=name: (_len(d, L),),
             "arrL1": lambda d, L=name: (_len(d, L), 1), "arr1L": lambda d, L=name: (1, _len(d, L))}[kind]
    if not host and kind != "arr1" and draw(st.booleans()):
        return Op(shape, "float32", False, offset=4 * draw(st.integers(0, 3)))
    if not host and kind != "arr1":
        # a host array with more than one value cannot go with device operands: keep it to one value
        return Op(lambda d: (1,), "float32", True)
    return Op(shape, "float32", host if kind != "arr1" else draw(st.booleans()) or host)


def _len(d: Dims, name: str) -> int:
    return d.n if name == "scale_x" else d.m


@st.composite
def scaled_case(draw, mutate=True, fmts=FP8):
    host = draw(st.booleans())
    mode = draw(st.sampled_from(["w8a8", "w8a16", "w8q"]))
    fmt = draw(st.sampled_from(fmts))
    n = draw(st.integers(1, 16)) if draw(st.integers(0, 7)) else draw(st.integers(17, SCALED_MAX_N))
    dims = Dims(n, draw(st.integers(1, 200)), 16 * draw(st.integers(1, 24)))
    w_u8 = draw(st.booleans())
    x_u8 = mode == "w8a8" and draw(st.booleans())
    xdt = ("uint8" if x_u8 else fmt) if mode == "w8a8" else draw(st.sampled_from(HALF))
    wdt = "uint8" if w_u8 else fmt
    if w_u8:
        fp8_format = draw(st.sampled_from([fmt, SHORT[fmt]]))
    else:
        fp8_format = draw(st.sampled_from([None, fmt, SHORT[fmt]]))
    if mode == "w8a8":
        out_dtype = draw(st.sampled_from([None, "bfloat16", "float16", "bf16", "fp16"]))
        odt = {"bf16": "bfloat16", "fp16": "float16", None: "bfloat16"}.get(out_dtype, out_dtype)
    else:
        alias = {"bfloat16": "bf16", "float16": "fp16"}[xdt]
        out_dtype = draw(st.sampled_from([None, xdt, alias]))
        odt = xdt
    x, w = Op(lambda d: (d.n, d.k), xdt, host), Op(lambda d: (d.m, d.k), wdt, host)
    if not host:
        xvec = 16 if mode == "w8a8" else 8
        x.pad, w.pad = xvec * draw(st.integers(0, 3)), 16 * draw(st.integers(0, 3))
        x.offset, w.offset = 16 * draw(st.integers(0, 2)), 16 * draw(st.integers(0, 2))
    scale_x = None if mode == "w8a16" else _scale_value(draw, dims.n, host, "scale_x")
    scale_w = None if draw(st.integers(0, 4)) == 0 else _scale_value(draw, dims.m, host, "scale_w")
    bias = _bias_op(draw(st.sampled_from(["none", "m", "1m", "nm"])), odt, host, draw)
    out = None
    if draw(st.booleans()):
        out = Op(lambda d: (d.n, d.m), odt, host)
        if not host:
            out.pad, out.offset = draw(st.integers(0, 5)), 2 * draw(st.integers(0, 3))
    case = Case("scaled_gemm", dims, {"x": x, "w": w, "scale_x": scale_x, "scale_w": scale_w, "bias": bias,
                                      "out_dtype": out_dtype, "fp8_format": fp8_format, "out": out,
                                      "stream": draw(_stream_values(host))})
    case.meta = dict(mode=mode, fmt=fmt, xdt=xdt, wdt=wdt, odt=odt, host=host)
    if mutate:
        for mut in draw(_mutations(SCALED_MUTATIONS)):
            SCALED_MUTATIONS[mut](draw, case)
    return case


def _s_x_dtype(draw, case):
    case.ops["x"].dtype = draw(st.sampled_from(["float32", "float64", "int8", "bool", "int16", "complex64"]))
    case.bad.append(Bad(("x",), r"fp8|dtype|float8"))


def _s_w_dtype(draw, case):
    case.ops["w"].dtype = draw(st.sampled_from(["float16", "bfloat16", "float32", "int8", "bool", "float64"]))
    case.bad.append(Bad(("w",), r"fp8|float8"))


def _s_format_mismatch(draw, case):
    """fp8 formats that disagree, judged on the operands as they are now (other mutations may have run)."""
    xdt, wdt = case.ops["x"].dtype, case.ops["w"].dtype
    other = lambda f: FP8[1 - FP8.index(f)]
    if wdt in FP8:
        if xdt in FP8 and draw(st.booleans()):
            case.ops["x"].dtype = other(wdt)   # x e4m3fn with w e4m3fnuz (or the other way round)
            case.bad.append(Bad(("x", "w"), r"format|holds"))
        else:
            case.ops["fp8_format"] = draw(st.sampled_from([other(wdt), SHORT[other(wdt)]]))  # contradicts w's dtype
            case.bad.append(Bad(("w", "x", "fp8_format"), r"holds|format"))
    elif wdt == "uint8":
        if xdt in FP8:
            case.ops["fp8_format"] = other(xdt)   # contradicts x's dtype
            case.bad.append(Bad(("x", "fp8_format"), r"holds|format"))
        else:
            case.ops["fp8_format"] = None         # uint8 bytes without saying which format
            case.bad.append(Bad(("w",), r"uint8.*fp8_format|fp8_format"))


def _s_u8_no_format(draw, case):
    case.ops["w"].dtype = "uint8"
    case.ops["fp8_format"] = None
    case.bad.append(Bad(("w",), r"uint8.*fp8_format"))


def _s_bad_format(draw, case):
    v = draw(st.sampled_from(["e5m2", "float8_e5m2", "fp8", "", "E4M3FN", 3, 2.0, ["e4m3fn"]]))
    case.ops["fp8_format"] = v
    if isinstance(v, list):
        case.bugs.append("unhashable-option")
    else:
        case.bad.append(Bad(("fp8_format",), r"e4m3fn"))


def _s_out_dtype(draw, case):
    m = case.meta
    if m["mode"] != "w8a8" and draw(st.booleans()):
        case.ops["out_dtype"] = draw(st.sampled_from([t for t in ("float16", "bfloat16", "fp16", "bf16")
                                                      if {"fp16": "float16", "bf16": "bfloat16"}.get(t, t) != m["xdt"]]))
        case.bad.append(Bad(("out_dtype",), r"16-bit x|x's"))
        return
    v = draw(st.sampled_from(["float32", "int8", "half", 5, b"bf16", np.float32, ["bf16"]]))
    case.ops["out_dtype"] = v
    if isinstance(v, list):
        case.bugs.append("unhashable-option")
    else:
        case.bad.append(Bad(("out_dtype",), r"float16 or bfloat16"))


def _s_n(draw, case):
    case.dims.n = draw(st.sampled_from([0, SCALED_MAX_N + 1, 2 * SCALED_MAX_N + 3] + ([] if case.meta["host"] else [-2])))
    case.bad.append(Bad(("N",), rf"N \(tokens\)|1\.\.{SCALED_MAX_N}"))


def _s_k16(draw, case):
    case.dims.k = draw(st.sampled_from([8, 24, 40, 1, 15]))
    case.bad.append(Bad(("K",), r"multiple of 16"))


def _s_k_mismatch(draw, case):
    case.ops["w"].shape = lambda d: (d.m, d.k + 16)
    case.bad.append(Bad(("x", "w", "K"), r"agree on K"))


def _s_zero(draw, case):
    if draw(st.booleans()):
        case.dims.m = 0 if case.meta["host"] else draw(st.sampled_from([0, -3]))
        case.bad.append(Bad(("M",), r"M >= 1|M="))
    else:
        case.dims.k = 0
        case.bad.append(Bad(("K",), r"multiple of 16"))


def _s_ndim(draw, case):
    name = draw(st.sampled_from(["x", "w"]))
    op = case.ops[name]
    _ndim_change(op, draw, op.shape)
    case.bad.append(Bad((name,), r"2-D"))


def _s_scale(draw, case):
    m = case.meta
    name = draw(st.sampled_from(["scale_x", "scale_w"]))
    kind = draw(st.sampled_from(["dtype", "shape", "junk", "strided"]))
    L = (lambda d: d.n) if name == "scale_x" else (lambda d: d.m)
    if kind == "dtype":
        dt = draw(st.sampled_from(["float64", "float16", "bfloat16", "int32", "uint8"]))
        case.ops[name] = Op(draw(st.sampled_from([lambda d: (1,), lambda d, L=L: (L(d),)])), dt, m["host"])
        case.bad.append(Bad((name,), r"float32"))
    elif kind == "shape":
        shape = draw(st.sampled_from([lambda d, L=L: (L(d) + 1,), lambda d, L=L: (2, L(d)), lambda d, L=L: (L(d), 2),
                                      lambda d: (0,), lambda d, L=L: (L(d) + 1, 1)]))
        case.ops[name] = Op(shape, "float32", m["host"])
        case.bad.append(Bad((name,), r"shape|must be a scalar"))
    elif kind == "junk":
        op = Op(lambda d: (), "float32", True)
        _set_junk(op, draw(st.sampled_from(["abc", [1.0], object(), 1j, b"x", {"s": 1}])))
        case.ops[name] = op
        case.bad.append(Bad((name,), r"must be a numpy array|__cuda_array_interface__"))
    else:
        if name == "scale_x":
            case.dims.n = max(case.dims.n, 2)
        else:
            case.dims.m = max(case.dims.m, 2)
        case.ops[name] = Op(lambda d, L=L: (L(d),), "float32", m["host"], inner=draw(st.sampled_from([2, 3])))
        case.bad.append(Bad((name,), r"contiguous"))


def _s_bias(draw, case):
    odt = case.meta["odt"]
    if draw(st.booleans()):
        case.bad.append(_bias_shape_mutation(draw, case, odt))
    else:
        bad = draw(st.sampled_from([t for t in ("float16", "bfloat16", "float32", "uint8", "float8_e4m3fn") if t != odt]))
        case.ops["bias"] = Op(lambda d: (d.m,), bad, case.meta["host"])
        case.bad.append(Bad(("bias",), r"dtype"))


def _s_out(draw, case):
    m = case.meta
    kind = draw(st.sampled_from(["shape", "dtype", "ndim", "junk"]))
    if kind == "shape":
        case.ops["out"] = Op(lambda d: (d.n + 1, d.m), m["odt"], m["host"])
        case.bad.append(Bad(("out",), r"out must have shape"))
    elif kind == "dtype":
        dt = draw(st.sampled_from([t for t in ("float16", "bfloat16", "float32", "uint8") if t != m["odt"]]))
        case.ops["out"] = Op(lambda d: (d.n, d.m), dt, m["host"])
        case.bad.append(Bad(("out",), r"out dtype must be"))
    elif kind == "ndim":
        op = Op(lambda d: (d.n, d.m), m["odt"], m["host"])
        _ndim_change(op, draw, lambda d: (d.n, d.m))
        case.ops["out"] = op
        case.bad.append(Bad(("out",), r"2-D"))
    else:
        op = Op(lambda d: (), "float32", True)
        _set_junk(op, draw(st.sampled_from(JUNK_NOT_NONE)))
        case.ops["out"] = op
        case.bad.append(Bad(("out",), r"must be a numpy array"))


def _s_junk(draw, case):
    name = draw(st.sampled_from(["x", "w", "bias"]))
    op = Op(lambda d: (), "float32", True)
    _set_junk(op, draw(st.sampled_from(JUNK_NOT_NONE if name == "bias" else JUNK)))
    case.ops[name] = op
    case.bad.append(Bad((name,), r"must be a numpy array"))


def _s_layout(draw, case):
    m, d = case.meta, case.dims
    if m["host"]:
        case.ops["w"].inner = 2  # numpy operands are copied: still valid
        return
    name = draw(st.sampled_from(["x", "w", "out"]))
    if name == "out":
        if case.ops["out"] is None:
            case.ops["out"] = Op(lambda d: (d.n, d.m), m["odt"], False)
        case.ops["out"].offset = 1
        case.bad.append(Bad(("out",), r"aligned"))
        return
    vec = 16 if (name == "w" or m["mode"] == "w8a8") else 8
    b = _layout_mutation(draw, case.ops[name], name, vec, d.n if name == "x" else d.m, d.k)
    if b is not None:
        case.bad.append(b)


def _s_placement(draw, case):
    host = case.meta["host"]
    names = [n for n in ("x", "w", "bias", "out") if isinstance(case.ops.get(n), Op) and not case.ops[n].is_junk]
    name = draw(st.sampled_from(names))
    if draw(st.booleans()):
        case.ops[name].host = not host
        case.bad.append(Bad(tuple(names) + ("scale_x", "scale_w"), r"host.*device|device.*host"))
    else:
        for n in names:
            case.ops[n].host = False
        for sname in ("scale_x", "scale_w"):  # vectors on the host cannot go with device operands
            s = case.ops.get(sname)
            if isinstance(s, Op) and s.host and not s.is_junk:
                case.ops[sname] = 0.5
        case.ops[name].device = 1
        case.bad.append(Bad(tuple(names), r"same device"))


def _s_scale_host_vector_with_device(draw, case):
    if case.meta["host"]:
        return
    case.dims.m = max(case.dims.m, 2)
    case.ops["scale_w"] = Op(lambda d: (d.m,), "float32", True)
    case.bad.append(Bad(("scale_w", "x", "w"), r"host.*device|device.*host"))


def _s_stream(draw, case):
    case.ops["stream"] = draw(st.sampled_from(BAD_STREAMS))
    case.bugs.append("late-stream")


def _s_unaligned(draw, case):
    if case.meta["host"]:
        return
    which = draw(st.sampled_from(["bias", "scale_w"]))
    if which == "bias":
        case.ops["bias"] = Op(lambda d: (d.m,), case.meta["odt"], False, offset=1)
    else:
        case.dims.m = max(case.dims.m, 2)
        case.ops["scale_w"] = Op(lambda d: (d.m,), "float32", False, offset=draw(st.sampled_from([1, 2, 3])))
    case.bugs.append("unaligned-bias-scale")


def _s_huge(draw, case):
    for n in ("x", "w", "bias", "out"):
        if isinstance(case.ops.get(n), Op):
            case.ops[n].host = False
    for sname in ("scale_x", "scale_w"):
        s = case.ops.get(sname)
        if isinstance(s, Op):
            case.ops[sname] = 2.0
    if draw(st.booleans()):
        case.dims.m = 2 ** draw(st.integers(31, 70))
    else:
        case.dims.k = 16 * 2 ** draw(st.integers(27, 66))
    case.huge = True


SCALED_MUTATIONS = {"x-dtype": _s_x_dtype, "w-dtype": _s_w_dtype, "format-mismatch": _s_format_mismatch,
                    "u8-no-format": _s_u8_no_format, "bad-format": _s_bad_format, "out-dtype": _s_out_dtype,
                    "n": _s_n, "k16": _s_k16, "k-mismatch": _s_k_mismatch, "zero": _s_zero, "ndim": _s_ndim,
                    "scale": _s_scale, "bias": _s_bias, "out": _s_out, "junk": _s_junk, "layout": _s_layout,
                    "placement": _s_placement, "host-vector": _s_scale_host_vector_with_device,
                    "stream": _s_stream, "unaligned": _s_unaligned, "huge": _s_huge}


def call_scaled(case: Case):
    a = case.args()
    tolerate = ()
    for name in ("scale_x", "scale_w"):
        op = case.ops.get(name)
        if isinstance(op, Op) and not op.is_junk and any(abs(e) >= 2**63 for e in op.shape(case.dims)):
            case.bugs.append("scale-overflow")
    return outcome_of(lambda: jitgemm.scaled_gemm(a["x"], a["w"], a["scale_x"], a["scale_w"], a["bias"],
                                                  out_dtype=a["out_dtype"], fp8_format=a["fp8_format"],
                                                  out=a["out"], stream=a["stream"]), "scaled_gemm", tolerate)


# ---- quantize_fp8 -------------------------------------------------------------------------------------------------------
@st.composite
def quantize_case(draw, mutate=True):
    host = draw(st.booleans())
    dt = draw(st.sampled_from(HALF))
    dims = Dims(draw(st.integers(1, 40)), 0, draw(st.integers(1, 300)))
    x = Op(lambda d: (d.n, d.k), dt, host)
    if not host:
        x.pad, x.offset = draw(st.integers(0, 9)), 2 * draw(st.integers(0, 8))
    elif draw(st.integers(0, 3)) == 0:
        x.inner = 2  # copied: valid
    fmt = draw(st.sampled_from([None, *FP8, *SHORT.values()]))
    case = Case("quantize_fp8", dims, {"x": x, "per_token": draw(st.booleans()), "fp8_format": fmt,
                                       "stream": draw(_stream_values(host))})
    if not mutate:
        return case
    for mut in draw(_mutations(["dtype", "ndim", "empty", "format", "layout", "junk", "stream", "placement",
                                "huge"])):
        if mut == "dtype":
            x.dtype = draw(st.sampled_from(NOT_HALF))
            case.bad.append(Bad(("x",), r"dtype"))
        elif mut == "ndim":
            _ndim_change(x, draw, x.shape)
            case.bad.append(Bad(("x",), r"2-D"))
        elif mut == "empty":
            if draw(st.booleans()):
                dims.n = 0
            else:
                dims.k = 0
            case.bad.append(Bad(("x",), r"empty"))
        elif mut == "format":
            case.ops["fp8_format"] = draw(st.sampled_from(["e5m2", "fp8", 7, "E4M3"]))
            case.bugs.append("late-quantize")
        elif mut == "layout":
            if not host and dims.k > 1:
                x.inner, x.pitch = 2, 2 * dims.k + 8
                case.bugs.append("late-quantize")
        elif mut == "junk":
            _set_junk(x, draw(st.sampled_from(JUNK)))
            case.bad.append(Bad(("x",), r"must be a numpy array"))
        elif mut == "stream":
            case.ops["stream"] = draw(st.sampled_from(BAD_STREAMS))
            case.bugs.append("late-stream")
        elif mut == "placement":
            if not host:
                x.vendor = "cuda"
                x.device = -1 if draw(st.booleans()) else 3   # -1: ask the driver (BackendUnavailable here)
        elif mut == "huge":
            dims.n, dims.k = 2 ** draw(st.integers(20, 30)), 2 ** draw(st.integers(20, 31))
            if host:
                x.huge_host, x.inner = True, 1
            case.huge = True
    return case


# ---- matmul (numpy semantics, vendor BLAS / numpy outside the skinny family) ---------------------------------------
MATMUL_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int32", "bool", "float8_e4m3fn")


def _small_ints(shape, dt, rng):
    return rng.integers(-2, 3, size=shape).astype(np.float32).astype(NP[dt]) if dt != "bool" else \
        rng.integers(0, 2, size=shape).astype(bool)


def _matmul_expected(a: np.ndarray, b: np.ndarray):
    """matmul's documented host rule: 16-bit a -> fp32 products, one rounding to a's dtype; else numpy."""
    if a.dtype in (np.float16, ml_dtypes.bfloat16):
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    return np.matmul(a, b)


def takes_skinny(a: np.ndarray, b: np.ndarray) -> bool | None:
    """True: matmul must run jitgemm's kernel (16-bit, b = w.T, N <= 16, K % 8 == 0); None: it may
    (16 < N <= gemm's limit: a measured choice between the kernel and the BLAS); False: numpy's path."""
    bv = as_view(b, "b")
    transposed = bv.strides[0] == 1 or bv.shape[0] == 1
    fits = (transposed and a.dtype in (np.float16, ml_dtypes.bfloat16) and b.dtype == a.dtype
            and a.shape[1] % 8 == 0 and 1 <= a.shape[0] <= GEMM_MAX_N)
    if not fits:
        return False
    return True if a.shape[0] <= 16 else None


@st.composite
def matmul_case(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    on_gpu = draw(st.booleans())
    adt = draw(st.sampled_from(HALF)) if on_gpu else draw(st.sampled_from(MATMUL_DTYPES))
    bdt = adt if on_gpu or draw(st.booleans()) else draw(st.sampled_from(MATMUL_DTYPES))
    n = draw(st.integers(1, 16)) if on_gpu else draw(st.integers(0, 24) | st.integers(GEMM_MAX_N + 1, GEMM_MAX_N + 3))
    k = 8 * draw(st.integers(1, 8)) if on_gpu else draw(st.integers(0, 64))
    m = draw(st.integers(1, 48))
    a = _small_ints((n, k), adt, rng)
    transposed = draw(st.booleans()) or on_gpu
    b = _small_ints((m, k), bdt, rng).T if transposed else _small_ints((k, m), bdt, rng)
    kw = {}
    bad, bugs = [], []
    mut = draw(st.sampled_from(["none", "none", "none", "a-junk", "b-junk", "ndim", "inner", "out-ok", "out-bad"]))
    if mut == "a-junk":
        a = draw(st.sampled_from(JUNK))
        bad.append(Bad(("a",), r"must be a numpy array"))
    elif mut == "b-junk":
        b = draw(st.sampled_from(JUNK))
        bad.append(Bad(("b",), r"must be a numpy array"))
    elif mut == "ndim":
        which = draw(st.sampled_from(["a", "b"]))
        nd = draw(st.sampled_from([0, 1, 3]))
        arr = a if which == "a" else b
        arr = arr.reshape(-1)[:1].reshape(()) if nd == 0 and arr.size else (arr.reshape(-1) if nd == 1 else arr[None])
        if nd == 0 and arr.ndim != 0:
            arr = np.zeros((), arr.dtype)
        a, b = (arr, b) if which == "a" else (a, arr)
        bad.append(Bad((which,), r"2-D"))
    elif mut == "inner":
        b = _small_ints((k + draw(st.integers(1, 3)), m), bdt, rng)
        bad.append(Bad(("a", "b"), r"columns|rows"))
    elif mut in ("out-ok", "out-bad"):
        res_dt = _matmul_expected(a, b).dtype if not on_gpu else a.dtype
        if mut == "out-ok":
            kw["out"] = np.full((n, m), 7, dtype=res_dt)
        else:
            kw["out"] = draw(st.sampled_from([np.zeros((n, m + 1), res_dt), np.zeros((n + 1, m), res_dt),
                                              [[0.0] * m] * n, np.zeros((n, m), np.complex64)]))
            if on_gpu:
                bad.append(Bad(("out",), r"out"))
            else:
                bugs.append("matmul-out")
    case = Case("matmul", Dims(n, m, k), {"a": a, "b": b, **kw}, bad, bugs)
    case.meta = dict(skinny=on_gpu)
    return case


def check_matmul_result(case: Case, got):
    a, b = case.ops["a"], case.ops["b"]
    want = _matmul_expected(a, b)
    assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype, \
        (getattr(got, "shape", None), getattr(got, "dtype", None), want.shape, want.dtype, case.describe())
    if "out" in case.ops:
        assert got is case.ops["out"]
    if got.dtype == np.bool_ or np.issubdtype(got.dtype, np.integer):
        np.testing.assert_array_equal(got, want)
        return
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))
    # and against float64 where the values are exact in the result dtype (small integers)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    exact = {np.dtype(np.float16): 2048, np.dtype(ml_dtypes.bfloat16): 256, np.dtype(np.float32): 2**24,
             np.dtype(np.float64): 2**53}.get(got.dtype)
    if exact is not None and (ref.size == 0 or np.abs(ref).max() <= exact):
        np.testing.assert_array_equal(got.astype(np.float64), ref)


# ---- Linear and Linear.from_float ---------------------------------------------------------------------------------------
@st.composite
def linear_case(draw):
    host_w = draw(st.booleans())
    dt = draw(st.sampled_from(HALF))
    dims = Dims(draw(st.integers(1, 16)), draw(st.integers(1, 200)), 8 * draw(st.integers(1, 40)))
    w = Op(lambda d: (d.m, d.k), dt, host_w)
    bias_kind = draw(st.sampled_from(["none", "m", "1m"]))
    bias = _bias_op(bias_kind, dt, host_w, draw)
    ctor = Case("Linear", dims, {"w": w, "bias": bias})
    for mut in draw(st.lists(st.sampled_from(["w-dtype", "w-ndim", "w-junk", "bias-shape", "bias-nm", "bias-dtype",
                                              "bias-junk", "bias-place"]), max_size=1)):
        if mut == "w-dtype":
            w.dtype = draw(st.sampled_from(NOT_HALF))
            ctor.bad.append(Bad(("w",), r"dtype"))
        elif mut == "w-ndim":
            _ndim_change(w, draw, w.shape)
            ctor.bad.append(Bad(("w",), r"2-D"))
        elif mut == "w-junk":
            _set_junk(w, draw(st.sampled_from(JUNK)))
            ctor.bad.append(Bad(("w",), r"must be a numpy array"))
        elif mut == "bias-shape":
            ctor.bad.append(_bias_shape_mutation(draw, ctor, dt))
            ctor.ops["bias"].host = host_w
        elif mut == "bias-nm":
            dims.n = max(dims.n, 2)
            ctor.ops["bias"] = Op(lambda d: (d.n, d.m), dt, host_w)
            ctor.bad.append(Bad(("bias",), r"\[M\]|match"))
        elif mut == "bias-dtype":
            ctor.ops["bias"] = Op(lambda d: (d.m,), draw(st.sampled_from([t for t in HALF + NOT_HALF if t != dt])), host_w)
            ctor.bad.append(Bad(("bias",), r"dtype"))
        elif mut == "bias-junk":
            op = Op(lambda d: (), dt, True)
            _set_junk(op, draw(st.sampled_from(JUNK_NOT_NONE)))
            ctor.ops["bias"] = op
            ctor.bad.append(Bad(("bias",), r"must be a numpy array"))
        elif mut == "bias-place":
            ctor.ops["bias"] = Op(lambda d: (d.m,), dt, not host_w)
            if host_w:
                ctor.bad.append(Bad(("w", "bias"), r"host.*device|device"))
            else:
                ctor.bugs.append("linear-host-bias")
    # the call (made only if construction succeeds: a device weight)
    host_x = draw(st.booleans())
    x = Op(lambda d: (d.n, d.k), dt, host_x)
    if not host_x:
        x.pad, x.offset = 8 * draw(st.integers(0, 2)), 16 * draw(st.integers(0, 2))
    out = Op(lambda d: (d.n, d.m), dt, host_x) if draw(st.booleans()) else None
    call = Case("Linear.__call__", dims, {"x": x, "out": out, "stream": draw(_stream_values(host_x))})
    for mut in draw(_mutations(["x-dtype", "x-ndim", "x-k", "x-n", "x-junk", "out", "x-layout", "x-device",
                                "stream"])):
        if mut == "x-dtype":
            x.dtype = draw(st.sampled_from([t for t in HALF + NOT_HALF if t != dt]))
            call.bad.append(Bad(("x", "weight"), r"dtype"))
        elif mut == "x-ndim":
            _ndim_change(x, draw, x.shape)
            call.bad.append(Bad(("x",), r"2-D"))
        elif mut == "x-k":
            x.shape = lambda d: (d.n, d.k + 8)
            call.bad.append(Bad(("x", "K", "in_features"), r"in_features|K="))
        elif mut == "x-n":
            n_bad = draw(st.sampled_from([0, GEMM_MAX_N + 1, 3 * GEMM_MAX_N]))
            x.shape = lambda d, nb=n_bad: (nb, d.k)
            call.bad.append(Bad(("N", "x"), r"N \(tokens\)"))
        elif mut == "x-junk":
            _set_junk(x, draw(st.sampled_from(JUNK)))
            call.bad.append(Bad(("x",), r"must be a numpy array"))
        elif mut == "out":
            call.ops["out"] = Op(lambda d: (d.n, d.m + 1), dt, host_x)
            call.bad.append(Bad(("out",), r"shape"))
        elif mut == "x-layout" and not host_x:
            b = _layout_mutation(draw, x, "x", 8, dims.n, dims.k)
            if b is not None:
                call.bad.append(b)
        elif mut == "x-device" and not host_x:
            x.device = 2
            call.bad.append(Bad(("x", "w", "bias"), r"same device"))
        elif mut == "stream" and not host_x:
            call.ops["stream"] = draw(st.sampled_from(BAD_STREAMS))
            call.bugs.append("late-stream")
    return ctor, call


@st.composite
def from_float_case(draw):
    dims = Dims(0, draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    w = Op(lambda d: (d.m, d.k), draw(st.sampled_from(["float32", "float16", "bfloat16", "float64"])), True)
    ops = {"w": w, "bias": None, "quantize": "fp8", "per_channel": draw(st.booleans()),
           "fp8_format": draw(st.sampled_from([None, *FP8, *SHORT.values()])),
           "activation": draw(st.sampled_from([None, "dynamic", 0.05, 2]))}
    case = Case("Linear.from_float", dims, ops)
    mut = draw(st.sampled_from(["none", "quantize", "w-ndim", "format", "activation"]))
    if mut == "quantize":
        case.ops["quantize"] = draw(st.sampled_from(["int8", "fp4", "", None, 8]))
        case.bad.append(Bad(("quantize",), r"fp8"))
    elif mut == "w-ndim":
        _ndim_change(w, draw, w.shape)
        case.bugs.append("late-from-float")
    elif mut == "format":
        case.ops["fp8_format"] = draw(st.sampled_from(["e5m2", "int8", 3]))
        case.bugs.append("late-from-float")
    elif mut == "activation":
        case.ops["activation"] = draw(st.sampled_from(["static", "abc", [0.1]]))
        case.bugs.append("late-from-float")
    return case


# ---- chaos: anything in any argument --------------------------------------------------------------------------------
@st.composite
def anything(draw):
    kind = draw(st.sampled_from(["junk", "numpy", "view", "view", "numpy"]))
    if kind == "junk":
        return draw(st.sampled_from(JUNK))
    nd = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 20)) for _ in range(nd))
    dt = draw(st.sampled_from(list(NP)))
    if kind == "numpy":
        return np.zeros(shape, NP[dt])
    shape = tuple(draw(st.sampled_from([s, -s, s * 8, 2**40 + s])) for s in shape)
    strides = tuple(draw(st.integers(-4, 2**20)) for _ in shape)
    return View(draw(st.sampled_from([0, 1, 2, 16, 0x1000, BASE_PTR + 6, 2**63 + 16])), shape, strides,
                dt if dt in ITEMSIZE else None, dt, draw(st.sampled_from([0, 0, 1, -1])), "fuzz", None,
                vendor=draw(st.sampled_from(["cuda", "cuda", "hip"])))


# ---- the package bugs this fuzz found, one deterministic repro each (strict xfail: a fix shows as XPASS) ----------
def dev(shape, dtype="bfloat16", strides=None, offset=0, device=0):
    return Op(lambda d, s=tuple(shape): s, dtype, False, pitch=None if strides is None else strides[0],
              inner=1 if strides is None else strides[-1], offset=offset,
              device=device).make(Dims(0, 0, 0), next(_REGIONS) % 2048)


def assert_names(exc_info, name):
    assert _word(name, str(exc_info.value)), f"{name!r} not named in {exc_info.value}"
