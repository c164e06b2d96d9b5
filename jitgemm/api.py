"""The 16-bit entry points (gemm, matmul, Linear, prepare, explain): their rules and cold paths.
Every device call runs through jitgemm.pipeline (signature -> cached entry -> launch); what is here
runs on a signature's first call, and whenever a per-call check fails, so errors are the same."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import config, dispatch, pipeline, targets, validate
from .arrays import SIXTEEN_BIT, View, as_view, dtype_name
from .device_array import DeviceArray
from .kernels import moderate, skinny
from .launch import BlasLaunch, KernelLaunch
from .runtime.backend import default_backend, get_backend
from .runtime.jit import get_kernel

SKINNY_DTYPES = SIXTEEN_BIT


# ---- the skinny 16-bit GEMM ------------------------------------------------------------------------------
@dataclass
class _Gemm:
    x: View
    w: View
    bias: View | None
    n: int
    m: int
    k: int
    dtype: str


def _check_gemm(x: Any, w: Any, bias: Any) -> _Gemm:
    xv, wv = as_view(x, "x"), as_view(w, "w")
    validate.require_2d(xv, "x", "N, K")
    validate.require_2d(wv, "w", "M, K")
    validate.require_dtype(xv, "x", SKINNY_DTYPES)
    validate.require_same_dtype(xv, "x", wv, "w")
    n, k = xv.shape
    m, kw = wv.shape
    if kw != k:
        raise ValueError(f"x and w must agree on K: x is [N, K] = {xv.shape}, w is [M, K] = {wv.shape}")
    if m < 1 or k < 1:
        raise ValueError(f"M and K must be >= 1, got M={m}, K={k}")
    rule = dispatch.skinny_supported(xv.dtype, n, k)
    if rule:
        raise ValueError(f"gemm does not support this shape: {rule} (x {xv.shape}, w {wv.shape}); "
                         f"use jitgemm.matmul for any shape")
    validate.require_int32_dims(M=m, K=k)
    return _Gemm(xv, wv, validate.optional_bias(bias, n, m, xv.dtype), n, m, k, xv.dtype)


def _plan(backend, device: int, g: _Gemm) -> dispatch.Plan:
    info = backend.device_info(device)
    return _plan_cached(backend.name, info.arch, info.multiprocessors, g.dtype, g.n, g.m, g.k, info.l2_bytes,
                        info.shared_per_block, g.bias is not None, dispatch.settings_key(), info.name)


@functools.lru_cache(maxsize=4096)
def _plan_cached(vendor, arch, cus, dtype, n, m, k, l2, shared_limit, bias, _settings, device="") -> dispatch.Plan:
    # plans depend on the shape, the device (its arch, size and name: which measured table), whether there is
    # a bias and the settings (environment, and the user's tuning files: a new tuning starts a new generation)
    return dispatch.plan_gemm(vendor, arch, cus, dtype, n, m, k, l2, shared_limit, bias, device=device)


def _layout(g: _Gemm, x: View, w: View, bias: View | None, out: View | None) -> tuple:
    """(ldx, ldw, ldo, bias_rows, bias_ld): the row pitches, checked against the layout rules of
    device operands (16-byte vectors of x and w, unit inner strides)."""
    ldx = validate.require_rows(x, "x", g.k, 8)
    ldw = validate.require_rows(w, "w", g.k, 8)
    ldo = validate.require_out_rows(out, "out") if out is not None else g.m
    bias_rows, bias_ld = validate.bias_layout(bias, g.n, g.m, g.dtype) if bias is not None else (0, 0)
    return ldx, ldw, ldo, bias_rows, bias_ld


def _gemm_launch(backend, device: int, plan: dispatch.Plan, g: _Gemm, lay: tuple):
    """The plan's launch, its pointers written per call in gemm's order (x, w, bias, out)."""
    ldx, ldw, ldo, bias_rows, bias_ld = lay
    if plan.family == "blas":
        return BlasLaunch(backend, device, g.dtype, g.n, g.m, g.k, ldx, ldw, ldo)
    moderate_plan = plan.family == "moderate"
    kinds = moderate.ARG_KINDS if moderate_plan else skinny.ARG_KINDS
    last = plan.extra["kb"] if moderate_plan else plan.extra.get("prefetch_bytes", plan.extra.get("lds_chunk"))
    args = [0, ldo, 0, ldx, 0, ldw, 0, bias_ld, bias_rows, g.n, g.m, g.k, last] + ([0, 0] if moderate_plan else [])
    ws_slots = (13, 14) if moderate_plan and plan.extra["ws_floats"] else None
    kernel = get_kernel(plan.instance, backend, device, kinds)
    return KernelLaunch(backend, device, kernel, plan, args, (2, 4, 6 if g.bias is not None else None, 0), ws_slots)


#: JITGEMM_AUTOTUNE's module (maybe_tune, status), installed by jitgemm.autotune when the package is imported:
#: it runs the tuner, which calls this module, so this module does not import it
AUTOTUNE = None

#: per-call checks of gemm's values (x, w, bias, out): 16-byte vectors, 2-byte elements
_GEMM_CHECKS = (16, 16, 2, 2)


def _gemm_cold(key, x: Any, w: Any, bias: Any, out: Any, stream: Any, g: _Gemm | None = None,
               ov: View | None = None, out_shape: tuple | None = None):
    """gemm's cold path: every rule, placement, plan, a cached entry for the signature, the call.
    g / ov: the operands already adapted and checked (Linear, linear); out_shape: the shape of outputs
    it makes ([N, M] unless linear's leading dimensions)."""
    validate.require_stream_type(stream)
    g = g or _check_gemm(x, w, bias)
    if ov is None and out is not None:
        ov = validate.out_view(out, g.n, g.m, g.dtype)
    views = [("x", g.x), ("w", g.w)] + ([("bias", g.bias)] if g.bias is not None else [])
    if ov is not None:
        views.append(("out", ov))
    backend, device, host = pipeline.placement(views)
    if host:
        return _run_host(backend, device, g, ov, out)
    lay = _layout(g, g.x, g.w, g.bias, ov)  # before anything is planned or allocated
    stream_rule = pipeline.current_stream_rule([g.x, ov or g.x, g.w], device)
    if config.settings().autotune and AUTOTUNE:  # JITGEMM_AUTOTUNE=1: an untuned shape is tuned first (never in a capture)
        AUTOTUNE.maybe_tune(backend, device, g.dtype, g.n, g.m, g.k,
                            stream_rule() if stream is None else validate.stream_handle(stream))
    plan = _plan(backend, device, g)
    entry = pipeline.Entry(_gemm_launch(backend, device, plan, g, lay), _GEMM_CHECKS, stream_rule,
                           pipeline.output_factory(g.x, backend, device, out_shape or (g.n, g.m), g.dtype),
                           pipeline.extents([g.x, g.w, g.bias, ov]))
    pipeline.store(key, entry)
    values = [g.x.ptr, g.w.ptr, g.bias.ptr if g.bias is not None else 0, ov.ptr if ov is not None else 0]
    return entry.run((x, w, bias, out), values, stream)


def _run_host(backend, device, g: _Gemm, ov: View | None, out: Any):
    """numpy in, numpy out: upload, launch on the default stream, download (synchronous)."""
    dx = DeviceArray.from_numpy(backend, device, g.x.obj, g.dtype)
    dw = DeviceArray.from_numpy(backend, device, g.w.obj, g.dtype)
    db = DeviceArray.from_numpy(backend, device, g.bias.obj, g.dtype) if g.bias is not None else None
    dout = DeviceArray(backend, device, (g.n, g.m), g.dtype)
    _launch_once(backend, device, g, dx.view(), dw.view(), db.view() if db else None, dout.view())
    backend.synchronize(device)
    return pipeline.deliver(dout.to_numpy(), out)


def _launch_once(backend, device, g: _Gemm, x: View, w: View, bias: View | None, out: View) -> None:
    """One launch on the default stream of device operands jitgemm made itself (the host paths)."""
    g = _Gemm(x, w, bias, g.n, g.m, g.k, g.dtype)
    launch = _gemm_launch(backend, device, _plan(backend, device, g), g, _layout(g, x, w, bias, out))
    launch.run(0, [x.ptr, w.ptr, bias.ptr if bias is not None else 0, out.ptr])


def gemm(x: Any, w: Any, bias: Any = None, *, out: Any = None, stream: Any = None):
    """out[N, M] = x[N, K] @ w[M, K].T (+ bias), fp16/bf16, N = 1..128, fp32 accumulation.

    x, w, bias, out: numpy (copied to the GPU and back, synchronously), CuPy (bf16: jitgemm.CupyBf16),
    torch tensors (read directly; torch is never imported), or any object with __cuda_array_interface__ /
    __dlpack__. bias: [M], [1, M] or [N, M] in the input dtype. A device out must be writable and share no
    memory with the inputs (refused: the kernel would read them while writing). Device calls do not
    synchronise; stream=None
    is the current stream of the operands' library (torch's or CuPy's), else the stream x's
    __cuda_array_interface__ names, else the default stream.
    The dispatcher picks the skinny or moderate-N kernel, or cuBLAS for a bias-free N > 16 shape
    where it measured cuBLAS faster (JITGEMM_BLAS=0: never); `explain` says which and why."""
    return pipeline.call(_GEMM, (x, w, bias, out), stream, _gemm_cold)


def linear(x: Any, w: Any, bias: Any = None, *, out: Any = None, stream: Any = None):
    """torch's F.linear semantics: y[..., M] = x[..., K] @ w[M, K].T (+ bias[M]). x's leading
    dimensions (any number, or none for one token [K]) flatten to gemm's N = 1..128 tokens, so they must
    be laid out as rows of one pitch (a contiguous tensor, or a slice of rows of one). Otherwise gemm's
    rules, output kinds and streams; `out` has the shape [..., M]."""
    return pipeline.call(_LINEAR_ND, (x, w, bias, out), stream, _linear_cold)


def _linear_cold(key, x: Any, w: Any, bias: Any, out: Any, stream: Any):
    xv = as_view(x, "x")
    if xv.ndim < 1:
        raise ValueError(f"x must be [..., K] with at least one dimension, got shape {xv.shape}")
    rows = _as_rows(xv, "x")
    g = _check_gemm(rows, w, bias)
    shape = (*xv.shape[:-1], g.m)
    ov = None
    if out is not None:
        ov = as_view(out, "out")
        if ov.shape != shape:
            raise ValueError(f"out must have shape [..., M] = {shape}, got {ov.shape}")
        ov = validate.out_view(_as_rows(ov, "out"), g.n, g.m, g.dtype)
    if xv.device is None:  # numpy: gemm's copying path on the 2-D rows
        y = gemm(np.reshape(np.asarray(x), (g.n, g.k)), w, bias).reshape(shape)
        return pipeline.deliver(y, out)
    return _gemm_cold(key, x, w, bias, out, stream, g, ov, shape)


def _as_rows(v: View, arg: str) -> View:
    """[..., C] as a [rows, C] View of the same memory: the leading dimensions must collapse into one of
    a single pitch (dimensions of size 1 do not count)."""
    if v.ndim == 2:
        return v
    lead = [(d, s) for d, s in zip(v.shape[:-1], v.strides[:-1]) if d != 1]
    for (_, s), (d2, s2) in zip(lead, lead[1:]):
        if s != s2 * d2:
            raise ValueError(f"{arg}'s leading dimensions {v.shape[:-1]} (element strides {v.strides[:-1]}) do not "
                             f"flatten to rows of one pitch; pass a contiguous array")
    n = math.prod(v.shape[:-1])
    pitch = lead[-1][1] if lead else max(v.shape[-1], 1)
    inner = v.strides[-1] if v.ndim else 1
    return View(v.ptr, (n, v.shape[-1]), (pitch, inner), v.dtype, v.raw_dtype, v.device, v.kind, v.obj,
                v.vendor, v.keep, v.readonly)


_GEMM, _MATMUL, _LINEAR, _LINEAR_ND = ("gemm",), ("matmul",), ("Linear",), ("linear",)
#: linear's tag in the pipeline's keys: jitgemm.torch's routed layers look their cached entries up under it
LINEAR_TAG = _LINEAR_ND


def explain(x: Any, w: Any = None, bias: Any = None, *, scale_x: Any = None, scale_w: Any = None,
            fp8_format: str | None = None, arch: str | None = None, sms: int | None = None) -> str:
    """Which kernel and config `gemm` / `scaled_gemm` / `matmul` would run for these operands, and why.
    An fp8 (or uint8 + fp8_format) weight is explained as scaled_gemm would run it; a Q4Device as w4_gemm, a
    Q4Experts (x then [G, N, K]) as w4_experts_gemm.

    arch: explain for that GPU instead of this machine's ('sm_90a', 'gfx942', ...; no GPU needed), with
    `sms` multiprocessors/CUs (default: the arch's usual part, named in the answer). The operands can
    then also be given as shapes: explain((n, m, k, dtype), arch="sm_90a")."""
    target = targets.profile(arch, sms) if arch is not None else None
    if isinstance(x, tuple) and w is None:
        if target is None:
            raise ValueError("explain((n, m, k, dtype)) needs arch= (shapes alone name no device)")
        x, w = targets.shape_operands(x)
    if w is None:
        raise TypeError("explain needs w (the weight [M, K]), or x as a (n, m, k, dtype) tuple with arch=")
    from .w4gemm import Q4Device, explain_w4
    from .w4experts import Q4Experts, explain_w4_experts
    if isinstance(w, Q4Device):
        return explain_w4(x, w, target)
    if isinstance(w, Q4Experts):
        return explain_w4_experts(x, w, target)
    xv, wv = as_view(x, "x"), as_view(w, "w")  # not arrays at all: a TypeError, like every entry's
    if wv.dtype in ("float8_e4m3fn", "float8_e4m3fnuz", "uint8"):
        from . import scaled
        try:
            s = scaled._check(xv, wv, scale_x, scale_w, bias, None, fp8_format)
            if target is not None:
                return target.explain(scaled.plan_for(target.vendor, target.arch, target.sms, s, lt_present=True))
            backend, device, _ = pipeline.placement([("x", s.x), ("w", s.w)])
            return str(scaled._plan(backend, device, s))
        except (ValueError, TypeError) as e:
            return f"scaled_gemm would refuse this: {e}"
    try:
        g = _check_gemm(xv, wv, bias)
    except (ValueError, TypeError) as e:
        return f"not the skinny family ({e}); matmul would use the vendor BLAS"
    if target is not None:
        return target.explain(dispatch.plan_gemm(target.vendor, target.arch, target.sms, g.dtype, g.n, g.m, g.k,
                                                   target.l2_bytes, target.shared_per_block, g.bias is not None,
                                                   blas_present=True, device=target.part))
    try:
        backend, device, _ = pipeline.placement([("x", g.x), ("w", g.w)])
    except ValueError as e:  # operands no call could take together (devices, extents): say so, like the others
        return f"gemm would refuse this: {e}"
    why = str(_plan(backend, device, g))
    if AUTOTUNE:
        why += AUTOTUNE.status(backend.device_info(device).name, g.n, g.m, g.k)
    return why


# ---- numpy-style matmul ------------------------------------------------------------------------------
def matmul(a: Any, b: Any, *, out: Any = None, stream: Any = None):
    """numpy `a @ b` for 2-D inputs. Decode cases (a with 1..128 rows, b a transposed row-major
    weight, i.e. b = w.T) run gemm; everything else goes to the vendor BLAS (cupy) or numpy."""
    return pipeline.call(_MATMUL, (a, b, None, out), stream, _matmul_cold)


def _matmul_cold(key, a: Any, b: Any, _bias: None, out: Any, stream: Any):
    """matmul's cold path: gemm's (cached under matmul's signature: w = b.T has b's pointer) where
    b is a transposed weight and gemm pays, else the array library's BLAS (never cached)."""
    av, bv = as_view(a, "a"), as_view(b, "b")
    validate.require_2d(av, "a", "N, K")
    validate.require_2d(bv, "b", "K, M")
    if av.shape[1] != bv.shape[0]:
        raise ValueError(f"matmul: a is {av.shape} and b is {bv.shape}; a's columns must equal b's rows")
    w = _transposed(b, bv)
    if w is not None and av.dtype in SKINNY_DTYPES and bv.dtype == av.dtype \
            and dispatch.skinny_supported(av.dtype, av.shape[0], av.shape[1]) is None \
            and _skinny_pays(av, bv):
        return _gemm_cold(key, a, w, None, out, stream)
    validate.require_stream_type(stream)
    return _blas(a, b, av, out)


def _skinny_pays(av: View, bv: View) -> bool:
    """Whether this matmul goes through gemm (whose dispatcher picks the skinny or moderate kernel, or
    cuBLAS where the measured table says cuBLAS is faster) rather than straight to the array library's
    BLAS. N <= 16: always (the skinny family beat cuBLAS on the decode suite). N = 17..128: on NVIDIA
    and for host (numpy) operands, yes; on AMD nothing was measured for N > 16 yet, so the vendor BLAS
    (through CuPy) takes device operands."""
    n = av.shape[0]
    if n <= skinny.MAX_N:
        return True
    if n > skinny.MAX_N_MODERATE:
        return False
    return av.device is None or (av.vendor or bv.vendor or "cuda") == "cuda"


def _transposed(b: Any, bv: View):
    """w with w.T == b when b is a column-major view of a row-major weight, else None."""
    if bv.strides[0] == 1 or bv.shape[0] == 1:
        try:
            return b.T
        except AttributeError:
            return None
    return None


def _blas(a: Any, b: Any, av: View, out: Any):
    if av.device is None:
        a, b = np.asarray(a), np.asarray(b)
        if av.dtype in SKINNY_DTYPES:  # 16-bit: fp32 accumulation and one rounding, like the kernels
            r = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
        else:
            r = np.matmul(a, b)  # numpy's own promotion rules for everything else
        if out is not None:
            ov = as_view(out, "out")
            validate.require_writable(ov, "out")
            if ov.shape != r.shape or (ov.dtype or ov.raw_dtype) != (dtype_name(r.dtype) or str(r.dtype)):
                raise ValueError(f"out must have shape {r.shape} and dtype {r.dtype}, got {ov.shape} {ov.raw_dtype}")
        return pipeline.deliver(r, out)
    if av.kind == "cupy":
        import cupy
        return cupy.matmul(a, b, out=out)
    if hasattr(a, "__matmul__"):
        return pipeline.deliver(a @ b, out)
    raise TypeError(f"matmul: no BLAS path for {type(a).__name__}; pass CuPy or numpy arrays")


# ---- a layer holding its weight on the device ---------------------------------------------------------
class Linear:
    """y = x @ w.T + bias with w [M, K] kept on the device (numpy weights are uploaded once)."""

    def __init__(self, w: Any, bias: Any = None, *, device: int | None = None):
        wv = as_view(w, "w")
        validate.require_2d(wv, "w", "M, K")
        validate.require_dtype(wv, "w", SKINNY_DTYPES)
        self.out_features, self.in_features = wv.shape
        self.dtype = wv.dtype
        rule = dispatch.skinny_supported(self.dtype, 1, self.in_features)
        if rule:  # the same rule gemm gives, before any upload
            raise ValueError(f"Linear: {rule} (w {wv.shape})")
        bv = as_view(bias, "bias") if bias is not None else None
        if bv is not None:
            validate.bias_layout(bv, 1, self.out_features, self.dtype)
            if bv.ndim == 2 and bv.shape[0] != 1:
                raise ValueError(f"Linear bias must be [M] or [1, M], got {bv.shape}")
        if wv.device is None:
            if bv is not None and bv.device is not None:
                raise ValueError("Linear: w is a host (numpy) array but bias is on a device; pass both from one place")
            backend = default_backend()
            dev = backend.current_device() if device is None else device
            self._w_owner = DeviceArray.from_numpy(backend, dev, np.asarray(w), wv.dtype)
            self.weight = self._w_owner.view()
            self._bias_owner = None
            if bias is not None:
                self._bias_owner = DeviceArray.from_numpy(backend, dev, np.asarray(bias).reshape(-1), wv.dtype)
            self.bias = self._bias_owner.view() if self._bias_owner is not None else None
        else:
            if bv is not None and bv.device is None:
                raise ValueError("Linear: w is on a device but bias is a host (numpy) array; pass the bias "
                                 "on the same device (it is read by the kernel)")
            self._w_owner, self.weight, self.bias = w, wv, bv
        # what gemm gets: the caller's own objects where they are device arrays (their hot-path adapter)
        self._w = w if wv.device is not None else self.weight
        self._b = (bias if bv is not None and bv.device is not None else self.bias) if bias is not None else None

    @staticmethod
    def from_quantized(w: Any, bias: Any = None, *, device: int | None = None):
        """A layer with 4-bit weights: a jitgemm.quant4.Q4Weight (quant4.from_gguf, from_gptq or from_awq
        make one from a checkpoint's tensors) kept on the device in the kernels' layout; calling it runs
        w4_gemm. bias: None or a 1-D fp16/bf16 host array [M], in the tokens' dtype."""
        from .w4gemm import Q4Linear
        return Q4Linear(w, bias, device=device)

    @staticmethod
    def from_float(w: Any, bias: Any = None, *, quantize: str = "fp8", per_channel: bool = True,
                   fp8_format: str | None = None, activation=None, device: int | None = None):
        """A layer with e4m3 weights quantized on the host from a float/16-bit numpy weight (per
        output channel or one scale). activation: None (W8A16), a static float scale, or 'dynamic'."""
        if quantize != "fp8":
            raise ValueError(f"quantize must be 'fp8', got {quantize!r}")
        from . import scaled
        from .kernels import fp8
        validate.require_str_option(fp8_format, "fp8_format", "'e4m3fn' or 'e4m3fnuz'")
        fmt_asked = scaled._format_name(fp8_format)
        wa = np.asarray(w)
        if wa.ndim != 2 or wa.shape[0] < 1 or wa.shape[1] < 1 or wa.shape[1] % 16:
            raise ValueError(f"w must be 2-D [M, K] with K a positive multiple of 16, got shape {wa.shape}")
        if activation not in (None, "dynamic") and not isinstance(activation, (int, float)):
            raise ValueError(f"activation must be None, 'dynamic' or a float scale, got {activation!r}")
        backend = default_backend()
        dev = backend.current_device() if device is None else device
        fmt = fmt_asked or fp8.native_format(backend.name, backend.device_info(dev).arch)
        if fmt is None:
            raise ValueError(f"{backend.device_info(dev).arch} has no fp8 support")
        w8, sw = scaled.quantize_weight(np.asarray(w), per_channel, fmt)
        owners = [DeviceArray.from_numpy(backend, dev, w8.view(np.uint8), "uint8"),
                  DeviceArray.from_numpy(backend, dev, sw, "float32")]
        w8v = owners[0].view()
        w8v.dtype = w8v.raw_dtype = fmt
        bv = None
        if bias is not None:
            b = np.asarray(bias)
            owners.append(DeviceArray.from_numpy(backend, dev, b.reshape(-1), as_view(b, "bias").dtype))
            bv = owners[-1].view()
        layer = scaled.Fp8Linear(w8v, owners[1].view() if per_channel else float(sw[0]), bv,
                                 activation=activation, fp8_format=fmt)
        layer._owners = owners
        return layer

    def __call__(self, x: Any, *, out: Any = None, stream: Any = None):
        return pipeline.call(_LINEAR, (x, self._w, self._b, out), stream, self._cold)

    def _cold(self, key, x: Any, w: Any, bias: Any, out: Any, stream: Any):
        validate.require_stream_type(stream)
        xv = as_view(x, "x")
        validate.require_2d(xv, "x", "N, K")
        validate.require_same_dtype(xv, "x", self.weight, "weight")
        if xv.shape[1] != self.in_features:
            raise ValueError(f"x has K={xv.shape[1]} but this Linear expects in_features={self.in_features}")
        if xv.device is None:
            return self._call_host(x, xv, out)
        return _gemm_cold(key, x, w, bias, out, stream, _check_gemm(xv, self.weight, self.bias))

    def _call_host(self, x, xv: View, out):
        n, k = xv.shape
        rule = dispatch.skinny_supported(self.dtype, n, k)
        if rule:
            raise ValueError(f"Linear: {rule}")
        if out is not None:
            validate.out_view(out, n, self.out_features, self.dtype)
        backend, device = get_backend(self.weight.vendor), self.weight.device
        dx = DeviceArray.from_numpy(backend, device, x, self.dtype)
        g = _Gemm(dx.view(), self.weight, self.bias, n, self.out_features, k, self.dtype)
        dout = DeviceArray(backend, device, (n, self.out_features), self.dtype)
        _launch_once(backend, device, g, g.x, g.w, g.bias, dout.view())
        backend.synchronize(device)
        return pipeline.deliver(dout.to_numpy(), out)


# ---- a pre-planned call for hot loops and graph capture ----------------------------------------------
Prepared = pipeline.Prepared


def prepare(x: Any, w: Any, bias: Any = None, *, out: Any) -> Prepared:
    """Validate and plan once; returns a Prepared whose launch(stream) only enqueues the kernel
    (one driver call): decode loops, benchmarks, CUDA graph capture."""
    g = _check_gemm(x, w, bias)
    ov = validate.out_view(out, g.n, g.m, g.dtype)
    views = [("x", g.x), ("w", g.w), ("out", ov)] + ([("bias", g.bias)] if g.bias is not None else [])
    if any(v.device is None for _, v in views):
        raise ValueError("prepare needs device arrays (numpy operands are copied per call; use gemm)")
    backend, device, _ = pipeline.placement(views)
    lay = _layout(g, g.x, g.w, g.bias, ov)  # the layout rules: before compiling
    plan = _plan(backend, device, g)
    launch = _gemm_launch(backend, device, plan, g, lay)
    values = [g.x.ptr, g.w.ptr, g.bias.ptr if g.bias is not None else 0, ov.ptr]
    return Prepared(plan, launch, values, (x, w, bias, out))
