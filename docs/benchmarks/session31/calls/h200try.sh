#!/usr/bin/env bash
# session 31, last call: one try for an H200 (#17, #21): its tables (session29/calls/callA.sh with a shorter deadline:
# this session had ~560 s of device time left), then the 8B step with them against the H100 file while time is left;
# on any other GPU nothing (the device time left fits no other full step)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
[[ $gpu == *H200* ]] || { echo "not an H200: nothing run"; exit 0; }
DEADLINE=${TDL:-380} bash tools/gpu_session.sh tables
echo "[tables done at ${SECONDS}s]"
rm -rf /tmp/tab && mkdir -p /tmp/tab && tar -C /tmp/tab -xzf $OUT/tables.tgz && ls /tmp/tab/tables
new=$(ls /tmp/tab/tables/*.json | head -1)
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
for tab in $new jitgemm/data/tables/nvidia-h100-80gb-hbm3.json; do
  left=$(( ${SDL:-495} - SECONDS )); [ $left -lt 30 ] && break
  JITGEMM_NV_TUNING=$tab timeout -s INT $(( left / 2 > 30 ? left / 2 : left )) python3 -m jitgemm bench --group model \
    --models llama-3.1-8b --n 1,4,16 --name step8b-$(basename $tab .json) --no-plot --out $OUT 2>&1 | grep -E "^\| " | tail -6
  echo "[${SECONDS}s]"
done
echo "done at ${SECONDS}s"
