"""4-bit weights on the device and their GEMM (issue #19): Q4Device, w4_gemm and Q4Linear.

A quant4.Q4Weight (made by quant4's converters from GGUF, GPTQ or AWQ tensors) is uploaded once in the
layout the kernels read (quant4.device_layout); w4_gemm then runs out[N, M] = x[N, K] . dequant(w).T
(+ bias) through the call pipeline like gemm: validate -> plan -> launch on the cold path, a cached entry
after that."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch, pipeline, quant4, validate
from .arrays import SIXTEEN_BIT, View, as_view
from .device_array import DeviceArray
from .kernels import w4
from .launch import KernelLaunch
from .runtime.backend import default_backend
from .runtime.jit import get_kernel


class Packed4:
    """What a 4-bit weight on the device (Q4Device) and a stack of them (w4experts.Q4Experts) share once
    take_layout set their fields."""

    @property
    def nbytes(self) -> int:
        """Device bytes the codes, scales and zero points take (what a decode step reads)."""
        return self.q.nbytes + self.scales.nbytes + (self.aux.nbytes if self.aux is not None else 0)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.format}, group={self.group}, shape={self.shape}, device={self.device}, "
                f"{self.nbytes / 2**20:.1f} MiB)")


class Q4Device(Packed4):
    """A 4-bit weight [M, K] on one device: q (uint8 [M, ceil(K / 128) * 64], the kernels' layout), scales
    ([M, quant4.group_pitch(K, group)]: the K / group values of a row padded to whole 128-k blocks; float16,
    or uint8 e8m0 for mxfp4; q4_min: float16 [M, 2 * group_pitch], each block's scales then its minima,
    quant4.scale_records) and aux (zero points uint8 for q4_zp, padded as the scales, else None), all DeviceArrays.
    Make one with Q4Device.upload(q4weight).

    normal_scales (MXFP4 only): every group's e8m0 scale is a normal exponent, 1..254 (none is 0, the 2^-127
    subnormal, or 255, NaN). Then the NVIDIA kernel decodes each scale with one shift instead of selects (about
    15 % fewer instructions a loop), with the same sums. upload() finds it out from the host scales; given
    device arrays, say so only when it is known to hold: a 0 or 255 would then be read as 0.0 or infinity."""

    def __init__(self, fmt: str, group: int, shape: tuple[int, int], q: DeviceArray, scales: DeviceArray,
                 aux: DeviceArray | None, *, normal_scales: bool = False):
        m, k = shape
        take_layout(self, fmt, group, (), m, k, q, scales, aux, normal_scales)

    @classmethod
    def upload(cls, w: quant4.Q4Weight, *, device: int | None = None) -> "Q4Device":
        """Check w (quant4.check: the field and the rule), rearrange its codes for the kernels and copy
        everything to `device` (default: the current device of the default backend)."""
        if not isinstance(w, quant4.Q4Weight):
            raise TypeError(f"w must be a jitgemm.quant4.Q4Weight (quant4.from_gguf / from_gptq / from_awq make "
                            f"one), got {type(w).__name__}")
        quant4.check(w)
        backend = default_backend()
        dev = backend.current_device() if device is None else device
        q, scales, aux, normal = host_layout(w)
        return cls(w.format, w.group, w.shape, *upload_layout(backend, dev, w.format, (q, scales, aux)),
                   normal_scales=normal)


def take_layout(obj, fmt: str, group: int, lead: tuple, m: int, k: int, q, scales, aux, normal_scales) -> None:
    """Check a 4-bit weight's device arrays (`lead`: the dims before [M, ...]: () for Q4Device, (E,) for
    w4experts.Q4Experts) and set obj's format, group, shape, normal_scales, q, scales, aux, device and backend."""
    if fmt not in quant4.FORMATS or group not in quant4.GROUPS or (fmt == "mxfp4" and group != 32):
        raise ValueError(f"format/group must be one of quant4's ({', '.join(quant4.FORMATS)}; groups "
                         f"{quant4.GROUPS}, mxfp4 32), got {fmt!r} / {group!r}")
    dims = "[" + ", ".join(["E"] * len(lead) + ["M", "K"]) + "]"
    if min(*lead, m, k) < 1 or k % 32 or k % group:
        raise ValueError(f"shape must be {dims} with K a multiple of 32 and of the group ({group}), got "
                         f"{(*lead, m, k)}")
    if fmt != "q4_zp" and aux is not None:
        raise ValueError(f"aux is only for q4_zp (zero points), not {fmt}"
                         + (" (q4_min's minima are in its scales: quant4.scale_records)" if fmt == "q4_min" else ""))
    shapes, dtypes = layout_shapes(fmt, group, m, k), dict(zip(("q", "scales", "aux"), layout_dtypes(fmt)))
    for name, a in (("q", q), ("scales", scales), ("aux", aux)):
        if name not in shapes:
            continue
        shp, dt = (*lead, *shapes[name]), dtypes[name]
        if not isinstance(a, DeviceArray) or a.shape != shp or a.dtype != dt or a.device != q.device:
            raise ValueError(f"{name} must be a DeviceArray {dt} {list(shp)} on q's device, got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {list(getattr(a, 'shape', ()))}")
    if not isinstance(normal_scales, bool) or (normal_scales and fmt != "mxfp4"):
        raise ValueError(f"normal_scales must be a bool, True only for mxfp4 (its e8m0 scales), got "
                         f"{normal_scales!r} for {fmt}")
    obj.format, obj.group, obj.shape, obj.normal_scales = fmt, group, (*lead, m, k), normal_scales
    obj.q, obj.scales, obj.aux = q, scales, aux
    obj.device, obj.backend = q.device, q.backend


