#!/usr/bin/env bash
# the next session's first device call (session 35's experts GPU tests, then) (carry [".whl", ".carry"], after
# `mkdir -p .carry && cp docs/benchmarks/session35/h200-refilled.json .carry/h200cand.json`):
# an H200 runs calls/a.sh (session 35's re-filled H200 file against the H100 file in the 4-bit steps: whether the
# H200's 4-bit rows ship); an H100 runs session 34's calls/verify.sh (its gate_up row against the table before it).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
# first, on either GPU: session 35's w4_experts_gemm, written and CPU-tested only
mkdir -p /tmp/site && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache timeout 120 python -m pytest -q -m gpu tests/test_gpu_w4_experts.py \
  2>&1 | tail -4
if [[ $gpu == *H200* ]]; then DEADLINE=$(( 560 - SECONDS )) bash docs/benchmarks/session35/calls/a.sh; exit; fi
bash docs/benchmarks/session34/calls/verify.sh
