#!/usr/bin/env bash
# session 25 call C (the budget's last ~4 minutes): issue #15's numbers on today's tree (gpu_session.sh torchcall)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
DEADLINE=${DEADLINE:-220} bash tools/gpu_session.sh torchcall
