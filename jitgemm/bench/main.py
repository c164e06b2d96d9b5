"""The bench command: suite, tuning sweep, per-call overhead (overhead.py), cold start."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile

from ..kernels import skinny
from ..runtime.backend import get_backend
from . import report, runner, suite


def _meta(cp) -> dict:
    b = get_backend("cuda")
    info = b.device_info(int(cp.cuda.Device().id))
    return {"device": info.name, "arch": info.arch, "sms": info.multiprocessors, "l2_bytes": info.l2_bytes,
            **b.versions(), "date": datetime.date.today().isoformat()}


def run_suite(dtypes, ns, shapes, out_dir, baselines=True, title="decode suite", name="decode", plot=True) -> dict:
    import cupy as cp
    meta = _meta(cp)
    ceiling = runner.ceiling_tbs(cp)
    print(f"streaming-read ceiling: {ceiling:.3f} TB/s", flush=True)
    cases = []
    stream = cp.cuda.Stream(non_blocking=True)
    from . import fp8_runner
    fp8_modes = [d for d in dtypes if d in fp8_runner.MODES]
    dtypes = [d for d in dtypes if d not in fp8_runner.MODES]
    if fp8_modes:
        def log(c):
            print(f"{c.shape:22s} N={c.n:2d} {c.dtype:11s} graph {c.us_graph:7.2f} us  b2b {c.us_b2b:7.2f} us  "
                  f"{runner.tbs(c, c.us_graph):.2f} TB/s  " +
                  "  ".join(f"{k} {v.get('us_graph', float('nan')):.2f}" for k, v in c.baselines.items()), flush=True)
        cases += fp8_runner.run(cp, fp8_modes, ns, shapes, meta["l2_bytes"], baselines, log)
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
    table = report.rows(cases, ceiling)
    if out_dir:
        report.write(out_dir, name, [runner.as_dict(c) for c in cases], table, ceiling, meta, plot=plot)
    report.print_table(table, ceiling, title)
    print(json.dumps(report.summary(table), indent=1))
    return {"table": table, "ceiling": ceiling}


def tune(ns, shapes, out_dir, dtype="bfloat16", family="skinny") -> list:
    """Time every NVIDIA config (graph replay, cold weights) per (shape, N), then pick per shape
    the K order (WK, U, SK) with the least total time over the N buckets, and MT per bucket."""
    import cupy as cp
    from ..dispatch import n_bucket
    meta = _meta(cp)
    stream = cp.cuda.Stream(non_blocking=True)
    cluster_ok = meta["arch"] >= "sm_90"
    raw, table = [], []
    from . import fp8_runner
    for sh in shapes:
        if family == "fp8":
            ops = fp8_runner.Fp8Operands(cp, sh, meta["l2_bytes"], with_bf16=False)
        else:
            ops = runner.Operands(cp, sh, dtype, max(ns), meta["l2_bytes"])
        times = {}
        space = skinny.NV_CONFIGS
        for n in ns:
            for cfg in space:
                if cfg.SK > 1 and not cluster_ok:
                    continue
                if family == "fp8":
                    preps = runner.forced(cfg, lambda: ops.prepared("fp8", n))
                else:
                    preps = runner.prepared_calls(ops, n, config=cfg)
                res = preps[0].kernel.resources
                if res.get("spill_stores") or res.get("stack_frame"):
                    continue  # a config that spills is never a candidate
                if family == "fp8":
                    ops.check("fp8", n, preps[0])
                else:
                    ops.check(n, preps[0])
                us = runner.time_ours(preps, stream, modes=("graph",))["us_graph"]
                times[(n_bucket(n), cfg)] = us
                raw.append({"m": sh.m, "k": sh.k, "n": n, "config": [cfg.MT, cfg.WK, cfg.U, cfg.SK], "us": us})
        row = select(sh, times)
        table.append(row)
        print(f"tune {sh.name:22s} k_order {row['k_order']} mt {row['mt']} us {row['us']}", flush=True)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        key = "table" if family == "skinny" else f"table_{family}"
        with open(os.path.join(out_dir, f"tune-{family}.json"), "w") as f:
            json.dump({"meta": meta, key: table, "raw": raw}, f)
        if family == "skinny":
            with open(os.path.join(out_dir, "tuning_nv.py"), "w") as f:
                f.write(table_source(table, meta))
    return table


def select(sh, times: dict) -> dict:
    """The K order whose worst bucket is closest to that bucket's fastest config (min-max regret,
    total time breaks ties), then the fastest MT per bucket under that order."""
    buckets = sorted({b for b, _ in times})
    fastest = {b: min(us for (bb, _), us in times.items() if bb == b) for b in buckets}
    best = None
    for order in sorted({c.k_order for _, c in times}):
        mts, per = {}, {}
        for b in buckets:
            cands = [(us, [c.MT, c.NT] if c.NT else c.MT) for (bb, c), us in times.items()
                     if bb == b and c.k_order == order]
            if not cands:
                break
            per[b], mts[b] = min(cands)
        else:
            score = (max(per[b] / fastest[b] for b in buckets), sum(per.values()))
            if best is None or score < best[0]:
                best = (score, order, mts, per)
    _, order, mts, per = best
    return {"name": sh.name, "m": sh.m, "k": sh.k, "k_order": list(order), "mt": mts,
            "us": {b: round(v, 2) for b, v in per.items()}, "fastest_any_order_us": {b: round(v, 2) for b, v in fastest.items()}}


def tuning_source_with(name: str, comment: str, rows: str) -> str:
    """tuning_nv.py's source with the list `name` replaced by these rows (what --tune writes out)."""
    head = open(os.path.join(os.path.dirname(__file__), "..", "tuning_nv.py")).read()
    start = head.index(f"{name}: list = [")
    end = head.index("]\n", start) + 2
    return head[:start] + f"{name}: list = [  # {comment}\n{rows}]\n" + head[end:]


