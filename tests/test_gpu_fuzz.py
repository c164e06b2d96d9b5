"""GPU: valid generated calls (the fuzz catalogue's generators without mutations) on real memory, against
float64."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jitgemm
from jitgemm.arrays import ITEMSIZE, View

from fuzz_catalogue import (Case, DERANDOMIZE, Dims, FP8, HALF, NP, Op, check_matmul_result, gemm_case, matmul_case,
                            quantize_case, scaled_case, takes_skinny)


# ---- GPU: valid generated calls on real memory, against float64 ---------------------------------------------------
# The same generators without mutations; fake pointers and streams are replaced by real buffers (same shapes,
# row pitches and pointer offsets) filled with random values, and the result is checked against float64.
GPU_SETTINGS = dict(deadline=None, database=None, derandomize=DERANDOMIZE, print_blob=True,
                    suppress_health_check=list(HealthCheck))


class _Real:
    """Builds real operands for a generated case and keeps their device memory alive."""

    def __init__(self, seed: int):
        from gpu_helpers import backend_device
        self.backend, self.device = backend_device()
        self.rng = np.random.default_rng(seed)
        self.owners = []
        self.outs = []   # (owner, view, offset_elems, rows, cols, pitch) of device outputs, to check their padding

    def values(self, name: str, shape, dtype: str, case: Case):
        rng, meta = self.rng, getattr(case, "meta", {})
        if dtype == "float32":  # scales
            return rng.uniform(0.01, 1.0, size=shape).astype(np.float32)
        if name in ("out",):
            return np.full(shape, np.nan, np.float32).astype(NP[dtype]) if dtype in HALF else np.zeros(shape, NP[dtype])
        if dtype in FP8 or dtype == "uint8":
            fmt = meta.get("fmt", "float8_e4m3fn")
            lim = 240.0 if fmt == "float8_e4m3fnuz" else 448.0
            v = np.clip(rng.standard_normal(shape) * 4, -lim, lim).astype(np.float32).astype(NP[fmt])
            return v if dtype != "uint8" else v.view(np.uint8)
        k = max(case.dims.k, 1)
        scale = (2.0 / k) ** 0.5 if name == "w" else 1.0
        return (rng.standard_normal(shape) * scale).astype(NP[dtype])

    def put(self, host: np.ndarray, op: Op, name: str):
        from jitgemm.device_array import DeviceArray
        shape, isz = host.shape, host.dtype.itemsize
        if host.ndim == 2:
            rows, cols = shape
            pitch = op.pitch if op.pitch is not None else cols * op.inner + op.pad
        else:
            rows, cols, pitch = 1, host.size, host.size
        off = op.offset // isz
        flat = np.zeros(off + max(rows * pitch, cols) + 1, dtype=host.dtype)
        if name == "out":
            flat.view(np.uint8)[:] = 0xFF  # NaN in both 16-bit formats: unwritten elements are caught
        for r in range(rows):
            flat[off + r * pitch: off + r * pitch + cols] = host.reshape(rows, cols)[r]
        owner = DeviceArray.from_numpy(self.backend, self.device, flat.view(np.uint8), "uint8")
        self.owners.append(owner)
        strides = (pitch, 1) if host.ndim == 2 else (1,) * host.ndim
        v = View(owner.ptr + op.offset, tuple(shape), strides, str(host.dtype) if str(host.dtype) in ITEMSIZE else None,
                 str(host.dtype), self.device, "device", owner, vendor=self.backend.name)
        if name == "out":
            self.outs.append((owner, flat, off, rows, cols, pitch))
        return v

    def build(self, case: Case):
        """(call args, host values) of a generated valid case."""
        args, vals = {}, {}
        for name, op in case.ops.items():
            if not isinstance(op, Op):
                args[name] = op
                vals[name] = op
                continue
            shape = tuple(op.shape(case.dims))
            host_vals = self.values(name, shape, op.dtype, case)
            vals[name] = host_vals
            if op.host:
                if op.inner != 1 and host_vals.ndim:
                    base = np.zeros(shape[:-1] + (shape[-1] * op.inner,), host_vals.dtype)
                    base[..., ::op.inner] = host_vals
                    args[name] = base[..., ::op.inner]
                else:
                    args[name] = host_vals.copy()
            else:
                args[name] = self.put(host_vals, op, name)
        if "stream" in args:
            args["stream"] = None  # generated handles are fake; the default stream
        return args, vals

    def result(self, r, args):
        """The call's result as numpy (out= when given; device results copied back)."""
        self.backend.synchronize(self.device)
        obj = args.get("out") if args.get("out") is not None else r
        if isinstance(obj, View):
            owner, flat, off, rows, cols, pitch = self.outs[-1]
            got = owner.to_numpy().view(flat.dtype)
            body = np.stack([got[off + i * pitch: off + i * pitch + cols] for i in range(rows)])
            mask = np.ones(got.shape, bool)
            for i in range(rows):
                mask[off + i * pitch: off + i * pitch + cols] = False
            assert (got.view(np.uint8).reshape(got.size, -1)[mask] == 0xFF).all(), "a write outside out's rows"
            return body
        if hasattr(obj, "to_numpy"):
            return obj.to_numpy()
        return np.asarray(obj)


