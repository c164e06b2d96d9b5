"""Public entry points: validate -> dispatch -> launch."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dispatch, validate, workspace
from .arrays import BF16, F16, View, as_view, dtype_name
from .device_array import DeviceArray
from .kernels import moderate, skinny
from .runtime import blas
from .runtime.backend import default_backend, get_backend
from .runtime.jit import get_kernel

SKINNY_DTYPES = (F16, BF16)


# ---- placement: which backend/device, which stream ---------------------------------------------------
def _placement(views: list[tuple[str, View]]):
    for _, v in views:
        if v.device == -1:  # __cuda_array_interface__ without a device attribute: ask the driver
            v.device = get_backend(v.vendor or "cuda").device_of_pointer(v.ptr)
    vendor, device = validate.require_same_device(views)
    if vendor is None:
        backend = default_backend()
        return backend, backend.current_device(), True
    return get_backend(vendor), device, False


def _stream_handle(stream: Any, views: list[tuple[str, View]]) -> int:
    if stream is None:
        if any(v.kind == "cupy" for _, v in views):
            import cupy
            return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("ptr", "cuda_stream", "handle"):
        h = getattr(stream, attr, None)
        if isinstance(h, int):
            return h
    raise TypeError(f"stream must be None, an int handle, or an object with .ptr / .cuda_stream "
                    f"(a CuPy or torch stream); got {type(stream).__name__}")


def _new_output(like: View, backend, device: int, shape: tuple[int, int], dtype: str):
    """An output of the same kind as `like` (CuPy stays CuPy, torch stays torch)."""
    if like.kind == "cupy":
        import cupy
        with cupy.cuda.Device(device):
            return cupy.empty(shape, dtype=like.obj.dtype)
    if hasattr(like.obj, "new_empty"):
        return like.obj.new_empty(shape)  # torch tensors, without importing torch
    return DeviceArray(backend, device, shape, dtype)


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
    bv = as_view(bias, "bias") if bias is not None else None
    if bv is not None:
        validate.bias_layout(bv, n, m, xv.dtype)
        validate.require_aligned(bv, "bias", 2)
    return _Gemm(xv, wv, bv, n, m, k, xv.dtype)


def _plan(backend, device: int, g: _Gemm) -> dispatch.Plan:
    info = backend.device_info(device)
    return _plan_cached(backend.name, info.arch, info.multiprocessors, g.dtype, g.n, g.m, g.k, info.l2_bytes,
                        info.shared_per_block, g.bias is not None, dispatch.settings_key())


@functools.lru_cache(maxsize=4096)
def _plan_cached(vendor, arch, cus, dtype, n, m, k, l2, shared_limit, bias, _settings) -> dispatch.Plan:
    # plans depend on the shape, the device, whether there is a bias and the settings (environment) only
    return dispatch.plan_skinny(vendor, arch, cus, dtype, n, m, k, l2, shared_limit, bias)


def _arg_kinds(backend, plan: dispatch.Plan) -> tuple[str, ...]:
    if plan.family == "moderate":
        return moderate.ARG_KINDS
    return skinny.ARG_KINDS_NV if backend.name == "cuda" else skinny.ARG_KINDS_AMD


def _fixed_args(plan: dispatch.Plan, g: _Gemm, x: View, w: View, bias: View | None, out: View) -> list:
    """A launch's arguments, less the split-K workspace that moderate plans take per stream."""
    ldx = validate.require_rows(x, "x", g.k, 8)
    ldw = validate.require_rows(w, "w", g.k, 8)
    ldo = validate.require_out_rows(out, "out")
    if bias is not None:
        bias_rows, bias_ld = validate.bias_layout(bias, g.n, g.m, g.dtype)
        bptr = bias.ptr
    else:
        bias_rows, bias_ld, bptr = 0, 0, 0
    if plan.family == "blas":
        return [g.n, g.m, g.k, x.ptr, ldx, w.ptr, ldw, out.ptr, ldo]
    last = plan.extra["kb"] if plan.family == "moderate" else plan.extra["kc"]
    return [out.ptr, ldo, x.ptr, ldx, w.ptr, ldw, bptr, bias_ld, bias_rows, g.n, g.m, g.k, last]


