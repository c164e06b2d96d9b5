"""`bench --group model`: the linear layers of one decode step of public models (jitgemm.models), each
step captured as one CUDA graph, jitgemm against torch (cuBLAS, what F.linear runs) captured the same
way: ms per step, effective TB/s, % of the streaming-read ceiling, and the ratio.

Every layer instance has its own weight, as in the model, so a step reads all of its weights from
HBM (a step's weights are far larger than L2 for every model listed; the small ones say so). The calls run
in model order (jitgemm.models.order: layer by layer, qkv, o, gate_up, down), so each kernel follows the one
a model puts before it.
Results are checked against float64 (one instance per layer kind) before anything is timed."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .. import api, models, scaled
from ..w4experts import prepare_w4_experts
from ..w4gemm import prepare_w4
from . import fp8_runner, operands, runner, timing, w4_runner

NS = (1, 4, 16, 64)
TARGETS = {1: 1.10, 4: 1.10, 16: 1.0, 64: 1.0}   # issue #17: ratio to torch cuBLAS per N
CEILING_TARGET = 0.93                            # of the streaming-read ceiling, Llama-3.1-8B at N <= 4
# The fp8 modes of a step (issue #21): W8A8 per tensor and per token x per channel against torch._scaled_mm
# (per-tensor / row-wise scales) with the tokens padded to 16 rows (what _scaled_mm accepts), W8A16 against
# bf16 cuBLAS; every fp8 step also against the bf16 cuBLAS step of the same model.
FP8_MODES = ("fp8", "fp8-channel", "w8a16")
FP8_MODELS = ("llama-3.1-8b", "llama-3.1-70b-tp8")
FP8_TARGETS = {"fp8": {1: 1.25, 4: 1.25, 16: 1.0, 64: 1.0}, "fp8-channel": {1: 1.25, 4: 1.25, 16: 1.0, 64: 1.0},
               "w8a16": {1: 1.7, 4: 1.7, 16: 1.0}}
# 4-bit weights (issue #19): each format as checkpoints ship it (bench/w4_runner.MODES), against the bf16 step
W4_MODES = tuple(w4_runner.MODES)
W4_TARGETS = {1: 2.5, 4: 2.5}
QUANT_MODES = FP8_MODES + W4_MODES
BASELINE = {"fp8": "_scaled_mm", "fp8-channel": "_scaled_mm row-wise", "w8a16": "bf16 cuBLAS",
            **{m: "bf16 cuBLAS" for m in W4_MODES}}
DESCRIBE = {**fp8_runner.DESCRIBE, **{m: f"{f} weights, groups of {g}, bf16 tokens" for m, (f, g) in w4_runner.MODES.items()}}


def _padded(n: int) -> int:
    return -(-n // 16) * 16


class StepOperands:
    """Weights (one per layer instance), tokens and outputs of a model's step at up to n_max tokens, in
    a 16-bit dtype or an fp8 mode (fp8 weights with per-channel scales, fp8 and bf16 tokens with per-token
    scales; rows padded to 16 for torch._scaled_mm)."""

    def __init__(self, cp, name: str, ns, dtype: str):
        self.cp, self.name, self.dtype = cp, name, dtype
        self.fp8, self.w4 = dtype in FP8_MODES, dtype in W4_MODES
        # the layers a step runs: a grouped variant's own with 4-bit weights (w4_experts_gemm), else its model's,
        # expert by expert (no other family has an experts kernel: that step is the 4-bit one's baseline)
        self.layout = name if self.w4 or not name.endswith(models.GROUPED) else models.base_name(name)
        most = {}
        for n in ns:
            for layer in models.step(self.layout, n):
                key = (layer.name, layer.m, layer.k)
                count, tokens, groups = most.get(key, (0, 0, 1))
                most[key] = (max(count, layer.count), max(tokens, layer.n), max(groups, layer.groups))
        self.w, self.x, self.out, self.x8, self.sx, self.sw, self.ids = {}, {}, {}, {}, {}, {}, {}
        for (lname, m, k), (count, tokens, groups) in most.items():
            rows = _padded(tokens) if self.fp8 else tokens
            if groups > 1:  # one stack of the model's experts a layer, the first `groups` of them routed to
                experts = models.config(name)["experts"]
                self.w[lname] = [w4_runner.random_q4(cp, m, k, dtype, experts=experts) for _ in range(count)]
                self.ids[lname] = cp.random.permutation(experts)[:groups].astype(cp.int32)
                self.x[lname] = operands.random_16bit(cp, (groups, rows, k), self.token_dtype)
                self.out[lname] = [cp.empty((groups, rows, m), dtype=cp.uint16) for _ in range(count)]
                continue
            if self.fp8:
                self.w[lname] = [fp8_runner.random_fp8(cp, (m, k)) for _ in range(count)]
                self.x8[lname] = fp8_runner.random_fp8(cp, (rows, k))
                self.sx[lname] = (cp.random.random(rows, dtype=cp.float32) + 0.5) * cp.float32(1e-2)
                self.sw[lname] = (cp.random.random(m, dtype=cp.float32) + 0.5) * cp.float32(1e-2)
            elif self.w4:
                self.w[lname] = [w4_runner.random_q4(cp, m, k, dtype) for _ in range(count)]
            else:
                self.w[lname] = [operands.random_16bit(cp, (m, k), dtype, (2.0 / k) ** 0.5) for _ in range(count)]
            self.x[lname] = operands.random_16bit(cp, (rows, k), self.token_dtype)
            self.out[lname] = [cp.empty((rows, m), dtype=cp.uint16) for _ in range(count)]

    @property
    def token_dtype(self) -> str:
        return "bfloat16" if self.fp8 or self.w4 else self.dtype

    def order(self, n: int) -> list:
        """(layer, instance index) of every call of the step at n tokens, in the order a model runs them."""
        return models.order(self.layout, n)

    def prepare(self, layer, i: int):
        """jitgemm's prepared call of instance i of a layer kind."""
        lname, n = layer.name, layer.n
        if layer.groups > 1:
            g = layer.groups
            return prepare_w4_experts(operands.view(self.x[lname][:g, :n], "bfloat16"),
                                      operands.view(self.ids[lname][:g], "int32"), self.w[lname][i],
                                      out=operands.view(self.out[lname][i][:g, :n], "bfloat16"))
        if self.fp8:
            x, w, sx, sw, o = fp8_runner.mode_args(self.dtype, n, self.x8[lname], self.x[lname], self.w[lname][i],
                                                   self.sx[lname], self.sw[lname], self.out[lname][i])
            return scaled.prepare_scaled(x, w, sx, sw, out=o, out_dtype="bfloat16")
        if self.w4:
            return prepare_w4(operands.view(self.x[lname][:n], "bfloat16"), self.w[lname][i],
                              out=operands.view(self.out[lname][i][:n], "bfloat16"))
        return api.prepare(operands.view(self.x[lname][:n], self.dtype), operands.view(self.w[lname][i], self.dtype),
                           out=operands.view(self.out[lname][i][:n], self.dtype))

    def check(self, layer, plan) -> None:
        """Instance 0 of a layer kind (just run by `plan`) against float64."""
        lname, n = layer.name, layer.n
        label = f"{self.name}.{lname} N={n} {self.dtype}"
        if layer.groups > 1:  # the first and last groups, each against its expert
            for g in (0, layer.groups - 1):
                e = int(self.ids[lname][g].get())
                w4_runner.check_rows(self.cp, w4_runner.expert_of(self.w[lname][0], e), self.x[lname][g, :n],
                                     self.out[lname][0][g, :n], "bfloat16", f"{label} group {g} (expert {e})")
            return
        if self.fp8:
            fp8_runner.check_rows(self.cp, self.dtype, n, self.x8[lname], self.x[lname], self.w[lname][0],
                                  self.sx[lname], self.sw[lname], self.out[lname][0], label, plan.family == "blaslt")
        elif self.w4:
            w4_runner.check_rows(self.cp, self.w[lname][0], self.x[lname][:n], self.out[lname][0][:n], "bfloat16", label)
        else:
            operands.check_rows(self.cp, self.w[lname][0], self.x[lname][:n], self.out[lname][0][:n], self.dtype, label)

    def torch_call(self, layer, i: int):
        """The baseline's call of instance i: torch.mm (16-bit), torch._scaled_mm on 16-row-padded tokens
        (fp8, fp8-channel); None for w8a16, whose baseline is the bf16 step."""
        import torch
        lname, n = layer.name, layer.n
        if self.w4:
            return None
        o = operands.torch_view(self.out[lname][i], "bfloat16" if self.fp8 else self.dtype)
        if not self.fp8:
            x = operands.torch_view(self.x[lname], self.dtype)[:n]
            w = operands.torch_view(self.w[lname][i], self.dtype)
            return lambda: torch.mm(x, w.t(), out=o[:n])
        if self.dtype == "w8a16":
            return None
        rows = _padded(n)
        a8 = torch.from_dlpack(self.x8[lname]).view(torch.float8_e4m3fn)[:rows]
        b8 = torch.from_dlpack(self.w[lname][i]).view(torch.float8_e4m3fn)
        if self.dtype == "fp8":
            sa = torch.tensor(fp8_runner.SX, device=a8.device)
            sb = torch.tensor(fp8_runner.SW, device=a8.device)
        else:
            sa = torch.from_dlpack(self.sx[lname])[:rows].view(rows, 1)
            sb = torch.from_dlpack(self.sw[lname]).view(1, -1)
        return lambda: torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16, out=o[:rows])


