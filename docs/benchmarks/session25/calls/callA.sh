#!/usr/bin/env bash
# session 25 call A: an H200 -> its tables (issue #17/#21); an H100 -> the torch call probe (PDL on / off), then the GPU suite
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
if [[ $gpu == *H200* ]]; then
  bash tools/gpu_session.sh tables
else
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
  for p in 1 0; do
    PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache JITGEMM_PDL=$p timeout 120 python3 tools/torch_call_probe.py 2>&1 \
      | tee $OUT/torch-call-probe-pdl$p.log | grep -v "^ \|^$" | head -50
  done
  DEADLINE=$((585 - SECONDS)) bash tools/gpu_session.sh suite
fi
