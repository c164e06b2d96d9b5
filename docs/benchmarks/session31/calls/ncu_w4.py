"""One 4-bit w4_gemm launch per run (after a warm-up that compiles), for ncu: python ncu_w4.py FMT GROUP M K N (session 24's, as is)"""
import sys
import numpy as np
import torch
import jitgemm
from jitgemm import quant4
from jitgemm.w4gemm import Q4Device
fmt, group, m, k, n = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
rng = np.random.default_rng(0)
codes = rng.integers(0, 16, (m, k)).astype(np.uint8)
g = k // group
scales = (rng.random((m, g)) * 0.05 + 0.005).astype(np.float16)
mins = (rng.standard_normal((m, g)) * 0.05).astype(np.float16) if fmt == "q4_min" else None
zeros = rng.integers(0, 16, (m, g)).astype(np.uint8) if fmt == "q4_zp" else None
w = Q4Device.upload(quant4.Q4Weight(fmt, quant4.pack(codes), scales, group, mins=mins, zeros=zeros))
x = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
out = torch.empty(n, m, device="cuda", dtype=torch.bfloat16)
jitgemm.w4_gemm(x, w, out=out); torch.cuda.synchronize()
print(jitgemm.w4gemm.explain_w4(x, w))
jitgemm.w4_gemm(x, w, out=out); torch.cuda.synchronize()