def _jitgemm_launches(ops: StepOperands, n: int) -> tuple[list, list[str]]:
    """Prepared calls for every call of the step in model order (instance 0 of each layer kind checked against
    float64), and what the dispatcher chose for each kind."""
    preps, routes = [], []
    for layer, i in ops.order(n):
        prep = ops.prepare(layer, i)
        if i == 0:
            ops.out[layer.name][0].fill(0xFFFF)
            prep.launch(0)
            ops.cp.cuda.runtime.deviceSynchronize()
            ops.check(layer, prep.plan)
            routes.append(f"{layer.name} [{layer.m}x{layer.k}] N={layer.n} x{layer.count}"
                          f"{f' ({layer.groups} experts a call)' if layer.groups > 1 else ''}: {prep.plan.family} "
                          f"{prep.plan.instance.name if prep.plan.instance else ''}")
        preps.append(prep)
    return preps, routes


def time_step(ops: StepOperands, n: int, stream, baselines: bool) -> dict:
    """ms per step through jitgemm (and its baseline), each the whole step replayed as one graph."""
    preps, routes = _jitgemm_launches(ops, n)
    s = stream.ptr
    for p in preps:  # each launch once on this stream before the capture: a split-K workspace is sized then
        p.launch(s)
    stream.synchronize()
    per_call = timing.graph_replay(lambda i: preps[i].launch(s), stream, calls=len(preps))
    res = {"jitgemm_ms": per_call * len(preps) / 1e3, "calls": len(preps), "routes": routes}
    if baselines:
        try:
            import torch  # noqa: F401
        except ImportError:
            return res
        ms = torch_step_ms(ops, n)
        if ms is not None:
            res["torch_ms"] = ms
    return res


