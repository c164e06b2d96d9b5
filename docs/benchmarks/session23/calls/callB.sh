#!/usr/bin/env bash
# Session 23 call B: the model step in model order (this tree: jitgemm.models.order) against the same step timed
# kind by kind (.carry/grouped: HEAD before the change), alternating, same machine; then the re-tuned H100 table in
# model order. One tarball back.
set -uo pipefail
SECONDS=0; CAP=${CAP:-260}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
REAL_OUT=${OUT:-/tmp/out}; OUT=/tmp/o/b; rm -rf /tmp/o; mkdir -p $OUT
PYTHONPATH=/tmp/site:. timeout 150 python3 -m jitgemm aot --arch sm_90a --jobs "$(nproc)" --out "$JITGEMM_CACHE_DIR" >/dev/null
echo "[$SECONDS s] aot"
step() {  # tree name args...
  local tree=$1 name=$2; shift 2
  local left=$(( CAP - SECONDS )); [ $left -lt 40 ] && { echo "skip $name"; return; }
  (cd $tree && PYTHONPATH=/tmp/site:. timeout -s INT $left python3 -m jitgemm bench --group model "$@" --name $name \
    --out $OUT > $OUT/$name.log 2>&1)
  echo "[$SECONDS s] $name rc=$?"; grep -E "^\| [a-z0-9w]" $OUT/$name.md | grep -v "^| model" | cut -d'|' -f2-8,10
}
M3=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b
step . bf16-order --models $M3
step .carry/grouped bf16-grouped --models $M3
step . w4-order --models $M3 --dtype w4-q4_min --n 1,4
step .carry/grouped w4-grouped --models $M3 --dtype w4-q4_min --n 1,4
JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json step . bf16-retuned-order --models llama-3.1-8b,llama-3.1-70b-tp8 --n 1,4,16
step . moe-order --models qwen3-30b-a3b --n 1,4,16
step .carry/grouped moe-grouped --models qwen3-30b-a3b --n 1,4,16
tar -C /tmp/o -czf "$REAL_OUT/b.tgz" b && ls -la $REAL_OUT
