"""The Python cost of jitgemm.linear's cached call with torch-like operands, on a machine without a GPU or torch
(issue #15): a stand-in `torch` module (plain-Python tensors with torch's attribute names) and a backend whose
launch does nothing, so what is timed is jitgemm's own hot path: adapters, signature, lookup, checks, argument
writes and the output factory. Prints each piece alone, one weight called over and over, and 112 weights of
hf_decode's seven shapes in model order. Numbers are this CPU's, not a GPU host's: compare rows, not machines.
    PYTHONPATH=. python tools/hotpath_cpu.py [--calls N]
Run it in its own process: it installs the stand-in as sys.modules["torch"]."""
import argparse
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from call_probe import best as per_call  # noqa: E402  (the host-time loop: warm-up, best of 5; no torch needed)


def standin_torch() -> types.ModuleType:
    """A module named torch with what jitgemm reads of torch tensors (arrays.py, pipeline.py), in plain Python."""
    torch = types.ModuleType("torch")

    class dtype:
        def __init__(self, name):
            self.name = name

        def __repr__(self):
            return "torch." + self.name
        __str__ = __repr__

    torch.bfloat16, torch.float16, torch.float32 = dtype("bfloat16"), dtype("float16"), dtype("float32")

    class Size(tuple):
        pass

    class Tensor:
        next_ptr = 1 << 40

        def __init__(self, shape, ptr=None, dt=None):
            self._shape, self.dtype = Size(shape), dt or torch.bfloat16
            if ptr is None:
                ptr = Tensor.next_ptr
                Tensor.next_ptr += 1 << 16
            self._ptr = ptr
            strides, acc = [], 1
            for d in reversed(shape):
                strides.append(acc)
                acc *= d
            self._stride = tuple(reversed(strides))

        @property
        def shape(self):
            return self._shape

        def stride(self):
            return self._stride

        def data_ptr(self):
            return self._ptr

        def get_device(self):
            return 0

        def new_empty(self, shape, dtype=None):
            return Tensor(shape, None, dtype or self.dtype)

    Tensor.__module__ = "torch"  # what arrays.is_torch_type looks for
    torch.Tensor = Tensor
    torch._C = types.SimpleNamespace(_cuda_getCurrentRawStream=lambda device: 0)
    torch.version = types.SimpleNamespace(hip=None)
    return torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50000, help="calls per timed loop (default 50000)")
    a = ap.parse_args(argv)
    torch = sys.modules["torch"] = standin_torch()
    import jitgemm
    from jitgemm import api, arrays, config, pipeline
    from jitgemm.runtime import backend
    from jitgemm.runtime.null import NullBackend

    be = NullBackend()
    be.launcher = lambda func, grid, block, shared, args, device, pdl=False: (lambda stream: None)
    Tensor = torch.Tensor
    h, kv, mlp = 2048, 512, 8192
    with backend.installed(be):
        x = Tensor((1, 1, h))
        w = Tensor((h, h))
        y = jitgemm.linear(x, w)
        assert isinstance(y, Tensor) and tuple(y.shape) == (1, 1, h) and y.dtype is torch.bfloat16
        n = a.calls
        print(f"| jitgemm.linear(x [1, 1, {h}], w [{h}, {h}]), cached | {per_call(lambda: jitgemm.linear(x, w), n):.3f} us |")
        yp = pipeline.torch_pair(api.LINEAR_TAG, x, w)  # jitgemm.torch's door: the same entry, one frame
        assert isinstance(yp, Tensor) and tuple(yp.shape) == (1, 1, h), "torch_pair missed linear's entry"
        print(f"| pipeline.torch_pair(linear's tag, x, w), cached | "
              f"{per_call(lambda: pipeline.torch_pair(api.LINEAR_TAG, x, w), n):.3f} us |")
        sig = arrays._torch_signature
        key = (api._LINEAR_ND, config.settings().generation, sig(x)[1], sig(w)[1], None, None)
        entry = pipeline._ENTRIES[key]
        values = [sig(x)[0], sig(w)[0], 0, 0]
        pieces = {
            "two operands' signatures": lambda: (sig(x), sig(w)),
            "the key's hash": lambda: hash(key),
            "the entry's lookup": lambda: pipeline._ENTRIES.get(key),
            "the per-call checks (accepts)": lambda: entry.accepts(values),
            "argument writes + lock + launch closure": lambda: entry.launch.run(0, [1 << 32, 1 << 36, 0, 1 << 40]),
            "the output (stand-in new_empty + data_ptr)": lambda: entry.new_out(x, 0),
            "Entry.run (stream, output, launch)": lambda: entry.run((x, w, None, None), list(values), None),
        }
        for name, fn in pieces.items():
            print(f"| {name} | {per_call(fn, n):.3f} us |")
        # hf_decode's decoder layer: q, k, v, o, gate, up, down, each layer its own weights
        shapes = [(h, h), (kv, h), (kv, h), (h, h), (mlp, h), (mlp, h), (h, mlp)]
        xh, xm = Tensor((1, 1, h)), Tensor((1, 1, mlp))
        model = [(wt, xm if wt.shape[1] == mlp else xh) for _ in range(16) for wt in (Tensor(s) for s in shapes)]
        one = [(w, x)] * len(model)

        def run(seq):
            return lambda: [jitgemm.linear(xi, wi) for wi, xi in seq]

        def run_pair(seq):
            return lambda: [pipeline.torch_pair(api.LINEAR_TAG, xi, wi) for wi, xi in seq]
        steps = max(n // len(model), 10)
        print(f"| {len(model)} weights of 7 shapes, model order | {per_call(run(model), steps) / len(model):.3f} us a call |")
        print(f"| one weight, {len(model)} calls | {per_call(run(one), steps) / len(model):.3f} us a call |")
        print(f"| {len(model)} weights of 7 shapes, model order, torch_pair | "
              f"{per_call(run_pair(model), steps) / len(model):.3f} us a call |")


if __name__ == "__main__":
    main()
