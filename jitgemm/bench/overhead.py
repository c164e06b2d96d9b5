"""Per-call cost as users call it (BENCHMARKING.md rule 6) and the eager Llama-3.1-8B decode step
(rule 9, its eager part): wall-clock time of jitgemm's public entries beside torch and CuPy, in
one run. Only the public API is called, so the same file measures an old and a new call path;
--label tells the two runs apart in overhead.json, and --compare OLD.json prints before/after."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

import jitgemm

from . import runner

SIZES = ((1024, 1024), (4096, 4096))   # M x K: host-bound, and a weight whose read takes a while
NS = (1, 16)
WARMUP, CALLS, REPS = 200, 2000, 5
SCALE = 0.05                           # operands: normal * 0.05, never zeros
SX, SW = 0.5, 0.25                     # the fp8 per-tensor scales of x8 and w8
TOL = 1e-2                             # relative error (Frobenius) of a result against float64
GEMM_OUT = "gemm(x, w, out=o)"
BASELINE = {"torch": "torch F.linear(x, w)", "cupy": "cupy.matmul(x, w.T, out=o)"}

# one Llama-3.1-8B decode step: 32 layers x (name, M, K)
LLAMA8B = (("qkv", 6144, 4096), ("o", 4096, 4096), ("gate_up", 28672, 4096), ("down", 4096, 14336))
LAYERS, DECODE_NS = 32, (1, 8)


# ---- timers (pure Python: the clock and the device sync are passed in) ------------------------------
def best_per_call(fn: Callable[[], Any], sync: Callable[[], None], calls: int = CALLS, reps: int = REPS,
                  warmup: int = WARMUP, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best over reps of (wall time of `calls` calls and a device sync) / calls, in µs. The sync is
    inside the timed region so that a call that only queues work cannot look cheaper than it is."""
    for _ in range(warmup):
        fn()
    sync()
    best = math.inf
    for _ in range(reps):
        t0 = clock()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (clock() - t0) / calls * 1e6)
    return best