def host_layout(w: quant4.Q4Weight) -> tuple:
    """(codes, scales, zero points or None, normal_scales) of a checked weight, as numpy arrays in the layout the
    kernels read (Q4Device's fields)."""
    k = w.shape[1]
    host_scales = quant4.empty_group_scales_normal(w) if w.format == "mxfp4" else w.scales
    if w.format == "q4_min":
        scales = quant4.scale_records(host_scales, w.mins, k, w.group)
    else:
        scales = quant4.pad_groups(host_scales, k, w.group)
    aux = quant4.pad_groups(w.zeros, k, w.group) if w.format == "q4_zp" else None
    normal = w.format == "mxfp4" and bool(((host_scales >= 1) & (host_scales <= 254)).all())
    return quant4.device_layout(w.q, k, w.format), scales, aux, normal


def upload_layout(backend, device: int, fmt: str, arrays) -> list:
    """Host codes, scales and zero points (or None) in the kernels' layout (host_layout's, stacked or not) as
    DeviceArrays of the format's dtypes on `device`."""
    return [None if a is None else DeviceArray.from_numpy(backend, device, a, dt)
            for a, dt in zip(arrays, layout_dtypes(fmt))]


def layout_dtypes(fmt: str) -> tuple[str, str, str]:
    """The device dtypes of a format's codes, scales and zero points."""
    return "uint8", "uint8" if fmt == "mxfp4" else "float16", "uint8"


