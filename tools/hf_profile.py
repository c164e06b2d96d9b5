"""Why examples/hf_decode.py's patched model was slower at batch 8 (issue #15: 0.91x against 1.02x at batch 1):
per decode step wall time both ways (model.generate and a hand-written loop), how many calls take jitgemm's
cold path during the timed runs, the GPU kernel time of 64 steps both ways (torch.profiler: jitgemm's kernels
and cuBLAS's side by side), and a cProfile of the patched generate. On a GPU machine:
    PYTHONPATH=. python tools/hf_profile.py [--batch 1,8] [--layers 16]"""
import argparse
import collections
import cProfile
import io
import pstats
import sys

sys.path.insert(0, "examples")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--layers", type=int, default=16)
    a = ap.parse_args()
    import torch
    import hf_decode as hd
    import jitgemm.torch as jt
    from jitgemm import api

    geo = dict(hd.DEFAULT_GEOMETRY, layers=a.layers)
    model = hd.build_model(geo, torch.bfloat16, 0, 0.02, 256)
    cold = collections.Counter()
    for name in ("_linear_cold", "_gemm_cold"):   # counted, not changed: each still runs the real cold path
        real = getattr(api, name)
        def counting(key, *args, _real=real, _name=name, **kw):
            x = args[0]
            cold[(_name, key is None, tuple(getattr(x, "shape", ())), tuple(x.stride()) if hasattr(x, "stride") else None)] += 1
            return _real(key, *args, **kw)
        setattr(api, name, counting)

    for batch in (int(b) for b in a.batch.split(",")):
        ids = torch.randint(0, geo["vocab"], (batch, 32), device="cuda")
        ways = {"torch": (lambda: None, lambda: None),
                "jitgemm": (lambda: jt.patch_linears(model), lambda: jt.unpatch(model))}
        for loop in ("generate", "manual"):
            # the two ways alternate run by run (hf_decode.time_alternating): timing torch's three runs first
            # and jitgemm's after measured 12.0 against 18.2 ms a step on an H100 host that drifts, and equal
            # (16.2 / 16.2, 17.5 / 17.1, 15.5 / 15.3) alternating
            cold.clear()
            jt.routing(reset=True)
            rec = hd.time_alternating(hd.generate_fn(model, ids, 64, loop), ways, 3)
            for label in ways:
                print(f"batch {batch} {loop:8s} {label:8s} {rec[label]['best_s'] / 64 * 1e3:.3f} ms/step", flush=True)
            print(f"    cold-path calls in jitgemm's 4 runs (warm-up included): {sum(cold.values())}")
            for k, v in cold.most_common(5):
                print("    cold", v, k)
            print(f"    routing: {jt.routing(reset=True)}")  # where the patched calls went, refusals included
        for label in ("torch", "jitgemm"):
            if label == "jitgemm":
                jt.patch_linears(model)
            run = hd.generate_fn(model, ids, 64, "manual")
            run()
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
            events = prof.key_averages()
            total = sum(e.device_time_total for e in events)
            print(f"batch {batch} {label}: GPU kernel time {total / 1e3:.2f} ms for 64 steps")
            for e in sorted(events, key=lambda e: -e.device_time_total)[:8]:
                print(f"    {e.device_time_total / 1e3:8.2f} ms  x{e.count:5d}  {e.key[:90]}")
            jt.unpatch(model)
        jt.patch_linears(model)
        run = hd.generate_fn(model, ids, 64, "generate")
        run()
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        pr.enable()
        run()
        torch.cuda.synchronize()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(22)
        print(f"== cProfile, jitgemm generate, batch {batch}\n" + s.getvalue()[-6000:])
        jt.unpatch(model)


if __name__ == "__main__":
    main()
