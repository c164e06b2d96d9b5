#!/usr/bin/env bash
# Session 37's first call (carry [".whl"]): on an H200 calls/h200.sh (#17's N = 16: Nsight Compute, then persist, evict_last and
# an L1 carveout against this tree in 16-bit steps); on an H100 the GPU suite on this tree (last
# full run: session 35 on b106449).
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then
  bash docs/benchmarks/session37/calls/h200.sh
else
  DEADLINE=585 bash tools/gpu_session.sh suite
fi
