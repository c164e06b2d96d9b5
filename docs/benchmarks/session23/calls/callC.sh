#!/usr/bin/env bash
# Session 23 call C: the re-tuned table in model order with and without one carveout (58 %) for every kernel.
set -uo pipefail
SECONDS=0
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
REAL_OUT=${OUT:-/tmp/out}; OUT=/tmp/o/c; rm -rf /tmp/o; mkdir -p $OUT
for v in retuned:58 retuned:none shipped:58; do
  IFS=: read -r tab co <<< "$v"
  env $([ $tab = retuned ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json) \
    timeout -s INT 100 python3 tools/carveout_probe.py $co -- bench --group model --models llama-3.1-8b,llama-3.1-70b-tp8 \
    --n 1,4,16 --name order-$tab-$co --out $OUT > $OUT/order-$tab-$co.log 2>&1
  echo "[$SECONDS s] $tab $co"; grep -E "^\| llama" $OUT/order-$tab-$co.md | cut -d'|' -f2-3,6-8
done
tar -C /tmp/o -czf "$REAL_OUT/c.tgz" c
