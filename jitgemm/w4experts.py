"""A mixture-of-experts layer's 4-bit experts in one launch (NOTES idea 11): Q4Experts and w4_experts_gemm.

A MoE decode step runs each routed expert's GEMM on the few tokens routed to it: at N = 1, Qwen3-30B-A3B's 48
layers make 768 expert calls of 1.5-3 MB each, and the step reads its weights at a third of the streaming-read
ceiling (a launch's fixed cost per expert). w4_experts_gemm runs G groups of tokens, each against its own expert
of a stack of E, as one grid; the expert ids stay on the device (a router's output), so a routed step can be
captured in one CUDA graph. Each group runs exactly the kernel body a w4_gemm call of its own would (the same
config and K order), so its bits equal that call's."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import dispatch, pipeline, quant4, validate
from .arrays import I32, SIXTEEN_BIT, View, as_view
from .device_array import DeviceArray
from .kernels import w4
from .launch import KernelLaunch
from .runtime.backend import default_backend
from .runtime.jit import get_kernel
from .w4gemm import Packed4, host_layout, take_layout, upload_layout


class Q4Experts(Packed4):
    """E 4-bit weights of one format, group and shape [M, K] on one device, stacked (a MoE layer's experts): q,
    scales and (q4_zp) aux as Q4Device's, with a leading expert axis ([E, ...], contiguous DeviceArrays).
    Make one with Q4Experts.upload([quant4 weight, ...])."""

    def __init__(self, fmt: str, group: int, shape: tuple[int, int, int], q: DeviceArray, scales: DeviceArray,
                 aux: DeviceArray | None, *, normal_scales: bool = False):
        e, m, k = shape
        take_layout(self, fmt, group, (e,), m, k, q, scales, aux, normal_scales)

    @classmethod
    def upload(cls, weights, *, device: int | None = None) -> "Q4Experts":
        """Check each weight (quant4.check), all of one format, group and shape, and copy them, stacked in the
        kernels' layout, to `device` (default: the current device of the default backend)."""
        weights = list(weights)
        if not weights or not all(isinstance(w, quant4.Q4Weight) for w in weights):
            raise TypeError("weights must be a non-empty sequence of jitgemm.quant4.Q4Weight (quant4.from_gguf / "
                            "from_gptq / from_awq make them)")
        first = weights[0]
        for i, w in enumerate(weights):
            quant4.check(w)
            if (w.format, w.group, tuple(w.shape)) != (first.format, first.group, tuple(first.shape)):
                raise ValueError(f"every expert must share weights[0]'s format, group and shape ({first.format}, "
                                 f"{first.group}, {list(first.shape)}); weights[{i}] is {w.format}, {w.group}, "
                                 f"{list(w.shape)}")
        layouts = [host_layout(w) for w in weights]
        backend = default_backend()
        dev = backend.current_device() if device is None else device
        arrays = upload_layout(backend, dev, first.format, [None if layouts[0][j] is None else
                                                            np.stack([lay[j] for lay in layouts]) for j in range(3)])
        # the short MXFP4 decode only where every expert's scales allow it (one instance runs them all)
        normal = all(lay[3] for lay in layouts)
        return cls(first.format, first.group, (len(weights), *first.shape), *arrays, normal_scales=normal)



def _check_tokens(x, w) -> View:
    """The rules on w and on x's shape and dtype (what the plan depends on): w a Q4Experts [E, M, K], x [G, N, K]
    fp16/bf16 with G and N in range."""
    if not isinstance(w, Q4Experts):
        raise TypeError(f"w must be a jitgemm Q4Experts (Q4Experts.upload(quant4 weights)), got {type(w).__name__}")
    _, m, k = w.shape
    xv = as_view(x, "x")
    if xv.ndim != 3:
        raise ValueError(f"x must be 3-D [G, N, K] (groups of tokens, one group an expert), got {xv.ndim}-D with "
                         f"shape {xv.shape}")
    validate.require_dtype(xv, "x", SIXTEEN_BIT)
    g, n, kx = xv.shape
    if kx != k:
        raise ValueError(f"x and w must agree on K: x is [G, N, K] = {xv.shape}, w is [E, M, K] = {w.shape}")
    if not 1 <= g <= w4.MAX_GROUPS or not 1 <= n <= w4.MAX_N:
        raise ValueError(f"x must have G in 1..{w4.MAX_GROUPS} groups of N in 1..{w4.MAX_N} tokens, got G={g}, N={n}")
    validate.require_int32_dims(M=m, K=k)
    return xv


def explain_w4_experts(x: Any, w: Q4Experts, target=None) -> str:
    """What w4_experts_gemm would run for tokens x [G, N, K] on the stack w (api.explain's experts case; target:
    explain(arch=)'s). Only x's shape and dtype matter here, so x may be a host array of them."""
    try:
        xv = _check_tokens(x, w)
    except (ValueError, TypeError) as e:
        return f"w4_experts_gemm would refuse this: {e}"
    g, n, _ = xv.shape
    if target is not None:
        _, m, k = w.shape
        return target.explain(dispatch.plan_w4_experts(target.vendor, target.arch, target.sms, xv.dtype, w.format,
                                                       w.group, n, m, k, g, normal_scales=w.normal_scales))
    return str(plan_for(w.backend, w.device, w, xv.dtype, g, n))


def _check(x, experts, w, bias, out) -> tuple[View, View, View | None, View | None]:
    """Every rule a call must meet, before any GPU work: x [G, N, K] 16-bit on the device (each group's rows as
    w4_gemm's x), experts int32 [G] beside it, bias None or [E, M] (one row an expert), out None or [G, N, M]
    whose groups and rows do not overlap."""
    xv = _check_tokens(x, w)
    e, m, k = w.shape
    g, n, _ = xv.shape
    if xv.device is None:
        raise ValueError("w4_experts_gemm needs x on the device (a routed layer's tokens are there already); "
                         "copy a numpy x first")
    _require_groups(xv, "x", k, 8, apart=False)
    ev = as_view(experts, "experts")
    if ev.dtype != I32:
        raise TypeError(f"experts must be int32 expert ids (0..{e - 1}), got {ev.raw_dtype} (torch's topk gives int64: "
                        f".to(torch.int32))")
    if ev.ndim != 1 or ev.shape[0] != g:
        raise ValueError(f"experts must be [G] = [{g}], one expert id a group of x, got shape {list(ev.shape)}")
    if ev.device is None:
        raise ValueError("experts must be on the device (ids a router made there); copy a numpy array first")
    if g > 1 and ev.strides[0] != 1:
        raise ValueError(f"experts must be contiguous, got element stride {ev.strides[0]}")
    validate.require_aligned(ev, "experts", 4)
    bv = None
    if bias is not None:
        bv = as_view(bias, "bias")
        if bv.dtype != xv.dtype:
            raise TypeError(f"bias dtype must be x's ({xv.dtype}), got {bv.raw_dtype}")
        if bv.shape != (e, m):
            raise ValueError(f"bias must be [E, M] = [{e}, {m}] (one row an expert), got {list(bv.shape)}")
        if m > 1 and bv.strides[1] != 1 or e > 1 and bv.strides[0] < m:
            raise ValueError(f"bias must have unit stride along M and rows apart, got element strides {bv.strides}")
        validate.require_aligned(bv, "bias", 2)
    ov = None
    if out is not None:
        ov = as_view(out, "out")
        validate.require_writable(ov, "out")
        if ov.dtype != xv.dtype:
            raise TypeError(f"out dtype must be x's ({xv.dtype}), got {ov.raw_dtype}")
        if ov.shape != (g, n, m):
            raise ValueError(f"out must be [G, N, M] = [{g}, {n}, {m}], got {list(ov.shape)}")
        if ov.device is None:
            raise ValueError("out must be on the device, beside x")
        _require_groups(ov, "out", m, 1, apart=True)
    validate.require_addressable([(name, v) for name, v in (("x", xv), ("experts", ev), ("bias", bv), ("out", ov))
                                  if v is not None])
    return xv, ev, bv, ov


def _require_groups(v: View, arg: str, row: int, vector_elems: int, apart: bool) -> tuple[int, int]:
    """(group stride, row pitch) in elements of a [G, N, row] operand: unit stride along its rows, rows apart,
    groups apart where `apart` (out: overlapping groups would race; x may repeat one group's tokens for every
    group, stride 0, as a token routed to several experts does), pitches multiples of `vector_elems` (x: 16-byte
    rows) and a base aligned to them."""
    g, n, _ = v.shape
    gs, pitch, unit = v.strides
    if row > 1 and unit != 1:
        raise ValueError(f"{arg} must have unit stride along its last dimension, got element strides {v.strides}")
    pitch = pitch if n > 1 else max(row, vector_elems)
    gs = gs if g > 1 else n * pitch
    if pitch < row or gs < 0 or apart and gs < (n - 1) * pitch + row:
        raise ValueError(f"{arg}'s rows{' or groups' if apart else ''} overlap (or run backwards): element strides "
                         f"{v.strides} for shape {v.shape}")
    if pitch % vector_elems or gs % vector_elems:
        raise ValueError(f"{arg}'s row pitch and group stride must be multiples of {vector_elems} elements "
                         f"(16-byte aligned rows), got {pitch} and {gs}")
    align = vector_elems * v.itemsize
    if v.ptr % align:
        raise ValueError(f"{arg} data pointer must be {align}-byte aligned, got address {v.ptr:#x}")
    return gs, pitch


def _views(w: Q4Experts, xv, ev, bv, ov) -> list[tuple[str, View]]:
    views = [("x", xv), ("experts", ev), ("w", w.q.view()), ("w's scales", w.scales.view())]
    views += [("w's zero points", w.aux.view())] if w.aux is not None else []
    return views + ([("bias", bv)] if bv is not None else []) + ([("out", ov)] if ov is not None else [])


# the argument list (kernels/w4.EXPERTS_ARG_KINDS): w4_gemm's, then experts, E, gx, go, ew, es, ea, eb; a call's
# values are written to slots 2 (x), 16 (experts), 4 (w), 6 (scales), 8 (aux), 10 (bias), 0 (out)
def _launch(backend, device: int, plan, w: Q4Experts, xv: View, bv: View | None, ov: View | None) -> KernelLaunch:
    g, n, k = xv.shape
    e, m, _ = w.shape
    gx, ldx = _require_groups(xv, "x", k, 8, apart=False)
    go, ldo = _require_groups(ov, "out", m, 1, apart=True) if ov is not None else (n * m, m)
    ldw, lds = w.q.shape[2], w.scales.shape[2]
    lda = w.aux.shape[2] if w.aux is not None else 0
    ew, es = m * ldw, m * lds * (1 if w.format == "mxfp4" else 2)  # bytes an expert
    ea = m * lda
    eb = bv.strides[0] if bv is not None and e > 1 else m
    args = [0, ldo, 0, ldx, 0, ldw, 0, lds, 0, lda, 0, m, 1 if bv is not None else 0, n, m, k,
            0, e, gx, go, ew, es, ea, eb]
    slots = (2, 16, 4, 6, 8 if w.aux is not None else None, 10 if bv is not None else None, 0)
    return KernelLaunch(backend, device, get_kernel(plan.instance, backend, device, w4.EXPERTS_ARG_KINDS), plan,
                        args, slots)


def _values(w: Q4Experts, x_ptr: int, e_ptr: int, bias_ptr: int, out_ptr: int) -> list:
    return [x_ptr, e_ptr, w.q.ptr, w.scales.ptr, w.aux.ptr if w.aux is not None else 0, bias_ptr, out_ptr]


def plan_for(backend, device: int, w: Q4Experts, dtype: str, groups: int, n: int) -> dispatch.Plan:
    info = backend.device_info(device)
    _, m, k = w.shape
    return dispatch.plan_w4_experts(backend.name, info.arch, info.multiprocessors, dtype, w.format, w.group, n, m, k,
                                    groups, device=info.name, normal_scales=w.normal_scales)


def w4_experts_gemm(x: Any, experts: Any, w: Q4Experts, bias: Any = None, *, out: Any = None, stream: Any = None):
    """out[g] = x[g] . dequant(w[experts[g]]).T (+ bias[experts[g]]) for every group g, in one launch: x [G, N, K]
    fp16/bf16 tokens (group g: the N tokens routed to expert experts[g]; pad a group with fewer), experts int32
    [G] ids on the device, w a Q4Experts [E, M, K], bias None or [E, M], out None or [G, N, M]. Each group's
    result has the bits of w4_gemm(x[g], that expert). An id outside 0..E-1 makes its group's rows NaN (the ids
    are on the device, out of the host's sight). stream=None: as gemm's."""
    def cold(key, x, experts, _q, _s, _a, bias, out, stream):
        return _cold(key, x, experts, w, bias, out, stream)
    if not isinstance(w, Q4Experts):
        return cold(None, x, experts, None, None, None, bias, out, stream)  # _check names the rule
    return pipeline.call(("w4-experts", w.format, w.group, w.shape, w.normal_scales),
                         (x, experts, w.q, w.scales, w.aux, bias, out), stream, cold)


def _cold(key, x, experts, w, bias, out, stream):
    validate.require_stream_type(stream)
    xv, ev, bv, ov = _check(x, experts, w, bias, out)
    backend, device, _ = pipeline.placement(_views(w, xv, ev, bv, ov))
    g, n, _ = xv.shape
    m = w.shape[1]
    plan = plan_for(backend, device, w, xv.dtype, g, n)
    checks = (16, 4, 16, 2 if w.format != "mxfp4" else 1, 1, 2, 2)
    entry = pipeline.Entry(_launch(backend, device, plan, w, xv, bv, ov), checks,
                           pipeline.current_stream_rule([xv, ov or xv], device),
                           pipeline.output_factory(xv, backend, device, (g, n, m), xv.dtype),
                           pipeline.extents([xv, ev, w.q.view(), w.scales.view(),
                                             w.aux.view() if w.aux is not None else None, bv, ov]))
    pipeline.store(key, entry)
    values = _values(w, xv.ptr, ev.ptr, bv.ptr if bv is not None else 0, ov.ptr if ov is not None else 0)
    return entry.run((x, experts, w.q, w.scales, w.aux, bias, out), values, stream)


def prepare_w4_experts(x: Any, experts: Any, w: Q4Experts, bias: Any = None, *, out: Any):
    """Validate and plan a w4_experts_gemm once (device operands); the result's launch(stream) only enqueues the
    kernel: decode loops, benchmarks, graph capture."""
    xv, ev, bv, ov = _check(x, experts, w, bias, out)
    if ov is None:
        raise ValueError("prepare_w4_experts needs out (a device array [G, N, M])")
    backend, device, _ = pipeline.placement(_views(w, xv, ev, bv, ov))
    plan = plan_for(backend, device, w, xv.dtype, xv.shape[0], xv.shape[1])
    return pipeline.Prepared(plan, _launch(backend, device, plan, w, xv, bv, ov),
                             _values(w, xv.ptr, ev.ptr, bv.ptr if bv is not None else 0, ov.ptr),
                             (x, experts, w, bias, out))

