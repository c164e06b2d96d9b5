#!/usr/bin/env bash
# NOTES idea 11 measured before it is built (carry [".whl"]; H100 or H200): the MoE steps with each layer's routed
# experts as one GEMM over their stacked weights (models.STACKED: the bytes and the one launch a layer a grouped call
# would have) against the per-expert steps, 16-bit and two 4-bit formats, N = 1 and 4 (N = 16's stacked weights
# beside the per-expert ones pass an H100's memory), then the grouped call itself (NAME+experts-grouped:
# w4_experts_gemm, one a layer kind; run tests/test_gpu_w4_experts.py first). The number #19 asks (>= 2.5x the bf16
# cuBLAS step): the grouped step's x bf16 (its baseline is the per-expert bf16 step), and the stacked 4-bit step's
# ms against the per-expert bf16 torch step's.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
for m in qwen3-30b-a3b gpt-oss-20b; do
  timeout $(( ${DL:-540} - SECONDS > 20 ? (${DL:-540} - SECONDS) / 3 : 10 )) python3 -m jitgemm bench --group model \
    --models $m,$m+experts-stacked --dtype bf16,w4-q4_min,w4-mxfp4 --n 1,4 --name moe-$m --no-plot --out /tmp/o 2>&1 \
    | grep -E "^\| " | tail -16
  # the grouped call itself (w4_experts_gemm, one a layer kind): its baseline is the per-expert bf16 step
  timeout $(( ${DL:-540} - SECONDS > 20 ? (${DL:-540} - SECONDS) / 2 : 10 )) python3 -m jitgemm bench --group model \
    --models $m+experts-grouped --dtype w4-q4_min,w4-mxfp4 --n 1,4 --name grouped-$m --no-plot --out /tmp/o 2>&1 \
    | grep -E "^\| " | tail -8
  echo "[$m at $SECONDS s]"; tar -C /tmp -czf $OUT/b.tgz o
done
echo "done at $SECONDS s"
