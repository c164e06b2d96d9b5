"""Runs benchmark cases: correctness first (float64 reference on sampled rows), then both timing
modes for jitgemm and each baseline, with the streaming-read ceiling measured in the same run."""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field

from .. import api
from ..config import reload as reload_settings
from ..runtime.backend import get_backend
from ..runtime.jit import KernelInstance, get_kernel
from . import operands, timing
from .suite import Shape


@dataclass
class Case:
    shape: str
    m: int
    k: int
    n: int
    dtype: str
    plan: str = ""
    max_rel_err: float = float("nan")
    us_b2b: float = float("nan")
    us_graph: float = float("nan")
    baselines: dict = field(default_factory=dict)   # name -> {"us_b2b", "us_graph"}
    family: str = ""                                # what the dispatcher ran: skinny, moderate, fp8 or blas
    us_graph_kernel: float = float("nan")           # jitgemm's own kernel (JITGEMM_BLAS=0) where it chose cuBLAS
    w_bytes: int = 2   # bytes per weight / token element (fp8 modes: 1)
    x_bytes: int = 2

    def bytes_moved(self) -> int:
        return self.w_bytes * self.m * self.k + self.x_bytes * self.n * self.k + 2 * self.n * self.m


def meta(cp) -> dict:
    """What a result file says about where it was measured: the current device, versions, the date."""
    import datetime
    b = get_backend("cuda")
    info = b.device_info(int(cp.cuda.Device().id))
    return {"device": info.name, "arch": info.arch, "sms": info.multiprocessors, "l2_bytes": info.l2_bytes,
            **b.versions(), "date": datetime.date.today().isoformat()}


@contextlib.contextmanager
def kept_on_interrupt(meta: dict, done: list, unit: str, verb: str, out_dir, name: str, write):
    """A bench's measuring loop: on Ctrl-C (or the SIGINT of a call's timeout) `meta` says after how many
    `unit` the run stopped, write() puts what `done` holds into the files (minutes of work, marked partial by
    the tables that read meta["interrupted"]), and the interrupt goes on."""
    try:
        yield
    except KeyboardInterrupt:
        meta["interrupted"] = f"after {len(done)} {unit} (Ctrl-C)"
        if out_dir and done:
            write()
            print(f"bench interrupted: the {len(done)} {unit} {verb} so far are in {out_dir}/{name}.json", flush=True)
        raise


