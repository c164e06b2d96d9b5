#!/usr/bin/env bash
# session 24 call I: the changed GPU tests (bucket 16 out of the shipped table: the small-N tests on their own table;
# test_gpu_tune's fixture), then q4_min occupancy (ncu: 27 % achieved at 96 registers, issue slots 42 % busy): the
# 4-bit kernels with ptxas capped at 64 / 80 registers (__launch_bounds__ min blocks) against today's, q4_min steps
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1
rm -rf /tmp/o; mkdir -p /tmp/o
root=$PWD
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-base timeout 75 python3 -m pytest -q -m gpu tests/test_gpu_moderate_n.py tests/test_gpu_tune.py \
  -k "small_n or neighbour or tune" 2>&1 | tail -3 | tee /tmp/o/tests.log
echo "[$SECONDS s] tests"
export JITGEMM_TUNED=0
for t in base mb64 mb80; do
  dir=$root; [ $t != base ] && dir=$root/.carry/$t
  (cd $dir && PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-$t timeout 60 python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) \
    --out /tmp/jg-$t >/dev/null || echo "aot $t rc=$?")
done
echo "[$SECONDS s] compiled"
for t in base mb64 mb80 base; do
  dir=$root; [ $t != base ] && dir=$root/.carry/$t
  (cd $dir && PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-$t timeout 60 python3 -m jitgemm bench --group model --dtype bf16,w4-q4_min \
    --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot --name q4min-$t-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" )
  echo "[$SECONDS s] $t"
done
tar -C /tmp -czf $OUT/callI.tgz o
