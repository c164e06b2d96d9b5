"""Bits of two jitgemm trees on the same inputs: `save DIR` runs a fixed set of calls (every family:
skinny, moderate-N, the cuBLAS route, the fp8 modes; CuPy fp16 and torch bf16 operands) with fixed
seeds and writes each output; `compare A B` says which differ. For refactors of the call path, whose
results must not change by one bit:
    PYTHONPATH=old_tree python tools/compare_paths.py save /tmp/a
    PYTHONPATH=. python tools/compare_paths.py save /tmp/b
    python tools/compare_paths.py compare /tmp/a /tmp/b"""
import os
import sys

import numpy as np

# (name, N, M, K): skinny (N <= 16), moderate-N, shapes the table sends to cuBLAS (N > 16, M = 5120)
CASES = [("skinny", 1, 4096, 4096), ("skinny", 7, 1000, 1032), ("skinny", 16, 6144, 4096),
         ("moderate", 64, 640, 2880), ("moderate", 33, 1234, 2048), ("blas", 128, 5120, 4096),
         ("blas", 64, 2880, 4096)]
FP8 = [(1, 4096, 4096), (9, 1280, 8192), (16, 4096, 1024)]


def save(out_dir):
    import cupy as cp
    import ml_dtypes
    import jitgemm
    os.makedirs(out_dir, exist_ok=True)
    for i, (fam, n, m, k) in enumerate(CASES):
        rng = np.random.default_rng(i)
        x = (rng.standard_normal((n, k)) * 0.5).astype(np.float16)
        w = (rng.standard_normal((m, k)) * 0.05).astype(np.float16)
        y = jitgemm.gemm(cp.asarray(x), cp.asarray(w))
        np.save(os.path.join(out_dir, f"{fam}-{n}x{m}x{k}-cupy-fp16.npy"), cp.asnumpy(y))
        try:
            import torch
            xt = torch.from_numpy(x.astype(np.float32)).to("cuda", torch.bfloat16)
            wt = torch.from_numpy(w.astype(np.float32)).to("cuda", torch.bfloat16)
            yt = jitgemm.gemm(xt, wt)
            np.save(os.path.join(out_dir, f"{fam}-{n}x{m}x{k}-torch-bf16.npy"), yt.float().cpu().numpy())
        except ImportError:
            pass
    for i, (n, m, k) in enumerate(FP8):
        rng = np.random.default_rng(100 + i)
        x = (rng.standard_normal((n, k)) * 0.5).astype(np.float16)
        w = rng.standard_normal((m, k)).astype(np.float32) * 0.05
        w8, sw = jitgemm.scaled.quantize_weight(w, per_channel=True)
        x8 = (x.astype(np.float32) / 0.01).clip(-448, 448).astype(ml_dtypes.float8_e4m3fn)
        xd, w8d = cp.asarray(x), cp.asarray(w8.view(np.uint8))
        x8d, swd = cp.asarray(x8.view(np.uint8)), cp.asarray(sw)
        runs = {"w8a8-tensor": lambda: jitgemm.scaled_gemm(x8d, w8d, 0.01, float(sw.max()), out_dtype="float16",
                                                              fp8_format="e4m3fn"),
                "w8a8-channel": lambda: jitgemm.scaled_gemm(x8d, w8d, cp.full((n,), 0.01, cp.float32), swd,
                                                               out_dtype="float16", fp8_format="e4m3fn"),
                "w8a16": lambda: jitgemm.scaled_gemm(xd, w8d, None, swd, fp8_format="e4m3fn"),
                "w8q": lambda: jitgemm.scaled_gemm(xd, w8d, 0.01, swd, fp8_format="e4m3fn")}
        for mode, run in runs.items():
            np.save(os.path.join(out_dir, f"fp8-{mode}-{n}x{m}x{k}.npy"), cp.asnumpy(run()))
    cp.cuda.Device().synchronize()
    print(f"saved {len(os.listdir(out_dir))} outputs in {out_dir}")


def compare(a, b):
    names = sorted(set(os.listdir(a)) | set(os.listdir(b)))
    bad = 0
    for name in names:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not (os.path.exists(pa) and os.path.exists(pb)):
            print(f"{name}: only in {'the first' if os.path.exists(pa) else 'the second'}")
            bad += 1
            continue
        same = np.array_equal(np.load(pa).view(np.uint8), np.load(pb).view(np.uint8))
        bad += not same
        print(f"{name}: {'bit-identical' if same else 'DIFFERENT'}")
    print(f"{len(names) - bad} of {len(names)} outputs bit-identical")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2])
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