def torch_step_ms(ops: StepOperands, n: int) -> float | None:
    """ms of the baseline's step (its calls replayed as one torch CUDA graph); None where the mode's
    baseline is another step (W8A16 and 4-bit: the bf16 one)."""
    calls = [ops.torch_call(layer, i) for layer, i in ops.order(n)]
    if not calls or calls[0] is None:
        return None
    return timing.torch_graph_replay(lambda i: calls[i](), calls=len(calls)) * len(calls) / 1e3


def step_bytes(name: str, n: int, mode: str = "bfloat16") -> int:
    """Bytes a step must move at least: every weight once, and each call's tokens and outputs (fp8
    weights a byte an element, fp8 tokens of the W8A8 modes too; 4-bit weights their codes and group data)."""
    wb = 1 if mode in FP8_MODES else w4_runner.weight_bytes(mode) if mode in W4_MODES else 2
    xb = 1 if mode in ("fp8", "fp8-channel") else 2
    return int(sum(layer.count * layer.groups * (wb * layer.m * layer.k + layer.n * (xb * layer.k + 2 * layer.m))
                   for layer in models.step(name, n)))


def run(names, ns, out_dir, baselines=True, dtypes=("bfloat16",), name="model") -> list[dict]:
    """Time each mode's step (a 16-bit dtype, or an fp8 mode of FP8_MODES) for each model and N; write
    name.json and name.md to out_dir."""
    import cupy as cp
    meta = runner.meta(cp)
    ceiling = runner.ceiling_tbs(cp)
    print(f"streaming-read ceiling: {ceiling:.3f} TB/s", flush=True)
    stream = cp.cuda.Stream(non_blocking=True)
    rows = []
    keep = lambda: _write(out_dir, name, rows, ceiling, meta, markdown(rows, ceiling, meta))  # noqa: E731
    with runner.kept_on_interrupt(meta, rows, "steps", "timed", out_dir, name, keep):
        _measure(cp, rows, names, ns, dtypes, stream, baselines, ceiling)
    text = markdown(rows, ceiling, meta)
    print(text)
    if out_dir:
        _write(out_dir, name, rows, ceiling, meta, text)
    return rows


