#!/usr/bin/env bash
# #17's N = 16 on an H200 (carry [".whl"]): calls/n16.sh (Nsight Compute of the skinny kernel and cuBLAS at N = 1
# and 16 on the 8B gate_up and qkv: where the N = 16 time goes), then the token loads with L1::evict_last
# (calls/x_evict_last.patch: the tokens, read by every row block, kept in L1 over the streamed weights, which bypass
# it) against this tree in whole 16-bit steps at N = 1 and 16, two alternating rounds (tools/w4_ab.sh), in what is left.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
DL=300 bash docs/benchmarks/session36/calls/n16.sh
PATCHES="evl=docs/benchmarks/session36/calls/x_evict_last.patch" DTYPES=bf16 NS=1,16 ROUNDS=2 CHECKS=0 \
  MODELS=llama-3.1-8b,qwen2.5-7b,llama-3.1-70b-tp8 DL=$(( 575 - SECONDS )) bash tools/w4_ab.sh 2>&1 | tail -16
