"""Is a patched HF model's batch-1 decode really slower, or did the order of the runs decide it? (issue #15:
tools/hf_profile.py measured torch first and jitgemm second, 12.0 against 18.2 ms a step, with equal GPU
kernel time.) Times the hand-written decode loop of examples/hf_decode.py's model both ways, alternating,
three rounds, best of three runs each. On a GPU machine:
    PYTHONPATH=. python tools/hf_order_probe.py [--batch 1] [--layers 16] [--rounds 3]"""
import argparse
import sys

sys.path.insert(0, "examples")
sys.path.insert(0, "tools")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import torch
    import hf_decode as hd
    from hf_profile import _timed
    import jitgemm.torch as jt

    geo = dict(hd.DEFAULT_GEOMETRY, layers=a.layers)
    model = hd.build_model(geo, torch.bfloat16, 0, 0.02, 256)
    ids = torch.randint(0, geo["vocab"], (a.batch, 32), device="cuda")
    for rnd in range(a.rounds):
        for label in ("jitgemm", "torch"):
            if label == "jitgemm":
                jt.patch_linears(model)
            run = hd.generate_fn(model, ids, 64, "manual")
            run()
            torch.cuda.synchronize()
            best = min(_timed(run, torch) for _ in range(3))
            print(f"round {rnd} manual {label:8s} {best / 64 * 1e3:.3f} ms/step {jt.routing(reset=True)}", flush=True)
            jt.unpatch(model)


if __name__ == "__main__":
    main()
