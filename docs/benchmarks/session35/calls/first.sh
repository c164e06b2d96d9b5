#!/usr/bin/env bash
# the next session's first device call (carry [".whl", ".carry"], after
# `mkdir -p .carry && cp docs/benchmarks/session35/h200-refilled.json .carry/h200cand.json`):
# an H200 runs calls/a.sh (session 35's re-filled H200 file against the H100 file in the 4-bit steps: whether the
# H200's 4-bit rows ship); an H100 runs session 34's first call (its gate_up row against the table before it, then
# the 70B TP-8 shard's 16-bit K orders).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session35/calls/a.sh; exit; fi
bash docs/benchmarks/session34/calls/first.sh
