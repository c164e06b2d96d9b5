"""4-bit benchmark cases (issue #19): w4_gemm per format against bf16 cuBLAS on bf16 weights of the same
shape, in the same run. The modes name a format and its group as checkpoints ship them: w4-mxfp4 (gpt-oss,
group 32), w4-q4_sym (GPTQ, group 128), w4-q4_min (GGUF Q4_1, group 32), w4-q4_zp (AWQ, group 128).

Random codes are random bytes in any layout, so the weights are made on the GPU directly in the kernels'
layout (no host conversion of hundreds of MB); checks read a few rows back through
quant4.from_device_layout and compare against float64 of their dequantized values."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import quant4
from ..device_array import DeviceArray
from ..kernels import w4
from ..runtime.backend import get_backend
from ..w4experts import Q4Experts
from ..w4gemm import Q4Device, prepare_w4
from . import operands, runner, timing
from .runner import Case

MODES = {f"w4-{fmt}": (fmt, group) for fmt, group in w4.TABLE_GROUP.items()}


def weight_bytes(mode: str) -> float:
    """Bytes per weight element the kernel reads: half a byte of code, plus the group's scale (and min
    or zero point) shared by its elements."""
    fmt, group = MODES[mode]
    extra = {"mxfp4": 1, "q4_sym": 2, "q4_min": 4, "q4_zp": 3}[fmt]
    return 0.5 + extra / group


def _cupy(cp, d: DeviceArray):
    """A jitgemm DeviceArray (uint8 or float16; or expert_of's part of one) as a CuPy array over the same memory."""
    return cp.ndarray(d.shape, cp.uint8 if d.dtype == "uint8" else cp.float16,
                      cp.cuda.MemoryPointer(cp.cuda.UnownedMemory(d.ptr, d.nbytes, d), 0))


def _fill(cp, d: DeviceArray, values) -> None:
    """Copy a CuPy array of d's shape and dtype into a jitgemm DeviceArray."""
    _cupy(cp, d)[...] = values


def random_q4(cp, m: int, k: int, mode: str, experts: int | None = None):
    """A 4-bit weight [M, K] of `mode` made on the current CuPy device (a Q4Device; with `experts`, a Q4Experts
    stack of that many): random codes, scales near 0.01 (fp16) or 2^-7 +- 4 (e8m0), mins near 0, zero points 0..15."""
    fmt, group = MODES[mode]
    b, dev = get_backend("cuda"), int(cp.cuda.Device().id)
    lead = () if experts is None else (experts,)
    rows = m * (experts or 1)
    g = quant4.group_pitch(k, group)  # the device pitch (padding values are never used)

    def made(values, dtype: str) -> DeviceArray:  # values: [rows, width]
        d = DeviceArray(b, dev, (*lead, m, values.shape[1]), dtype)
        _fill(cp, d, values.reshape(d.shape))
        return d
    q = made(cp.random.randint(0, 256, (rows, -(-k // 128) * 64), dtype=cp.int32).astype(cp.uint8), "uint8")
    if fmt == "mxfp4":
        scales = made(cp.random.randint(123, 131, (rows, g), dtype=cp.int32).astype(cp.uint8), "uint8")
    else:
        values = (cp.random.random((rows, g), dtype=cp.float32) * 0.01 + 0.005).astype(cp.float16)
        if fmt == "q4_min":  # each 128-k block's scales, then its minima (quant4.scale_records)
            mins = (cp.random.standard_normal((rows, g), dtype=cp.float32) * 0.01).astype(cp.float16)
            values = quant4.records(values, mins, group, cp)
        scales = made(values, "float16")
    aux = made(cp.random.randint(0, 16, (rows, g), dtype=cp.int32).astype(cp.uint8), "uint8") if fmt == "q4_zp" \
        else None
    if experts is None:  # e8m0 123..130: all normal
        return Q4Device(fmt, group, (m, k), q, scales, aux, normal_scales=fmt == "mxfp4")
    return Q4Experts(fmt, group, (experts, m, k), q, scales, aux, normal_scales=fmt == "mxfp4")


def expert_of(w: Q4Experts, e: int) -> SimpleNamespace:
    """Expert e of a stack as the fields host_weight reads (its arrays' memory, no copy)."""
    def part(d: DeviceArray | None):
        if d is None:
            return None
        size = d.nbytes // d.shape[0]
        return SimpleNamespace(shape=d.shape[1:], dtype=d.dtype, ptr=d.ptr + e * size, nbytes=size)
    return SimpleNamespace(shape=w.shape[1:], format=w.format, group=w.group, q=part(w.q), scales=part(w.scales),
                           aux=part(w.aux))


def host_weight(cp, w: Q4Device, rows) -> quant4.Q4Weight:
    """Rows of a device weight as a host Q4Weight (to dequantize for a check)."""
    m, k = w.shape
    pick = cp.asarray(rows)
    q = quant4.from_device_layout(_cupy(cp, w.q)[pick].get(), k, w.format)
    g = k // w.group  # the device arrays' pitch is padded (quant4.group_pitch)
    scales, mins = _cupy(cp, w.scales)[pick].get(), None
    if w.format == "q4_min":
        scales, mins = quant4.split_records(scales, k, w.group)
    scales = scales[:, :g]
    zeros = _cupy(cp, w.aux)[pick].get()[:, :g] if w.aux is not None else None
    return quant4.Q4Weight(w.format, q, scales, w.group, mins=mins, zeros=zeros)


def check_rows(cp, w: Q4Device, x, out, dtype: str, label: str) -> float:
    """Relative error of a finished output (16-bit bits in uint16 arrays) on 128 random rows and the last
    32 against float64 of the dequantized weights; raises AssertionError past the rounding bound."""
    m, k = w.shape
    n = x.shape[0]
    rows = np.unique(np.concatenate([np.random.default_rng(n).integers(0, m, 128), np.arange(max(0, m - 32), m)]))
    deq = quant4.dequantize(host_weight(cp, w, rows)).astype(np.float64)
    xh = operands.to_host(x, dtype).astype(np.float64)
    ref = xh @ deq.T
    got = operands.to_host(out, dtype).astype(np.float64)[:, rows]
    bound = (2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10) * np.abs(ref) + k * 2.0 ** -23 * (np.abs(xh) @ np.abs(deq).T) \
        + 1e-30
    err = np.abs(got - ref)
    if np.isnan(got).any() or (err > bound).any():
        raise AssertionError(f"{label}: wrong result (max err {err.max():.3g})")
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


class W4Operands:
    """Cold copies of a mode's weight (>= 4x L2 in all), bf16 tokens and outputs, and cold bf16 weights of
    the same shape for the cuBLAS baseline."""

    def __init__(self, cp, shape, mode: str, l2: int, n_max: int, with_bf16: bool):
        self.cp, self.shape, self.mode = cp, shape, mode
        m, k = shape.m, shape.k
        self.copies = operands.n_copies(int(weight_bytes(mode) * m * k), l2)
        self.w = [random_q4(cp, m, k, mode) for _ in range(self.copies)]
        self.x = operands.random_16bit(cp, (n_max, k), "bfloat16")
        self.out = [cp.empty((n_max, m), dtype=cp.uint16) for _ in range(self.copies)]
        self.wb16 = [operands.random_16bit(cp, (m, k), "bfloat16") for _ in range(operands.n_copies(2 * m * k, l2))] \
            if with_bf16 else None

    def prepared(self, n: int):
        return [prepare_w4(operands.view(self.x[:n], "bfloat16"), w, out=operands.view(o[:n], "bfloat16"))
                for w, o in zip(self.w, self.out)]

    def check(self, n: int, prep) -> float:
        self.out[0].fill(0xFFFF)
        prep.launch(0)
        self.cp.cuda.runtime.deviceSynchronize()
        return check_rows(self.cp, self.w[0], self.x[:n], self.out[0][:n], "bfloat16",
                          f"{self.shape.name} N={n} {self.mode}")


def time_bf16(ops: W4Operands, n: int) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    xb = operands.torch_view(ops.x[:n], "bfloat16")
    wb = [operands.torch_view(w, "bfloat16") for w in ops.wb16]
    outs = [torch.empty((n, ops.shape.m), dtype=torch.bfloat16, device=xb.device) for _ in wb]

    def launch(i):
        j = i % len(wb)
        torch.mm(xb, wb[j].t(), out=outs[j])
    return runner.time_torch_launch(launch)


def run(cp, modes, ns, shapes, l2: int, baselines: bool, log, cases: list | None = None) -> list[Case]:
    """Each case, appended to `cases` as it is measured (so an interrupt keeps them); returns the list."""
    stream = cp.cuda.Stream(non_blocking=True)
    cases = [] if cases is None else cases
    for mode in modes:
        group = MODES[mode][1]
        skipped = [sh.name for sh in shapes if sh.k % group or sh.k % 32]
        if skipped:
            print(f"{mode}: skipping {len(skipped)} shape(s) whose K is no multiple of {group}: {', '.join(skipped)}",
                  flush=True)
        for sh in shapes:
            if sh.name in skipped:
                continue
            ops = W4Operands(cp, sh, mode, l2, max(ns), baselines)
            for n in ns:
                c = Case(sh.name, sh.m, sh.k, n, mode, w_bytes=weight_bytes(mode), x_bytes=2)
                preps = ops.prepared(n)
                c.plan, c.family = str(preps[0].plan), "w4"
                c.max_rel_err = ops.check(n, preps[0])
                launch = lambda i: preps[i % len(preps)].launch(stream.ptr)
                c.us_b2b = timing.back_to_back(launch, stream)
                c.us_graph = timing.graph_replay(launch, stream)
                if baselines:
                    r = time_bf16(ops, n)
                    if r:
                        c.baselines["torch"] = r
                cases.append(c)
                log(c)
            del ops
            cp.get_default_memory_pool().free_all_blocks()
    return cases
