#!/usr/bin/env bash
# session 36's last call (carry [".whl"]), within ~220 s: gpt-oss-20b's grouped MoE steps (w4_experts_gemm, MXFP4 and
# q4_min, N = 1 and 4, against the per-expert bf16 cuBLAS step), then the 4-bit GPU tests (the kernels' body +
# wrapper split of session 35, whose cubins were byte-identical on the CPU); the torch grouped baseline once more
# after its review (bench.moe_baseline's operands made in one loop).
mkdir -p /tmp/site "$OUT" && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
timeout -s INT 75 python3 -m jitgemm bench --group model --no-plot --out "$OUT" --name grouped-gpt-oss-20b \
  --models gpt-oss-20b+experts-grouped --dtype w4-mxfp4,w4-q4_min --n 1,4 2>&1 | grep -E "^\| " | tail -10
timeout -s INT 35 python3 -m jitgemm bench --group model --no-plot --out "$OUT" --name torchgrouped-qwen3 \
  --models qwen3-30b-a3b+experts-grouped --dtype bf16 --n 1 2>&1 | grep -E "grouped baseline|Error" | tail -3
timeout 75 python -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tee "$OUT/gpu-w4.log" | tail -3
