#!/usr/bin/env bash
# Session 23 call D: the re-tuned table in model order with plain launches (JITGEMM_PDL=0) against PDL (default).
set -uo pipefail
SECONDS=0
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
REAL_OUT=${OUT:-/tmp/out}; OUT=/tmp/o/d; rm -rf /tmp/o; mkdir -p $OUT
for v in retuned:0 retuned:1 shipped:0; do
  IFS=: read -r tab pdl <<< "$v"
  env $([ $tab = retuned ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json) JITGEMM_PDL=$pdl \
    timeout -s INT 100 python3 -m jitgemm bench --group model --models llama-3.1-8b,llama-3.1-70b-tp8 \
    --n 1,4,16 --name order-$tab-pdl$pdl --out $OUT > $OUT/order-$tab-pdl$pdl.log 2>&1
  echo "[$SECONDS s] $tab pdl=$pdl"; grep -E "^\| llama" $OUT/order-$tab-pdl$pdl.md | cut -d'|' -f2-3,6-8
done
grep -h "qkv\|routes" $OUT/order-retuned-pdl1.log | head -8
tar -C /tmp/o -czf "$REAL_OUT/d.tgz" d
