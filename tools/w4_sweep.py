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

from jitgemm.bench import suite
from jitgemm.bench.tune_w4 import GRID, compile_all, compile_row_instances, grid, instances, measure_shape, table_rows
from jitgemm.bench.w4_runner import MODES, weight_bytes



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


def sweep_shapes(names: list[str] | None) -> list:
    """The suite Shapes named (from the decode suite, else the broad one), or the whole decode suite."""
    decode = suite.load()[0]
    if names is None:
        return decode
    known = {s.name: s for s in suite.load(group="broad")[0]} | {s.name: s for s in decode}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"--shapes: in neither the decode nor the broad suite: {missing}")
    return [known[n] for n in names]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="w4-q4_sym,w4-mxfp4,w4-q4_min,w4-q4_zp")
    p.add_argument("--shapes", default=None, help="names from the decode or the broad suite (jitgemm/data/"
                                                  "decode_suite.json; default: the decode suite, ~200 s on an H100 "
                                                  "for the four formats)")
    p.add_argument("--n", default="1,4,16")
    p.add_argument("--mt", default=",".join(map(str, GRID["mt"])))
    p.add_argument("--wk", default=",".join(map(str, GRID["wk"])))
    p.add_argument("--u", default=",".join(map(str, GRID["u"])))
    p.add_argument("--sk", default=",".join(map(str, GRID["sk"])))
    p.add_argument("--nt", default="0", help="8-token tiles a block (0: the dispatcher's, 1 or 2 for N <= 16)")
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
    try:
        wanted = sweep_shapes(a.shapes.split(",") if a.shapes else None)
    except ValueError as e:
        p.error(str(e))
    configs = grid(ints(a.mt), ints(a.wk), ints(a.u), ints(a.sk), ints(a.nt))
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
    for sh, mode in itertools.product(wanted, modes):  # shape by shape: a spent budget drops whole shapes
        if time.time() - t0 > a.budget:
            print(f"budget of {a.budget:.0f} s spent: {sh.name} {mode} and later not measured", flush=True)
            break
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
