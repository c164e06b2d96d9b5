#!/usr/bin/env bash
# #17's N = 16 on an H200 (carry [".whl"]). First Nsight Compute of the 8B gate_up (28672 x 4096: 1792 blocks at
# N = 16, 14 % slower than at N = 1 on the H200) at N = 16 and 1, jitgemm's plan and cuBLAS's kernel (does the
# skinny kernel read its tokens from L1 or L2?), then whole 16-bit steps at N = 16 and 1 in two alternating rounds:
# this tree against `persist` (session36/persist.patch), `evl` (L1::evict_last token loads) and `co0` (the skinny
# kernels asking for the largest L1 carveout: calls/carveout0.patch).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
SHAPES="28672x4096" DL=250 bash docs/benchmarks/session36/calls/n16.sh 2>&1 | tail -30
s=docs/benchmarks
PATCHES="persist=$s/session36/persist.patch evl=$s/session36/calls/x_evict_last.patch co0=$s/session37/calls/carveout0.patch" \
  DTYPES=bf16 NS=16,1 ROUNDS=2 CHECKS=0 MODELS=llama-3.1-8b,llama-3.1-70b-tp8 DL=$(( 580 - SECONDS )) \
  bash tools/w4_ab.sh 2>&1 | tail -16
