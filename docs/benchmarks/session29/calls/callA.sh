#!/usr/bin/env bash
# session 29, first call: on an H200 the tables (#17, #21: waited on since session 24) and, in what is left, the 8B
# step with them against the H100 file; on an H100 #15's cold step
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt; nproc; uptime
if [[ $gpu == *H200* ]]; then
  DEADLINE=430 bash tools/gpu_session.sh tables
  echo "[tables done at ${SECONDS}s]"
  rm -rf /tmp/tab && mkdir -p /tmp/tab && tar -C /tmp/tab -xzf $OUT/tables.tgz && ls /tmp/tab/tables
  new=$(ls /tmp/tab/tables/*.json | head -1)
  export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
  for tab in $new jitgemm/data/tables/nvidia-h100-80gb-hbm3.json; do
    left=$(( 575 - SECONDS )); [ $left -lt 40 ] && break
    JITGEMM_NV_TUNING=$tab timeout -s INT $(( left / 2 > 40 ? left / 2 : left )) python3 -m jitgemm bench --group model \
      --models llama-3.1-8b --n 1,4,16,64 --name step8b-$(basename $tab .json) --no-plot --out $OUT 2>&1 | grep -E "^\| " | tail -8
    echo "[${SECONDS}s]"
  done
else
  bash tools/gpu_session.sh cold
fi
uptime; echo "done at ${SECONDS}s"