def _launch_skinny(backend, device, plan: dispatch.Plan, g: _Gemm, x: View, w: View, bias: View | None,
                   out: View, stream: int) -> None:
    args = _fixed_args(plan, g, x, w, bias, out)
    if plan.family == "blas":
        blas.gemm(backend, device, stream, g.dtype, *args)
        return
    if plan.family == "moderate":
        args += _workspace_ptrs(backend, device, plan, stream)
    kern = get_kernel(plan.instance, backend, device, _arg_kinds(backend, plan))
    kern.launch(plan.grid, plan.block, plan.shared, stream, *args, pdl=plan.extra["pdl"])


def _workspace_ptrs(backend, device: int, plan: dispatch.Plan, stream: int) -> tuple[int, int]:
    """(partials, counters) of this stream's split-K workspace, or (0, 0) when the plan needs none."""
    if not plan.extra["ws_floats"]:
        return 0, 0
    ws = workspace.get(backend, device, stream, plan.extra["ws_floats"], plan.extra["tiles"])
    return ws.partials.ptr, ws.counters.ptr


def _check_out(out: Any, n: int, m: int, dtype: str) -> View:
    ov = as_view(out, "out")
    validate.require_2d(ov, "out", "N, M")
    if ov.shape != (n, m):
        raise ValueError(f"out must have shape [N, M] = {(n, m)}, got {ov.shape}")
    if ov.dtype != dtype:
        raise TypeError(f"out dtype must be {dtype} (the input dtype), got {ov.raw_dtype}")
    return ov


def _run(g: _Gemm, out: Any, stream: Any, plan_fn=None):
    validate.require_stream_type(stream)
    views = [("x", g.x), ("w", g.w)] + ([("bias", g.bias)] if g.bias is not None else [])
    ov = _check_out(out, g.n, g.m, g.dtype) if out is not None else None
    if ov is not None:
        views.append(("out", ov))
    backend, device, host = _placement(views)
    if not host:  # layout rules of device operands, before anything is planned or allocated
        validate.require_rows(g.x, "x", g.k, 8)
        validate.require_rows(g.w, "w", g.k, 8)
        if ov is not None:
            validate.require_out_rows(ov, "out")
    plan = (plan_fn or _plan)(backend, device, g)
    if host:
        return _run_host(backend, device, plan, g, ov, out)
    s = _stream_handle(stream, views)
    result = out if out is not None else _new_output(g.x, backend, device, (g.n, g.m), g.dtype)
    ov = ov or as_view(result, "out")
    _launch_skinny(backend, device, plan, g, g.x, g.w, g.bias, ov, s)
    return result


def deliver(result, out: Any):
    """A result computed on the host path: written into `out` (and `out` returned) when given."""
    if out is None:
        return result
    out[...] = result
    return out


def _run_host(backend, device, plan, g: _Gemm, ov: View | None, out: Any):
    """numpy in, numpy out: upload, launch on the default stream, download (synchronous)."""
    dx = DeviceArray.from_numpy(backend, device, g.x.obj, g.dtype)
    dw = DeviceArray.from_numpy(backend, device, g.w.obj, g.dtype)
    db = DeviceArray.from_numpy(backend, device, g.bias.obj, g.dtype) if g.bias is not None else None
    dout = DeviceArray(backend, device, (g.n, g.m), g.dtype)
    _launch_skinny(backend, device, plan, g, dx.view(), dw.view(), db.view() if db else None, dout.view(), 0)
    backend.synchronize(device)
    return deliver(dout.to_numpy(), out)


