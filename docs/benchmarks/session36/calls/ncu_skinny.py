"""One 16-bit launch per run (after a warm-up that compiles), for ncu: python ncu_skinny.py WHO M K N, WHO jitgemm
(its dispatcher's plan, printed) or torch (torch.mm: cuBLAS)."""
import sys
import torch
import jitgemm
who, m, k, n = sys.argv[1], *map(int, sys.argv[2:5])
x = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
w = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) * (2.0 / k) ** 0.5
out = torch.empty(n, m, device="cuda", dtype=torch.bfloat16)
run = (lambda: jitgemm.gemm(x, w, out=out)) if who == "jitgemm" else (lambda: torch.mm(x, w.t(), out=out))
run(); torch.cuda.synchronize()
if who == "jitgemm":
    print(jitgemm.explain(x, w))
run(); torch.cuda.synchronize()
