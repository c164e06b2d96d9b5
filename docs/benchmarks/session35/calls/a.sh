#!/usr/bin/env bash
# an H200 call (carry [".whl", ".carry"], with docs/benchmarks/session35/h200-refilled.json copied to
# .carry/h200cand.json): the H200 file re-filled row by row (tools/ship_tuned.py on session 35's H200 tuning, the H100 file's rows for every shape not tuned there, no moderate
# bucket 16) against the H100 file on the same H200: the 4-bit steps N = 1, 4, 16 (the 16-bit and fp8 rows were
# compared in session 35: no faster than the H100 file), tables alternating while time is left. Needs an H200.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
[[ $gpu != *H200* ]] && { echo "not an H200: nothing to compare"; exit; }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
DL=${DEADLINE:-560}  # seconds this script may take
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/a.tgz o; }
M=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b
for rep in 1 2 3; do for tab in cand h100; do
  f=$([ $tab = cand ] && echo .carry/h200cand.json || echo jitgemm/data/tables/nvidia-h100-80gb-hbm3.json)
  [ $SECONDS -gt $(( DL - 140 )) ] && break 2
  JITGEMM_NV_TUNING=$f timeout $(left 140) python3 -m jitgemm bench --group model --models $M --n 1,4,16 \
    --dtype w4-q4_min,w4-q4_sym,w4-mxfp4 --name w4-$tab-$rep --no-plot --out /tmp/o 2>&1 | grep -E "^\| (w4|[0-9N])" | tail -14
  echo "[$tab $rep at $SECONDS s]"; save
done; done
save; echo "done at $SECONDS s"
