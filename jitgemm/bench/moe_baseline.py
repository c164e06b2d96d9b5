"""A grouped bf16 baseline for `bench --group model --models NAME+experts-grouped` (NOTES idea 11): the same
step with every grouped layer kind as one `torch._grouped_mm` call (torch's CUTLASS grouped GEMM, bf16 on sm_90 and
later: one launch a layer kind, group sizes on the device, capturable) and the dense layers (qkv, o, the router) as
torch.mm, replayed as one torch CUDA graph.

The per-expert bf16 cuBLAS step (the 4-bit grouped rows' `bf16 cuBLAS` baseline) is how a model's own code runs
its experts (a loop over them); a server with a grouped kernel runs this one, so a 4-bit grouped step is reported
against both. Every layer has its own weights, as in the model; a grouped layer's stack holds only the experts
routed to (`groups` of them): the bytes a grouped call reads, not the model's memory."""
from __future__ import annotations

from .. import models
from . import operands, timing


def grouped_step_ms(cp, name: str, n: int) -> tuple[float | None, str]:
    """(ms of the step as torch._grouped_mm / torch.mm calls replayed as one graph, a note); (None, why) where
    this torch has no grouped GEMM or it fails (a baseline that cannot run is reported as missing, never as 0)."""
    if not name.endswith(models.GROUPED):
        raise ValueError(f"grouped_step_ms: {name!r} is not a {models.GROUPED} step")
    import torch
    grouped_mm = getattr(torch, "_grouped_mm", None)
    if grouped_mm is None:
        return None, f"torch {torch.__version__} has no _grouped_mm"
    kinds = models.step(name, n)
    def bf16(shape, scale=1.0):
        return operands.torch_view(operands.random_16bit(cp, shape, "bfloat16", scale), "bfloat16")

    w, x, offs, out = {}, {}, {}, {}
    for layer in kinds:  # a grouped kind: a stack [groups, M, K] an instance, its groups' tokens one after another
        g, lead = layer.groups, (layer.groups,) if layer.groups > 1 else ()
        w[layer.name] = [bf16((*lead, layer.m, layer.k), (2.0 / layer.k) ** 0.5) for _ in range(layer.count)]
        x[layer.name] = bf16((g * layer.n, layer.k))
        if g > 1:
            offs[layer.name] = torch.arange(1, g + 1, dtype=torch.int32, device=x[layer.name].device) * layer.n
        else:
            out[layer.name] = torch.empty((layer.n, layer.m), dtype=torch.bfloat16, device=x[layer.name].device)

    def call(layer, i: int):  # instance i: its own weight, as in the model (every step reads them all from HBM)
        weight = w[layer.name][i]
        if layer.groups > 1:
            return lambda: grouped_mm(x[layer.name], weight.transpose(-2, -1), offs=offs[layer.name],
                                      out_dtype=torch.bfloat16)
        return lambda: torch.mm(x[layer.name], weight.t(), out=out[layer.name])

    steps = [call(layer, i) for layer, i in models.order(name, n)]
    try:
        _check_grouped(torch, grouped_mm, kinds, w, x, offs)
        ms = timing.torch_graph_replay(lambda i: steps[i](), calls=len(steps)) * len(steps) / 1e3
    except (RuntimeError, NotImplementedError) as e:  # no sm_90 CUTLASS path in this build, a refused layout, ...
        return None, f"torch._grouped_mm failed: {str(e).splitlines()[0][:160]}"
    return ms, f"torch._grouped_mm (torch {torch.__version__}), {len(steps)} calls"


def _check_grouped(torch, grouped_mm, kinds, w, x, offs) -> None:
    """Each grouped kind's first and last group against torch.mm of the same bf16 operands (fp32 sums both:
    equal within a few bf16 ulps), so a grouped call that reads the wrong weights is never timed."""
    for layer in kinds:
        if layer.groups <= 1:
            continue
        got = grouped_mm(x[layer.name], w[layer.name][0].transpose(-2, -1), offs=offs[layer.name],
                         out_dtype=torch.bfloat16).float()
        for g in (0, layer.groups - 1):
            rows = slice(g * layer.n, (g + 1) * layer.n)
            want = (x[layer.name][rows].float() @ w[layer.name][0][g].float().t())
            err = ((got[rows] - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
            if not err < 2e-2:
                raise RuntimeError(f"{layer.name} group {g}: relative error {err:.3g} against torch.mm (> 2e-2)")
