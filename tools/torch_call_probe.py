"""Why a patched HF model's decode step costs more host time than torch's (issue #15, hf_profile batch 1:
18.2 against 12.0 ms a step, with the GPU kernel time equal): per-call host time of one bf16 linear in the
forms a model meets (a 3-D [1, 1, K] input, an nn.Parameter weight, under inference_mode), alone and
interleaved with torch's own elementwise kernels (as in a decoder layer), against F.linear; and the pieces of
jitgemm's call (the prepared launch, the output's allocation in three spellings) alone and interleaved, to
tell which of them costs more among torch's kernels than alone. Run it with JITGEMM_PDL=0 and =1 to see
what the launch flavour costs (cuLaunchKernelEx with its config against cuLaunchKernel). On a GPU machine:
    PYTHONPATH=. python tools/torch_call_probe.py [inference_mode] [no_grad]"""
import cProfile
import gc
import pstats
import sys
import time
import types

import torch
import torch.nn.functional as F

import jitgemm
import jitgemm.torch as jt

CALLS, REPS = 2000, 5


def three(y):
    """The three elementwise kernels a decoder layer puts between its linears."""
    return ((y * 1.0) + 1.0).float()


def per_call(fn) -> float:
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(REPS):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / CALLS * 1e6)
    return best


def main() -> None:
    torch.manual_seed(0)
    k = m = 2048
    lin = torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    w = lin.weight  # a Parameter that requires grad, as in a model
    x3 = torch.randn(1, 1, k, device="cuda", dtype=torch.bfloat16)
    x2 = x3.view(1, k)
    wd = w.detach()
    patched = torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    patched.weight = w
    jt.patch_linears(patched)
    o2 = torch.empty(1, m, device="cuda", dtype=torch.bfloat16)
    prep = jitgemm.prepare(x2, wd, out=o2)
    bf16 = torch.bfloat16
    rows = {
        "F.linear(x3, w)": lambda: F.linear(x3, w),
        "lin(x3) (nn.Linear, torch)": lambda: lin(x3),
        "patched lin(x3) (jitgemm.torch)": lambda: patched(x3),
        "jt._linear16(x3, w)": lambda: jt._linear16(x3, w, None, 128),
        "jitgemm.linear(x3, w)": lambda: jitgemm.linear(x3, w),
        "jitgemm.linear(x3, w.detach())": lambda: jitgemm.linear(x3, wd),
        "jitgemm.gemm(x2, w.detach())": lambda: jitgemm.gemm(x2, wd),
        "x3 * 1.0 (a torch elementwise op)": lambda: x3 * 1.0,
        "F.linear + 3 elementwise": lambda: three(F.linear(x3, w)),
        "patched + 3 elementwise": lambda: three(patched(x3)),
        "3 elementwise on x3": lambda: three(x3),
        "prepare().launch(0)": lambda: prep.launch(0),
        "prepare().launch(0) + 3 elementwise": lambda: (prep.launch(0), three(o2)),
        "x2.new_empty((1, m), dtype=bf16)": lambda: x2.new_empty((1, m), dtype=bf16),
        "x2.new_empty((1, m))": lambda: x2.new_empty((1, m)),
        "torch.empty((1, m), dtype=, device=)": lambda: torch.empty((1, m), dtype=bf16, device=x2.device),
        "new_empty + 3 elementwise": lambda: three(x2.new_empty((1, m), dtype=bf16)),
        "jitgemm.linear(x3, w) + 3 elementwise": lambda: three(jitgemm.linear(x3, w)),
        "F.linear(x3, w) + 3 elementwise": lambda: three(F.linear(x3, w)),
        # the fair pair for a model: both through nn.Module's call (the rows above compare patched with F.linear)
        "lin(x3) + 3 elementwise (nn.Linear, torch)": lambda: three(lin(x3)),
        "patched lin(x3) + 3 elementwise (jitgemm.torch)": lambda: three(patched(x3)),
    }
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · per call, best of {REPS} x {CALLS} · "
          f"JITGEMM_PDL={jitgemm.config.settings().pdl} · prepared: {prep.plan.instance.name} pdl={prep.plan.extra.get('pdl')}")
    for mode in sys.argv[1:] or ("inference_mode", "no_grad"):
        ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad
        with ctx():
            for name, fn in rows.items():
                print(f"| {mode} | {name} | {per_call(fn):.2f} us |", flush=True)
            # the Python collector: jitgemm's hot path makes ~15 small containers a call (keys, signatures,
            # torch.Size objects) against F.linear's one tensor, so gen-0 collections come more often
            gc.disable()
            try:
                for name in ("jitgemm.linear(x3, w)", "F.linear(x3, w)", "jitgemm.linear(x3, w) + 3 elementwise",
                             "F.linear(x3, w) + 3 elementwise"):
                    print(f"| {mode}, gc off | {name} | {per_call(rows[name]):.2f} us |", flush=True)
            finally:
                gc.enable()
    with torch.inference_mode():
        ref = F.linear(x3, w).float()
        got = patched(x3).float()
        print("max |patched - F.linear| / max|F.linear|:", float((got - ref).abs().max() / ref.abs().max()))
        print("routing:", jt.routing())
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(CALLS):
            patched(x3)
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        model_step()


