"""The 4-bit family's tuning sweep on NVIDIA: every config of a grid per (format, shape, N), each forced through
the one place a 4-bit config is chosen (dispatch.w4_nv_config), checked against float64 of the dequantized
weights, then timed by graph replay over cold weight copies; per shape one K order for every N bucket (min-max
regret, as the 16-bit tuner: tune_skinny.select) and the fastest MT per bucket. tools/w4_sweep.py runs it for the
shipped tables (docs/benchmarks/session18: the heuristic's configs were 1.18-1.37x slower than the best on an
H100), `jitgemm tune --dtype w4-<format>` for the user's own shapes and GPU."""
from __future__ import annotations

import itertools
import os

from .. import dispatch, precompile, quant4
from ..kernels import w4
from ..kernels.skinny import TAG, NvConfig
from .runner import forced_w4_config
from .w4_runner import MODES, W4Operands, time_bf16

GRID = {"mt": (1, 2), "wk": (4, 8, 16), "u": (1, 2, 4), "sk": (1, 2)}  # 36 configs


def grid(mts=GRID["mt"], wks=GRID["wk"], us=GRID["u"], sks=GRID["sk"], nts=(0,)) -> list[NvConfig]:
    """Every (MT, WK, U, SK, NT) of the lists (NT 0: the token tiles N <= 16 takes, NvConfig.nt)."""
    return [NvConfig(mt, wk, u, sk, nt) for mt, wk, u, sk, nt in itertools.product(mts, wks, us, sks, nts)]


def instances(configs, modes, ns, dtype="bfloat16") -> dict:
    """{(mode, config, nt): KernelInstance} for every token tiling the Ns take."""
    out = {}
    for mode in modes:
        fmt, group = MODES[mode]
        for cfg in configs:
            for n in ns:
                # the sweep's MXFP4 scales are all normal (w4_runner.random_q4): the instance it runs
                out.setdefault((mode, cfg, cfg.nt(n)), w4.nv_instance(cfg, dtype, fmt, group, n, fmt == "mxfp4"))
    return out


def compile_all(arch: str, insts: dict, root: str) -> dict:
    """{instance name: resources or error} after compiling every instance (in parallel) into the cache at root."""
    res = {}
    uniq = {i.name: i for i in insts.values()}
    for name, _sym, r, _fresh, err in precompile.results(arch, root, list(uniq.values()), os.cpu_count() or 1):
        res[name] = {"error": err} if err else r
    return res


def label(cfg: NvConfig) -> str:
    return f"MT{cfg.MT} WK{cfg.WK} U{cfg.U} SK{cfg.SK}" + (f" NT{cfg.NT}" if cfg.NT else "")


def measure_shape(cp, stream, sh, mode, ns, configs, l2, log, device: str = "", arch: str = "sm_90a",
                  baseline: bool = True) -> list[dict]:
    """One row a token count: {mode, shape, m, k, n, dispatcher (the config planned without forcing), bf16_us
    (bf16 cuBLAS, with baseline and torch), configs: {label: {config, us, rel_err} or {error}}}; log(row) as
    each is done. A config that fails (a launch error, a wrong result) is reported and the sweep goes on."""
    from . import timing
    ops = W4Operands(cp, sh, mode, l2, max(ns), with_bf16=baseline)
    rows = []
    fmt = MODES[mode][0]
    checked = set()  # (config, token tiles) whose result was checked on this shape
    for n in ns:
        base = time_bf16(ops, n) if baseline else None
        now = dispatch.w4_nv_config(fmt, n, sh.m, sh.k, device, arch)[0]  # what the dispatcher runs today
        row = {"mode": mode, "shape": sh.name, "m": sh.m, "k": sh.k, "n": n, "dispatcher": label(now),
               "bf16_us": base["us_graph"] if base else None, "configs": {}}
        for cfg in configs:
            if cfg.SK > 1 and sh.k < cfg.SK * cfg.WK * 128 * cfg.U:
                continue  # more K splits than K has iterations for
            try:
                with forced_w4_config(cfg, "the 4-bit tuning sweep"):
                    preps = ops.prepared(n)
                err = None
                if (cfg, cfg.nt(n)) not in checked:  # each instance's result checked once a shape
                    err = ops.check(n, preps[0])
                    checked.add((cfg, cfg.nt(n)))
                us = timing.graph_replay(lambda i: preps[i % len(preps)].launch(stream.ptr), stream)
                row["configs"][label(cfg)] = {"config": [cfg.MT, cfg.WK, cfg.U, cfg.SK] + ([cfg.NT] if cfg.NT else []),
                                              "us": us, "rel_err": err}
            except Exception as e:  # noqa: BLE001 - one bad config must not end the sweep; it is reported
                row["configs"][label(cfg)] = {"error": f"{type(e).__name__}: {e}"[:300]}
        rows.append(row)
        log(row)
    del ops
    cp.get_default_memory_pool().free_all_blocks()
    return rows


def row_instances(cfg: NvConfig, fmt: str, n: int) -> list:
    """Every instance a table row's config becomes at N: the dispatcher takes a format's rows for each of the
    format's groups and both token dtypes (MXFP4: both scale decodes), while the sweep measures one group with
    bf16 tokens."""
    return [w4.nv_instance(cfg, dtype, fmt, g, n, normal) for dtype in TAG for g in quant4.groups_of(fmt)
            for normal in w4.scale_decodes(fmt)]


def table_rows(result: dict) -> dict:
    """{family "w4-<format>": [tables-file rows]} from a sweep's result: per (format, shape) one K order for every
    N bucket (min-max regret, as the 16-bit tuner picks: jitgemm.bench.tune_skinny.select) and the fastest MT per
    bucket. Configs that failed (a wrong result, a launch error) are no candidates, nor those whose instance for
    any group or dtype of the format spills or failed to compile (aot ships zero-spill instances; write_table
    compiles them all first, an instance missing from result["resources"] counts as clean)."""
    from .suite import Shape
    from .tune_skinny import select, skinny_row_doc
    res = result["resources"]
    bad = lambda i: "error" in res.get(i.name, {}) or res.get(i.name, {}).get("spill_stores")  # noqa: E731
    times: dict = {}
    for r in result["rows"]:
        if r["n"] > 16:  # the tables' buckets end at 16; N > 16 takes its token tiles from w4.token_tiling
            continue
        fmt = MODES[r["mode"]][0]
        t = times.setdefault((r["mode"], Shape(r["shape"], r["m"], r["k"])), {})
        for v in r["configs"].values():
            if "us" not in v:
                continue
            cfg = NvConfig(*v["config"])
            if any(bad(i) for i in row_instances(cfg, fmt, r["n"])):
                continue
            t[(dispatch.n_bucket(r["n"]), cfg)] = v["us"]
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