def layout_shapes(fmt: str, group: int, m: int, k: int) -> dict:
    """{field: [rows, row length]} of a weight [M, K]'s device arrays (Q4Device's q, scales and, for q4_zp, aux)."""
    pitch = quant4.group_pitch(k, group)  # K / group padded to whole 128-k blocks (the kernels' vector loads)
    records = 2 if fmt == "q4_min" else 1  # q4_min's minima travel with its scales (quant4.scale_records)
    shapes = {"q": (m, -(-k // 128) * 64), "scales": (m, records * pitch)}
    if fmt == "q4_zp":
        shapes["aux"] = (m, pitch)
    return shapes


def _check(x, w, bias, out) -> tuple[View, View | None, View | None]:
    if not isinstance(w, Q4Device):
        raise TypeError(f"w must be a jitgemm Q4Device (Q4Device.upload(quant4 weight)), got {type(w).__name__}")
    xv = as_view(x, "x")
    validate.require_2d(xv, "x", "N, K")
    validate.require_dtype(xv, "x", SIXTEEN_BIT)
    n, k = xv.shape
    m, kw = w.shape
    if k != kw:
        raise ValueError(f"x and w must agree on K: x is [N, K] = {xv.shape}, w is [M, K] = {w.shape}")
    if not 1 <= n <= w4.MAX_N:
        raise ValueError(f"w4_gemm supports N (tokens) in 1..{w4.MAX_N}, got N={n}; split larger batches into "
                         f"chunks of at most {w4.MAX_N} rows")
    validate.require_int32_dims(M=m, K=k)
    bv = validate.optional_bias(bias, n, m, xv.dtype)
    ov = validate.out_view(out, n, m, xv.dtype) if out is not None else None
    # the device layouts the kernel reads and writes, before anything asks the device (host operands are
    # copied into fresh arrays, so only device ones can break them)
    if xv.device is not None:
        validate.require_rows(xv, "x", k, 8)
    if ov is not None and ov.device is not None:
        validate.require_out_rows(ov, "out")
    # (pipeline.placement checks this too, but host tokens with a device bias never reach it)
    validate.require_addressable([(name, v) for name, v in (("x", xv), ("bias", bv), ("out", ov)) if v is not None])
    return xv, bv, ov


def _views(w: Q4Device, xv: View, bv: View | None, ov: View | None) -> list[tuple[str, View]]:
    """Every operand the kernel reads or writes (the weight's scales and mins / zeros included: an out over
    them is refused like one over x)."""
    views = [("x", xv), ("w", w.q.view()), ("w's scales", w.scales.view())]
    views += [("w's zero points", w.aux.view())] if w.aux is not None else []
    return views + ([("bias", bv)] if bv is not None else []) + ([("out", ov)] if ov is not None else [])


# the argument list (kernels_src/w4.hip): out, ldo, x, ldx, w, ldw, scales, lds, aux, lda, bias, bias_ld,
# bias_rows, N, M, K; a call's values are written to slots 2 (x), 4 (w), 6 (scales), 8 (aux), 10 (bias), 0 (out)
def _launch(backend, device: int, plan, w: Q4Device, xv: View, bv: View | None, ov: View | None) -> KernelLaunch:
    n, k = xv.shape
    m = w.shape[0]
    ldx = validate.require_rows(xv, "x", k, 8)
    ldo = validate.require_out_rows(ov, "out") if ov is not None else m
    bias_rows, bias_ld = validate.bias_layout(bv, n, m, xv.dtype) if bv is not None else (0, 0)
    lds = w.scales.shape[1]  # a row's scale values, padded (quant4.group_pitch; twice that for q4_min's records)
    lda = w.aux.shape[1] if w.aux is not None else 0
    args = [0, ldo, 0, ldx, 0, w.q.shape[1], 0, lds, 0, lda, 0, bias_ld, bias_rows, n, m, k]
    slots = (2, 4, 6, 8 if w.aux is not None else None, 10 if bv is not None else None, 0)
    return KernelLaunch(backend, device, get_kernel(plan.instance, backend, device, w4.ARG_KINDS), plan, args, slots)


def _values(w: Q4Device, x_ptr: int, bias_ptr: int, out_ptr: int) -> list:
    return [x_ptr, w.q.ptr, w.scales.ptr, w.aux.ptr if w.aux is not None else 0, bias_ptr, out_ptr]


def plan_for(backend, device: int, w: Q4Device, dtype: str, n: int) -> dispatch.Plan:
    info = backend.device_info(device)
    m, k = w.shape
    return dispatch.plan_w4(backend.name, info.arch, info.multiprocessors, dtype, w.format, w.group, n, m, k,
                            device=info.name, normal_scales=w.normal_scales)


def explain_w4(x: Any, w: Q4Device, target=None) -> str:
    """What w4_gemm would run for these operands (api.explain's 4-bit case; target: explain(arch=)'s)."""
    try:
        xv, _, _ = _check(x, w, None, None)
    except (ValueError, TypeError) as e:
        return f"w4_gemm would refuse this: {e}"
    m, k = w.shape
    if target is not None:
        return target.explain(dispatch.plan_w4(target.vendor, target.arch, target.sms, xv.dtype, w.format, w.group,
                                               xv.shape[0], m, k, normal_scales=w.normal_scales))
    return str(plan_for(w.backend, w.device, w, xv.dtype, xv.shape[0]))


def w4_gemm(x: Any, w: Q4Device, bias: Any = None, *, out: Any = None, stream: Any = None):
    """out[N, M] = x[N, K] . dequant(w).T + bias, with w a Q4Device (4-bit codes and their group scales,
    quant4's formats) and x fp16/bf16 [N, K], N 1..128; fp32 sums, each group's scale applied to its
    partial sum, one rounding to x's dtype. bias: None, [M], [1, M] or [N, M] in x's dtype. Returns out,
    or a new array of x's kind. stream=None: as gemm's (the operands' library's current stream)."""
    def cold(key, x, _q, _s, _a, bias, out, stream):
        return _w4_cold(key, x, w, bias, out, stream)
    if not isinstance(w, Q4Device):
        return cold(None, x, None, None, None, bias, out, stream)  # _check names the rule
    return pipeline.call(("w4", w.format, w.group, w.shape, w.normal_scales), (x, w.q, w.scales, w.aux, bias, out),
                         stream, cold)


def _w4_cold(key, x, w, bias, out, stream):
    validate.require_stream_type(stream)
    xv, bv, ov = _check(x, w, bias, out)
    if xv.device is None:  # numpy tokens: copied to the weight's device per call, never cached
        return _run_host(w, xv, bv, ov, out)
    backend, device, _ = pipeline.placement(_views(w, xv, bv, ov))
    plan = plan_for(backend, device, w, xv.dtype, xv.shape[0])
    n, m = xv.shape[0], w.shape[0]
    checks = (16, 16, 2 if w.format != "mxfp4" else 1, 2 if w.format == "q4_min" else 0, 2, 2)
    entry = pipeline.Entry(_launch(backend, device, plan, w, xv, bv, ov), checks,
                           pipeline.current_stream_rule([xv, ov or xv], device),
                           pipeline.output_factory(xv, backend, device, (n, m), xv.dtype),
                           pipeline.extents([xv, w.q.view(), w.scales.view(), w.aux.view() if w.aux is not None else None,
                                             bv, ov]))  # in the order of _values
    pipeline.store(key, entry)
    values = _values(w, xv.ptr, bv.ptr if bv is not None else 0, ov.ptr if ov is not None else 0)
    return entry.run((x, w.q, w.scales, w.aux, bias, out), values, stream)


def prepare_w4(x: Any, w: Q4Device, bias: Any = None, *, out: Any):
    """Validate and plan a w4_gemm once (device operands); the result's launch(stream) only enqueues the
    kernel: decode loops, benchmarks, graph capture."""
    xv, bv, ov = _check(x, w, bias, out)
    if xv.device is None or ov.device is None:
        raise ValueError("prepare_w4 needs device arrays for x and out (numpy operands are copied per call)")
    backend, device, _ = pipeline.placement(_views(w, xv, bv, ov))
    plan = plan_for(backend, device, w, xv.dtype, xv.shape[0])
    return pipeline.Prepared(plan, _launch(backend, device, plan, w, xv, bv, ov),
                             _values(w, xv.ptr, bv.ptr if bv is not None else 0, ov.ptr), (x, w, bias, out))


def _run_host(w: Q4Device, xv: View, bv: View | None, ov: View | None, out):
    """numpy tokens: copied next to the weight (with a numpy bias; a bias already on the weight's device
    is read there), run, the result copied back (into out when given, a numpy array)."""
    if ov is not None and ov.device is not None:
        raise ValueError("w4_gemm: x is a host (numpy) array but out is on a device; pass both from one place")
    if bv is not None and bv.device is not None and (bv.vendor, bv.device) != (w.backend.name, w.device):
        raise ValueError(f"w4_gemm: bias is on device {bv.device}, the weight on {w.device}")
    backend, device = w.backend, w.device
    n, m = xv.shape[0], w.shape[0]
    xd = DeviceArray.from_numpy(backend, device, np.asarray(xv.obj), xv.dtype)
    bd = DeviceArray.from_numpy(backend, device, np.asarray(bv.obj), xv.dtype) if bv is not None and bv.device is None \
        else None
    od = DeviceArray(backend, device, (n, m), xv.dtype)
    dx, db, do = xd.view(), bd.view() if bd is not None else bv, od.view()
    plan = plan_for(backend, device, w, xv.dtype, n)
    _launch(backend, device, plan, w, dx, db, do).run(0, _values(w, dx.ptr, db.ptr if db is not None else 0, do.ptr))
    backend.synchronize(device)
    return pipeline.deliver(od.to_numpy(), out)


class Q4Linear:
    """y = x @ dequant(w).T + bias with a 4-bit weight kept on the device (Linear.from_quantized makes one)."""

    def __init__(self, w: quant4.Q4Weight, bias: Any = None, *, device: int | None = None):
        b = None
        if bias is not None:  # checked before anything is uploaded
            b = np.asarray(bias)
            m = w.shape[0] if isinstance(w, quant4.Q4Weight) else None
            if b.ndim != 1 or b.shape[0] != m or b.dtype.name not in ("float16", "bfloat16"):
                raise ValueError(f"bias must be a 1-D float16 or bfloat16 host array [M] = [{m}], got "
                                 f"{b.dtype} {list(b.shape)}")
        self.weight = Q4Device.upload(w, device=device)
        self.out_features, self.in_features = self.weight.shape
        self.bias = DeviceArray.from_numpy(self.weight.backend, self.weight.device, b, b.dtype.name) \
            if b is not None else None

    def __call__(self, x: Any, *, out: Any = None, stream: Any = None):
        return w4_gemm(x, self.weight, self.bias, out=out, stream=stream)
