"""Which NVIDIA 4-bit config is fastest, per (format, shape, N): every (MT, WK, U, SK) of a grid, timed under CUDA
graph replay against bf16 cuBLAS of the same shape, each config's result checked against float64 first: the data of
the 4-bit families' measured tables (issue #19; kernels.w4.nv_heuristic is the fallback). Session 18's H100 sweep
(docs/benchmarks/session18) found the heuristic's configs 1.18-1.37x slower than the best (geomean); the winners mostly take WK = 4 or 8
(128-256-thread blocks, several to an SM, more iterations a warp) where the heuristic took WK = 16. One device call:

    PYTHONPATH=. python tools/w4_sweep.py --out $OUT/w4-sweep.json --budget 420 [--table $OUT]
    python tools/w4_sweep.py --from w4-sweep.json --table jitgemm/data/tables   # the measured table, later

Compiles the grid's instances in parallel first (their registers and spills go in the JSON), then measures
shape by shape, writing the JSON after each (an interrupted run keeps what it measured); prints per (format,
shape, N) the time of the config the dispatcher picks today, the best config's and the ratio. No GPU: `--compile-only` (NVRTC, any machine)."""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time

from jitgemm import dispatch, precompile, quant4
from jitgemm.bench import suite
from jitgemm.bench.w4_runner import MODES, W4Operands, time_bf16, weight_bytes
from jitgemm.kernels import w4
from jitgemm.kernels.skinny import TAG, NvConfig
from sanitize_driver import w4_config_forced  # tools/: the one way the tools force a 4-bit config



def grid(mts, wks, us, sks) -> list[NvConfig]:
    return [NvConfig(mt, wk, u, sk) for mt, wk, u, sk in itertools.product(mts, wks, us, sks)]


def instances(configs, modes, ns, dtype="bfloat16") -> dict:
    """{(mode, config, nt): KernelInstance} for every token tiling the Ns take."""
    out = {}
    for mode in modes:
        fmt, group = MODES[mode]
        for cfg in configs:
            for n in ns:
                out.setdefault((mode, cfg, cfg.nt(n)), w4.nv_instance(cfg, dtype, fmt, group, n))
    return out


def compile_all(arch: str, insts: dict, root: str) -> dict:
    """{instance name: resources or error} after compiling every instance (in parallel) into the cache at root."""
    res = {}
    uniq = {i.name: i for i in insts.values()}
    for name, _sym, r, _fresh, err in precompile.results(arch, root, list(uniq.values()), os.cpu_count() or 1):
        res[name] = {"error": err} if err else r
    return res


def forced(cfg: NvConfig):
    """The dispatcher answers cfg for every shape while inside (prepare_w4 plans through it; a shipped table
    row would otherwise take the place of the config under test)."""
    return w4_config_forced(cfg, "tools/w4_sweep.py")


def label(cfg: NvConfig) -> str:
    return f"MT{cfg.MT} WK{cfg.WK} U{cfg.U} SK{cfg.SK}"


def measure_shape(cp, stream, sh, mode, ns, configs, l2, log, device: str = "", arch: str = "sm_90a") -> list[dict]:
    from jitgemm.bench import timing
    ops = W4Operands(cp, sh, mode, l2, max(ns), with_bf16=True)
    rows = []
    fmt = MODES[mode][0]
    checked = set()  # (config, token tiles) whose result was checked on this shape
    for n in ns:
        base = time_bf16(ops, n)
        now = dispatch.w4_nv_config(fmt, n, sh.m, sh.k, device, arch)[0]  # what the dispatcher runs today
        row = {"mode": mode, "shape": sh.name, "m": sh.m, "k": sh.k, "n": n, "dispatcher": label(now),
               "bf16_us": base["us_graph"] if base else None, "configs": {}}
        for cfg in configs:
            if cfg.SK > 1 and sh.k < cfg.SK * cfg.WK * 128 * cfg.U:
                continue  # more K splits than K has iterations for
            try:
                with forced(cfg):
                    preps = ops.prepared(n)
                err = None
                if (cfg, cfg.nt(n)) not in checked:  # each instance's result checked once a shape
                    err = ops.check(n, preps[0])
                    checked.add((cfg, cfg.nt(n)))
                us = timing.graph_replay(lambda i: preps[i % len(preps)].launch(stream.ptr), stream)
                row["configs"][label(cfg)] = {"config": [cfg.MT, cfg.WK, cfg.U, cfg.SK], "us": us, "rel_err": err}
            except Exception as e:  # noqa: BLE001 - one bad config must not end the sweep; it is reported
                row["configs"][label(cfg)] = {"error": f"{type(e).__name__}: {e}"[:300]}
        rows.append(row)
        log(row)
    del ops
    cp.get_default_memory_pool().free_all_blocks()
    return rows