def _measure(cp, rows: list, names, ns, dtypes, stream, baselines: bool, ceiling: float) -> None:
    """Every (mode, model, N) step, appended to `rows` as it is timed (so an interrupt keeps them)."""
    bf16_ms = {}  # (model, N) -> the bf16 cuBLAS step, every fp8 step's second baseline
    for mode in dtypes:
        for model_name in names:
            ops = StepOperands(cp, model_name, ns, mode)
            for n in ns:
                rows.append(_row(ops, n, stream, baselines, ceiling))
                if mode == "bfloat16" and rows[-1]["torch_ms"]:
                    bf16_ms[(model_name, n)] = rows[-1]["torch_ms"]
            del ops
            cp.get_default_memory_pool().free_all_blocks()
            if baselines and mode == "bfloat16" and model_name.endswith(models.GROUPED):
                _add_grouped_baseline([r for r in rows if r["model"] == model_name and r["dtype"] == mode], cp)
            if baselines and mode in QUANT_MODES:
                _add_bf16_baseline([r for r in rows if r["model"] == model_name and r["dtype"] == mode], cp, stream,
                                   bf16_ms)


def _write(out_dir, name: str, rows: list[dict], ceiling: float, meta: dict, text: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "ceiling_tbs": ceiling, "rows": rows,
                                                  "summary": summary(rows)}, indent=1))
    (out / f"{name}.md").write_text(text)


