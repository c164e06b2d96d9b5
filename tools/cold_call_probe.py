"""Issue #15, session 26: where a routed call's extra host time goes when the host's caches hold a model's other work.

`torch_call_probe.py model_step` (session 26, H100) measured the 113 linears of hf_decode's step as their own
nn.Linear: jitgemm.torch saved 1.1 us a linear in a tight loop and lost 4.0 us a linear with Python work between the
linears (a walk over other objects, as a model's own code does), which is hf_decode's missing ~0.4 ms a step. This
probe takes the call apart in that context: each piece's host time a call in a tight loop and between walks (the
walk's own time taken off), so the pieces whose cost grows with cold caches stand out; and, in the same model step,
jitgemm.torch's route (since session 26 through pipeline.torch_pair: 9 Python frames a call, 13 before) against a
flatter prototype (LeanRoute: the forward reads the pipeline's cache itself, 7 frames). Session 26's one run was on a
host that drifted 60 % between runs (docs/benchmarks/session26): rerun it on a quiet one.

On a GPU machine (torch, jitgemm from the working tree):
    PYTHONPATH=. python tools/cold_call_probe.py"""
import sys
import time
import types

import torch
import torch.nn.functional as F

import jitgemm
import jitgemm.torch as jt
from jitgemm import api, config, pipeline
from jitgemm.arrays import _torch_signature

from torch_call_probe import Walker, model_step

CALLS, REPS = 1000, 5


def hot_and_cold(fn, walk) -> tuple[float, float]:
    """(us a call in a tight loop, us a call between walks less a walk's own time), each the best of REPS, the
    loops alternating so a drifting host hits all three."""
    def loop(body) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(CALLS):
            body()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / CALLS * 1e6

    def both():
        fn()
        walk()
    for _ in range(100):
        both()
    hot = cold = alone = float("inf")
    for _ in range(REPS):
        hot, cold, alone = min(hot, loop(fn)), min(cold, loop(both)), min(alone, loop(walk))
    return hot, cold - alone


class LeanRoute:
    """A prototype, not the library: jitgemm.torch's route for a bias-free inference call, flattened into one
    function over the pipeline's own cache (the same key, entry, per-call checks and launch); anything else
    (no entry yet, a check that fails, grad) takes jitgemm.torch's route. Counts its hits, so a prototype that
    never hits cannot pass for a fast one."""

    def __init__(self):
        self.hits = self.misses = 0

    def forward(self, mod, x):
        w = mod.weight
        if mod.bias is None and x.is_cuda and not torch.is_grad_enabled() and x.dtype in jt._SIXTEEN_BIT:
            k = w.shape[1]
            if k and k % 8 == 0 and 1 <= x.numel() // k <= mod._jitgemm_max_tokens:
                key = (api._LINEAR_ND, config.settings().generation,
                       (type(x), x.shape, x.stride(), x.dtype, x.get_device()),
                       (type(w), w.shape, w.stride(), w.dtype, w.get_device()), None, None)
                e = pipeline._ENTRIES.get(key)
                if e is not None and e.stream_of is not None and e.named == ():
                    values = [x.data_ptr(), w.data_ptr(), 0, 0]
                    if e.accepts(values):
                        s = e.stream_of()
                        out, values[3] = e.new_out(x, s)
                        e.launch.run(s, values)
                        self.hits += 1
                        return out
        self.misses += 1
        return jt._linear16(x, w, mod.bias, mod._jitgemm_max_tokens)

    def route(self, model) -> None:
        unroute(model)
        jt.patch_linears(model)
        for mod in model.modules():
            if "forward" in mod.__dict__:
                mod.forward = types.MethodType(self.forward, mod)


def unroute(model) -> None:
    jt.unpatch(model)
    for mod in model.modules():  # LeanRoute's forwards (unpatch knows only jitgemm.torch's own)
        mod.__dict__.pop("forward", None)


def main() -> None:
    torch.manual_seed(0)
    k = m = 2048
    lin = torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    w = lin.weight
    x3 = torch.randn(1, 1, k, device="cuda", dtype=torch.bfloat16)
    x2 = x3.view(1, k)
    patched = torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    patched.weight = w
    jt.patch_linears(patched)
    lean_mod = torch.nn.Linear(k, m, bias=False, device="cuda", dtype=torch.bfloat16)
    lean_mod.weight = w
    lean = LeanRoute()
    lean.route(lean_mod)
    o2 = torch.empty(1, m, device="cuda", dtype=torch.bfloat16)
    prep = jitgemm.prepare(x2, w.detach(), out=o2)
    raw_stream = torch._C._cuda_getCurrentRawStream
    from cuda.bindings import driver
    rows = {
        "F.linear(x3, w)": lambda: F.linear(x3, w),
        "lin(x3) (nn.Linear, torch)": lambda: lin(x3),
        "patched lin(x3) (jitgemm.torch)": lambda: patched(x3),
        "lean lin(x3) (LeanRoute prototype)": lambda: lean_mod(x3),
        "jitgemm.linear(x3, w)": lambda: jitgemm.linear(x3, w),
        "prepare().launch(0) (Prepared frame + cuda.bindings launch)": lambda: prep.launch(0),
        "x2.new_empty((1, m))": lambda: x2.new_empty((1, m)),
        "x3 * 1.0 (a torch op and its kernel)": lambda: x3 * 1.0,
        "two torch signatures (x3, w)": lambda: (_torch_signature(x3), _torch_signature(w)),
        "torch's current raw stream": lambda: raw_stream(0),
        "cuCtxGetCurrent": driver.cuCtxGetCurrent,
        "config.settings().generation": lambda: config.settings().generation,
    }
    walk = Walker()
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · host us a call, best of {REPS} x {CALLS}; "
          f"cold = between walks over 2000 Python objects, the walk's own time taken off")
    with torch.inference_mode():
        ref = F.linear(x3, w).float()
        got = lean_mod(x3).float()
        print("max |lean - F.linear| / max|F.linear|:", float((got - ref).abs().max() / ref.abs().max()))
        print("| piece | hot us | cold us | cold - hot |")
        print("|---|---|---|---|")
        for name, fn in rows.items():
            hot, cold = hot_and_cold(fn, walk)
            print(f"| {name} | {hot:.2f} | {cold:.2f} | {cold - hot:+.2f} |", flush=True)
        print(f"LeanRoute: {lean.hits} hits, {lean.misses} misses (one-weight rows)")
        lean.hits = lean.misses = 0
        model_step(ways={"torch": unroute, "jitgemm": lambda model: (unroute(model), jt.patch_linears(model)),
                         "lean": lean.route},
                   contexts={"": "linears only", "python": "each linear + 3 elementwise + a walk over 2000 Python objects"})
        print(f"LeanRoute: {lean.hits} hits, {lean.misses} misses (model step)")


if __name__ == "__main__":
    sys.exit(main())
