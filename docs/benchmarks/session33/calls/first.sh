#!/usr/bin/env bash
# the next session's first device call (carry [".whl"]): an H200 takes its tables (#17, #21: session29/calls/callA.sh,
# then callB.sh in the next call); an H100 checks session 33's own-weight row on the GPU (tests/test_gpu_w4.py on
# this tree) and times Llama-3.1-8B's q4_min layers on the other K orders in its step (tools/w4_order_patches.py:
# 20 table-only patches, two alternating rounds; a layer whose patch wins at N = 1 and 4 without losing > 1 % at
# N = 16 ships as an own-weight row). Then, in a call of its own: op-qwen (Qwen2.5-7B's down, 5 patches).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; exit; fi
mkdir -p /tmp/site && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | tail -1
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache timeout 150 python -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -2
d=docs/benchmarks/session33
PATCHES="$(cat $d/op-8b/patches.txt)" CHECKS=0 MODELS=llama-3.1-8b DTYPES=w4-q4_min NS=1,4,16 ROUNDS=2 DL=480 \
  bash tools/w4_ab.sh 2>&1 | grep -v "^\[" | tail -30
