"""`bench --group tp` (issue #20): the linear layers of one Llama-3.1-70B decoder layer at tensor-parallel G
(every GPU of the host: qkv and gate_up column-parallel, o and down row-parallel, each followed by an NCCL
all-reduce), N tokens: jitgemm + NCCL against torch (cuBLAS + torch.cuda.nccl) doing the same per GPU, in
the same run. One process drives all GPUs.

- eager: host wall time per step (REPS steps after WARMUP, every GPU synchronised at the end); jitgemm
  through each layer's forward (a cached launch per GPU, outputs reused), torch through F.linear.
- graph: each GPU's part of the step captured once (one CUDA graph per GPU, the collectives inside) and
  replayed; jitgemm through the layers' prepared calls.
NCCL_NVLS_ENABLE=0 (jitgemm.parallel sets it): the lent machines forbid NVLink multicast."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import models
from . import runner

NS = (1, 4, 16)
WARMUP, REPS = 5, 50
TARGETS = {"eager": 1.0, "graph": 1.05}   # issue #20: jitgemm / torch speed ratio


def layer_shapes() -> dict[str, tuple[int, int]]:
    """The unsharded [M, K] of each linear of a Llama-3.1-70B layer (jitgemm/data/models.json)."""
    c = models.config("llama-3.1-70b-tp8")
    h, d = c["hidden"], c["head_dim"]
    return {"qkv": ((c["heads"] + 2 * c["kv_heads"]) * d, h), "o": (h, c["heads"] * d),
            "gate_up": (2 * c["intermediate"], h), "down": (h, c["intermediate"])}


def _sync(cp, devices):
    for d in devices:
        with cp.cuda.Device(d):
            cp.cuda.runtime.deviceSynchronize()


def _wall(step, cp, devices) -> float:
    for _ in range(WARMUP):
        step()
    _sync(cp, devices)
    t0 = time.perf_counter()
    for _ in range(REPS):
        step()
    _sync(cp, devices)
    return (time.perf_counter() - t0) / REPS * 1e6


def _capture(cp, devices, streams, step):
    """One CUDA graph per GPU of everything `step` enqueues on that GPU's stream (captures begun on every
    stream first: a grouped collective spans them all)."""
    mode = getattr(cp.cuda.runtime, "streamCaptureModeRelaxed", None)
    for d, s in zip(devices, streams):
        with cp.cuda.Device(d):
            s.begin_capture(mode) if mode is not None else s.begin_capture()
    try:
        step()
    finally:
        graphs = []
        for d, s in zip(devices, streams):
            with cp.cuda.Device(d):
                graphs.append(s.end_capture())
    return graphs


def _ours(cp, devices, n, w, rng):
    from ..parallel import ColumnParallelLinear, RowParallelLinear
    qkv, gu = ColumnParallelLinear(w["qkv"], devices=devices), ColumnParallelLinear(w["gate_up"], devices=devices)
    o, down = RowParallelLinear(w["o"], devices=devices), RowParallelLinear(w["down"], devices=devices)
    xs = qkv._per_device((rng.standard_normal((n, w["qkv"].shape[1])) * 0.5).astype(w["qkv"].dtype))
    ao = o.split_input((rng.standard_normal((n, w["o"].shape[1])) * 0.5).astype(w["o"].dtype))
    ad = down.split_input((rng.standard_normal((n, w["down"].shape[1])) * 0.5).astype(w["down"].dtype))
    streams = []
    for d in devices:
        with cp.cuda.Device(d):
            streams.append(cp.cuda.Stream(non_blocking=True))

    def eager():
        qkv.forward(xs, streams=streams)
        o.forward(ao, streams=streams)
        gu.forward(xs, streams=streams)
        down.forward(ad, streams=streams)
    calls = [layer.prepare(n, streams=streams) for layer in (qkv, o, gu, down)]
    graphs = _capture(cp, devices, streams, lambda: [c.launch() for c in calls])

    def replay():
        for d, g, s in zip(devices, graphs, streams):
            with cp.cuda.Device(d):
                g.launch(s)
    return eager, replay


def _theirs(devices, n, w, bounds):
    import torch
    import torch.cuda.nccl as tnccl
    tdt = torch.bfloat16 if w["qkv"].dtype.name == "bfloat16" else torch.float16
    shard = {}
    for k, full in w.items():
        t = torch.from_numpy(full.view(np.int16)).view(tdt)
        for d, (a, b) in zip(devices, bounds[k]):
            shard[(k, d)] = (t[a:b] if k in ("qkv", "gate_up") else t[:, a:b]).contiguous().cuda(d)
    x = {d: torch.randn(n, w["qkv"].shape[1], device=f"cuda:{d}", dtype=tdt) for d in devices}
    ao = {d: torch.randn(n, shard[("o", d)].shape[1], device=f"cuda:{d}", dtype=tdt) for d in devices}
    ad = {d: torch.randn(n, shard[("down", d)].shape[1], device=f"cuda:{d}", dtype=tdt) for d in devices}
    streams = [torch.cuda.Stream(device=d) for d in devices]

    def step():
        for k, inp in (("qkv", x), ("o", ao), ("gate_up", x), ("down", ad)):
            outs = []
            for d, s in zip(devices, streams):
                with torch.cuda.stream(s):
                    outs.append(torch.nn.functional.linear(inp[d], shard[(k, d)]))
            if k in ("o", "down") and len(devices) > 1:
                tnccl.all_reduce(outs, streams=streams)

    def graph():
        gs = [torch.cuda.CUDAGraph() for _ in devices]
        for d, g, s in zip(devices, gs, streams):
            with torch.cuda.device(d), torch.cuda.stream(s):
                g.capture_begin()
        try:
            step()
        finally:
            for d, g, s in zip(devices, gs, streams):
                with torch.cuda.device(d), torch.cuda.stream(s):
                    g.capture_end()

        def replay():
            for g in gs:
                g.replay()
        return replay
    return step, graph


def run(ns, out_dir, baselines=True, name="tp") -> list[dict]:
    import cupy as cp
    import ml_dtypes
    from ..parallel import shard_bounds
    devices = list(range(cp.cuda.runtime.getDeviceCount()))
    meta = runner.meta(cp)
    rng = np.random.default_rng(0)
    w = {k: (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16) for k, s in layer_shapes().items()}
    bounds = {k: shard_bounds(v.shape[0] if k in ("qkv", "gate_up") else v.shape[1], len(devices)) for k, v in w.items()}
    rows = []
    with runner.kept_on_interrupt(meta, rows, "rows", "measured", out_dir, name,
                                  lambda: _write(out_dir, name, rows, meta, markdown(rows, meta))):
        _measure(cp, rows, ns, devices, w, bounds, rng, baselines)
    text = markdown(rows, meta)
    print(text)
    if out_dir:
        _write(out_dir, name, rows, meta, text)
    return rows


def _measure(cp, rows: list, ns, devices, w, bounds, rng, baselines: bool) -> None:
    """One row per N, appended as it is measured (so an interrupt keeps it)."""
    for n in ns:
        ours_eager, ours_graph = _ours(cp, devices, n, w, rng)
        row = {"G": len(devices), "N": n, "jitgemm_eager_us": _wall(ours_eager, cp, devices),
               "jitgemm_graph_us": _wall(ours_graph, cp, devices)}
        if baselines:
            step, graph = _theirs(devices, n, w, bounds)
            row["torch_eager_us"] = _wall(step, cp, devices)
            try:
                row["torch_graph_us"] = _wall(graph(), cp, devices)
            except Exception as e:  # a baseline that cannot be captured: say why, keep the rest
                row["torch_graph_error"] = f"{type(e).__name__}: {e}"
            for mode in ("eager", "graph"):
                if row.get(f"torch_{mode}_us"):
                    row[f"x_{mode}"] = row[f"torch_{mode}_us"] / row[f"jitgemm_{mode}_us"]
        rows.append(row)
        print(json.dumps(row), flush=True)


def _write(out_dir, name: str, rows: list[dict], meta: dict, text: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / f"{name}.md").write_text(text)


def markdown(rows: list[dict], meta: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    r = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"Tensor-parallel Llama-3.1-70B layer linears (qkv, o, gate_up, down; 2 all-reduces), bf16, per step. "
             f"{meta.get('device')} x G · driver {meta.get('driver')} · {meta.get('date')}. x = torch µs / jitgemm µs; "
             f"targets: eager >= {TARGETS['eager']}, graph >= {TARGETS['graph']}.", "",
             "| G | N | jitgemm eager µs | torch eager µs | x eager | jitgemm graph µs | torch graph µs | x graph |",
             "|---|---|---|---|---|---|---|---|"]
    if meta.get("interrupted"):
        lines[0] += f" **Partial: interrupted {meta['interrupted']}.**"
    for row in rows:
        lines.append(f"| {row['G']} | {row['N']} | {f(row.get('jitgemm_eager_us'))} | {f(row.get('torch_eager_us'))} | "
                     f"{r(row.get('x_eager'))} | {f(row.get('jitgemm_graph_us'))} | {f(row.get('torch_graph_us'))} | "
                     f"{r(row.get('x_graph'))} |")
    errors = {row.get("torch_graph_error") for row in rows} - {None}
    lines += [f"torch graph not measured: {e}" for e in errors]
    return "\n".join(lines) + "\n"
