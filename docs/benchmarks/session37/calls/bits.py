"""Session 37's mt2 experiment: outputs of 16-bit calls of 9..16 tokens on seeded data, saved for a bitwise
comparison between two trees (python bits.py OUT.npz [OTHER.npz]), each checked against float64 here."""
import sys
import numpy as np
import ml_dtypes
import jitgemm

CASES = [(16, 28672, 4096, 0), (9, 7168, 8192, 1), (13, 8192 + 7, 3584, 2), (16, 6144, 4096 + 8, 1), (12, 8192, 1024, 0)]
got = {}
worst = 0.0
for dt, np_dt in (("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)):
    for n, m, k, bias_mode in CASES:
        rng = np.random.default_rng(n * 7 + m + k)
        x = rng.standard_normal((n, k)).astype(np_dt)
        w = (rng.standard_normal((m, k)) * (2.0 / k) ** 0.5).astype(np_dt)
        b = None if bias_mode == 0 else rng.standard_normal((m,) if bias_mode == 1 else (n, m)).astype(np_dt)
        out = np.asarray(jitgemm.gemm(x, w, bias=b))
        o = out.astype(np.float64)
        ref = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b.astype(np.float64))
        err = np.abs(o - ref).max() / (np.abs(ref).max() + 1e-30)
        worst = max(worst, err)
        key = f"{dt}-{n}-{m}-{k}-{bias_mode}"
        got[key] = out.view(np.uint16)
        print(key, jitgemm.explain(x, w).split(";")[0][:90], f"rel err {err:.2e}")
np.savez(sys.argv[1], **got)
print("worst rel err vs float64", f"{worst:.2e}")
if len(sys.argv) > 2:
    other = np.load(sys.argv[2])
    same = [k for k in got if np.array_equal(got[k], other[k])]
    print(f"bitwise equal to {sys.argv[2]}: {len(same)} of {len(got)}", [k for k in got if k not in same])
