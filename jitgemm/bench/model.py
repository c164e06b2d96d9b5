"""`bench --group model`: the linear layers of one decode step of public models (jitgemm.models), each
step captured as one CUDA graph, jitgemm against torch (cuBLAS, what F.linear runs) captured the same
way: ms per step, effective TB/s, % of the streaming-read ceiling, and the ratio.

Every layer instance has its own weight, as in the model, so a step reads all of its weights from
HBM (a step's weights are far larger than L2 for every model listed; the small ones say so).
Results are checked against float64 (one instance per layer kind) before anything is timed."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .. import api, models
from . import operands, runner, timing

NS = (1, 4, 16, 64)
TARGETS = {1: 1.10, 4: 1.10, 16: 1.0, 64: 1.0}   # issue #17: ratio to torch cuBLAS per N
CEILING_TARGET = 0.93                            # of the streaming-read ceiling, Llama-3.1-8B at N <= 4


class StepOperands:
    """Weights (one per layer instance), tokens and outputs of a model's step at up to n_max tokens."""

    def __init__(self, cp, name: str, ns, dtype: str):
        self.cp, self.name, self.dtype = cp, name, dtype
        most = {}
        for n in ns:
            for layer in models.step(name, n):
                key = (layer.name, layer.m, layer.k)
                count, tokens = most.get(key, (0, 0))
                most[key] = (max(count, layer.count), max(tokens, layer.n))
        self.w, self.x, self.out = {}, {}, {}
        for (lname, m, k), (count, tokens) in most.items():
            self.w[lname] = [operands.random_16bit(cp, (m, k), dtype, (2.0 / k) ** 0.5) for _ in range(count)]
            self.x[lname] = operands.random_16bit(cp, (tokens, k), dtype)
            self.out[lname] = [cp.empty((tokens, m), dtype=cp.uint16) for _ in range(count)]

    def calls(self, n: int):
        """(layer, [(x, w, out) bits arrays per instance]) of the step at n tokens."""
        for layer in models.step(self.name, n):
            yield layer, [(self.x[layer.name][:layer.n], self.w[layer.name][i], self.out[layer.name][i][:layer.n])
                          for i in range(layer.count)]


def _jitgemm_launches(ops: StepOperands, n: int) -> tuple[list, list[str]]:
    """Prepared calls for every instance of the step (checked against float64 per layer kind), and
    what the dispatcher chose for each kind."""
    preps, routes = [], []
    for layer, insts in ops.calls(n):
        kind = []
        for x, w, out in insts:
            kind.append(api.prepare(operands.view(x, ops.dtype), operands.view(w, ops.dtype),
                                    out=operands.view(out, ops.dtype)))
        x, w, out = insts[0]
        out.fill(0xFFFF)
        kind[0].launch(0)
        ops.cp.cuda.runtime.deviceSynchronize()
        operands.check_rows(ops.cp, w, x, out, ops.dtype, f"{ops.name}.{layer.name} N={layer.n}")
        routes.append(f"{layer.name} [{layer.m}x{layer.k}] N={layer.n} x{layer.count}: {kind[0].plan.family} "
                      f"{kind[0].plan.instance.name if kind[0].plan.instance else ''}")
        preps += kind
    return preps, routes


def _torch_launches(ops: StepOperands, n: int):
    calls = []
    for _layer, insts in ops.calls(n):
        for x, w, out in insts:
            calls.append((operands.torch_view(x, ops.dtype), operands.torch_view(w, ops.dtype),
                          operands.torch_view(out, ops.dtype)))
    return calls


def time_step(ops: StepOperands, n: int, stream, baselines: bool) -> dict:
    """ms per step through jitgemm (and torch), each the whole step replayed as one graph."""
    preps, routes = _jitgemm_launches(ops, n)
    s = stream.ptr
    for p in preps:  # each launch once on this stream before the capture: a split-K workspace is sized then
        p.launch(s)
    stream.synchronize()
    per_call = timing.graph_replay(lambda i: preps[i].launch(s), stream, calls=len(preps))
    res = {"jitgemm_ms": per_call * len(preps) / 1e3, "calls": len(preps), "routes": routes}
    if baselines:
        try:
            import torch
        except ImportError:
            return res
        calls = _torch_launches(ops, n)
        def launch(i):
            x, w, out = calls[i]
            torch.mm(x, w.t(), out=out)
        res["torch_ms"] = timing.torch_graph_replay(launch, calls=len(calls)) * len(calls) / 1e3
    return res


