#!/usr/bin/env bash
# session 36's one call (carry [".whl"]): the GPU tests of the code no GPU has run (w4_experts_gemm; the persistent
# skinny grid), memcheck over the experts wrappers, then Qwen3-30B-A3B's grouped MoE steps and their baselines
# (calls/moe.sh, one model) in what is left. Every step's output lands in $OUT as it finishes.
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p /tmp/site "$OUT" && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
export JITGEMM_CACHE_DIR=/tmp/jgcache
PYTHONPATH=/tmp/site:. timeout 140 python -m pytest -q -m gpu tests/test_gpu_w4_experts.py tests/test_gpu_skinny.py \
  -k "experts or groups or graph_reads or persist or ids_out" 2>&1 | tee "$OUT/gpu-tests.log" | tail -12
echo "[tests done at $SECONDS s]"
PYTHONPATH=/tmp/site:. SANITIZE_LOGS="$OUT/sanitize" TOOLS=memcheck timeout -s INT 100 bash tools/sanitize.sh \
  --only w4-experts --launches 2 2>&1 | tail -3
echo "[memcheck done at $SECONDS s]"
MODELS=qwen3-30b-a3b DL=$(( 540 - SECONDS )) bash docs/benchmarks/session36/calls/moe.sh
