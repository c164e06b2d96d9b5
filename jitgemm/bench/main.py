"""The bench command: suite, tuning sweep, per-call overhead (overhead.py), cold start."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from .. import models
from ..kernels import skinny
from ..runtime.backend import get_backend
from . import report, runner, suite, tune_skinny


def run_suite(dtypes, ns, shapes, out_dir, baselines=True, title="decode suite", name="decode", plot=True) -> dict:
    import cupy as cp
    meta = runner.meta(cp)
    ceiling = runner.ceiling_tbs(cp)
    print(f"streaming-read ceiling: {ceiling:.3f} TB/s", flush=True)
    cases = []
    stream = cp.cuda.Stream(non_blocking=True)
    from . import fp8_runner, w4_runner
    fp8_modes = [d for d in dtypes if d in fp8_runner.MODES]
    w4_modes = [d for d in dtypes if d in w4_runner.MODES]
    dtypes = [d for d in dtypes if d not in fp8_runner.MODES and d not in w4_runner.MODES]
    def log(c):
        own = f" (kernel {c.us_graph_kernel:.2f})" if c.family == "blaslt" else ""
        print(f"{c.shape:22s} N={c.n:2d} {c.dtype:11s} graph {c.us_graph:7.2f} us{own}  b2b {c.us_b2b:7.2f} us  "
              f"{runner.tbs(c, c.us_graph):.2f} TB/s  " +
              "  ".join(f"{k} {v.get('us_graph', float('nan')):.2f}" for k, v in c.baselines.items()), flush=True)
    keep = lambda: report.write(out_dir, name, [runner.as_dict(c) for c in cases], report.rows(cases, ceiling),  # noqa: E731
                                ceiling, meta, plot=False)
    with runner.kept_on_interrupt(meta, cases, "cases", "measured", out_dir, name, keep):
        _measure(cp, cases, stream, dtypes, fp8_modes, w4_modes, ns, shapes, meta, baselines, log)
    table = report.rows(cases, ceiling)
    if out_dir:
        report.write(out_dir, name, [runner.as_dict(c) for c in cases], table, ceiling, meta, plot=plot)
    report.print_table(table, ceiling, title)
    print(json.dumps(report.summary(table), indent=1))
    return {"table": table, "ceiling": ceiling}


def _measure(cp, cases: list, stream, dtypes, fp8_modes, w4_modes, ns, shapes, meta, baselines, log) -> None:
    """Every case of the suite, appended to `cases` as it is measured (so an interrupt keeps them)."""
    from . import fp8_runner, w4_runner
    if fp8_modes:
        fp8_runner.run(cp, fp8_modes, ns, shapes, meta["l2_bytes"], baselines, log, cases)
    if w4_modes:
        w4_runner.run(cp, w4_modes, ns, shapes, meta["l2_bytes"], baselines, log, cases)
    for dtype in dtypes:
        for sh in shapes:
            ops = runner.Operands(cp, sh, dtype, max(ns), meta["l2_bytes"])
            for n in ns:
                c = runner.Case(sh.name, sh.m, sh.k, n, dtype)
                preps = runner.prepared_calls(ops, n)
                c.plan = str(preps[0].plan)
                c.max_rel_err = ops.check(n, preps[0])
                t = runner.time_ours(preps, stream)
                c.us_b2b, c.us_graph = t["us_b2b"], t["us_graph"]
                c.family = preps[0].plan.family
                c.us_graph_kernel = c.us_graph
                if c.family == "blas":  # the dispatcher chose cuBLAS: time jitgemm's own kernel too
                    with runner.kernel_only():
                        kp = runner.prepared_calls(ops, n)
                        ops.check(n, kp[0])
                        c.us_graph_kernel = runner.time_ours(kp, stream, modes=("graph",))["us_graph"]
                if baselines:
                    for bname, fn in (("torch", runner.time_torch), ("cupy", runner.time_cupy)):
                        r = fn(ops, n)
                        if r:
                            c.baselines[bname] = r
                cases.append(c)
                print(f"{sh.name:22s} N={n:2d} {dtype:8s} {c.family:8s} graph {c.us_graph:7.2f} us "
                      f"(kernel {c.us_graph_kernel:7.2f})  b2b {c.us_b2b:7.2f} us  "
                      f"{runner.tbs(c, c.us_graph):.2f} TB/s  " +
                      "  ".join(f"{k} {v.get('us_graph', float('nan')):.2f}" for k, v in c.baselines.items()), flush=True)
            del ops
            cp.get_default_memory_pool().free_all_blocks()


_COLD = ("import time, numpy as np, ml_dtypes; t=time.perf_counter(); import jitgemm; "
         "x=np.ones((1,4096),np.float16); w=np.ones((4096,4096),np.float16); jitgemm.gemm(x,w); "
         "print(time.perf_counter()-t)")


def cold_start() -> dict:
    """First call in a fresh process: empty cache (compile included), then with a warm disk cache."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, JITGEMM_CACHE_DIR=d)
        times = {}
        for label in ("empty cache", "warm disk cache"):
            r = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True, check=True)
            times[label] = float(r.stdout.strip().splitlines()[-1])
            print(f"cold start, {label}: first gemm call {times[label] * 1e3:.0f} ms (import + upload included)", flush=True)
    return times


