#!/usr/bin/env bash
# session 36, first call (carry [".whl"]): session 35's w4_experts_gemm GPU tests (written, never run) and memcheck, then the MoE
# steps: grouped, the torch grouped baseline, per expert and stacked (calls/moe.sh) in what is left of the call.
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p /tmp/site "$OUT" && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache timeout 150 python -m pytest -q -m gpu tests/test_gpu_w4_experts.py \
  2>&1 | tee "$OUT/experts-tests.log" | tail -25
echo "[tests done at $SECONDS s]"
# memcheck over the experts wrappers (tools/sanitize.sh --only w4-experts: every format and dtype, tail shapes)
PYTHONPATH=/tmp/site:. SANITIZE_LOGS="$OUT/sanitize" TOOLS=memcheck timeout -s INT 110 bash tools/sanitize.sh \
  --only w4-experts --launches 2 2>&1 | tail -4
echo "[memcheck done at $SECONDS s]"
DL=$(( 580 - SECONDS )) bash docs/benchmarks/session36/calls/moe.sh
