"""fp8 (e4m3) weights from numpy: quantize per output channel, run W8A16 / static / dynamic activations,
and see what each costs in accuracy against float64.

    python examples/fp8_linear.py

`jitgemm.Linear.from_float` quantizes a float weight on the host (scale = max |row| / fp8_max per output
channel, or one scale with per_channel=False) and keeps the e4m3 bytes and the scales on the GPU. The
activation argument picks how tokens enter the product:
  None       W8A16: 16-bit tokens, weights widened inside the kernel (one launch)
  a float    tokens quantized to fp8 with that static scale inside the kernel (one launch)
  "dynamic"  per-token scales from quantize_fp8, then a W8A8 product (two launches)
Without a GPU it prints one line and exits 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np

try:
    import jitgemm
except ImportError:  # run from a source checkout without `pip install -e .`: use the checkout's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import jitgemm

BF16 = np.dtype(ml_dtypes.bfloat16)
M, K, N = 4096, 4096, 4


def rel_err(got, ref) -> float:
    """Relative Frobenius error ||got - ref|| / ||ref||: for quantized weights the per-element error
    is a few percent by design, so a norm over the output says more than the worst element."""
    got = np.asarray(got, np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def main() -> int:
    why = jitgemm.why_unavailable()
    if why:
        print(f"{why}; this example needs a GPU")
        return 0
    rng = np.random.default_rng(0)
    # a weight whose rows differ in magnitude (as trained layers' do), up to ~1000x
    row_scale = np.exp(rng.standard_normal((M, 1)) * 1.0)
    w = (rng.standard_normal((M, K)) * (2.0 / K) ** 0.5 * row_scale).astype(np.float32)
    x = rng.standard_normal((N, K)).astype(BF16)
    ref = x.astype(np.float64) @ w.astype(np.float64).T     # the exact product with the float weight
    print(f"x {x.shape} {x.dtype}, w {w.shape} float32 (row magnitudes spread over ~{row_scale.max() / row_scale.min():.0f}x)")
    print("relative error ||y - y_float64|| / ||y_float64|| (float64 uses the unquantized float32 weight):")

    # the 16-bit baseline: only the weight's rounding to bf16 and one output rounding
    y16 = jitgemm.Linear(w.astype(BF16))(x)
    print(f"  {'bf16 weights (jitgemm.Linear)':44s} {rel_err(y16, ref):.2e}")
    print("    kernel: " + jitgemm.explain(x, w.astype(BF16)))

    cases = [("fp8 per-channel, W8A16", dict(per_channel=True)),
             ("fp8 per-tensor,  W8A16", dict(per_channel=False)),
             ("fp8 per-channel, static activation scale", dict(per_channel=True,
                                                               activation=float(np.abs(x.astype(np.float32)).max() / 448.0))),
             ("fp8 per-channel, dynamic per-token (W8A8)", dict(per_channel=True, activation="dynamic"))]
    for label, kw in cases:
        layer = jitgemm.Linear.from_float(w, **kw)
        try:
            y = layer(x)
        except (ValueError, TypeError) as e:  # say what failed and go on with the other modes
            print(f"  {label:44s} failed: {type(e).__name__}: {e}")
            continue
        print(f"  {label:44s} {rel_err(y, ref):.2e}   out {np.asarray(y).shape} {np.asarray(y).dtype}")
    print("(e4m3 keeps 3 mantissa bits, so a few 1e-2 is the expected cost; quantizing the tokens as well adds a similar\n"
          " error of its own. e4m3 is floating point: one scale per tensor costs little until rows differ by more than\n"
          " its ~2^14 range of normal numbers, where per-channel scales keep the small rows)")

    # the building blocks, for users who hold their own fp8 data
    x8, sx = jitgemm.quantize_fp8(x, per_token=True)
    print(f"\nquantize_fp8(x): {x8.shape} {x8.dtype}, per-token scales {np.round(sx, 5)}")
    back = x8.astype(np.float32) * sx[:, None]
    print(f"  dequantized tokens vs x: rel err {rel_err(back, x.astype(np.float64)):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
