"""fp8 benchmark cases: W8A8 per-tensor (fp8), per-token x per-channel (fp8-channel), W8A16 (w8a16)
and in-kernel static quantization (fp8-static), each against its torch baseline in the same run.
torch._scaled_mm needs operands of a multiple of 16 rows, so its baselines run the tokens padded to that
(what a caller of it must do). K must be a multiple of 16 (16-byte fp8 slices): shapes of a suite that break
the rule are skipped, and said so."""
from __future__ import annotations

import numpy as np

from ..kernels import fp8
from ..runtime.backend import get_backend
from ..runtime.jit import get_kernel
from .. import scaled
from . import operands, timing
from . import runner
from .runner import Case

FMT = "float8_e4m3fn"
MODES = ("fp8", "fp8-channel", "w8a16", "fp8-static")
DESCRIBE = {"fp8": "W8A8, per-tensor scales", "fp8-channel": "W8A8, per-token x per-channel scales",
            "w8a16": "fp8 weights, bf16 tokens", "fp8-static": "bf16 tokens quantized in the kernel, static scale"}


_view = operands.view


def padded(n: int) -> int:
    """Rows torch._scaled_mm is given for n tokens: a multiple of 16 (what a caller of it must pad to)."""
    return -(-n // 16) * 16


def random_fp8(cp, shape):
    b = cp.random.randint(0, 256, shape, dtype=cp.int32).astype(cp.uint8)
    return cp.where((b & 0x7F) == 0x7F, b - 1, b).astype(cp.uint8)  # no NaN codes


class Fp8Operands:
    def __init__(self, cp, shape, l2: int, with_bf16: bool, n_max: int = 16):
        self.cp, self.shape = cp, shape
        m, k = shape.m, shape.k
        rows = padded(n_max)
        self.copies = operands.n_copies(m * k, l2)
        self.w = [random_fp8(cp, (m, k)) for _ in range(self.copies)]
        self.x8 = random_fp8(cp, (rows, k))
        self.x16 = operands.random_16bit(cp, (rows, k), "bfloat16")
        self.sx = (cp.random.random(rows, dtype=cp.float32) + 0.5) * cp.float32(1e-2)
        self.sw = (cp.random.random(m, dtype=cp.float32) + 0.5) * cp.float32(1e-2)
        self.out = [cp.empty((rows, m), dtype=cp.uint16) for _ in range(self.copies)]
        self.wb16 = None
        if with_bf16:  # cold bf16 weights of the same shape for the W8A16 baseline
            nb = operands.n_copies(2 * m * k, l2)
            self.wb16 = [operands.random_16bit(cp, (m, k), "bfloat16") for _ in range(nb)]

    def args(self, mode: str, n: int, i: int):
        """(x, w, scale_x, scale_w, out) Views for copy i."""
        return mode_args(mode, n, self.x8, self.x16, self.w[i], self.sx, self.sw, self.out[i])

    def prepared(self, mode: str, n: int):
        out = []
        for i in range(self.copies):
            x, w, sx, sw, o = self.args(mode, n, i)
            out.append(scaled.prepare_scaled(x, w, sx, sw, out=o, out_dtype="bfloat16"))
        return out

    def check(self, mode: str, n: int, prep) -> float:
        self.out[0].fill(0xFFFF)
        prep.launch(0)
        self.cp.cuda.runtime.deviceSynchronize()
        return check_rows(self.cp, mode, n, self.x8, self.x16, self.w[0], self.sx, self.sw, self.out[0],
                          f"{self.shape.name} N={n} {mode}", prep.plan.family == "blaslt")


# the scales of each mode: per tensor (numbers, passed by value) or per token x per channel (device vectors)
SX, SW, SX_STATIC = 0.01, 0.02, 0.05


def mode_args(mode: str, n: int, x8, x16, w, sx, sw, out):
    """(x, w, scale_x, scale_w, out) Views of a mode's call at n tokens: x8 fp8 and x16 bf16 tokens
    (>= n rows), w fp8 bytes, sx [>= n] and sw [M] float32 scales, out bf16 bits (>= n rows)."""
    wv, ov = _view(w, FMT), _view(out[:n], "bfloat16")
    if mode == "fp8":
        return _view(x8[:n], FMT), wv, SX, SW, ov
    if mode == "fp8-channel":
        return _view(x8[:n], FMT), wv, _view(sx[:n], "float32"), _view(sw, "float32"), ov
    if mode == "w8a16":
        return _view(x16[:n], "bfloat16"), wv, None, _view(sw, "float32"), ov
    if mode == "fp8-static":
        return _view(x16[:n], "bfloat16"), wv, SX_STATIC, _view(sw, "float32"), ov
    raise ValueError(f"fp8 mode must be one of {', '.join(MODES)}, got {mode!r}")


#: cuBLASLt's fp8 route adds each k-block's products at the tensor cores' reduced precision before its fp32
#: accumulation: up to 1.3e-4 of the terms' magnitude measured on random fp8 bytes (H100, 2026-12-05; the
#: kernel's fp32 sums stay within K * 2^-23), so its bound holds 2^-12 of the magnitude
LT_ACCUMULATION = 2.0 ** -12


def check_rows(cp, mode: str, n: int, x8, x16, w, sx, sw, out, label: str, lt: bool = False) -> float:
    """Relative error of a mode's finished output (mode_args' operands) on 128 random rows and the last
    32 against float64 of the operands it multiplies; raises AssertionError past the rounding bound (lt: the
    cuBLASLt route's, LT_ACCUMULATION)."""
    import ml_dtypes
    m, k = w.shape
    rows = np.unique(np.concatenate([np.random.default_rng(n).integers(0, m, 128), np.arange(max(0, m - 32), m)]))
    wh = w[cp.asarray(rows)].get().view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    swh = sw.get().astype(np.float64)[rows] if mode != "fp8" else np.float64(np.float32(SW))
    if mode in ("fp8", "fp8-channel"):
        x = x8[:n].get().view(ml_dtypes.float8_e4m3fn).astype(np.float64)
        sxh = sx[:n].get().astype(np.float64)[:, None] if mode == "fp8-channel" else np.float64(np.float32(SX))
    else:
        xb = x16[:n].get().view(ml_dtypes.bfloat16)
        if mode == "w8a16":
            x, sxh = xb.astype(np.float64), 1.0
        else:
            inv = np.float32(1) / np.float32(SX_STATIC)
            x = np.clip(xb.astype(np.float32) * inv, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
            sxh = np.float64(np.float32(SX_STATIC))
    ref = (x @ wh.T) * sxh * swh
    mag = (np.abs(x) @ np.abs(wh).T) * np.abs(sxh) * np.abs(swh)
    got = out[:n].get().view(ml_dtypes.bfloat16).astype(np.float64)[:, rows]
    bound = 2.0 ** -7 * np.abs(ref) + max(k * 2.0 ** -23, LT_ACCUMULATION if lt else 0.0) * mag + 1e-30
    err = np.abs(got - ref)
    if np.isnan(got).any() or (err > bound).any():
        raise AssertionError(f"{label}: wrong result (max err {err.max():.3g})")
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def scaled_mm_refuses(mode: str, m: int) -> bool:
    """Whether torch's baseline for the mode has no call for M: `_scaled_mm` (every mode but W8A16, whose
    baseline is bf16 torch.mm) wants both matrix dimensions multiples of 16."""
    return mode != "w8a16" and m % 16 != 0


def time_torch(ops: Fp8Operands, mode: str, n: int) -> dict | None:
    """torch's time for the case, or None where torch has no such call (no torch, or scaled_mm_refuses)."""
    if scaled_mm_refuses(mode, ops.shape.m):
        return None
    try:
        import torch
    except ImportError:
        return None
    f8 = [torch.from_dlpack(w).view(torch.float8_e4m3fn) for w in ops.w]
    m, rows = ops.shape.m, padded(n)
    a8 = torch.from_dlpack(ops.x8).view(torch.float8_e4m3fn)[:rows]  # rows padded to 16: what _scaled_mm accepts
    outs = [torch.empty((rows, m), dtype=torch.bfloat16, device=a8.device) for _ in f8]
    if mode in ("fp8", "fp8-static"):
        sa, sb = torch.tensor(SX, device=a8.device), torch.tensor(SW, device=a8.device)
        def launch(i):
            j = i % len(f8)
            torch._scaled_mm(a8, f8[j].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16, out=outs[j])
    elif mode == "fp8-channel":
        sa = torch.from_dlpack(ops.sx)[:rows].view(rows, 1)
        sb = torch.from_dlpack(ops.sw).view(1, m)
        def launch(i):
            j = i % len(f8)
            torch._scaled_mm(a8, f8[j].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16, out=outs[j])
    else:  # w8a16: bf16 cuBLAS on bf16 weights of the same shape
        xb = torch.from_dlpack(ops.x16[:n]).view(torch.bfloat16)
        wb = [torch.from_dlpack(w).view(torch.bfloat16) for w in ops.wb16]
        outs = [torch.empty((n, m), dtype=torch.bfloat16, device=xb.device) for _ in wb]
        def launch(i):
            j = i % len(wb)
            torch.mm(xb, wb[j].t(), out=outs[j])
    return runner.time_torch_launch(launch)


def time_unfused(ops: Fp8Operands, n: int, stream) -> dict:
    """Our own quantize_fp8 (per-tensor, dynamic) followed by the W8A8 kernel: two launches."""
    cp = ops.cp
    b = get_backend("cuda")
    dev = int(cp.cuda.Device().id)
    qk = get_kernel(fp8.quant_instance("bfloat16", False, FMT), b, dev, fp8.QUANT_ARG_KINDS)
    q = cp.empty((n, ops.shape.k), dtype=cp.uint8)
    sc = cp.empty((1,), dtype=cp.float32)
    preps = []
    for i in range(ops.copies):
        _, w, _, sw, o = ops.args("fp8-static", n, i)
        preps.append(scaled.prepare_scaled(_view(q, FMT), w, _view(sc, "float32"), sw, out=o, out_dtype="bfloat16"))
    k = ops.shape.k
    def launch(i):
        qk.launch((1, 1, 1), (1024, 1, 1), 0, stream.ptr, q.data.ptr, k, sc.data.ptr, ops.x16.data.ptr, k, n, k)
        preps[i % len(preps)].launch(stream.ptr)
    return {"us_b2b": timing.back_to_back(launch, stream), "us_graph": timing.graph_replay(launch, stream)}


def run(cp, modes, ns, shapes, l2: int, baselines: bool, log, cases: list | None = None) -> list[Case]:
    """Each case, appended to `cases` as it is measured (so an interrupt keeps them); returns the list."""
    stream = cp.cuda.Stream(non_blocking=True)
    cases = [] if cases is None else cases
    skipped = [sh.name for sh in shapes if sh.k % 16]
    if skipped:
        print(f"fp8: skipping {len(skipped)} shape(s) whose K is no multiple of 16: {', '.join(skipped)}", flush=True)
    odd_m = [sh.name for sh in shapes if not sh.k % 16 and any(scaled_mm_refuses(md, sh.m) for md in modes)]
    if odd_m and baselines:
        print(f"fp8: no torch._scaled_mm baseline for {len(odd_m)} shape(s) whose M is no multiple of 16 (torch "
              f"refuses them): {', '.join(odd_m)}", flush=True)
    for sh in shapes:
        if sh.k % 16:
            continue
        ops = Fp8Operands(cp, sh, l2, with_bf16=baselines and "w8a16" in modes, n_max=max(ns))
        for mode in modes:
            for n in ns:
                c = Case(sh.name, sh.m, sh.k, n, mode, w_bytes=1, x_bytes=1 if mode.startswith("fp8") and mode != "fp8-static" else 2)
                preps = ops.prepared(mode, n)
                c.plan = str(preps[0].plan)
                c.max_rel_err = ops.check(mode, n, preps[0])
                launch = lambda i: preps[i % len(preps)].launch(stream.ptr)
                c.us_b2b = timing.back_to_back(launch, stream)
                c.us_graph = c.us_graph_kernel = timing.graph_replay(launch, stream)
                c.family = preps[0].plan.family
                if c.family == "blaslt":  # the dispatcher chose cuBLASLt: time jitgemm's own kernel too
                    with runner.kernel_only():
                        kp = ops.prepared(mode, n)
                        ops.check(mode, n, kp[0])
                        c.us_graph_kernel = timing.graph_replay(lambda i: kp[i % len(kp)].launch(stream.ptr), stream)
                if baselines:
                    r = time_torch(ops, mode, n)
                    if r:
                        c.baselines["torch"] = r
                if mode == "fp8-static":
                    c.baselines["unfused"] = time_unfused(ops, n, stream)
                cases.append(c)
                log(c)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
    return cases
