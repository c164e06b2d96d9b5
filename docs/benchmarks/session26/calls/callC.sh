#!/usr/bin/env bash
# session 26 call C (one call for both, device starts keep failing): issue #15's model_step probe (does the
# 113-weight step, with Python work between the linears, explain hf_decode's missing 0.4 ms?), then issue #19's
# q4_min occupancy variants (w4occ, q4_min only)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
if [[ $gpu == *H200* ]]; then DEADLINE=590 bash tools/gpu_session.sh tables; exit; fi
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
SECONDS=0
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 timeout -s INT 110 python3 tools/torch_call_probe.py model_step \
  2>&1 | tee $OUT/model-step-probe.log | grep -v "^$"
echo "[probe: $SECONDS s]"
DTYPES=w4-q4_min DEADLINE=$(( 585 - SECONDS )) bash tools/gpu_session.sh w4occ
