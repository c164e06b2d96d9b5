#!/usr/bin/env bash
# The next session's first device call, whatever GPU comes (carry [".whl", ".carry"]): an H200 takes its tables
# (#17, #21: session29/calls/callA.sh; then callB.sh in the next call), an H100 the q4_min minima-pass A/B (#19:
# session31/calls/minafter.sh through tools/w4_ab.sh; results in $OUT/ab.tgz, the summary in ab/summary.md).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; else bash docs/benchmarks/session31/calls/minafter.sh; fi