def missing() -> str | None:
    """Why bench cannot run here, in one line (no NVIDIA GPU, found as `info` finds it, or no
    CuPy); None when it can."""
    from ..messages import short_reason
    b = get_backend("cuda")
    ok, why = b.available()
    if not ok or b.device_count() == 0:
        return (f"no NVIDIA GPU found ({short_reason(why) if not ok else 'no device'}); it needs one, "
                f"and CuPy (pip install 'jitgemm[cupy,bench]')")
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "needs a GPU and CuPy (pip install 'jitgemm[cupy,bench]')"
    return None


def _dtypes(text: str) -> list[str]:
    return [{"bf16": "bfloat16", "fp16": "float16"}.get(d, d) for d in text.split(",")]


def model_request(args) -> tuple[list[str], list[int]]:
    """--group model's models and token counts, or a ValueError naming the rule (checked before the GPU).
    Without --models: every model for 16-bit steps, the Llama geometries (model.FP8_MODELS) when every
    mode asked for is an fp8 or 4-bit one."""
    from . import model
    modes = model_modes(args)
    if args.models:
        names = [v.strip() for v in args.models.split(",")]
    else:
        names = list(model.FP8_MODELS) if all(m in model.QUANT_MODES for m in modes) else models.names()
    for name in names:
        models.config(name)  # raises for an unknown name, listing the known ones
    return names, token_counts(args.n, model.NS)


def token_counts(text: str | None, default) -> list[int]:
    """--n's token counts (default: `default`), or a ValueError naming the rule."""
    try:
        ns = [int(v) for v in text.split(",")] if text else list(default)
    except ValueError:
        raise ValueError(f"--n must be comma-separated integers, got {text!r}") from None
    if any(not 1 <= n <= skinny.MAX_N_MODERATE for n in ns):
        raise ValueError(f"--n must be token counts in 1..{skinny.MAX_N_MODERATE}, got {text}")
    return ns


def model_modes(args) -> list[str]:
    """--group model's step modes from --dtype: the first 16-bit dtype given (one 16-bit step is the
    headline), then each fp8 or 4-bit mode given (model.QUANT_MODES), in order; a ValueError for anything else."""
    from . import model
    asked = _dtypes(getattr(args, "dtype", None) or "bf16")
    bad = [d for d in asked if d not in ("bfloat16", "float16") + model.QUANT_MODES]
    if bad:
        raise ValueError(f"--dtype for --group model must be bf16, fp16, the fp8 modes {', '.join(model.FP8_MODES)} or "
                         f"the 4-bit modes {', '.join(model.W4_MODES)}; got {', '.join(bad)}")
    sixteen = [d for d in asked if d in ("bfloat16", "float16")][:1]
    return sixteen + [d for d in dict.fromkeys(asked) if d in model.QUANT_MODES]


def tp_request(args) -> list[int]:
    """--group tp's token counts (default tp.NS), or a ValueError naming the rule (checked before the GPU)."""
    from . import tp
    return token_counts(args.n, tp.NS)


def main(args) -> int:
    if args.group in ("model", "tp"):
        try:
            names, ns = model_request(args) if args.group == "model" else (None, tp_request(args))
        except ValueError as e:
            print(f"jitgemm bench: {e}")
            return 2
    why = missing()
    if why:
        print(f"jitgemm bench: {why}")
        return 2
    if args.group == "overhead" or args.overhead:  # per-call cost: its own sizes, not the suite's shapes
        from . import overhead
        overhead.run(args.out, args.label, args.compare, args.name or "overhead")
        return 0
    if args.group == "tp":  # a tensor-parallel layer over every GPU of the host, against torch + NCCL
        from . import tp
        tp.run(ns, args.out, baselines=not args.no_baselines, name=args.name or "tp")
        return 0
    if args.group == "model":  # whole decode steps of public models: their own shapes
        from . import model
        model.run(names, ns, args.out, baselines=not args.no_baselines, dtypes=model_modes(args),
                  name=args.name or "model")
        return 0
    shapes, ns = suite.load(args.shapes, args.group)
    if args.only:
        shapes = [s for s in shapes if any(o in s.name for o in args.only.split(","))]
    if args.n:
        ns = [int(v) for v in args.n.split(",")]
    if args.tune:
        import cupy as cp
        family = "fp8" if "fp8" in args.dtype.split(",") else "moderate" if args.group == "moderate-n" else "skinny"
        if family == "moderate":
            from . import tune_moderate
            if max(ns) <= skinny.MAX_N:  # N <= 16: where the moderate family beats the skinny one
                tune_moderate.tune_small_n(ns, shapes, args.out, runner.meta(cp))
            else:
                tune_moderate.tune([n for n in ns if n > skinny.MAX_N], shapes, args.out, runner.meta(cp))
        else:
            tune_skinny.tune(ns, shapes, args.out, runner.meta(cp), family=family)
        return 0
    if args.cold:
        cold_start()
        return 0
    dtypes = _dtypes(args.dtype)
    res = run_suite(dtypes, ns, shapes, args.out, baselines=not args.no_baselines, name=args.name or args.group,
                    plot=not args.no_plot)
    if args.compare:
        old = json.loads(open(args.compare).read())
        stem = args.name or args.group
        new = json.loads(open(os.path.join(args.out, f"{stem}.json")).read()) if args.out else {"table": res["table"]}
        for case, ratio in report.compare(new, old):
            print(f"{case:40s} new/old time {ratio:.3f}")
    return 0
