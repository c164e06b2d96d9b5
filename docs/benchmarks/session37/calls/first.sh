#!/usr/bin/env bash
# Session 37's first call (carry [".whl"]): on an H200 session 36's calls/second.sh (#17's N = 16: persist and
# evict_last against this tree in 16-bit steps, then Nsight Compute); on an H100 the GPU suite on this tree (last
# full run: session 35 on b106449).
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then
  bash docs/benchmarks/session36/calls/second.sh
else
  DEADLINE=585 bash tools/gpu_session.sh suite
fi
