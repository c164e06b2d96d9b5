#!/usr/bin/env bash
# session 33: an H200 takes its tables (#17, #21: session29/calls/callA.sh); an H100 the 70B TP-8 row variants.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh
else bash docs/benchmarks/session33/calls/rows70.sh 2>&1 | grep -v "^\[" | tail -60; fi
