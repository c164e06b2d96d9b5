#!/usr/bin/env bash
# session 24 call G (after F on an H200): the H200 tables (.carry/h200.json) against the H100 file on the same H200,
# 16-bit steps in model order (4 models) and the fp8 steps; tables alternate so drift hits both
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o
H100=jitgemm/data/tables/nvidia-h100-80gb-hbm3.json H200=.carry/h200.json
for tab in $H200 $H100; do  # both tables' kernels compiled up front
  JITGEMM_NV_TUNING=$tab timeout 150 python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) --out $JITGEMM_CACHE_DIR >/dev/null || echo "aot rc=$?"
done
SECONDS=0
for rep in 1 2; do for tab in h200 h100; do
  f=$([ $tab = h200 ] && echo $H200 || echo $H100)
  JITGEMM_NV_TUNING=$f timeout 170 python3 -m jitgemm bench --group model --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b,qwen3-30b-a3b \
    --n 1,4,16,64 --name bf16-$tab-$rep --no-plot --out /tmp/o 2>&1 | grep -E "^\| " | tail -8
  echo "[$SECONDS s]"
  [ $SECONDS -gt 380 ] && break 2
done; done
for tab in h200 h100; do
  f=$([ $tab = h200 ] && echo $H200 || echo $H100)
  [ $SECONDS -gt 480 ] && break
  JITGEMM_NV_TUNING=$f timeout 100 python3 -m jitgemm bench --group model --dtype fp8 --n 1,4,16 --name fp8-$tab \
    --no-plot --out /tmp/o 2>&1 | grep -E "^\| " | tail -6
  echo "[$SECONDS s]"
done
echo "$gpu" > /tmp/o/gpu.txt; tar -C /tmp -czf $OUT/callG.tgz o