def gemm(x: Any, w: Any, bias: Any = None, *, out: Any = None, stream: Any = None):
    """out[N, M] = x[N, K] @ w[M, K].T (+ bias), fp16/bf16, N = 1..128, fp32 accumulation.

    x, w, bias, out: numpy (copied to the GPU and back, synchronously), CuPy, or any object with
    __cuda_array_interface__ / __dlpack__ (torch tensors work; torch is never imported).
    bias: [M], [1, M] or [N, M] in the input dtype. Device calls do not synchronise.
    The dispatcher picks the skinny or moderate-N kernel, or cuBLAS for a bias-free N > 16 shape
    where it measured cuBLAS faster (JITGEMM_BLAS=0: never); `explain` says which and why."""
    return _run(_check_gemm(x, w, bias), out, stream)


def explain(x: Any, w: Any, bias: Any = None, *, scale_x: Any = None, scale_w: Any = None,
            fp8_format: str | None = None) -> str:
    """Which kernel and config `gemm` / `scaled_gemm` / `matmul` would run for these operands, and why.
    An fp8 (or uint8 + fp8_format) weight is explained as scaled_gemm would run it."""
    wv = as_view(w, "w")
    if wv.dtype in ("float8_e4m3fn", "float8_e4m3fnuz", "uint8"):
        from . import scaled
        try:
            s = scaled._check(x, w, scale_x, scale_w, bias, None, fp8_format)
            views = [("x", s.x), ("w", s.w)]
            backend, device, _ = _placement(views)
            return str(scaled._plan(backend, device, s))
        except (ValueError, TypeError) as e:
            return f"scaled_gemm would refuse this: {e}"
    try:
        g = _check_gemm(x, w, bias)
    except (ValueError, TypeError) as e:
        return f"not the skinny family ({e}); matmul would use the vendor BLAS"
    views = [("x", g.x), ("w", g.w)]
    backend, device, _ = _placement(views)
    return str(_plan(backend, device, g))


# ---- numpy-style matmul ------------------------------------------------------------------------------
def matmul(a: Any, b: Any, *, out: Any = None, stream: Any = None):
    """numpy `a @ b` for 2-D inputs. Skinny cases (a with 1..16 rows, b a transposed row-major
    weight, i.e. b = w.T) run jitgemm's kernel; everything else goes to the vendor BLAS (cupy)."""
    av, bv = as_view(a, "a"), as_view(b, "b")
    validate.require_2d(av, "a", "N, K")
    validate.require_2d(bv, "b", "K, M")
    if av.shape[1] != bv.shape[0]:
        raise ValueError(f"matmul: a is {av.shape} and b is {bv.shape}; a's columns must equal b's rows")
    w = _transposed(b, bv)
    if w is not None and av.dtype in SKINNY_DTYPES and bv.dtype == av.dtype \
            and dispatch.skinny_supported(av.dtype, av.shape[0], av.shape[1]) is None \
            and _skinny_pays(av, bv):
        return gemm(a, w, out=out, stream=stream)
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
            if ov.shape != r.shape or (ov.dtype or ov.raw_dtype) != (dtype_name(r.dtype) or str(r.dtype)):
                raise ValueError(f"out must have shape {r.shape} and dtype {r.dtype}, got {ov.shape} {ov.raw_dtype}")
        return deliver(r, out)
    if av.kind == "cupy":
        import cupy
        return cupy.matmul(a, b, out=out)
    if hasattr(a, "__matmul__"):
        return deliver(a @ b, out)
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
        validate.require_stream_type(stream)
        xv = as_view(x, "x")
        validate.require_2d(xv, "x", "N, K")
        validate.require_same_dtype(xv, "x", self.weight, "weight")
        if xv.shape[1] != self.in_features:
            raise ValueError(f"x has K={xv.shape[1]} but this Linear expects in_features={self.in_features}")
        if xv.device is None:
            return self._call_host(x, xv, out)
        g = _check_gemm(x, self.weight, self.bias)
        return _run(g, out, stream)

    def _call_host(self, x, xv: View, out):
        n, k = xv.shape
        rule = dispatch.skinny_supported(self.dtype, n, k)
        if rule:
            raise ValueError(f"Linear: {rule}")
        if out is not None:
            _check_out(out, n, self.out_features, self.dtype)
        backend, device = get_backend(self.weight.vendor), self.weight.device
        dx = DeviceArray.from_numpy(backend, device, x, self.dtype)
        g = _Gemm(dx.view(), self.weight, self.bias, n, self.out_features, k, self.dtype)
        dout = DeviceArray(backend, device, (n, self.out_features), self.dtype)
        _launch_skinny(backend, device, _plan(backend, device, g), g, g.x, g.w, g.bias, dout.view(), 0)
        backend.synchronize(device)
        return deliver(dout.to_numpy(), out)