# examples/hf_decode.py's model: 16 layers of hidden 2048, MLP 8192, 32 heads / 8 KV of 64, vocabulary 32000
GEOMETRY = dict(layers=16, hidden=2048, kv=512, mlp=8192, vocab=32000)


class Walker:
    """Python work between calls that reads other objects, as a model's own code does: 16 slices of 2000 small
    objects (~0.5 MB each with their dicts), one slice a walk, so each call finds the host's caches holding
    someone else's data."""

    def __init__(self, slices: int = 16, size: int = 2000):
        self.churn = [[types.SimpleNamespace(a=i, b=float(i), c=str(i)) for i in range(size)] for _ in range(slices)]
        self.turn = 0

    def __call__(self) -> int:
        self.turn = t = (self.turn + 1) % len(self.churn)
        acc = 0
        for o in self.churn[t]:
            acc += o.a
        return acc


def _routed(way: str):
    """A function (model) -> routes its nn.Linear layers torch's way or jitgemm's."""
    return jt.patch_linears if way == "jitgemm" else jt.unpatch


CONTEXTS = {"": "linears only", "kernels": "each linear + 3 elementwise",
            "python": "each linear + 3 elementwise + a walk over 2000 Python objects"}


def model_step(steps: int = 50, reps: int = 5, ways=None, contexts=CONTEXTS) -> None:
    """The 113 linears of hf_decode's decode step in model order, each its own nn.Linear (distinct weights, seven
    shapes), routed each way in turn (`ways`: name -> function(model); default torch's and jitgemm.torch's), in
    each context: alone, with three torch elementwise kernels after each, and with those plus Python work that
    reads ~0.5 MB of other objects (Walker): host time a step, to tell whether many weights and a model's own work
    cost a routed call more than the one-weight rows above (session 26: the third context does, ~4 us a call)."""
    ways = ways or {"torch": _routed("torch"), "jitgemm": _routed("jitgemm")}
    g = GEOMETRY
    h, kv, mlp = g["hidden"], g["kv"], g["mlp"]
    torch.manual_seed(0)

    def lin(k, m):
        return torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    layers = [[lin(h, h), lin(h, kv), lin(h, kv), lin(h, h), lin(h, mlp), lin(h, mlp), lin(mlp, h)]
              for _ in range(g["layers"])]
    head = lin(h, g["vocab"])
    model = torch.nn.ModuleList([torch.nn.ModuleList(ls) for ls in layers] + [head])
    xh = torch.randn(1, 1, h, device="cuda", dtype=torch.bfloat16) * 0.05
    xm = torch.randn(1, 1, mlp, device="cuda", dtype=torch.bfloat16) * 0.05
    walk = Walker()

    def step(between: str):
        for q, k, v, o, gate, up, down in layers:
            for m, x in ((q, xh), (k, xh), (v, xh), (o, xh), (gate, xh), (up, xh), (down, xm)):
                y = m(x)
                if between:
                    three(y)
                    if between == "python":
                        walk()
        head(xh)

    def timed(between: str) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(between)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps * 1e3

    n_linear = 7 * g["layers"] + 1
    first = next(iter(ways))
    for between, what in contexts.items():
        best = dict.fromkeys(ways, float("inf"))
        for route in list(ways.values()) * 2:  # warm-up of each way
            route(model)
            timed(between)
        for _ in range(reps):  # alternating, so a drifting host hits every way
            for way, route in ways.items():
                route(model)
                best[way] = min(best[way], timed(between))
        jt.unpatch(model)
        cells = " | ".join(f"{w} {ms:.3f} ms, {best[first] / ms:.3f}x, {(best[first] - ms) / n_linear * 1e3:+.2f} us a "
                           f"linear saved" for w, ms in best.items() if w != first)
        print(f"| model step, {what} | {first} {best[first]:.3f} ms | {cells} | ({n_linear} linears, best of {reps} x "
              f"{steps} steps) |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["model_step"]:  # the model step alone (a short device call)
        print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · JITGEMM_PDL={jitgemm.config.settings().pdl}")
        with torch.inference_mode():
            model_step()
    else:
        main()