def table_source(table, meta) -> str:
    rows = "".join(f"    ({r['m']}, {r['k']}, {tuple(r['k_order'])}, {r['mt']}),  # {r['name']}: {r['us']} us\n"
                   for r in table)
    return tuning_source_with("NV_TABLE", f"{meta['device']}, driver {meta['driver']}, {meta['date']}", rows)


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


def main(args) -> int:
    why = missing()
    if why:
        print(f"jitgemm bench: {why}")
        return 2
    if args.group == "overhead" or args.overhead:  # per-call cost: its own sizes, not the suite's shapes
        from . import overhead
        overhead.run(args.out, args.label, args.compare, args.name or "overhead")
        return 0
    shapes, ns = suite.load(args.shapes, args.group)
    if args.only:
        shapes = [s for s in shapes if any(o in s.name for o in args.only.split(","))]
    if args.n:
        ns = [int(v) for v in args.n.split(",")]
    if args.tune:
        family = "fp8" if "fp8" in args.dtype.split(",") else "moderate" if args.group == "moderate-n" else "skinny"
        if family == "moderate":
            import cupy as cp
            from . import tune_moderate
            if max(ns) <= skinny.MAX_N:  # N <= 16: where the moderate family beats the skinny one
                tune_moderate.tune_small_n(ns, shapes, args.out, _meta(cp))
            else:
                tune_moderate.tune([n for n in ns if n > skinny.MAX_N], shapes, args.out, _meta(cp))
        else:
            tune(ns, shapes, args.out, family=family)
        return 0
    if args.cold:
        cold_start()
        return 0
    dtypes = [{"bf16": "bfloat16", "fp16": "float16"}.get(d, d) for d in args.dtype.split(",")]
    res = run_suite(dtypes, ns, shapes, args.out, baselines=not args.no_baselines, name=args.name or args.group,
                    plot=not args.no_plot)
    if args.compare:
        old = json.loads(open(args.compare).read())
        stem = args.name or args.group
        new = json.loads(open(os.path.join(args.out, f"{stem}.json")).read()) if args.out else {"table": res["table"]}
        for case, ratio in report.compare(new, old):
            print(f"{case:40s} new/old time {ratio:.3f}")
    return 0
