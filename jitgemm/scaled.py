"""fp8 entry points: scaled_gemm and quantize_fp8 (validate -> dispatch -> launch)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import dispatch, pipeline, validate
from .arrays import SIXTEEN_BIT as SKINNY_DTYPES
from .arrays import U8, View, as_view, numpy_dtype
from .device_array import DeviceArray
from .kernels import fp8
from .launch import KernelLaunch
from .runtime.jit import get_kernel

_SHORT = {"e4m3fn": "float8_e4m3fn", "e4m3fnuz": "float8_e4m3fnuz"}


def _format_name(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    name = _SHORT.get(fmt, fmt)
    if name not in fp8.FORMATS:
        raise ValueError(f"fp8_format must be 'e4m3fn' or 'e4m3fnuz', got {fmt!r}")
    return name


def _fp8_kind(v: View, arg: str, fmt: str | None) -> str:
    """The fp8 format of an operand: its own dtype, or fp8_format for raw uint8 bytes."""
    if v.dtype in fp8.FORMATS:
        if fmt and fmt != v.dtype:
            raise TypeError(f"{arg} holds {v.dtype} but fp8_format={fmt!r}: jitgemm never reads one fp8 format "
                            f"as the other")
        return v.dtype
    if v.dtype == U8:
        if not fmt:
            raise TypeError(f"{arg} is uint8: say which fp8 format its bytes hold with "
                            f"fp8_format='e4m3fn' or 'e4m3fnuz'")
        return fmt
    raise TypeError(f"{arg} must be fp8 ({', '.join(fp8.FORMATS)}, or uint8 with fp8_format=), got {v.raw_dtype}")


@dataclass
class _Scale:
    view: View | None   # a device/host vector (or one-element array); None: pass `value`
    value: float
    per: bool           # one value per token / per weight row
    given: bool = True  # False: no scale (1.0)


def _scale(s: Any, arg: str, length: int, what: str) -> _Scale:
    if s is None:
        return _Scale(None, 1.0, False, False)
    if isinstance(s, (int, float, np.floating, np.integer)) and not isinstance(s, bool):
        return _Scale(None, _scale_value(float(s), arg), False)
    v = as_view(s, arg)
    if v.dtype != "float32":
        raise TypeError(f"{arg} must be float32, got {v.raw_dtype}")
    size = math.prod(v.shape)  # Python ints: no overflow for absurd shapes
    if size > 1 and size > 2**31 - 1:
        raise ValueError(f"{arg} has {size} elements: scale vectors (like N and M) must be < 2^31 long")
    if size not in (1, length) or sum(d != 1 for d in v.shape) > 1:
        raise ValueError(f"{arg} must be a scalar, shape [1] or [{what}] = [{length}] "
                         f"(or [{length}, 1] / [1, {length}]), got shape {v.shape}")
    if size > 1 and max(v.strides[i] for i, d in enumerate(v.shape) if d != 1) != 1:
        raise ValueError(f"{arg} must be contiguous, got element strides {v.strides}")
    if v.device is None and size == 1:
        return _Scale(None, _scale_value(float(np.asarray(s).reshape(-1)[0]), arg), False)  # passed by value
    validate.require_aligned(v, arg, 4)
    return _Scale(v, 1.0, size > 1)


def _scale_value(v: float, arg: str) -> float:
    if not 0.0 <= v < math.inf:
        raise ValueError(f"{arg} must be a finite number >= 0 (a dequantization scale), got {v}")
    return v


@dataclass
class _Scaled:
    x: View
    w: View
    bias: View | None
    sx: _Scale
    sw: _Scale
    fmt: str
    mode: int
    out_dtype: str
    n: int
    m: int
    k: int


def _check(x, w, scale_x, scale_w, bias, out_dtype, fp8_format) -> _Scaled:
    if out_dtype is not None and not isinstance(out_dtype, str):
        raise TypeError(f"out_dtype must be float16 or bfloat16 (a string) or None, got {type(out_dtype).__name__} "
                        f"{out_dtype!r}")
    validate.require_str_option(fp8_format, "fp8_format", "'e4m3fn' or 'e4m3fnuz'")
    fmt = _format_name(fp8_format)
    xv, wv = as_view(x, "x"), as_view(w, "w")
    validate.require_2d(xv, "x", "N, K")
    validate.require_2d(wv, "w", "M, K")
    wfmt = _fp8_kind(wv, "w", fmt)
    n, k = xv.shape
    m, kw = wv.shape
    if kw != k:
        raise ValueError(f"x and w must agree on K: x is [N, K] = {xv.shape}, w is [M, K] = {wv.shape}")
    if xv.dtype in SKINNY_DTYPES:
        mode = fp8.W8A16 if scale_x is None else fp8.W8Q
        default_out = xv.dtype
    else:
        xfmt = _fp8_kind(xv, "x", fmt or wfmt)
        if xfmt != wfmt:
            raise TypeError(f"x holds {xfmt} and w holds {wfmt}: both fp8 operands must use one format")
        mode, default_out = fp8.W8A8, "bfloat16"
    out_dtype = out_dtype or default_out
    out_dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(out_dtype, out_dtype)
    if out_dtype not in SKINNY_DTYPES:
        raise TypeError(f"out_dtype must be float16 or bfloat16, got {out_dtype!r}")
    if mode != fp8.W8A8 and out_dtype != xv.dtype:
        raise TypeError(f"with 16-bit x the output dtype is x's ({xv.dtype}), got out_dtype={out_dtype!r}")
    if not 1 <= n <= fp8.MAX_N:
        raise ValueError(f"scaled_gemm supports N (tokens) in 1..{fp8.MAX_N}, got N={n}; split larger batches "
                         f"into chunks of at most {fp8.MAX_N} rows")
    if m < 1 or k < 1 or k % 16:
        raise ValueError(f"K must be a positive multiple of 16 (16-byte fp8 slices) and M >= 1, got M={m}, K={k}")
    sx = _scale(scale_x, "scale_x", n, "N")
    sw = _scale(scale_w, "scale_w", m, "M")
    validate.require_int32_dims(M=m, K=k)
    bv = validate.optional_bias(bias, n, m, out_dtype)
    return _Scaled(xv, wv, bv, sx, sw, wfmt, mode, out_dtype, n, m, k)


def _plan(backend, device, s: _Scaled) -> dispatch.Plan:
    info = backend.device_info(device)
    return plan_for(backend.name, info.arch, info.multiprocessors, s, info.name)


def plan_for(vendor: str, arch: str, sms: int, s: _Scaled, device: str = "", lt_present: bool | None = None
             ) -> dispatch.Plan:
    """The plan of a checked scaled_gemm call on a device of this arch (explain(arch=) needs no GPU, and
    passes lt_present=True: the other machine's cuBLASLt is assumed)."""
    rule = fp8.format_rule(vendor, arch, s.fmt)
    if rule:
        raise ValueError(f"scaled_gemm: {rule}")
    return dispatch.plan_fp8(vendor, arch, sms, s.out_dtype, s.mode, s.fmt, s.n, s.m, s.k, device,
                             scales=(s.sx.per, s.sw.per), bias=s.bias is not None, lt_present=lt_present)


def _layout(s: _Scaled, x: View, w: View, bias: View | None, out: View | None) -> tuple:
    """(ldx, ldw, ldo, bias_rows, bias_ld) under the layout rules (16-byte vectors of x and w)."""
    ldx = validate.require_rows(x, "x", s.k, 16 if s.mode == fp8.W8A8 else 8)
    ldw = validate.require_rows(w, "w", s.k, 16)
    ldo = validate.require_out_rows(out, "out") if out is not None else s.m
    bias_rows, bias_ld = validate.bias_layout(bias, s.n, s.m, s.out_dtype) if bias is not None else (0, 0)
    return ldx, ldw, ldo, bias_rows, bias_ld


# the argument list (kernels_src/fp8.hip): out, ldo, x, ldx, w, ldw, sx*, sx_per_token, sx_val, sw*, sw_per_row,
# sw_val, bias*, bias_ld, bias_rows, N, M, K, lds_bytes (the AMD MFMA kernel's token bytes in LDS; unused by the
# others). A scale is a pointer (slot 6 / 9) or a value (8 / 11).
def _scaled_launch(backend, device: int, plan, s: _Scaled, lay: tuple) -> KernelLaunch:
    """The plan's kernel launch, its values written per call in scaled_gemm's order (x, w, scale_x,
    scale_w, bias, out)."""
    ldx, ldw, ldo, bias_rows, bias_ld = lay
    args = [0, ldo, 0, ldx, 0, ldw, 0, int(s.sx.per), s.sx.value, 0, int(s.sw.per), s.sw.value, 0, bias_ld,
            bias_rows, s.n, s.m, s.k, plan.extra.get("lds_bytes", 0)]
    slots = (2, 4, _scale_slot(s.sx, 6, 8), _scale_slot(s.sw, 9, 11), 12 if s.bias is not None else None, 0)
    return KernelLaunch(backend, device, get_kernel(plan.instance, backend, device, fp8.ARG_KINDS), plan, args, slots)


def _launch_for(backend, device: int, plan, s: _Scaled, lay: tuple, out: View | None):
    """(launch, the plan it runs, the per-call checks of its values, whether the signature may keep it). A
    cuBLASLt plan runs there when this call's pitches and pointers suit it (x and w rows and addresses of 16
    bytes; straight to the output: its pitch a multiple of 8 elements and its address of 16 bytes; the algorithm
    is picked for the addresses' alignment, which later calls of the signature must keep) and cuBLASLt has an
    algorithm; else the kernel's plan runs, and explain-style reason says why. Where that refusal came from this
    call's addresses, the kernel's launch is not kept for the signature: a later call with suitable addresses
    takes cuBLASLt again, so which route (and which bits) a call gets depends on its own operands, never on the
    calls before it."""
    scale_checks = (_scale_check(s.sx), _scale_check(s.sw))
    keep = True
    if plan.family == "blaslt":
        from .runtime import blaslt
        ldx, ldw, ldo = lay[:3]
        epilogue = plan.extra.get("epilogue")
        aligns = (blaslt.alignment(s.w.ptr), blaslt.alignment(s.x.ptr),
                  256 if epilogue or out is None else blaslt.alignment(out.ptr))
        refused = f"out's row pitch {ldo} is no multiple of 8 elements" if ldo % 8 and not epilogue else None
        by_address = (f"out's address {out.ptr:#x} is not 16-byte aligned"
                      if out is not None and out.ptr % 16 and not epilogue else None)
        if refused is None and by_address is None:
            try:
                if epilogue:
                    return (_epilogue_launch(backend, device, epilogue, s, lay, aligns), plan,
                            (aligns[1], aligns[0], *scale_checks, 2, 2), True)
                from .launch import LtLaunch
                mm = blaslt.Fp8Matmul(backend, device, s.out_dtype, s.n, s.m, s.k, ldx, ldw, ldo, aligns)
                launch = LtLaunch(mm, (_scale_kind(s.sx), _scale_kind(s.sw)))
                return launch, plan, (aligns[1], aligns[0], *scale_checks, 0, aligns[2]), True
            except blaslt.Unsupported as e:
                refused = str(e)
                by_address = None if aligns == (256, 256, 256) else refused  # better-aligned calls may get one
        keep = by_address is None
        fallback = plan.extra["fallback"]
        plan = replace(fallback, reason=f"{fallback.reason}; cuBLASLt would run this shape, but {refused or by_address}"
                                        f": the kernel runs")
    return _scaled_launch(backend, device, plan, s, lay), plan, (16, 16, *scale_checks, 2, 2), keep


# the epilogue's arguments (kernels_src/fp8.hip, jg_fp8_epilogue): out, ldo, acc, lda, sx*, sx_per_token, sx_val,
# sw*, sw_per_row, sw_val, bias*, bias_ld, bias_rows, M. A scale is a pointer (slot 4 / 7) or a value (6 / 9).
def _epilogue_launch(backend, device: int, epi, s: _Scaled, lay: tuple, aligns: tuple):
    """cuBLASLt's fp32 sums of x . w^T into the stream's workspace, then the epilogue kernel: the launch of a
    plan with extra["epilogue"] (raises blaslt.Unsupported where cuBLASLt has no algorithm)."""
    from .launch import LtEpilogueLaunch
    from .runtime import blaslt
    ldx, ldw, ldo, bias_rows, bias_ld = lay
    lda = epi.extra["lda"]
    mm = blaslt.Fp8Matmul(backend, device, "float32", s.n, s.m, s.k, ldx, ldw, lda, aligns)
    args = [0, ldo, 0, lda, 0, int(s.sx.per), s.sx.value, 0, int(s.sw.per), s.sw.value, 0, bias_ld, bias_rows, s.m]
    slots = (None, None, _scale_slot(s.sx, 4, 6), _scale_slot(s.sw, 7, 9), 10 if s.bias is not None else None, 0)
    kernel = get_kernel(epi.instance, backend, device, fp8.EPILOGUE_ARG_KINDS)
    return LtEpilogueLaunch(backend, device, kernel, epi, args, slots, mm)


def _scale_kind(sc: _Scale) -> str:
    return "pointer" if sc.view is not None else "value" if sc.given else "none"


def _scale_slot(sc: _Scale, pointer: int, value: int) -> int | None:
    if sc.view is not None:
        return pointer
    return value if sc.given else None


def _scale_check(sc: _Scale) -> int:
    """Per-call check of a scale's value (pipeline.Entry's checks): a pointer 4-byte aligned, a number
    finite and >= 0, an absent one nothing."""
    return 4 if sc.view is not None else -1 if sc.given else 0


def _values(s: _Scaled, out: View | None) -> list:
    """A call's values in the launch's order; an absent operand's is 0 (it goes to a scratch slot)."""
    return [s.x.ptr, s.w.ptr, _scale_value_of(s.sx), _scale_value_of(s.sw), s.bias.ptr if s.bias is not None else 0,
            out.ptr if out is not None else 0]


def _scale_value_of(sc: _Scale):
    return sc.view.ptr if sc.view is not None else sc.value if sc.given else 0


def _check_out(out: Any, s: _Scaled) -> View:
    return validate.out_view(out, s.n, s.m, s.out_dtype, "out_dtype")


def _views(s: _Scaled, ov: View | None) -> list[tuple[str, View]]:
    views = [("x", s.x), ("w", s.w)] + ([("bias", s.bias)] if s.bias is not None else [])
    views += [(n, sc.view) for n, sc in (("scale_x", s.sx), ("scale_w", s.sw)) if sc.view is not None]
    return views + ([("out", ov)] if ov is not None else [])


def scaled_gemm(x: Any, w: Any, scale_x: Any = None, scale_w: Any = None, bias: Any = None, *,
                out_dtype: str | None = None, fp8_format: str | None = None, out: Any = None, stream: Any = None):
    """out[N, M] = (x @ w.T) * scale_x * scale_w + bias with fp8 (e4m3) weights.

    x fp8 -> W8A8; x fp16/bf16 with scale_x=None -> W8A16 (weights widened, tokens untouched);
    x fp16/bf16 with scale_x given -> tokens quantized to fp8 with that scale inside the kernel.
    scale_x: None, a number, [1] or [N] float32; scale_w: None, a number, [1] or [M] float32.
    uint8 device arrays need fp8_format='e4m3fn' or 'e4m3fnuz'. Output fp16/bf16 (out_dtype), of the
    input's kind (a torch tensor for torch inputs, W8A8 included). stream=None: as gemm's."""
    def cold(key, *operands):
        return _scaled_cold(key, out_dtype, fp8_format, *operands)
    if isinstance(out_dtype, (str, type(None))) and isinstance(fp8_format, (str, type(None))):
        return pipeline.call(("scaled", out_dtype, fp8_format), (x, w, scale_x, scale_w, bias, out), stream, cold)
    return cold(None, x, w, scale_x, scale_w, bias, out, stream)  # _check names the wrong option's type


def _scaled_cold(key, out_dtype, fp8_format, x, w, scale_x, scale_w, bias, out, stream):
    validate.require_stream_type(stream)
    s = _check(x, w, scale_x, scale_w, bias, out_dtype, fp8_format)
    ov = _check_out(out, s) if out is not None else None
    backend, device, host = pipeline.placement(_views(s, ov))
    if host:
        return _run_host(backend, device, _plan(backend, device, s), s, out)
    lay = _layout(s, s.x, s.w, s.bias, ov)
    launch, _, checks, keep = _launch_for(backend, device, _plan(backend, device, s), s, lay, ov)
    entry = pipeline.Entry(launch, checks,
                           pipeline.current_stream_rule([s.x, ov or s.x, s.w], device),
                           pipeline.output_factory(s.x, backend, device, (s.n, s.m), s.out_dtype),
                           pipeline.extents([s.x, s.w, s.sx.view, s.sw.view, s.bias, ov]))
    pipeline.store(key if keep else None, entry)
    return entry.run((x, w, scale_x, scale_w, bias, out), _values(s, ov), stream)


PreparedScaled = pipeline.Prepared


def prepare_scaled(x, w, scale_x=None, scale_w=None, bias=None, *, out, out_dtype=None, fp8_format=None):
    """Validate and plan a scaled_gemm once; the result's launch(stream) only enqueues the kernel."""
    s = _check(x, w, scale_x, scale_w, bias, out_dtype, fp8_format)
    ov = _check_out(out, s)
    backend, device, host = pipeline.placement(_views(s, ov))
    if host:
        raise ValueError("prepare_scaled needs device arrays (numpy operands are copied per call)")
    lay = _layout(s, s.x, s.w, s.bias, ov)
    launch, plan = _launch_for(backend, device, _plan(backend, device, s), s, lay, ov)[:2]
    return pipeline.Prepared(plan, launch, _values(s, ov), (x, w, scale_x, scale_w, bias, out))


def _upload(backend, device, v: View | None, dtype: str):
    if v is None:
        return None
    return DeviceArray.from_numpy(backend, device, np.asarray(v.obj), dtype)


def _run_host(backend, device, plan, s: _Scaled, out):
    xd = _upload(backend, device, s.x, s.x.dtype if s.mode != fp8.W8A8 else U8)
    wd = _upload(backend, device, s.w, U8)
    bd = _upload(backend, device, s.bias, s.out_dtype)
    sxd = DeviceArray.from_numpy(backend, device, np.asarray(s.sx.view.obj, np.float32).reshape(-1), "float32") if s.sx.view else None
    swd = DeviceArray.from_numpy(backend, device, np.asarray(s.sw.view.obj, np.float32).reshape(-1), "float32") if s.sw.view else None
    od = DeviceArray(backend, device, (s.n, s.m), s.out_dtype)
    dx, dw, dout = xd.view(), wd.view(), od.view()
    on_device = replace(s, x=dx, w=dw, bias=bd.view() if bd else None,
                        sx=replace(s.sx, view=sxd.view() if sxd else None),
                        sw=replace(s.sw, view=swd.view() if swd else None))
    launch = _launch_for(backend, device, plan, on_device, _layout(on_device, dx, dw, on_device.bias, dout), dout)[0]
    launch.run(0, _values(on_device, dout))
    backend.synchronize(device)
    return pipeline.deliver(od.to_numpy(), out)


def quantize_fp8(x: Any, per_token: bool = True, fp8_format: str | None = None, *, stream: Any = None):
    """(x8, scales): x8 = saturate(rne(x * (1 / s))) in e4m3, computed in fp32 with 1/s rounded to
    fp32 (scaled_gemm's in-kernel quantization uses the same formula, so both give the same bytes);
    s = amax / fp8_max (448 for e4m3fn, 240 for e4m3fnuz; 1 where amax is 0), per token ([N]
    scales) or per tensor ([1]). NaN inputs stay NaN
    and do not affect the scale; values beyond the range saturate to +-fp8_max.
    fp8_format defaults to the device's native format."""
    validate.require_stream_type(stream)
    validate.require_str_option(fp8_format, "fp8_format", "'e4m3fn' or 'e4m3fnuz'")
    asked = _format_name(fp8_format)
    xv = as_view(x, "x")
    validate.require_2d(xv, "x", "N, K")
    validate.require_dtype(xv, "x", SKINNY_DTYPES)
    n, k = xv.shape
    if n < 1 or k < 1:
        raise ValueError(f"x must not be empty, got shape {xv.shape}")
    validate.require_int32_dims(N=n, K=k)
    if xv.device is not None and k > 1 and xv.strides[1] != 1:
        raise ValueError(f"x must have unit stride along K, got element strides {xv.strides}")
    backend, device, host = pipeline.placement([("x", xv)])
    info = backend.device_info(device)
    fmt = asked or fp8.native_format(backend.name, info.arch) or "float8_e4m3fn"
    # quantization is software on every device (exact RNE + saturation), so either format can be made
    inst = fp8.quant_instance(xv.dtype, per_token, fmt)
    kern = get_kernel(inst, backend, device, fp8.QUANT_ARG_KINDS)
    nscales = n if per_token else 1
    if host:
        xd = DeviceArray.from_numpy(backend, device, np.asarray(x), xv.dtype)
        qd, sd = DeviceArray(backend, device, (n, k), U8), DeviceArray(backend, device, (nscales,), "float32")
        kern.launch((nscales, 1, 1), (1024, 1, 1), 0, 0, qd.ptr, k, sd.ptr, xd.ptr, k, n, k)
        backend.synchronize(device)
        return qd.to_numpy().view(numpy_dtype(fmt)), sd.to_numpy()
    ldx = xv.strides[0] if n > 1 else k
    st = pipeline.current_stream_rule([xv], device)() if stream is None else validate.stream_handle(stream)
    # outputs of x's kind: torch fp8 and float32 tensors, CuPy uint8 (it has no fp8) and float32 arrays
    q, qptr = pipeline.output_factory(xv, backend, device, (n, k), U8 if xv.kind == "cupy" else fmt)(x, st)
    sc, sptr = pipeline.output_factory(xv, backend, device, (nscales,), "float32")(x, st)
    kern.launch((nscales, 1, 1), (1024, 1, 1), 0, st, qptr, k, sptr, xv.ptr, ldx, n, k)
    return q, sc


def quantize_weight(w: np.ndarray, per_channel: bool = True, fp8_format: str = "float8_e4m3fn"):
    """Host-side weight quantization: (w8, scale) with scale = amax / fp8_max per row (or one
    value), w8 = round-to-nearest-even(w / scale) saturated to the format's range."""
    fmt = _format_name(fp8_format)
    if not isinstance(w, (np.ndarray, list, tuple)) and not hasattr(w, "__array__"):
        raise TypeError(f"w must be a 2-D host array [M, K] (numpy or array-like), got {type(w).__name__}")
    w32 = np.asarray(w, dtype=np.float32)
    if w32.ndim != 2:
        raise ValueError(f"w must be 2-D [M, K], got shape {w32.shape}")
    amax = np.abs(w32).max(axis=1, keepdims=True) if per_channel else np.abs(w32).max(keepdims=True)
    scale = np.where(amax > 0, amax / fp8.FP8_MAX[fmt], 1.0).astype(np.float32)
    q = np.clip(w32 / scale, -fp8.FP8_MAX[fmt], fp8.FP8_MAX[fmt]).astype(numpy_dtype(fmt))
    return q, scale.reshape(-1)


class Fp8Linear:
    """y = x @ dequant(w8).T + bias with e4m3 weights on the device and per-channel (or one) scale.
    activation=None: W8A16 (16-bit tokens untouched); a float: tokens quantized with that static
    scale inside the GEMM (one launch); "dynamic": quantize_fp8 per token, then W8A8 (two launches)."""

    def __init__(self, w8, scale_w, bias=None, *, activation=None, fp8_format=None):
        self.w8, self.scale_w, self.bias, self.activation = w8, scale_w, bias, activation
        self.fp8_format = fp8_format
        if activation not in (None, "dynamic") and not isinstance(activation, (int, float)):
            raise ValueError(f"activation must be None, 'dynamic' or a float scale, got {activation!r}")

    def __call__(self, x, *, out=None, stream=None):
        xv = as_view(x, "x")
        if xv.device is None:
            return self._call_host(x, xv, out)
        if self.activation == "dynamic":
            x8, sx = quantize_fp8(x, per_token=True, fp8_format=self.fp8_format, stream=stream)
            out_dtype = as_view(x, "x").dtype
            return scaled_gemm(x8, self.w8, sx, self.scale_w, self.bias, out_dtype=out_dtype,
                               fp8_format=self.fp8_format, out=out, stream=stream)
        return scaled_gemm(x, self.w8, self.activation, self.scale_w, self.bias, fp8_format=self.fp8_format,
                           out=out, stream=stream)

    def _call_host(self, x, xv: View, out):
        """numpy tokens: upload them next to the device weights, run, copy the result back."""
        from .runtime.backend import get_backend
        validate.require_2d(xv, "x", "N, K")
        validate.require_dtype(xv, "x", SKINNY_DTYPES)
        if out is not None:
            validate.out_view(out, xv.shape[0], self.w8.shape[0], xv.dtype)
        backend, device = get_backend(self.w8.vendor), self.w8.device
        xd = DeviceArray.from_numpy(backend, device, np.asarray(x), xv.dtype)
        od = DeviceArray(backend, device, (xv.shape[0], self.w8.shape[0]), xv.dtype)
        self(xd.view(), out=od.view())
        backend.synchronize(device)
        return pipeline.deliver(od.to_numpy(), out)
