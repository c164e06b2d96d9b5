#!/usr/bin/env bash
# session 34, second call (carry [".whl"]): on an H200 its tables (#17, #21: session29/calls/callA.sh); on an H100
# the GPU suite on this tree but tests/test_gpu_w4.py (it passed on this tree in the first call: 26 passed)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; exit; fi

files=$(ls tests/test_*.py | grep -v test_gpu_w4.py)

SUITE_S=540 bash tools/gpu_session.sh suite $files 2>&1 | tail -25
echo "done at ${SECONDS}s"