def ceiling_tbs(cp, gib: float = 1.0) -> float:
    """Achievable streaming-read TB/s: 16-byte non-caching loads over a >= 1 GiB buffer."""
    nbytes = int(gib * (1 << 30))
    buf = cp.empty(nbytes // 4, dtype=cp.uint32)
    buf.fill(1)
    sink = cp.zeros(4096, dtype=cp.uint32)
    backend = get_backend("cuda")
    dev = int(buf.device.id)
    k = get_kernel(KernelInstance("stream_read.hip", "jg_stream_read"), backend, dev, ("ptr", "i64", "ptr"))
    sms = backend.device_info(dev).multiprocessors
    grid, block = (sms * 8, 1, 1), (256, 1, 1)
    s = cp.cuda.Stream(non_blocking=True)
    def launch(_i):
        k.launch(grid, block, 0, s.ptr, buf.data.ptr, nbytes // 16, sink.data.ptr)
    us = timing.back_to_back(launch, s, calls=20, reps=5)
    return nbytes / (us * 1e-6) / 1e12


class Operands:
    """Weight copies, tokens and outputs of one (shape, dtype) on the GPU."""

    def __init__(self, cp, shape: Shape, dtype: str, n_max: int, l2: int):
        self.cp, self.shape, self.dtype = cp, shape, dtype
        wbytes = shape.m * shape.k * 2
        self.copies = operands.n_copies(wbytes, l2)
        self.w = [operands.random_16bit(cp, (shape.m, shape.k), dtype, (2.0 / shape.k) ** 0.5)
                  for _ in range(self.copies)]
        self.x = operands.random_16bit(cp, (n_max, shape.k), dtype)
        self.out = [cp.empty((n_max, shape.m), dtype=cp.uint16) for _ in range(self.copies)]

    def check(self, n: int, prepared) -> float:
        """Relative error of one call on sampled rows against float64; raises if out of bound."""
        self.out[0].fill(0xFFFF)
        prepared.launch(0)
        self.cp.cuda.runtime.deviceSynchronize()
        return operands.check_rows(self.cp, self.w[0], self.x[:n], self.out[0][:n], self.dtype,
                                   f"{self.shape.name} N={n}")


def prepared_calls(ops: Operands, n: int, config=None):
    """One Prepared per weight copy (and output), for rotation."""
    preps = []
    for i in range(ops.copies):
        xv = operands.view(ops.x[:n], ops.dtype)
        wv = operands.view(ops.w[i], ops.dtype)
        ov = operands.view(ops.out[i][:n], ops.dtype)
        p = api.prepare(xv, wv, out=ov) if config is None else _prepare_with(config, xv, wv, ov)
        preps.append(p)
    return preps


@contextlib.contextmanager
def forced_config(config, why: str = "forced by tuning"):
    """Inside, the NVIDIA dispatcher (skinny, fp8 and moderate-N) returns `config` for every shape;
    a moderate config also takes N <= 16, a skinny one keeps it."""
    from .. import dispatch
    from ..kernels import moderate
    orig = dispatch.nv_config, dispatch.moderate_nv_config, dispatch.small_n_moderate, dispatch.blas_choice
    dispatch.nv_config = dispatch.moderate_nv_config = lambda *a, **kw: (config, why)
    small = isinstance(config, moderate.ModerateConfig)
    dispatch.small_n_moderate = lambda *a, **kw: small
    dispatch.blas_choice = lambda *a, **kw: (False, "")  # a forced kernel config runs, never cuBLAS
    # plans are cached per signature and settings generation (and _plan_cached may be called with a key of
    # the caller's): a forced one must not stick, nor an earlier one survive
    reload_settings()
    api._plan_cached.cache_clear()
    try:
        yield
    finally:
        dispatch.nv_config, dispatch.moderate_nv_config, dispatch.small_n_moderate, dispatch.blas_choice = orig
        reload_settings()
        api._plan_cached.cache_clear()


@contextlib.contextmanager
def forced_w4_config(cfg, who: str):
    """Inside, dispatch.w4_nv_config (the one place a 4-bit NVIDIA config is chosen: table row, else heuristic)
    answers `cfg` for every shape, so a measured row cannot displace the config under test. prepare_w4 plans
    through it each time; w4_gemm calls reuse the call pipeline's entries, so clear those (pipeline.clear())
    around calls that must see the forced config."""
    from .. import dispatch
    orig = dispatch.w4_nv_config
    dispatch.w4_nv_config = lambda *_args, **_kw: (cfg, f"forced by {who}")
    try:
        yield
    finally:
        dispatch.w4_nv_config = orig


@contextlib.contextmanager
def kernel_only():
    """Inside, the dispatcher never sends a shape to cuBLAS (JITGEMM_BLAS=0): jitgemm's own kernel."""
    import os
    old = os.environ.get("JITGEMM_BLAS")
    os.environ["JITGEMM_BLAS"] = "0"
    reload_settings()
    try:
        yield
    finally:
        if old is None:
            del os.environ["JITGEMM_BLAS"]
        else:
            os.environ["JITGEMM_BLAS"] = old
        reload_settings()


def forced(config, make):
    """Whatever `make()` prepares, with the NVIDIA config forced to `config` (tuning sweeps)."""
    with forced_config(config):
        return make()


def _prepare_with(config, xv, wv, ov):
    return forced(config, lambda: api.prepare(xv, wv, out=ov))


@contextlib.contextmanager
def forced_blas():
    """Inside, the NVIDIA dispatcher sends every moderate-N plan to cuBLAS (the route jitgemm itself
    would run), so a tuning sweep times it beside the kernels."""
    from .. import dispatch
    orig = dispatch.blas_choice
    dispatch.blas_choice = lambda *a, **kw: (True, "forced by tuning:")
    reload_settings()
    api._plan_cached.cache_clear()
    try:
        yield
    finally:
        dispatch.blas_choice = orig
        reload_settings()
        api._plan_cached.cache_clear()


def time_config(ops, n: int, cfg, stream, make=None, check=None) -> tuple[float | None, str]:
    """(graph-replay us, "") of one forced config at N tokens after its float64 check, or (None, why)
    for a config that spills, that the driver refuses or that computes a wrong result (never chosen).
    make / check: how the calls are prepared and the first one checked (default: 16-bit gemm calls of
    `ops` with `cfg` forced, ops.check)."""
    from ..errors import JitgemmError
    try:
        preps = make() if make else prepared_calls(ops, n, config=cfg)
        res = preps[0].kernel.resources if preps[0].kernel is not None else {}
        if res.get("spill_stores") or res.get("stack_frame"):
            return None, "spills"
        (check or (lambda p: ops.check(n, p)))(preps[0])
    except (JitgemmError, AssertionError) as e:
        return None, f"{type(e).__name__}: {e}"
    return time_ours(preps, stream, modes=("graph",))["us_graph"], ""


def time_ours(preps, stream, modes=("b2b", "graph")) -> dict:
    s = stream.ptr
    launch = lambda i: preps[i % len(preps)].launch(s)
    out = {}
    if "b2b" in modes:
        out["us_b2b"] = timing.back_to_back(launch, stream)
    if "graph" in modes:
        out["us_graph"] = timing.graph_replay(launch, stream)
    return out


def time_torch(ops: Operands, n: int) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    xs = operands.torch_view(ops.x[:n], ops.dtype)
    ws = [operands.torch_view(w, ops.dtype) for w in ops.w]
    outs = [torch.empty((n, ops.shape.m), dtype=xs.dtype, device=xs.device) for _ in ws]
    def launch(i):
        j = i % len(ws)
        torch.mm(xs, ws[j].t(), out=outs[j])  # what F.linear runs: cuBLAS
    return time_torch_launch(launch)


def time_torch_launch(launch) -> dict:
    """Both timing modes of a torch baseline: back to back on a CuPy stream torch runs on, and torch's
    own graph replay."""
    import cupy as cp
    import torch
    s = cp.cuda.Stream(non_blocking=True)
    ext = torch.cuda.ExternalStream(s.ptr)
    def launch_on_s(i):
        with torch.cuda.stream(ext):
            launch(i)
    return {"us_b2b": timing.back_to_back(launch_on_s, s), "us_graph": timing.torch_graph_replay(launch)}


def time_cupy(ops: Operands, n: int) -> dict | None:
    if ops.dtype != "float16":
        return None  # CuPy has no bf16 matmul
    cp = ops.cp
    x = ops.x[:n].view(cp.float16)
    ws = [w.view(cp.float16) for w in ops.w]
    outs = [cp.empty((n, ops.shape.m), dtype=cp.float16) for _ in ws]
    s = cp.cuda.Stream(non_blocking=True)
    def launch(i):
        j = i % len(ws)
        with s:
            cp.matmul(x, ws[j].T, out=outs[j])
    res = {"us_b2b": timing.back_to_back(launch, s)}
    try:
        res["us_graph"] = timing.graph_replay(launch, s)
    except Exception as e:  # cuBLAS capture needs a workspace the handle may not have
        res["graph_error"] = f"{type(e).__name__}: {e}"
    return res


def tbs(case: Case, us: float) -> float:
    return case.bytes_moved() / (us * 1e-6) / 1e12 if us and not math.isnan(us) else float("nan")


def as_dict(case: Case) -> dict:
    return asdict(case)
