"""The linear layers of one decode step of public models (jitgemm/data/models.json): what `bench
--group model` times and `tune --model` tunes.

A dense layer runs qkv, o, gate_up and down once per step on all N tokens. A mixture-of-experts layer
runs qkv and o the same way, its router on all N tokens, and its experts each on the tokens routed to
them: with balanced routing, N tokens x top-k choices land on min(N x k, experts) distinct experts,
ceil(N x k / that) tokens each (N = 1: k experts of 1 token). The LM head is not counted (it runs once
per step, and many servers skip it for all but the last position).

`NAME+experts-stacked` (a MoE model only; not among names(), so no default run takes it): the same step with each
layer's routed experts as one GEMM over their weights stacked, gate_up along M and down along K, on the tokens each
expert gets: the bytes and the one launch a layer that a grouped call of its experts would have (NOTES idea 11:
the per-expert step's launches, 768 of 912 a Qwen3-30B-A3B step at N = 1, keep it at a third of the read
ceiling). At N = 1 the stacked down is the MoE's own sum over its experts; at N > 1 each expert has its own tokens,
so the stacked form is a model of the bytes and launches, not of the arithmetic.

`NAME+experts-grouped` (a MoE model only, not among names()): the experts as grouped calls, one a layer kind,
`groups` experts each (w4_experts_gemm: 4-bit modes only; the bench runs a 16-bit step of it as the model's own,
expert by expert, which is its baseline)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "models.json"
STACKED = "+experts-stacked"
GROUPED = "+experts-grouped"
VARIANTS = (STACKED, GROUPED)
_FIELDS = {"source", "hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "vocab", "tp", "experts",
           "experts_per_token", "expert_intermediate"}


@dataclass(frozen=True)
class Layer:
    """One kind of linear layer of a step: out[n, m] = x[n, k] . w[m, k]^T, run `count` times a step
    (each time on its own weight) with `n` tokens; a grouped call (groups > 1) runs `groups` weights of its
    layer's expert stack at once, `n` tokens each."""
    name: str
    m: int
    k: int
    n: int
    count: int
    groups: int = 1

    @property
    def weight_bytes(self) -> int:
        return 2 * self.m * self.k * self.count * self.groups


def names() -> list[str]:
    return list(_models())


def _models() -> dict:
    return json.loads(DATA.read_text())["models"]


def base_name(name: str) -> str:
    """The model a step variant (NAME+experts-stacked, NAME+experts-grouped) is of."""
    return next((name[:-len(v)] for v in VARIANTS if name.endswith(v)), name)


def config(name: str) -> dict:
    models = _models()
    base = base_name(name)
    if base not in models:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(models)} (a MoE one also as NAME"
                         f"{' or NAME'.join(VARIANTS)})")
    cfg = models[base]
    if base != name and "experts" not in cfg:
        raise ValueError(f"model {name!r}: {name[len(base):]} needs a mixture-of-experts model; {base!r} is dense")
    unknown = set(cfg) - _FIELDS
    if unknown:
        raise ValueError(f"{DATA}: model {name!r} has unknown fields {sorted(unknown)}")
    return cfg


def step(name: str, n: int) -> list[Layer]:
    """The linear layers of one decode step of model `name` at n tokens (one GPU's shard under tp)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (tokens) must be an int >= 1, got {n!r}")
    c = config(name)
    tp, L, h, d = c.get("tp", 1), c["layers"], c["hidden"], c["head_dim"]
    qkv = (c["heads"] + 2 * c["kv_heads"]) * d
    for what, v in (("(heads + 2 kv_heads) x head_dim", qkv), ("heads x head_dim", c["heads"] * d),
                    ("intermediate", c["intermediate"])):
        if v % tp:
            raise ValueError(f"model {name!r}: {what} = {v} does not split over tp = {tp}")
    layers = [Layer("qkv", qkv // tp, h, n, L), Layer("o", h, c["heads"] * d // tp, n, L)]
    if "experts" not in c:
        return layers + [Layer("gate_up", 2 * c["intermediate"] // tp, h, n, L),
                         Layer("down", h, c["intermediate"] // tp, n, L)]
    e, k, ei = c["experts"], c["experts_per_token"], c["expert_intermediate"] // tp
    used = min(n * k, e)
    per = math.ceil(n * k / used)
    if name.endswith(STACKED):
        return layers + [Layer("router", e, h, n, L), Layer("expert.gate_up", used * 2 * ei, h, per, L),
                         Layer("expert.down", h, used * ei, per, L)]
    if name.endswith(GROUPED):
        return layers + [Layer("router", e, h, n, L), Layer("expert.gate_up", 2 * ei, h, per, L, used),
                         Layer("expert.down", h, ei, per, L, used)]
    return layers + [Layer("router", e, h, n, L), Layer("expert.gate_up", 2 * ei, h, per, L * used),
                     Layer("expert.down", h, ei, per, L * used)]


def order(name: str, n: int) -> list[tuple[Layer, int]]:
    """The step's calls as a decode step runs them, (layer kind, instance): layer by layer, each layer's kinds
    in turn (qkv, o, gate_up, down; MoE: qkv, o, the router, its experts' gate_up, then their down). A kind
    with c instances a layer gives layer l its instances l * c .. l * c + c - 1. What runs next to what
    decides what a chain of kernels costs (one kernel's tail beside the next one's start), so a step timed
    kind by kind (80 qkv, then 80 o, ...) is not the step a model runs."""
    layers = config(name)["layers"]
    kinds = [(kind, kind.count // layers) for kind in step(name, n)]  # every count is a whole number of layers
    return [(kind, lay * per + i) for lay in range(layers) for kind, per in kinds for i in range(per)]


def shapes(name: str) -> list[tuple[str, int, int]]:
    """The distinct (label, M, K) weights of a model's step, for tuning."""
    seen, out = set(), []
    for layer in step(name, 1):
        if (layer.m, layer.k) not in seen:
            seen.add((layer.m, layer.k))
            out.append((f"{name}.{layer.name}", layer.m, layer.k))
    return out
