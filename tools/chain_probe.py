"""Experiment (session 23): which kernel of a chain loses time next to its neighbours? In model order the re-tuned
H100 table's moderate 16-token tile on llama-3.1-8b's qkv cost 12-16 us more a call at N = 1 and 4 than timed kind by
kind (and nothing at N = 16). This times, each as one CUDA graph of `count` layers (every call its own weight, as in
a step), under whatever table JITGEMM_NV_TUNING names:
  - each weight kind alone (count calls of it);
  - the whole chain, layer by layer (kind 1, kind 2, ... of layer 0, then of layer 1, ...);
  - the chain without each kind in turn, so full - without = what that kind costs inside the chain.
A kind whose cost inside the chain is well above its time alone is the one that loses:

    python tools/chain_probe.py [--chain 6144x4096,4096x4096,28672x4096,4096x14336] [--n 1,4,16] [--count 32]

Changes nothing in the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LLAMA_8B = "6144x4096,4096x4096,28672x4096,4096x14336"  # qkv, o, gate_up, down


def shape(s: str) -> tuple[int, int]:
    """'MxK' -> (M, K), both positive, K a multiple of 8 (what every family takes)."""
    try:
        m, k = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a weight shape is MxK (e.g. 6144x4096), got {s!r}") from None
    if m < 1 or k < 8 or k % 8:
        raise argparse.ArgumentTypeError(f"a weight shape needs M >= 1 and K a positive multiple of 8, got {s!r}")
    return m, k


def chain(s: str) -> list[tuple[int, int]]:
    shapes = [shape(v) for v in s.split(",")]
    if len(shapes) < 2:
        raise argparse.ArgumentTypeError(f"a chain is two or more MxK shapes, comma-separated, got {s!r}")
    return shapes


def sequences(calls: list[list]) -> dict:
    """The call orders timed, from each kind's calls (one list per kind, equally long): every kind alone, the
    chain layer by layer, and the chain without each kind. Keys: ('alone', i), ('chain',), ('without', i)."""
    layers = list(zip(*calls))
    seqs = {("alone", i): list(c) for i, c in enumerate(calls)}
    seqs[("chain",)] = [c for layer in layers for c in layer]
    for i in range(len(calls)):
        seqs[("without", i)] = [c for layer in layers for j, c in enumerate(layer) if j != i]
    return seqs


def attribution(us: dict, kinds: int) -> list[dict]:
    """Per kind, in us a call: its time alone, its cost inside the chain (chain - chain without it), the excess."""
    out = []
    for i in range(kinds):
        inside = us[("chain",)] - us[("without", i)]
        out.append({"alone": us[("alone", i)], "in_chain": inside, "excess": inside - us[("alone", i)]})
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chain", type=chain, default=chain(LLAMA_8B),
                   help=f"weight kinds of a layer (default {LLAMA_8B})")
    p.add_argument("--n", default="1,4,16")
    p.add_argument("--count", type=int, default=32, help="layers (calls of each kind)")
    a = p.parse_args(argv)
    if a.count < 1:
        p.error(f"--count: layers, at least 1, got {a.count}")
    import cupy as cp
    from jitgemm import api
    from jitgemm.bench import operands, timing

    # every kind's tokens (16 rows), `count` weights and outputs, made once for every N
    data = [(operands.random_16bit(cp, (16, k), "bfloat16"),
             [operands.random_16bit(cp, (m, k), "bfloat16", (2.0 / k) ** 0.5) for _ in range(a.count)],
             [cp.empty((16, m), dtype=cp.uint16) for _ in range(a.count)]) for m, k in a.chain]

    def calls(x, ws, outs, n):
        return [api.prepare(operands.view(x[:n], "bfloat16"), operands.view(w, "bfloat16"),
                            out=operands.view(o[:n], "bfloat16")) for w, o in zip(ws, outs)]

    stream = cp.cuda.Stream(non_blocking=True)
    for n in (int(v) for v in a.n.split(",")):
        kinds = [calls(*d, n) for d in data]
        us = {}
        for key, seq in sequences(kinds).items():
            for c in seq:
                c.launch(stream.ptr)
            stream.synchronize()
            us[key] = timing.graph_replay(lambda i, seq=seq: seq[i].launch(stream.ptr), stream, calls=len(seq)) \
                * len(seq) / a.count  # us a layer
        alone = sum(us[("alone", i)] for i in range(len(kinds)))
        print(f"N={n}: chain {us[('chain',)]:.2f} us a layer, kinds alone {alone:.2f}")
        for (m, k), c, r in zip(a.chain, kinds, attribution(us, len(kinds))):
            plan = c[0].plan
            print(f"  {m}x{k} {plan.family} {plan.instance.name if plan.instance else ''}: alone {r['alone']:.2f}, "
                  f"in the chain {r['in_chain']:.2f}, excess {r['excess']:+.2f} us", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
