#!/usr/bin/env bash
# #17's N = 16 on an H200 (carry [".whl"]), NOTES session 36: (1) whole 16-bit steps at N = 16 and 1, three trees in
# two alternating rounds (tools/w4_ab.sh): this tree, `persist` (../persist.patch: JITGEMM_PERSIST written and on, one
# wave of blocks walking the tiles of 9..16-token calls; 0.89-0.91x on an H100) and `evl` (calls/x_evict_last.patch:
# token loads with L1::evict_last); (2) Nsight Compute of the skinny kernel and cuBLAS at N = 1 and 16 (calls/n16.sh)
# in what is left.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
PATCHES="persist=docs/benchmarks/session36/persist.patch evl=docs/benchmarks/session36/calls/x_evict_last.patch" \
  DTYPES=bf16 NS=16,1 ROUNDS=2 CHECKS=0 MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b DL=$(( 400 - SECONDS )) \
  bash tools/w4_ab.sh 2>&1 | tail -16
DL=$(( 580 - SECONDS )) bash docs/benchmarks/session36/calls/n16.sh