def _row(ops: StepOperands, n: int, stream, baselines: bool, ceiling: float) -> dict:
    t = time_step(ops, n, stream, baselines)
    nbytes = step_bytes(ops.name, n, ops.dtype)
    tbs = nbytes / (t["jitgemm_ms"] * 1e-3) / 1e12
    row = {"model": ops.name, "N": n, "dtype": ops.dtype, "baseline": BASELINE.get(ops.dtype, "torch cuBLAS"),
           "calls": t["calls"], "jitgemm_ms": t["jitgemm_ms"], "torch_ms": t.get("torch_ms"), "tbs": tbs,
           "pct_ceiling": 100 * tbs / ceiling, "step_gb": nbytes / 1e9, "routes": t["routes"]}
    if row["torch_ms"]:
        row["x_torch"] = row["torch_ms"] / row["jitgemm_ms"]
    print(f"{ops.name:20s} {ops.dtype:11s} N={n:3d} jitgemm {row['jitgemm_ms']:7.3f} ms  {row['baseline']} "
          f"{_fmt(row['torch_ms'], 3):>7s} ms  x{_fmt(row.get('x_torch'), 3)}  {tbs:.2f} TB/s "
          f"({row['pct_ceiling']:.1f} % of ceiling)", flush=True)
    return row


def _add_bf16_baseline(rows: list[dict], cp, stream, bf16_ms: dict) -> None:
    """The bf16 cuBLAS step of each row's model and N (timed once a run): `bf16_ms` and `x_bf16` of fp8
    rows; for W8A16 it is the baseline itself."""
    todo = sorted({r["N"] for r in rows if (r["model"], r["N"]) not in bf16_ms})
    if todo:
        import torch  # noqa: F401  (baselines need it; time_step returned none without it)
        ops = StepOperands(cp, rows[0]["model"], todo, "bfloat16")
        for n in todo:
            bf16_ms[(ops.name, n)] = torch_step_ms(ops, n)
        del ops
        cp.get_default_memory_pool().free_all_blocks()
    for r in rows:
        r["bf16_ms"] = bf16_ms[(r["model"], r["N"])]
        r["x_bf16"] = r["bf16_ms"] / r["jitgemm_ms"]
        if BASELINE[r["dtype"]] == "bf16 cuBLAS":  # W8A16 and the 4-bit modes: the bf16 step is the baseline
            r["torch_ms"], r["x_torch"] = r["bf16_ms"], r["x_bf16"]


def _add_grouped_baseline(rows: list[dict], cp) -> None:
    """A 16-bit NAME+experts-grouped row (the model's step expert by expert, jitgemm against torch.mm) also gets
    the step with each grouped layer kind as one torch._grouped_mm call (bench.moe_baseline): `grouped_ms`, and
    `grouped_note` (what ran, or why it could not). Run it in a bench call of its own: a device-side assert in
    torch's kernel would end the process."""
    from . import moe_baseline
    for r in rows:
        r["grouped_ms"], r["grouped_note"] = moe_baseline.grouped_step_ms(cp, r["model"], r["N"])
        print(f"{r['model']:20s} N={r['N']:3d} bf16 grouped baseline: {_fmt(r['grouped_ms'], 3)} ms "
              f"({r['grouped_note']})", flush=True)
        cp.get_default_memory_pool().free_all_blocks()