def row_instances(cfg: NvConfig, fmt: str, n: int) -> list:
    """Every instance a table row's config becomes at N: the dispatcher takes a format's rows for each of the
    format's groups and both token dtypes, while the sweep measures one group with bf16 tokens."""
    return [w4.nv_instance(cfg, dtype, fmt, g, n) for dtype in TAG for g in quant4.groups_of(fmt)]


def table_rows(result: dict) -> dict:
    """{family "w4-<format>": [tables-file rows]} from a sweep's result: per (format, shape) one K order for every
    N bucket (min-max regret, as the 16-bit tuner picks: jitgemm.bench.tune_skinny.select) and the fastest MT per
    bucket. Configs that failed (a wrong result, a launch error) are no candidates, nor those whose instance for
    any group or dtype of the format spills or failed to compile (aot ships zero-spill instances; write_table
    compiles them all first, an instance missing from result["resources"] counts as clean)."""
    from jitgemm.bench.suite import Shape
    from jitgemm.bench.tune_skinny import select, skinny_row_doc
    from jitgemm.dispatch import n_bucket
    res = result["resources"]
    bad = lambda i: "error" in res.get(i.name, {}) or res.get(i.name, {}).get("spill_stores")  # noqa: E731
    times: dict = {}
    for r in result["rows"]:
        fmt = MODES[r["mode"]][0]
        t = times.setdefault((r["mode"], Shape(r["shape"], r["m"], r["k"])), {})
        for v in r["configs"].values():
            if "us" not in v:
                continue
            cfg = NvConfig(*v["config"])
            if any(bad(i) for i in row_instances(cfg, fmt, r["n"])):
                continue
            t[(n_bucket(r["n"]), cfg)] = v["us"]
    out: dict = {}
    for (mode, sh), t in times.items():
        if t:
            out.setdefault(f"w4-{MODES[mode][0]}", []).append(skinny_row_doc(select(sh, t)))
    return out


def compile_row_instances(result: dict, root: str) -> None:
    """Compiles (in parallel, into the cache at root) every instance the measured configs become in a table
    (row_instances) that result["resources"] lacks, and adds their resources there."""
    need = {}
    for r in result["rows"]:
        for v in r["configs"].values():
            if "us" in v:
                for i in row_instances(NvConfig(*v["config"]), MODES[r["mode"]][0], r["n"]):
                    if i.name not in result["resources"]:
                        need[i.name] = i
    if need:
        result["resources"].update(compile_all(result["meta"]["arch"], need, root))


def write_table(result: dict, out_dir: str) -> str:
    """The tables file of the sweep's device: the shipped file jitgemm.tables.choose picks for it (its other
    families and other shapes' rows kept, and said where they came from) with the 4-bit families' rows from
    the sweep, after compiling what the candidates become for the other groups and dtypes (table_rows)."""
    from jitgemm import tables
    meta = result["meta"]
    measured = {"date": meta["date"], "how": "tools/w4_sweep.py (graph replay, cold weight copies, every config "
                                             "checked against float64 first; bf16 tokens)"}
    from jitgemm.runtime.cache import default_cache
    os.makedirs(out_dir, exist_ok=True)  # a folder named on the command line need not exist yet
    compile_row_instances(result, str(default_cache().root))
    base = tables.choose("cuda", meta["device"], meta["arch"])
    path = os.path.join(out_dir, f"{tables.slug(meta['device'])}.json")
    for fam, rows in table_rows(result).items():
        doc = tables.merged(base, "cuda", meta["device"], meta["arch"], measured, fam, rows)
        base = tables.parse(doc, base.source if base is not None else path)  # the next family merges into this one
    with open(path, "w") as f:
        f.write(tables.dumps(base.doc))
    return path


