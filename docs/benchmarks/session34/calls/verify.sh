#!/usr/bin/env bash
# session 34, last call (carry [".whl"]): the tree with Llama-3.1-8B's q4_min gate_up on two row tiles at N bucket 16
# (an own-weight row): the 4-bit GPU tests (test_row_tiles_change_no_bit among them), then its step at N = 16 against
# the table before (calls/before-mt.patch), three alternating rounds, Mistral-7B too (the same weight shape).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p /tmp/site && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache timeout 90 python -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -3
PATCHES="before=docs/benchmarks/session34/calls/before-mt.patch" CHECKS=0 MODELS=llama-3.1-8b,mistral-7b \
  DTYPES=w4-q4_min NS=16 ROUNDS=3 DL=110 bash tools/w4_ab.sh 2>&1 | grep -E "^\| (llama|mistral)" | tail -6
echo "done at ${SECONDS}s"
