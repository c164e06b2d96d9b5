#!/usr/bin/env bash
# session 26 call A: on an H200 the tables step (issue #17/#21 wait on it); on an H100 issue #15's torchcall step
# (its new model_step probe: does the 113-weight step explain hf_decode's missing 0.4 ms?)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
if [[ $gpu == *H200* ]]; then
  DEADLINE=590 bash tools/gpu_session.sh tables
else
  DEADLINE=400 bash tools/gpu_session.sh torchcall
fi
