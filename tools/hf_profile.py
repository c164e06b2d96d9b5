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
import time

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
        for loop in ("generate", "manual"):
            for label in ("torch", "jitgemm"):
                if label == "jitgemm":
                    jt.patch_linears(model)
                run = hd.generate_fn(model, ids, 64, loop)
                run()
                torch.cuda.synchronize()
                cold.clear()
                jt.routing(reset=True)
                best = min(_timed(run, torch) for _ in range(3))
                print(f"batch {batch} {loop:8s} {label:8s} {best / 64 * 1e3:.3f} ms/step; cold-path calls in 3 runs: "
                      f"{sum(cold.values())}", flush=True)
                for k, v in cold.most_common(5):
                    print("    cold", v, k)
                if label == "jitgemm":  # where the patched calls went (refusals included), with the cold path's reasons
                    print(f"    routing: {jt.routing(reset=True)}")
                jt.unpatch(model)
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


def _timed(run, torch) -> float:
    t0 = time.perf_counter()
    run()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