def median_step(calls: list, sync: Callable[[], None], warmup: int = 3, reps: int = 10,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over reps of one eager step (every call in order, then a device sync), in ms."""
    times = []
    for _ in range(warmup + reps):
        sync()  # the previous step's work is not this step's
        t0 = clock()
        for f in calls:
            f()
        sync()
        times.append(clock() - t0)
    return statistics.median(times[warmup:]) * 1e3


# ---- the two operand libraries -------------------------------------------------------------------------
class CupyLib:
    """fp16 operands (CuPy has no bfloat16); fp8 as uint8 bytes with fp8_format='e4m3fn'."""
    name, fp8_kwargs = "cupy", {"fp8_format": "e4m3fn"}
    out8 = "float16"  # the W8A8 output dtype

    def __init__(self, cp):
        self.cp, self.sync = cp, cp.cuda.runtime.deviceSynchronize

    def randn(self, shape):
        return (self.cp.random.standard_normal(shape, dtype=self.cp.float32) * SCALE).astype(self.cp.float16)

    def empty(self, shape):
        return self.cp.empty(shape, dtype=self.cp.float16)

    def fp8(self, a, scale: float):
        """(device operand, float64 values): e4m3fn bytes made on the host, CuPy having no fp8 dtype."""
        import ml_dtypes
        h = (a.get().astype(np.float32) / np.float32(scale)).astype(ml_dtypes.float8_e4m3fn)
        return self.cp.asarray(h.view(np.uint8)), h.astype(np.float64)

    def stream_ptr(self) -> int:
        return self.cp.cuda.get_current_stream().ptr

    def baselines(self, ops) -> list:
        return [(BASELINE["cupy"], "16", lambda: partial(self.cp.matmul, ops.x, ops.wt, out=ops.o))]

    def extra_rows(self, ops) -> list:
        """CuPy has no bfloat16: its users pass bf16 bits in a wrapper that gives them a dtype (the
        examples' Bf16 before jitgemm.CupyBf16). The same wrapper around the fp16 operands times that path:
        its own hot path, and without out= a jitgemm DeviceArray result whose memory the stream reuses
        (stream_pool). jitgemm.CupyBf16 rows: bf16 bits in CuPy uint16 arrays, the way CuPy users pass bf16."""
        wrap = [Wrapped(a) for a in (ops.x, ops.w, ops.o)]

        made: list = []

        def bf16() -> list:  # the same values rounded to bf16 (within TOL of the fp16 reference), made once
            if not made:
                made.extend([jitgemm.CupyBf16.from_host(a.get()) for a in (ops.x, ops.w)])
                made.append(jitgemm.CupyBf16.empty(ops.o.shape))
            return made
        return [("gemm(x, w, out=o), __cuda_array_interface__ wrappers", "16",
                 lambda: partial(jitgemm.gemm, wrap[0], wrap[1], out=wrap[2])),
                ("gemm(x, w), __cuda_array_interface__ wrappers", "16",
                 lambda: partial(jitgemm.gemm, wrap[0], wrap[1])),
                ("gemm(x, w, out=o), jitgemm.CupyBf16 (bf16)", "16",
                 lambda: partial(jitgemm.gemm, bf16()[0], bf16()[1], out=bf16()[2])),
                ("gemm(x, w), jitgemm.CupyBf16 (bf16)", "16", lambda: partial(jitgemm.gemm, bf16()[0], bf16()[1]))]


class Wrapped:
    """A CuPy array behind __cuda_array_interface__ with its `dtype` and `device`, as a bf16 wrapper is."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.device = a, a.shape, a.dtype, a.device

    @property
    def __cuda_array_interface__(self):
        return self.a.__cuda_array_interface__

    def get(self) -> np.ndarray:  # host(): what gemm returns is `out`, this wrapper
        return self.a.get()


class TorchLib:
    """bf16 operands; fp8 as torch.float8_e4m3fn tensors."""
    name, fp8_kwargs, out8 = "torch", {}, "bfloat16"

    def __init__(self, torch):
        self.torch, self.sync = torch, torch.cuda.synchronize

    def randn(self, shape):
        return (self.torch.randn(shape, device="cuda") * SCALE).to(self.torch.bfloat16)

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.torch.bfloat16, device="cuda")

    def fp8(self, a, scale: float):
        t = (a.float() / scale).to(self.torch.float8_e4m3fn)
        return t, host(t)

    def stream_ptr(self) -> int:
        return self.torch.cuda.current_stream().cuda_stream

    def extra_rows(self, ops) -> list:
        return []

    def baselines(self, ops) -> list:
        torch = self.torch
        F = torch.nn.functional
        sa, sb = (torch.tensor(s, dtype=torch.float32, device="cuda") for s in (SX, SW))

        def scaled_mm():  # _scaled_mm takes 16-row operands: a torch user pads the tokens
            x8p = (F.pad(ops.x.float(), (0, 0, 0, 16 - ops.n)) / SX).to(torch.float8_e4m3fn)
            return partial(torch._scaled_mm, x8p, ops.w8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
        return [(BASELINE["torch"], "16", lambda: partial(F.linear, ops.x, ops.w)),
                ("torch.matmul(x, w.T, out=o)", "16", lambda: partial(torch.matmul, ops.x, ops.wt, out=ops.o)),
                ("torch._scaled_mm (x8 padded to 16 rows)", "w8a8", scaled_mm)]


def host(a) -> np.ndarray:
    """A float64 host copy of a result: torch tensor, CuPy array, jitgemm's own array, or numpy."""
    if type(a).__module__.startswith("torch"):
        return a.float().cpu().numpy().astype(np.float64)
    if hasattr(a, "get"):
        return a.get().astype(np.float64)
    return np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a).astype(np.float64)


# ---- part 1: the per-call table --------------------------------------------------------------------------
@dataclass
class Operands:
    """One column's operands on the GPU, and the float64 result each kind of row must give."""
    n: int
    x: Any
    w: Any
    wt: Any   # w.T made once: every matmul row, ours and the baselines', is handed the same view
    o: Any    # the 16-bit output [N, M] (also the W8A8 output: bf16 for torch, fp16 for CuPy)
    x8: Any
    w8: Any
    ref: dict  # "16", "w8a8", "w8a16" -> [N, M]


def make_operands(lib, m: int, k: int, n: int) -> Operands:
    x, w = lib.randn((n, k)), lib.randn((m, k))
    (x8, hx8), (w8, hw8) = lib.fp8(x, SX), lib.fp8(w, SW)
    hx, hw = host(x), host(w)
    ref = {"16": hx @ hw.T, "w8a8": (hx8 @ hw8.T) * (SX * SW), "w8a16": (hx @ hw8.T) * SW}
    return Operands(n, x, w, w.T, lib.empty((n, m)), x8, w8, ref)


def jitgemm_rows(lib, ops: Operands) -> list:
    """(call, reference, make) per public entry; make() does the once-only setup (Linear, prepare)
    outside the timed loop and returns what the loop calls: a functools.partial for every row, ours
    and the baselines', so the wrapper's cost is the same everywhere."""
    x, w, o, x8, w8, fmt = ops.x, ops.w, ops.o, ops.x8, ops.w8, lib.fp8_kwargs

    def linear(**kw):
        layer = jitgemm.Linear(w)
        return partial(layer, x, **kw)

    def prepared():
        p, s = jitgemm.prepare(x, w, out=o), lib.stream_ptr()
        return partial(p.launch, s)
    w8a8 = partial(jitgemm.scaled_gemm, x8, w8, SX, SW, out_dtype=lib.out8, **fmt)
    w8a16 = partial(jitgemm.scaled_gemm, x, w8, None, SW, **fmt)
    return [(GEMM_OUT, "16", lambda: partial(jitgemm.gemm, x, w, out=o)),
            ("gemm(x, w)", "16", lambda: partial(jitgemm.gemm, x, w)),
            ("Linear(w)(x)", "16", linear),
            ("Linear(w)(x, out=o)", "16", lambda: linear(out=o)),
            ("linear(x, w) (F.linear semantics)", "16", lambda: partial(jitgemm.linear, x, w)),
            ("matmul(x, w.T)", "16", lambda: partial(jitgemm.matmul, x, ops.wt)),
            ("matmul(x, w.T, out=o)", "16", lambda: partial(jitgemm.matmul, x, ops.wt, out=o)),
            ("scaled_gemm W8A8 (x8, w8, 0.5, 0.25)", "w8a8", lambda: w8a8),
            ("scaled_gemm W8A8, out=o", "w8a8", lambda: partial(w8a8, out=o)),
            ("scaled_gemm W8A16 (x, w8, None, 0.25)", "w8a16", lambda: w8a16),
            ("scaled_gemm W8A16, out=o", "w8a16", lambda: partial(w8a16, out=o)),
            ("prepare(x, w, out=o).launch(s)", "16", prepared)]


def measure(lib, ops: Operands, ref: str, make, timer=best_per_call) -> dict:
    """{"us", "rel_err"}, or {"error"} where the call raises or gives a wrong result."""
    try:
        fn = make()
        us = timer(fn, lib.sync)
        ops.o[...] = float("nan")  # a launch that wrote nothing must not pass on an earlier row's result
        got = fn()
        lib.sync()
        err = rel_err(host(ops.o if got is None else got)[:ops.n], ops.ref[ref])  # None: a launch into o
        if not err <= TOL:
            raise AssertionError(f"wrong result: relative error {err:.3g} > {TOL}")
    except Exception as e:  # e.g. a mode this implementation lacks: shown in its cell, the bench goes on
        return {"error": f"{type(e).__name__}: {e}"}
    return {"us": us, "rel_err": err}


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def column(r: dict) -> str:
    return f"{r['lib']} {r['m']}x{r['k']} N={r['n']}"


def per_call(libs, records: list | None = None) -> list[dict]:
    """Every row of every size; appended to `records` as measured (an interrupt keeps them)."""
    records = [] if records is None else records
    for lib in libs:
        for m, k in SIZES:
            for n in NS:
                ops = make_operands(lib, m, k, n)
                for call, ref, make in jitgemm_rows(lib, ops) + lib.extra_rows(ops) + lib.baselines(ops):
                    r = {"lib": lib.name, "m": m, "k": k, "n": n, "call": call, **measure(lib, ops, ref, make)}
                    records.append(r)
                    print(f"{column(r):22s} {call:42s} {cell(r, 'us', unit=' µs')}", flush=True)
    return records


def ratios(records: list[dict]) -> dict[str, float]:
    """Per column: gemm(x, w, out=o)'s time over its baseline's (F.linear; cupy.matmul(out=))."""
    us = {(column(r), r["call"]): r["us"] for r in records if "us" in r}
    out = {}
    for r in records:
        base = us.get((column(r), BASELINE[r["lib"]]))
        if r["call"] == GEMM_OUT and "us" in r and base:
            out[column(r)] = r["us"] / base
    return out


# ---- part 2: the eager decode step -------------------------------------------------------------------------
def decode_variants(torch, layers: list) -> list:
    """(variant, make) pairs; make() does each layer's setup once and returns the step's calls.
    layers: (x, w, out) in the order of the step."""
    F = torch.nn.functional

    def linears():
        return [partial(jitgemm.Linear(w), x) for x, w, _ in layers]

    def prepared():
        s = torch.cuda.current_stream().cuda_stream
        return [partial(jitgemm.prepare(x, w, out=o).launch, s) for x, w, o in layers]
    return [(GEMM_OUT, lambda: [partial(jitgemm.gemm, x, w, out=o) for x, w, o in layers]),
            ("gemm(x, w)", lambda: [partial(jitgemm.gemm, x, w) for x, w, _ in layers]),
            ("Linear(w)(x)", linears),
            ("prepare(x, w, out=o).launch(s)", prepared),
            (BASELINE["torch"], lambda: [partial(F.linear, x, w) for x, w, _ in layers])]


def decode_n(torch, weights: list, n: int) -> list[dict]:
    """Each variant's step with N tokens; every layer reads a fixed x of its K (no dependence between
    layers: only the per-call path is measured)."""
    xs = {k: (torch.randn(n, k, device="cuda") * SCALE).to(torch.bfloat16) for _, _, k in LLAMA8B}
    outs = {m: torch.empty(n, m, device="cuda", dtype=torch.bfloat16) for _, m, _ in LLAMA8B}
    layers = [(xs[k], w, outs[m]) for m, k, w in weights]
    records = []
    for variant, make in decode_variants(torch, layers):
        try:
            r = {"variant": variant, "n": n, "ms": median_step(make(), torch.cuda.synchronize)}
        except Exception as e:  # shown in its cell, like part 1
            r = {"variant": variant, "n": n, "error": f"{type(e).__name__}: {e}"}
        records.append(r)
        print(f"decode step N={n} {variant:32s} {cell(r, 'ms', 2, ' ms')}", flush=True)
    return records


def decode_step(torch) -> list[dict]:
    """The 128 linear layers of one Llama-3.1-8B decode step (about 14 GB of bf16 weights, freed at
    the end), called eagerly in layer order, for each N in DECODE_NS."""
    weights = []
    try:
        weights += [(m, k, torch.randn(m, k, device="cuda", dtype=torch.bfloat16).mul_(0.02))
                    for _ in range(LAYERS) for _, m, k in LLAMA8B]
        records = [r for n in DECODE_NS for r in decode_n(torch, weights, n)]
    finally:
        weights.clear()
        torch.cuda.empty_cache()
    base = {r["n"]: r["ms"] for r in records if r["variant"] == BASELINE["torch"] and "ms" in r}
    for r in records:
        if "ms" in r and r["n"] in base:
            r["x_f_linear"] = r["ms"] / base[r["n"]]
    return records


# ---- tables: rich on the terminal, markdown and JSON in --out ----------------------------------------------
def cell(r: dict, key: str, nd: int = 1, unit: str = "") -> str:
    """The number, or the error's first line (the whole text is in the JSON)."""
    if "error" in r:
        return "error: " + r["error"].splitlines()[0][:100]
    return f"{r[key]:.{nd}f}{unit}"


def grid(corner: str, cells: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) from {(row, column): text}, both in order of first appearance."""
    rows = list(dict.fromkeys(r for r, _ in cells))
    cols = list(dict.fromkeys(c for _, c in cells))
    return [corner, *cols], [[r, *(cells.get((r, c), "") for c in cols)] for r in rows]


def per_call_table(records: list[dict], ratio: dict[str, float]) -> tuple:
    cells = {(r["call"], column(r)): cell(r, "us") for r in records}
    cells.update({(f"{GEMM_OUT} / baseline", col): f"{v:.2f}x" for col, v in ratio.items()})
    return grid("call (µs per call)", cells)


def decode_table(records: list[dict]) -> tuple:
    cells = {(r["variant"], f"N={r['n']}"): cell(r, "ms", 2) +
             (f" ({r['x_f_linear']:.2f}x F.linear)" if "x_f_linear" in r else "") for r in records}
    return grid("variant (ms per step)", cells)


def compare_table(new: dict, old: dict) -> tuple:
    """Before/after, per cell measured without error in both runs: old -> new and new/old."""
    cells = {}
    for part, key, val, col in (("per_call", "call", "us", column), ("decode_step", "variant", "ms",
                                                                      lambda r: f"decode N={r['n']}")):
        was = {(r[key], col(r)): r[val] for r in old.get(part, []) if val in r}
        for r in new.get(part, []):
            b = was.get((r[key], col(r)))
            if val in r and b:
                cells[(r[key], col(r))] = f"{b:.2f} → {r[val]:.2f} ({r[val] / b:.2f}x)"
    return grid(f"call: {old['meta'].get('label')} → {new['meta'].get('label')}", cells)


def print_rich(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    Console(width=220).print(t)


def markdown(meta: dict, tables: list) -> str:
    lines = [f"Label `{meta.get('label')}` · {meta.get('device')} · driver {meta.get('driver')} · "
             f"torch {meta.get('torch')} · cupy {meta.get('cupy')} · {meta.get('date')} · commit {meta.get('commit')}. "
             f"Per call: best of {REPS} loops of {CALLS} calls after {WARMUP} warm-up calls, a device sync in "
             f"each timed loop; torch columns bf16, CuPy columns fp16. `/ baseline` = jitgemm's time over "
             f"F.linear's (torch) or cupy.matmul(out=)'s (CuPy): below 1 is faster."]
    if meta.get("interrupted"):
        lines[0] += f" **Partial: interrupted {meta['interrupted']}.**"
    for title, header, rows in tables:
        lines += ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(out_dir: str | Path, name: str, result: dict, tables: list) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown(result["meta"], tables))


def tables_of(result: dict, old: dict | None = None) -> list:
    """(title, header, rows) of each table the run prints and writes."""
    tables = [("per-call wall time, µs", *per_call_table(result["per_call"], result["ratios"]))]
    if result["decode_step"]:
        tables.append((f"eager Llama-3.1-8B decode step ({LAYERS * len(LLAMA8B)} linear layers, bf16), "
                       "median of 10", *decode_table(result["decode_step"])))
    if old:
        tables.append(("before → after (µs per call; ms per decode step)", *compare_table(result, old)))
    return tables


# ---- the run ----------------------------------------------------------------------------------------------
def _torch():
    """torch with a CUDA device, or None (its rows are skipped, with a note)."""
    try:
        import torch
    except ImportError:
        print("torch is not importable: its columns and the decode step are skipped", flush=True)
        return None
    if not torch.cuda.is_available():
        print("torch sees no CUDA device: its columns and the decode step are skipped", flush=True)
        return None
    return torch


def _commit() -> str | None:
    try:
        r = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=os.path.dirname(__file__),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(cp, torch, label: str) -> dict:
    rt = cp.cuda.runtime
    name = rt.getDeviceProperties(cp.cuda.Device().id)["name"]
    return {"label": label, "device": name.decode() if isinstance(name, bytes) else name,
            "driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(), "cupy": cp.__version__,
            "torch": torch.__version__ if torch else None, "jitgemm": jitgemm.__version__,
            "commit": _commit(), "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def run(out_dir: str | None = None, label: str = "", compare: str | None = None, name: str = "overhead") -> dict:
    """Both parts; needs CuPy (the caller checks). Prints the tables; writes NAME.json/.md in out_dir."""
    import cupy as cp
    torch = _torch()
    libs = [CupyLib(cp)] + ([TorchLib(torch)] if torch else [])
    old = json.loads(Path(compare).read_text()) if compare else None  # a bad path fails before minutes of work
    result = {"meta": meta(cp, torch, label), "per_call": [], "ratios": {}, "decode_step": []}
    def keep() -> None:
        result["ratios"] = ratios(result["per_call"])
        write(out_dir, name, result, tables_of(result, old))
    with runner.kept_on_interrupt(result["meta"], result["per_call"], "per-call rows", "measured", out_dir, name, keep):
        per_call(libs, result["per_call"])
        result["ratios"] = ratios(result["per_call"])
        try:
            result["decode_step"] = decode_step(torch) if torch else []
        except Exception as e:  # e.g. no room for the 14 GB of weights: part 1 is still reported
            print(f"decode step skipped: {type(e).__name__}: {e}", flush=True)
    tables = tables_of(result, old)
    for t in tables:
        print_rich(*t)
    if out_dir:
        write(out_dir, name, result, tables)
    return result