def step_bytes(name: str, n: int) -> int:
    """Bytes a step must move at least: every weight once, and each call's tokens and outputs."""
    return sum(layer.count * (2 * layer.m * layer.k + 2 * layer.n * (layer.k + layer.m))
               for layer in models.step(name, n))


def run(names, ns, out_dir, baselines=True, dtype="bfloat16", name="model") -> list[dict]:
    import cupy as cp
    meta = runner.meta(cp)
    ceiling = runner.ceiling_tbs(cp)
    print(f"streaming-read ceiling: {ceiling:.3f} TB/s", flush=True)
    stream = cp.cuda.Stream(non_blocking=True)
    rows = []
    for model_name in names:
        ops = StepOperands(cp, model_name, ns, dtype)
        for n in ns:
            t = time_step(ops, n, stream, baselines)
            tbs = step_bytes(model_name, n) / (t["jitgemm_ms"] * 1e-3) / 1e12
            row = {"model": model_name, "N": n, "dtype": dtype, "calls": t["calls"], "jitgemm_ms": t["jitgemm_ms"],
                   "torch_ms": t.get("torch_ms"), "tbs": tbs, "pct_ceiling": 100 * tbs / ceiling,
                   "step_gb": step_bytes(model_name, n) / 1e9, "routes": t["routes"]}
            if row["torch_ms"]:
                row["x_torch"] = row["torch_ms"] / row["jitgemm_ms"]
            rows.append(row)
            print(f"{model_name:20s} N={n:3d} jitgemm {row['jitgemm_ms']:7.3f} ms  torch {_fmt(row['torch_ms'], 3):>7s} ms  "
                  f"x{_fmt(row.get('x_torch'), 3)}  {tbs:.2f} TB/s ({row['pct_ceiling']:.1f} % of ceiling)", flush=True)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
    text = markdown(rows, ceiling, meta)
    print(text)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps({"meta": meta, "ceiling_tbs": ceiling, "rows": rows,
                                                      "summary": summary(rows)}, indent=1))
        (out / f"{name}.md").write_text(text)
    return rows


def _fmt(v, nd=2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def summary(rows: list[dict]) -> dict:
    """Geomean ratio per N, the worst case, and each target of issue #17 met or not."""
    out = {}
    for n in sorted({r["N"] for r in rows}):
        xs = [r["x_torch"] for r in rows if r["N"] == n and r.get("x_torch")]
        if xs:
            worst = min((r for r in rows if r["N"] == n and r.get("x_torch")), key=lambda r: r["x_torch"])
            out[f"N={n}"] = {"geomean": math.exp(statistics.fmean(math.log(x) for x in xs)),
                             "worst": worst["x_torch"], "worst_model": worst["model"],
                             "target": TARGETS.get(n), "met": TARGETS.get(n) is None or worst["x_torch"] >= TARGETS[n]}
    llama = [r for r in rows if r["model"] == "llama-3.1-8b" and r["N"] <= 4]
    if llama:
        out["llama-3.1-8b N<=4 % of ceiling"] = {"min": min(r["pct_ceiling"] for r in llama),
                                                 "target": 100 * CEILING_TARGET,
                                                 "met": min(r["pct_ceiling"] for r in llama) >= 100 * CEILING_TARGET}
    return out


def markdown(rows: list[dict], ceiling: float, meta: dict) -> str:
    lines = [f"Model decode steps (the linear layers of one step, each step one CUDA graph; torch = torch.mm, i.e. "
             f"cuBLAS, captured the same way). {meta.get('device')} · driver {meta.get('driver')} · {meta.get('date')} · "
             f"streaming-read ceiling {ceiling:.2f} TB/s (same run). x torch = torch ms / jitgemm ms.", "",
             "| model | N | layers | GB read | jitgemm ms | torch ms | x torch | TB/s | % of ceiling |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['N']} | {r['calls']} | {r['step_gb']:.2f} | {r['jitgemm_ms']:.3f} | "
                     f"{_fmt(r['torch_ms'], 3)} | {_fmt(r.get('x_torch'), 3)} | {r['tbs']:.2f} | {r['pct_ceiling']:.1f} |")
    lines += ["", "| N | geomean x torch | worst (model) | target | met |", "|---|---|---|---|---|"]
    for key, v in summary(rows).items():
        if key.startswith("N="):
            lines.append(f"| {key[2:]} | {v['geomean']:.3f} | {v['worst']:.3f} ({v['worst_model']}) | "
                         f"{_fmt(v['target'])} | {'yes' if v['met'] else 'NO'} |")
        else:
            lines.append(f"| {key} | min {v['min']:.1f} % | | {v['target']:.0f} % | {'yes' if v['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"
