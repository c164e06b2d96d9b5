#!/usr/bin/env bash
# session 32's next device call, whatever GPU comes (carry [".whl"]): an H200 takes its tables (#17, #21:
# session29/calls/callA.sh, then callB.sh in the next call), an H100 the q4_min launch-bounds A/B (#19: lb.sh).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; else bash docs/benchmarks/session32/calls/lb.sh; fi
