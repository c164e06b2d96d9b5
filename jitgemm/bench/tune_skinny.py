"""Tuning sweep of the skinny (and fp8) family on NVIDIA: every config per (shape, N), each checked
against float64 first, timed by graph replay over cold weight copies; per shape one K order for all N
buckets (min-max regret) and the fastest MT per bucket. Writes a tables file (jitgemm.tables)."""
from __future__ import annotations

import json
import os

from ..arch import parse
from ..kernels import skinny
from . import runner


def tune(ns, shapes, out_dir, meta: dict, dtype="bfloat16", family="skinny") -> list:
    """Time every NVIDIA config (graph replay, cold weights) per (shape, N), then pick per shape
    the K order (WK, U, SK) with the least total time over the N buckets, and MT per bucket."""
    import cupy as cp
    from ..dispatch import n_bucket
    stream = cp.cuda.Stream(non_blocking=True)
    cluster_ok = parse(meta["arch"]).has("clusters")
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
                    us, why = runner.time_config(ops, n, cfg, stream, lambda: runner.forced(cfg, lambda: ops.prepared("fp8", n)),
                                                 lambda p: ops.check("fp8", n, p))
                else:
                    us, why = runner.time_config(ops, n, cfg, stream)
                if us is None:  # a config that spills, fails or is wrong is never a candidate
                    if why != "spills":
                        print(f"tune {sh.name} N={n} {cfg}: {why}", flush=True)
                    continue
                times[(n_bucket(n), cfg)] = us
                raw.append({"m": sh.m, "k": sh.k, "n": n, "config": [cfg.MT, cfg.WK, cfg.U, cfg.SK], "us": us})
        row = select(sh, times)
        table.append(row)
        print(f"tune {sh.name:22s} k_order {row['k_order']} mt {row['mt']} us {row['us']}", flush=True)
        ops = None  # its buffers go back to the pool before the next shape
        cp.get_default_memory_pool().free_all_blocks()
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"tune-{family}-raw.json"), "w") as f:
            json.dump({"meta": meta, "table": table, "raw": raw}, f)
        write_tables(out_dir, meta, family, [skinny_row_doc(r) for r in table])
    return table


def skinny_row_doc(r: dict) -> dict:
    """A `select` result as a tables-file row."""
    from .. import tables
    return tables.skinny_row_doc(r["name"], r["m"], r["k"], r["k_order"], r["mt"], r["us"])


def write_tables(out_dir, meta: dict, family: str, rows: list) -> str:
    """The tables file for the measured device with `family`'s rows replaced (the other families as the
    dispatcher reads them for this device now): ship it in jitgemm/data/tables/, or point
    JITGEMM_NV_TUNING at it."""
    from .. import tables
    base = tables.choose("cuda", meta["device"], meta["arch"])
    measured = {"driver": meta.get("driver"), "date": meta["date"], "dtype": meta.get("dtype", "bfloat16"),
                "how": f"python -m jitgemm bench --tune ({family}): graph replay, cold weight copies, every config "
                       f"checked against float64 first"}
    doc = tables.merged(base, "cuda", meta["device"], meta["arch"], measured, family, rows)
    path = os.path.join(out_dir, f"{tables.slug(meta['device'])}.json")
    with open(path, "w") as f:
        f.write(tables.dumps(doc))
    print(f"wrote {path}: ship it in jitgemm/data/tables/, or JITGEMM_NV_TUNING={path}", flush=True)
    return path


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
