"""Experiment (session 23): which kernel of a mixed-family chain loses time? In model order the re-tuned H100 table's
moderate 16-token tile on llama-3.1-8b's qkv cost 12-16 us more a call at N = 1 and 4 than timed kind by kind (and
nothing at N = 16). This times, each as one CUDA graph, 32 calls of weight A alone, of weight B alone, and the two
alternating (A, B, A, B, ...; every call its own weight, as in a step), under whatever table JITGEMM_NV_TUNING names:

    python tools/chain_probe.py [--a 6144x4096] [--b 4096x4096] [--n 1,4,16] [--count 32]

It prints us a call of each sequence and the alternation's excess over the two alone. Changes nothing in the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def shape(s: str) -> tuple[int, int]:
    """'MxK' -> (M, K), both positive, K a multiple of 8 (what every family takes)."""
    try:
        m, k = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a weight shape is MxK (e.g. 6144x4096), got {s!r}") from None
    if m < 1 or k < 8 or k % 8:
        raise argparse.ArgumentTypeError(f"a weight shape needs M >= 1 and K a positive multiple of 8, got {s!r}")
    return m, k


def sequences(a: list, b: list) -> dict:
    """The call orders timed: A alone, B alone, and the two alternating either way (every call once)."""
    return {"A": a, "B": b, "A,B": [c for pair in zip(a, b) for c in pair],
            "B,A": [c for pair in zip(b, a) for c in pair]}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=shape, default=(6144, 4096))
    p.add_argument("--b", type=shape, default=(4096, 4096))
    p.add_argument("--n", default="1,4,16")
    p.add_argument("--count", type=int, default=32)
    a = p.parse_args(argv)
    import cupy as cp
    from jitgemm import api
    from jitgemm.bench import operands, timing

    def calls(shape, n):
        m, k = shape
        x = operands.random_16bit(cp, (16, k), "bfloat16")
        ws = [operands.random_16bit(cp, (m, k), "bfloat16", (2.0 / k) ** 0.5) for _ in range(a.count)]
        outs = [cp.empty((16, m), dtype=cp.uint16) for _ in range(a.count)]
        return [api.prepare(operands.view(x[:n], "bfloat16"), operands.view(w, "bfloat16"),
                            out=operands.view(o[:n], "bfloat16")) for w, o in zip(ws, outs)]

    stream = cp.cuda.Stream(non_blocking=True)
    for n in (int(v) for v in a.n.split(",")):
        ca, cb = calls(a.a, n), calls(a.b, n)
        us = {}
        for name, seq in sequences(ca, cb).items():
            for c in seq:
                c.launch(stream.ptr)
            stream.synchronize()
            us[name] = timing.graph_replay(lambda i, seq=seq: seq[i].launch(stream.ptr), stream, calls=len(seq)) \
                * len(seq) / a.count
        fam = lambda c: f"{c.plan.family} {c.plan.instance.name if c.plan.instance else ''}"  # noqa: E731
        print(f"N={n:3d} A {a.a[0]}x{a.a[1]}: {fam(ca[0])}; B {a.b[0]}x{a.b[1]}: {fam(cb[0])}")
        print(f"        us a call: A {us['A']:.2f}  B {us['B']:.2f}  A,B pair {us['A,B']:.2f}  B,A pair "
              f"{us['B,A']:.2f}  excess of a pair over A + B: {us['A,B'] - us['A'] - us['B']:+.2f}", flush=True)
        del ca, cb
        cp.get_default_memory_pool().free_all_blocks()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
