"""Tuning sweep of the moderate-N family on NVIDIA: every tile x K-slice count x reduction per
(shape, N), each checked against float64 first, timed by graph replay over cold weight copies;
the fastest per N bucket goes into the table, with cuBLAS (torch) timed in the same run so the
dispatcher knows where the vendor BLAS is faster (matmul then routes there)."""
from __future__ import annotations

import json
import os

from ..arch import parse
from ..kernels import moderate
from . import runner
from .tune_skinny import write_tables

MAX_SMALL_N = 16  # the skinny family's N range: bucket 16 of a moderate row covers N = 1..16

SLICES = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32)


def candidates(n: int, m: int, k: int, sms: int, cluster_ok: bool, arch: str = "sm_90a") -> list[moderate.ModerateConfig]:
    """Distinct configs worth timing: tiles the arch can run whose token width fits N without more
    than half waste (nor under a quarter of N: the weights would be re-read more than 4 times), slice counts
    from 1 up to about 4 blocks per SM; S <= 8 through a cluster where there is one, larger S (or
    no cluster) through the workspace. (Session 2's sweep timed the workspace at S <= 8 as well: the
    cluster won every one of those cases, so they are no longer timed.)"""
    out = []
    for tile in moderate.NV_TILES:
        if (tile.BN >= 2 * n and tile.BN > 32) or 4 * tile.BN < n or not tile.runs_on(arch):
            continue
        tiles = -(-m // tile.BM) * -(-n // tile.BN)
        for s in SLICES:
            if s > 1 and tiles * s > 4 * sms:
                break
            reds = [moderate.RED_NONE] if s == 1 else \
                [moderate.RED_CLUSTER] if cluster_ok and s <= moderate.MAX_CLUSTER else [moderate.RED_WORKSPACE]
            for red in reds:
                c = moderate.normalized(moderate.ModerateConfig(tile, s, red), k)
                if c not in out:
                    out.append(c)
    return out


def tune(ns, shapes, out_dir, meta, dtype="bfloat16") -> list:
    import cupy as cp
    stream = cp.cuda.Stream(non_blocking=True)
    cluster_ok = parse(meta["arch"]).has("clusters")
    raw, table = [], []
    for sh in shapes:
        ops = runner.Operands(cp, sh, dtype, max(ns), meta["l2_bytes"])
        row = {"name": sh.name, "m": sh.m, "k": sh.k, "buckets": {}}
        for n in ns:
            best = None
            for cfg in candidates(n, sh.m, sh.k, meta["sms"], cluster_ok, meta["arch"]):
                us = _time_config(ops, sh, n, cfg, stream, raw)
                if us is not None and (best is None or us < best[0]):
                    best = (us, cfg)
            torch_us = (runner.time_torch(ops, n) or {}).get("us_graph", float("nan"))
            us, cfg = best
            row["buckets"][n] = moderate.to_entry(cfg, round(torch_us / us, 3))
            print(f"tune {sh.name:14s} N={n:3d} best {cfg.describe()} S={cfg.S}: {us:.2f} us; torch {torch_us:.2f} us",
                  flush=True)
        table.append(row)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
        if out_dir:  # after every shape: a sweep cut short keeps what it measured
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "tune-moderate-raw.json"), "w") as f:
                json.dump({"meta": meta, "table_moderate": table, "raw": raw}, f)
            write_tables(out_dir, meta, "moderate", moderate_rows(table, meta))
    return table


def _time_config(ops, sh, n: int, cfg: moderate.ModerateConfig, stream, raw: list) -> float | None:
    """Graph-replay time of one forced config at N tokens after its float64 check (recorded in `raw`),
    or None for a config that spills, that the driver refuses or that is wrong (reported, never chosen)."""
    us, why = runner.time_config(ops, n, cfg, stream)
    if us is None:
        if why != "spills":
            print(f"tune {sh.name} N={n} {cfg}: {why}", flush=True)
        return None
    t = cfg.tile
    raw.append({"m": sh.m, "k": sh.k, "n": n, "tile": [t.BM, t.BN, t.WM, t.WN, t.ST, t.KS], "S": cfg.S,
                "RED": cfg.RED, "us": round(us, 3)})
    return us


