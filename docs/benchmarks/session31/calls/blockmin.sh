#!/usr/bin/env bash
# session 31, #19 idea 6: q4_min G32's minima term as one bf16 mma a block (and its token sums one mma a word) on
# today's tree against the tree before (.carry/base: git archive of 64928be), alternating; first the 4-bit GPU tests
# and memcheck over every 4-bit instance on the new tree. One deadline (DL, default 520 s); tarred after every step.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
DL=${DL:-520}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/blockmin.tgz o; }
timeout -s INT $(left 150) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -3 | tee /tmp/o/w4-tests.log
echo "[$SECONDS s]"; save
SANITIZE_LOGS=/tmp/o/san TOOLS=memcheck timeout -s INT $(left 90) bash tools/sanitize.sh --only w4 --launches 1 2>&1 | tail -2
echo "[$SECONDS s]"; save
for v in base new base new base new base new; do
  [ $SECONDS -gt $(( DL - 40 )) ] && break
  dir=$PWD; [ $v = base ] && dir=$PWD/.carry/base
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 120) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
uptime; echo "done at $SECONDS s"