# ---- a pre-planned call for hot loops and graph capture ----------------------------------------------
class Prepared:
    """gemm with everything decided up front: operands, output, plan and packed arguments.
    `launch(stream)` is one driver call; use it in decode loops and benchmarks."""

    def __init__(self, x: Any, w: Any, bias: Any = None, *, out: Any):
        g = _check_gemm(x, w, bias)
        ov = _check_out(out, g.n, g.m, g.dtype)
        views = [("x", g.x), ("w", g.w), ("out", ov)] + ([("bias", g.bias)] if g.bias is not None else [])
        if any(v.device is None for _, v in views):
            raise ValueError("prepare needs device arrays (numpy operands are copied per call; use gemm)")
        backend, device, host = _placement(views)
        if host:
            raise ValueError("prepare needs device arrays (numpy operands are copied per call; use gemm)")
        self.plan = _plan(backend, device, g)
        self._backend, self._device = backend, device
        self._vals = _fixed_args(self.plan, g, g.x, g.w, g.bias, ov)  # validates the layouts: before compiling
        self._keep = (x, w, bias, out)
        if self.plan.family == "blas":  # cuBLAS: nothing to compile; its workspace for stream 0 now
            self.kernel, self._dtype = None, g.dtype
            blas.cublas().workspace(backend, device, 0)
            return
        kinds = _arg_kinds(backend, self.plan)
        self.kernel = get_kernel(self.plan.instance, backend, device, kinds)
        from .runtime.backend import ArgPack
        self._args = ArgPack(kinds)
        # split-K through a workspace: each stream has its own, packed here for the stream last launched on;
        # the default stream's is allocated now, before any graph capture
        self._per_stream = bool(self.plan.family == "moderate" and self.plan.extra["ws_floats"])
        if self.plan.family == "moderate":
            self._bind_workspace(0)
        else:
            self._args.set(*self._vals)
        p = self.plan
        self._launch = (self.kernel.func, p.grid, p.block, p.shared)
        self._pdl = p.extra["pdl"]
        self.kernel.ensure_shared(p.shared)

    def _bind_workspace(self, stream: int) -> None:
        self._args.set(*self._vals, *_workspace_ptrs(self._backend, self._device, self.plan, stream))
        self._ws_stream = stream

    def launch(self, stream: int = 0) -> None:
        if self.kernel is None:
            blas.gemm(self._backend, self._device, stream, self._dtype, *self._vals)
            return
        if self._per_stream and self._ws_stream != stream:
            self._bind_workspace(stream)  # each stream has its own workspace: no sharing across streams
        func, grid, block, shared = self._launch
        self._backend.launch(func, grid, block, shared, stream, self._args, self._device, self._pdl)


def prepare(x: Any, w: Any, bias: Any = None, *, out: Any) -> Prepared:
    """Validate and plan once; returns an object whose launch(stream) only enqueues the kernel."""
    return Prepared(x, w, bias, out=out)