def tune_small_n(ns, shapes, out_dir, meta, dtype="bfloat16") -> list:
    """N <= 16 on the moderate family: every 16-token tile x K slices, timed at each N of `ns`
    (1, 4, 8, 16) against the skinny family's own config, checked against float64 first. One config
    must serve every N <= 16 (batch invariance), so the candidate with the least worst-bucket regret
    is reported. A measurement only: no table takes it (jitgemm.tuning's doc says why: timed alone the tile
    won at some shapes and lost every model step that ran it)."""
    import cupy as cp
    from .. import dispatch
    stream = cp.cuda.Stream(non_blocking=True)
    cluster_ok = parse(meta["arch"]).has("clusters")
    raw, table = [], []
    for sh in shapes:
        ops = runner.Operands(cp, sh, dtype, max(ns), meta["l2_bytes"])
        skinny_us, times = {}, {}
        for n in ns:
            cfg, _ = dispatch.nv_config(dtype, n, sh.m, sh.k, meta["sms"], meta["arch"])
            preps = runner.prepared_calls(ops, n, config=cfg)
            ops.check(n, preps[0])
            skinny_us[n] = round(runner.time_ours(preps, stream, modes=("graph",))["us_graph"], 3)
            for cfg in candidates(16, sh.m, sh.k, meta["sms"], cluster_ok, meta["arch"]):
                if cfg.tile.BN != 16:
                    continue
                us = _time_config(ops, sh, n, cfg, stream, raw)
                if us is not None:
                    times.setdefault(cfg, {})[n] = us
        full = {c: v for c, v in times.items() if len(v) == len(ns)}
        fastest = {n: min(v[n] for v in full.values()) for n in ns}
        best = min(full, key=lambda c: (max(full[c][n] / fastest[n] for n in ns), sum(full[c].values())))
        vs_skinny = {n: round(full[best][n] / skinny_us[n], 3) for n in ns}
        torch_us = (runner.time_torch(ops, max(ns)) or {}).get("us_graph", float("nan"))
        row = {"name": sh.name, "m": sh.m, "k": sh.k,
               "entry": moderate.to_entry(best, round(torch_us / full[best][max(ns)], 3)),
               "moderate_us": {n: round(full[best][n], 3) for n in ns}, "skinny_us": skinny_us,
               "moderate_over_skinny": vs_skinny}
        table.append(row)
        print(f"tune-small {sh.name:14s} {best.describe()} S={best.S}: "
              f"moderate {row['moderate_us']} skinny {skinny_us} us; torch N={max(ns)} {torch_us:.2f} us", flush=True)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "tune-moderate-small-n.json"), "w") as f:
                json.dump({"meta": meta, "table_moderate_small_n": table, "raw": raw}, f)
    return table


def moderate_rows(table: list, meta: dict) -> list:
    """The moderate rows of the device's tables file with this N > 16 sweep's results merged in: the buckets
    above 16 of its shapes replaced (a bucket 16 the file has, kept: the dispatcher still runs one where a
    user's table gives it)."""
    from .. import tables
    base = tables.choose("cuda", meta["device"], meta["arch"])
    rows = {(r["m"], r["k"]): dict(r, buckets=dict(r["buckets"])) for r in (base.doc.get("moderate", []) if base else [])}
    for t in table:
        row = rows.setdefault((t["m"], t["k"]), {"name": t["name"], "m": t["m"], "k": t["k"], "buckets": {}})
        b = row["buckets"]
        for key in [k for k in b if int(k) > MAX_SMALL_N]:
            del b[key]
        b.update({str(n): tables.moderate_entry_doc(e) for n, e in t["buckets"].items()})
    return [r for r in rows.values() if r["buckets"]]