def summary_line(row: dict) -> str:
    ok = {k: v["us"] for k, v in row["configs"].items() if "us" in v}
    bad = [k for k, v in row["configs"].items() if "error" in v]
    if not ok:
        return f"{row['mode']:10} {row['shape']:18} N={row['n']:<3} no config ran ({len(bad)} errors)"
    best = min(ok, key=ok.get)
    h = ok.get(row["dispatcher"])
    bf = row["bf16_us"]
    gb = weight_bytes(row["mode"]) * row["m"] * row["k"] / 1e9
    return (f"{row['mode']:10} {row['shape']:18} N={row['n']:<3} dispatcher {row['dispatcher']} "
            f"{h if h is None else round(h, 2)} us | best {best} {ok[best]:.2f} us "
            f"({gb / ok[best] * 1e6 / 1e3:.2f} TB/s)"
            f"{'' if h is None else f' = {h / ok[best]:.2f}x the dispatcher'}"
            f"{'' if not bf else f', {bf / ok[best]:.2f}x bf16 cuBLAS'}{f' | {len(bad)} errors' if bad else ''}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="w4-q4_sym,w4-mxfp4,w4-q4_min,w4-q4_zp")
    p.add_argument("--shapes", default=None, help="names from the decode suite (jitgemm/data/decode_suite.json; "
                                                  "default: all of it, ~200 s on an H100 for the four formats)")
    p.add_argument("--n", default="1,4,16")
    p.add_argument("--mt", default="1,2")
    p.add_argument("--wk", default="4,8,16")
    p.add_argument("--u", default="1,2,4")
    p.add_argument("--sk", default="1,2")
    p.add_argument("--arch", default=None, help="--compile-only: the arch to compile for (default sm_90a)")
    p.add_argument("--compile-only", action="store_true")
    p.add_argument("--budget", type=float, default=420, help="seconds; no new shape starts past it")
    p.add_argument("--out", default="w4-sweep.json")
    p.add_argument("--from", dest="source", default=None, help="a sweep's JSON: write --table from it, measure nothing")
    p.add_argument("--table", default=None, help="a folder: write the device's tables file with the 4-bit rows there "
                                                  "(ship it in jitgemm/data/tables/, or JITGEMM_NV_TUNING=it)")
    a = p.parse_args()
    if a.source:
        if not a.table:
            p.error("--from needs --table (the folder to write the tables file in)")
        print(f"wrote {write_table(json.load(open(a.source)), a.table)}")
        return 0
    ints = lambda s: [int(v) for v in s.split(",")]
    modes = a.modes.split(",")
    for m in modes:
        if m not in MODES:
            p.error(f"--modes: {m!r} is not one of {sorted(MODES)}")
    configs = grid(ints(a.mt), ints(a.wk), ints(a.u), ints(a.sk))
    ns = ints(a.n)
    t0 = time.time()
    insts = instances(configs, modes, ns)
    from jitgemm.runtime.cache import default_cache
    root = str(default_cache().root)
    result = {"meta": {}, "resources": {}, "rows": []}
    if a.compile_only:
        result["resources"] = compile_all(a.arch or "sm_90a", insts, root)
        json.dump(result, open(a.out, "w"), indent=1)
        spills = sorted(k for k, v in result["resources"].items() if v.get("spill_stores"))
        print(f"{len(result['resources'])} instances compiled; spilling: {len(spills)}; errors: "
              f"{sum('error' in v for v in result['resources'].values())}")
        return 0
    import cupy as cp
    from jitgemm.runtime.backend import get_backend
    b = get_backend("cuda")
    dev = int(cp.cuda.Device().id)
    info = b.device_info(dev)
    arch = info.arch.split(":", 1)[0]
    result["meta"] = {"device": info.name, "arch": arch, "sms": info.multiprocessors, "l2_bytes": info.l2_bytes,
                      "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    result["resources"] = compile_all(arch, insts, root)
    print(f"[{time.time() - t0:.0f} s] compiled {len(result['resources'])} instances", flush=True)
    stream = cp.cuda.Stream(non_blocking=True)
    shapes = {s.name: s for s in suite.load()[0]}
    wanted = a.shapes.split(",") if a.shapes else list(shapes)
    missing = [s for s in wanted if s not in shapes]
    if missing:
        p.error(f"--shapes: not in the decode suite: {missing}")
    for name, mode in itertools.product(wanted, modes):  # shape by shape: a spent budget drops whole shapes
        if time.time() - t0 > a.budget:
            print(f"budget of {a.budget:.0f} s spent: {name} {mode} and later not measured", flush=True)
            break
        sh = shapes[name]
        if sh.k % MODES[mode][1]:
            continue
        result["rows"] += measure_shape(cp, stream, sh, mode, ns, configs, info.l2_bytes,
                                        lambda r: print(f"[{time.time() - t0:.0f} s] {summary_line(r)}", flush=True),
                                        info.name, arch)
        json.dump(result, open(a.out, "w"), indent=1)
    json.dump(result, open(a.out, "w"), indent=1)
    geo = [r["configs"][r["dispatcher"]]["us"] / min(v["us"] for v in r["configs"].values() if "us" in v)
           for r in result["rows"] if "us" in r["configs"].get(r["dispatcher"], {})]
    if geo:
        print(f"best config over the dispatcher's: geomean {math.exp(sum(map(math.log, geo)) / len(geo)):.3f}x "
              f"over {len(geo)} cases")
    if a.table:
        print(f"wrote {write_table(result, a.table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