def _fmt(v, nd=2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _targets(mode: str) -> dict:
    return FP8_TARGETS[mode] if mode in FP8_MODES else W4_TARGETS if mode in W4_MODES else TARGETS


def summary(rows: list[dict]) -> dict:
    """Geomean ratio per mode and N, the worst case, and each target (issues #17 and #21) met or not.
    16-bit rows are keyed "N=n", an fp8 mode's "mode N=n"."""
    out = {}
    for mode in dict.fromkeys(r.get("dtype", "bfloat16") for r in rows):
        of_mode = [r for r in rows if r.get("dtype", "bfloat16") == mode]
        prefix = f"{mode} " if mode in QUANT_MODES else ""
        for n in sorted({r["N"] for r in of_mode}):
            timed = [r for r in of_mode if r["N"] == n and r.get("x_torch")]
            if timed:
                worst = min(timed, key=lambda r: r["x_torch"])
                target = _targets(mode).get(n)
                out[f"{prefix}N={n}"] = {"geomean": math.exp(statistics.fmean(math.log(r["x_torch"]) for r in timed)),
                                         "worst": worst["x_torch"], "worst_model": worst["model"], "target": target,
                                         "met": target is None or worst["x_torch"] >= target}
    llama = [r for r in rows if r["model"] == "llama-3.1-8b" and r["N"] <= 4 and r.get("dtype", "bfloat16") not in QUANT_MODES]
    if llama:
        out["llama-3.1-8b N<=4 % of ceiling"] = {"min": min(r["pct_ceiling"] for r in llama),
                                                 "target": 100 * CEILING_TARGET,
                                                 "met": min(r["pct_ceiling"] for r in llama) >= 100 * CEILING_TARGET}
    return out


def markdown(rows: list[dict], ceiling: float, meta: dict) -> str:
    lines = [f"Model decode steps (the linear layers of one step in model order, each step one CUDA graph; torch = "
             f"torch.mm, i.e. cuBLAS, captured the same way). {meta.get('device')} · driver {meta.get('driver')} · "
             f"{meta.get('date')} · streaming-read ceiling {ceiling:.2f} TB/s (same run). x torch = torch ms / jitgemm ms."]
    if meta.get("interrupted"):
        lines[0] += f" **Partial: interrupted {meta['interrupted']}.**"
    sixteen = [r for r in rows if r.get("dtype", "bfloat16") not in QUANT_MODES]
    if sixteen:
        lines += ["", "| model | N | layers | GB read | jitgemm ms | torch ms | x torch | TB/s | % of ceiling |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sixteen:
            lines.append(f"| {r['model']} | {r['N']} | {r['calls']} | {r['step_gb']:.2f} | {r['jitgemm_ms']:.3f} | "
                         f"{_fmt(r['torch_ms'], 3)} | {_fmt(r.get('x_torch'), 3)} | {r['tbs']:.2f} | {r['pct_ceiling']:.1f} |")
    grouped = [r for r in sixteen if "grouped_note" in r]
    if grouped:
        lines += ["", "The same steps with each layer's routed experts as one torch._grouped_mm call (bf16; the 4-bit "
                  "grouped steps' second baseline):", "", "| model | N | bf16 grouped ms | per-expert torch ms | what ran |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['N']} | {_fmt(r['grouped_ms'], 3)} | {_fmt(r['torch_ms'], 3)} | "
                  f"{r['grouped_note']} |" for r in grouped]
    for mode in QUANT_MODES:
        of_mode = [r for r in rows if r.get("dtype") == mode]
        if not of_mode:
            continue
        kind = "fp8 mode" if mode in FP8_MODES else "4-bit mode"
        lines += ["", f"{kind} {mode} ({DESCRIBE[mode]}), against {BASELINE[mode]} and the bf16 cuBLAS step:", "",
                  f"| model | N | layers | GB read | jitgemm ms | {BASELINE[mode]} ms | x {BASELINE[mode]} | bf16 cuBLAS ms "
                  f"| x bf16 | TB/s | % of ceiling |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in of_mode:
            lines.append(f"| {r['model']} | {r['N']} | {r['calls']} | {r['step_gb']:.2f} | {r['jitgemm_ms']:.3f} | "
                         f"{_fmt(r['torch_ms'], 3)} | {_fmt(r.get('x_torch'), 3)} | {_fmt(r.get('bf16_ms'), 3)} | "
                         f"{_fmt(r.get('x_bf16'), 3)} | {r['tbs']:.2f} | {r['pct_ceiling']:.1f} |")
    lines += ["", "| N | geomean x baseline | worst (model) | target | met |", "|---|---|---|---|---|"]
    for key, v in summary(rows).items():
        if "N=" in key:
            lines.append(f"| {key.replace('N=', '')} | {v['geomean']:.3f} | {v['worst']:.3f} ({v['worst_model']}) | "
                         f"{_fmt(v['target'])} | {'yes' if v['met'] else 'NO'} |")
        else:
            lines.append(f"| {key} | min {v['min']:.1f} % | | {v['target']:.0f} % | {'yes' if v['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"
