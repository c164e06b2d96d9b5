#!/usr/bin/env bash
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
echo "== re-tuned table"; JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json timeout 60 python3 tools/chain_probe.py
echo "== shipped table"; timeout 60 python3 tools/chain_probe.py --n 1,4
