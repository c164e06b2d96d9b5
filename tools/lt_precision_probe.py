"""How close cuBLASLt's fp8 route and jitgemm's fp8 kernel come to float64 on the broad suite's data (random
fp8 bytes: the widest dynamic range e4m3 has), at the shapes where the H100 broad run flagged a difference.
Prints, per (shape, N, route): the largest |err| / |ref|-bound and |err| / magnitude (sum of |terms|)."""
import os
import types

import numpy as np


def main():
    import cupy as cp
    import ml_dtypes
    from jitgemm import config
    from jitgemm.bench import fp8_runner as fr
    for (m, k) in ((1152, 896), (896, 4864), (4096, 4096), (14336, 4096)):
        sh = types.SimpleNamespace(name=f"{m}x{k}", m=m, k=k)
        ops = fr.Fp8Operands(cp, sh, 50 << 20, with_bf16=False, n_max=64)
        for n in (16, 64):
            for route in ("cuBLASLt", "kernel"):
                os.environ["JITGEMM_BLAS"] = "0" if route == "kernel" else "1"
                config.reload()
                p = ops.prepared("fp8", n)[0]
                ops.out[0].fill(0xFFFF)
                p.launch(0)
                cp.cuda.runtime.deviceSynchronize()
                w = ops.w[0].get().view(ml_dtypes.float8_e4m3fn).astype(np.float64)
                x = ops.x8[:n].get().view(ml_dtypes.float8_e4m3fn).astype(np.float64)
                s = np.float64(np.float32(fr.SX)) * np.float64(np.float32(fr.SW))
                ref, mag = (x @ w.T) * s, (np.abs(x) @ np.abs(w).T) * s
                got = ops.out[0][:n].get().view(ml_dtypes.bfloat16).astype(np.float64)
                err = np.abs(got - ref)
                bound = 2.0 ** -7 * np.abs(ref) + k * 2.0 ** -23 * mag
                print(f"{sh.name:11s} N={n:3d} {route:8s} {p.plan.family:6s} max err {err.max():.3g}  "
                      f"max err/mag {np.max(err / mag):.2e}  over bound {int((err > bound).sum())} of {err.size}  "
                      f"nan {int(np.isnan(got).sum())}  max (err - 2^-7|ref|)/mag {np.max((err - 2.0 ** -7 * np.abs(ref)) / mag):.2e}",
                      flush=True)
        del ops


if __name__ == "__main__":
    main()