def _gpu_fmt():
    from gpu_helpers import backend_device
    from jitgemm.kernels import fp8
    b, d = backend_device()
    return fp8.native_format(b.name, b.device_info(d).arch)


@pytest.mark.gpu
@settings(max_examples=150, **GPU_SETTINGS)
@given(case=gemm_case(mutate=False), seed=st.integers(0, 2**32 - 1))
def test_gpu_fuzz_valid_gemm_matches_float64(case, seed):
    from reference import assert_close
    real = _Real(seed)
    args, vals = real.build(case)
    r = jitgemm.gemm(args["x"], args["w"], args["bias"], out=args["out"], stream=args["stream"])
    got = real.result(r, args)
    dt = case.ops["x"].dtype
    assert_close(got, vals["x"], vals["w"], vals["bias"], dt)


def _scale_host(v, length):
    """A generated scale as the float64 reference sees it: a number or a vector of `length`."""
    if v is None:
        return 1.0
    if isinstance(v, np.ndarray):
        flat = v.astype(np.float64).reshape(-1)
        return float(flat[0]) if flat.size == 1 else flat
    return float(np.float32(v))


@pytest.mark.gpu
@settings(max_examples=200, **GPU_SETTINGS)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_gpu_fuzz_valid_scaled_gemm_matches_float64(data, seed):
    from fp8_reference import quantize, reference
    from jitgemm.bench.fp8_runner import LT_ACCUMULATION
    from reference import ulp
    fmt = _gpu_fmt()
    if fmt is None:
        pytest.skip("no fp8 on this GPU")
    case = data.draw(scaled_case(mutate=False, fmts=(fmt,)))
    real = _Real(seed)
    args, vals = real.build(case)
    r = jitgemm.scaled_gemm(args["x"], args["w"], args["scale_x"], args["scale_w"], args["bias"],
                            out_dtype=args["out_dtype"], fp8_format=args["fp8_format"], out=args["out"],
                            stream=args["stream"])
    got = real.result(r, args).astype(np.float64)
    m, d = case.meta, case.dims
    w8 = vals["w"].view(NP[fmt]) if vals["w"].dtype == np.uint8 else vals["w"]
    sx, sw = _scale_host(vals["scale_x"], d.n), _scale_host(vals["scale_w"], d.m)
    if m["mode"] == "w8a8":
        xq = vals["x"].view(NP[fmt]) if vals["x"].dtype == np.uint8 else vals["x"]
    elif m["mode"] == "w8q":
        xq = quantize(vals["x"], sx, fmt)
    else:
        xq = vals["x"]
    ref, mag = reference(xq, w8, sx, sw, vals["bias"])
    assert got.shape == ref.shape
    assert not np.isnan(got).any(), "NaN in output"
    # cuBLASLt's route (W8A8, scales it takes, N >= 16) sums each k-block at the fp8 tensor cores' reduced
    # precision: its bound (fp8_runner.LT_ACCUMULATION, measured) instead of fp32 accumulation's
    lt = jitgemm.explain(args["x"], args["w"], args["bias"], scale_x=args["scale_x"], scale_w=args["scale_w"],
                         fp8_format=args["fp8_format"]).startswith("vendor BLAS")
    tol = ulp(ref, m["odt"]) + max(d.k * 2.0 ** -23, LT_ACCUMULATION if lt else 0.0) * mag
    # large generated scales can overflow fp16: past the rounding threshold the answer is +-Inf (IEEE)
    limit = 65520.0 if m["odt"] == "float16" else 3.3961e38
    inf = np.abs(ref) - tol > limit
    fin = np.abs(ref) + tol < limit
    assert (got[inf] == np.sign(ref[inf]) * np.inf).all(), f"overflow did not give Inf -- {case.describe()}"
    err = np.abs(got[fin] - ref[fin])
    assert (err <= tol[fin]).all(), f"max err {err.max():.3g} ({int((err > tol[fin]).sum())} bad) -- {case.describe()}"


