"""Decode step of a Llama-3.1-70B-shaped layer's linears at tensor-parallel G (qkv, gate_up column-
parallel; o, down row-parallel with an NCCL all-reduce), bf16, N tokens: jitgemm + NCCL against torch
(cuBLAS + torch.cuda.nccl) doing the same per GPU. One process drives all GPUs. Times are host wall
time of 50 steps after 5 warm-ups, synchronising every GPU at the end."""
import sys
import time

import numpy as np


def main(n=4, reps=50):
    import cupy
    import torch
    import torch.cuda.nccl as tnccl
    from jitgemm.parallel import ColumnParallelLinear, RowParallelLinear
    from jitgemm.runtime.backend import default_backend
    import ml_dtypes
    g = cupy.cuda.runtime.getDeviceCount()
    devs = list(range(g))
    rng = np.random.default_rng(0)
    shapes = {"qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192), "down": (8192, 28672)}
    W = {k: (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16) for k, s in shapes.items()}
    x = rng.standard_normal((n, 8192), dtype=np.float32).astype(ml_dtypes.bfloat16)
    qkv, gu = ColumnParallelLinear(W["qkv"], devices=devs), ColumnParallelLinear(W["gate_up"], devices=devs)
    o, down = RowParallelLinear(W["o"], devices=devs), RowParallelLinear(W["down"], devices=devs)
    xs = qkv._per_device(x)
    ao = o.split_input(rng.standard_normal((n, 8192), dtype=np.float32).astype(ml_dtypes.bfloat16))
    ad = down.split_input(rng.standard_normal((n, 28672), dtype=np.float32).astype(ml_dtypes.bfloat16))

    def ours():
        qkv.forward(xs)
        o.forward(ao)
        gu.forward(xs)
        down.forward(ad)

    tw = {k: [torch.from_numpy(W[k].view(np.int16)).view(torch.bfloat16) for _ in devs] for k in W}
    shards = {}
    for k, (m, kk) in shapes.items():
        col = k in ("qkv", "gate_up")
        for d, (a, b) in enumerate(qkv.bounds if k == "qkv" else gu.bounds if k == "gate_up" else
                                   o.bounds if k == "o" else down.bounds):
            t = tw[k][d][a:b] if col else tw[k][d][:, a:b]
            shards[(k, d)] = t.contiguous().cuda(d)
    tx = [torch.from_numpy(x.view(np.int16)).view(torch.bfloat16).cuda(d) for d in devs]
    tao = [torch.randn(n, shards[("o", d)].shape[1], device=f"cuda:{d}", dtype=torch.bfloat16) for d in devs]
    tad = [torch.randn(n, shards[("down", d)].shape[1], device=f"cuda:{d}", dtype=torch.bfloat16) for d in devs]

    def theirs():
        for d in devs:
            torch.nn.functional.linear(tx[d], shards[("qkv", d)])
        po = [torch.nn.functional.linear(tao[d], shards[("o", d)]) for d in devs]
        if g > 1:
            tnccl.all_reduce(po)
        for d in devs:
            torch.nn.functional.linear(tx[d], shards[("gate_up", d)])
        pd = [torch.nn.functional.linear(tad[d], shards[("down", d)]) for d in devs]
        if g > 1:
            tnccl.all_reduce(pd)

    def sync():
        for d in devs:
            default_backend().synchronize(d)
            torch.cuda.synchronize(d)

    res = {}
    for name, fn in (("jitgemm+NCCL", ours), ("torch cuBLAS+NCCL", theirs)):
        for _ in range(5):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        res[name] = (time.perf_counter() - t0) / reps * 1e6
    print(f"TP={g} N={n} bf16, Llama-70B layer linears (qkv, o, gate_up, down; 2 all-reduces), per decode step:")
    for k, v in res.items():
        print(f"  {k:20s} {v:8.1f} us")
    print(f"  speed-up {res['torch cuBLAS+NCCL'] / res['jitgemm+NCCL']:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
