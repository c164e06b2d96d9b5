#!/usr/bin/env bash
# the next session's first device call (carry [".whl"]): an H200 takes its tables (#17, #21: session29/calls/callA.sh,
# then callB.sh in the next call); an H100 has no queued #19 experiment (NOTES "Session 32": the per-shape register
# cap needs its table field first) and prints its name only.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; fi
