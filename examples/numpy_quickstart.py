"""jitgemm from plain numpy: decode-shaped products checked against float64, and what ran.

    python examples/numpy_quickstart.py

numpy operands are copied to the GPU and back on every call (synchronously), so this shows what is
computed and how exactly, not how fast: `examples/cupy_quickstart.py` and `python -m jitgemm bench`
time device arrays. Without a GPU it prints one line and exits 0.
"""
from __future__ import annotations

import sys
from pathlib import Path
import time

import ml_dtypes
import numpy as np

try:
    import jitgemm
except ImportError:  # run from a source checkout without `pip install -e .`: use the checkout's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import jitgemm

BF16 = np.dtype(ml_dtypes.bfloat16)
# (name, M, K): Llama-3-8B's fused QKV projection and its MLP down projection
SHAPES = [("llama8b.qkv", 6144, 4096), ("llama8b.down", 4096, 14336)]


def error_vs_float64(got: np.ndarray, x: np.ndarray, w: np.ndarray, bias=None) -> tuple[float, float]:
    """(max |got - exact|, that over max |exact|): exact = the float64 product of the same 16-bit inputs,
    so what remains is jitgemm's fp32 accumulation plus the one final rounding to 16 bits."""
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    if bias is not None:
        ref = ref + bias.astype(np.float64)
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return err, err / float(np.max(np.abs(ref)))


def main() -> int:
    why = jitgemm.why_unavailable()
    if why:
        print(f"{why}; this example needs a GPU")
        return 0
    rng = np.random.default_rng(0)
    print("out[N, M] = x[N, K] @ w[M, K].T; error against the float64 product of the same inputs")
    print(f"{'shape':14s} {'dtype':9s} {'N':>3s}  {'x':>12s} {'w':>13s} {'out':>11s}  {'max |err|':>10s} {'rel':>9s}")
    for name, m, k in SHAPES:
        for dt in (BF16, np.dtype(np.float16)):
            w = (rng.standard_normal((m, k)) * (2.0 / k) ** 0.5).astype(dt)  # He-scaled, like a trained layer
            for n in (1, 4, 16):
                x = rng.standard_normal((n, k)).astype(dt)
                y = jitgemm.gemm(x, w)  # numpy in, numpy out
                err, rel = error_vs_float64(y, x, w)
                print(f"{name:14s} {dt.name:9s} {n:3d}  {str(x.shape):>12s} {str(w.shape):>13s} {str(y.shape):>11s}"
                      f"  {err:10.3g} {rel:9.2e}")
    # which kernel the dispatcher picks for the last shape, and why
    print("\njitgemm.explain(x, w) for N=16, llama8b.down:\n  " + jitgemm.explain(x, w))
    x1 = x[:1]
    print("jitgemm.explain(x, w) for N=1:\n  " + jitgemm.explain(x1, w))

    # a layer that keeps its weight on the GPU: only the tokens travel per call
    w = (rng.standard_normal((2048, 1024)) * (2.0 / 1024) ** 0.5).astype(BF16)
    b = rng.standard_normal(2048).astype(BF16)
    layer = jitgemm.Linear(w, bias=b)
    x = rng.standard_normal((8, 1024)).astype(BF16)
    y = layer(x)
    err, rel = error_vs_float64(y, x, w, b)
    print(f"\njitgemm.Linear(w {w.shape}, bias {b.shape})(x {x.shape}) -> {y.shape} {y.dtype}: "
          f"max |err| {err:.3g} (rel {rel:.2e})")
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        layer(x)
    print(f"  {(time.perf_counter() - t0) / reps * 1e6:.0f} µs per call including the numpy copies "
          "(device arrays skip them: see cupy_quickstart.py)")

    # numpy's @ semantics: skinny cases run jitgemm, the rest (here 64 tokens) the BLAS fallback
    for n in (4, 64):
        a = rng.standard_normal((n, 1024)).astype(np.float16)
        r = jitgemm.matmul(a, w.astype(np.float16).T)
        err, rel = error_vs_float64(r, a, w.astype(np.float16))
        print(f"jitgemm.matmul(a {a.shape}, w.T) -> {r.shape}: max |err| {err:.3g} (rel {rel:.2e}); "
              f"{'jitgemm skinny kernel' if n <= 16 else 'non-skinny: vendor BLAS / numpy'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
