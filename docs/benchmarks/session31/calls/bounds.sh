#!/usr/bin/env bash
# session 31, #19 idea 6's bounds: q4_min steps on today's tree (base) against tools/w4_variants.py nots (no token
# sums, no minima FMAs) and nomma (the FMAs on a fake token sum, no all-ones mma), alternating; wrong results by
# design in the two variants (their bench skips its check). One deadline (DL, default 400 s); tarred after each run.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o /tmp/w4v; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
python3 tools/w4_variants.py /tmp/w4v --only nots,nomma >/dev/null || exit 1
DL=${DL:-400}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/bounds.tgz o; }
for v in base nots nomma base nots nomma base nots nomma; do
  [ $SECONDS -gt $(( DL - 40 )) ] && break
  case $v in base) dir=$PWD ;; *) dir=/tmp/w4v/$v ;; esac
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 120) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
uptime; echo "done at $SECONDS s"
