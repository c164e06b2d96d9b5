#!/usr/bin/env bash
# session 24 call F: an H200 -> its tables file (issue #17/#21's blocker); an H100 -> the q4_min biased widening A/B
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
export OUT=$OUT JITGEMM_TUNED=0
echo "$gpu" > "$OUT/gpu.txt"
if [[ $gpu == *H200* ]]; then bash tools/gpu_session.sh tables; exit; fi
CAP=560 DTYPES=bf16,w4-q4_min MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 bash tools/w4_ab.sh