@pytest.mark.gpu
@settings(max_examples=80, **GPU_SETTINGS)
@given(case=quantize_case(mutate=False), seed=st.integers(0, 2**32 - 1))
def test_gpu_fuzz_valid_quantize_fp8_matches_reference(case, seed):
    from fp8_reference import FMT, MAX, quantize
    real = _Real(seed)
    args, vals = real.build(case)
    q, s = jitgemm.quantize_fp8(args["x"], args["per_token"], args["fp8_format"])
    real.backend.synchronize(real.device)
    fmt = {"e4m3fn": "float8_e4m3fn", "e4m3fnuz": "float8_e4m3fnuz"}.get(args["fp8_format"], args["fp8_format"]) \
        or _gpu_fmt() or "float8_e4m3fn"
    q = np.asarray(q.to_numpy() if hasattr(q, "to_numpy") else q).view(np.uint8)
    s = np.asarray(s.to_numpy() if hasattr(s, "to_numpy") else s).astype(np.float32)
    x32 = vals["x"].astype(np.float32)
    amax = np.abs(x32).max(axis=1) if args["per_token"] else np.abs(x32).max().reshape(1)
    want_s = np.where(amax > 0, amax / np.float32(MAX[fmt]), np.float32(1)).astype(np.float32)
    np.testing.assert_array_equal(s, want_s)
    want = quantize(x32, s if args["per_token"] else float(s[0]), fmt)
    np.testing.assert_array_equal(q, want.view(np.uint8))
    assert q.shape == x32.shape and FMT[fmt]


@pytest.mark.gpu
@settings(max_examples=60, **GPU_SETTINGS)
@given(host_w=st.booleans(), host_x=st.booleans(), dt=st.sampled_from(HALF), n=st.integers(1, 16),
       m=st.integers(1, 300), k8=st.integers(1, 64), bias_kind=st.sampled_from(["none", "m", "1m"]),
       seed=st.integers(0, 2**32 - 1))
def test_gpu_fuzz_valid_linear_matches_float64(host_w, host_x, dt, n, m, k8, bias_kind, seed):
    from reference import assert_close
    case = Case("Linear", Dims(n, m, 8 * k8), {"w": Op(lambda d: (d.m, d.k), dt, host_w),
                                                "bias": None if bias_kind == "none" else
                                                Op((lambda d: (d.m,)) if bias_kind == "m" else (lambda d: (1, d.m)),
                                                   dt, host_w),
                                                "x": Op(lambda d: (d.n, d.k), dt, host_x)})
    real = _Real(seed)
    args, vals = real.build(case)
    layer = jitgemm.Linear(args["w"], args["bias"])
    got = real.result(layer(args["x"]), {})
    assert_close(got, vals["x"], vals["w"], vals["bias"], dt)


@pytest.mark.gpu
@settings(max_examples=60, **GPU_SETTINGS)
@given(case=matmul_case())
def test_gpu_fuzz_matmul_numpy_semantics(case):
    """Valid numpy matmul calls: the skinny ones run on the GPU (float64 bound), the others match numpy."""
    from reference import assert_close
    if case.bad or case.bugs:
        return
    a, b = case.ops["a"], case.ops["b"]
    got = jitgemm.matmul(a, b, out=case.ops.get("out"))
    if takes_skinny(a, b) is not False:   # the kernel (or, for 16 < N, maybe the BLAS): the float64 bound
        assert_close(got, a, b.T, None, str(a.dtype))
    else:
        check_matmul_result(case, got)
