#!/usr/bin/env bash
# session 31, first call: on an H200 the tables (#17, #21), as session29/calls/callA.sh; on an H100 the bench's
# 4-bit path after session 30's records change (its CuPy quant4.records call never ran on a GPU), then the GPU suite
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt; nproc; uptime
if [[ $gpu == *H200* ]]; then
  bash docs/benchmarks/session29/calls/callA.sh
else
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
  export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1
  timeout -s INT 100 python3 -m jitgemm bench --group model --dtype bf16,w4-q4_min --models llama-3.1-8b --n 1,16 \
    --no-plot --name w4check --out $OUT 2>&1 | tee $OUT/w4check.log | grep -E "^\| |rror" | tail -8
  echo "[w4 check done at ${SECONDS}s]"
  DEADLINE=$(( 590 - SECONDS )) SUITE_S=480 MAXFAIL=50 bash tools/gpu_session.sh suite
fi
uptime; echo "done at ${SECONDS}s"
