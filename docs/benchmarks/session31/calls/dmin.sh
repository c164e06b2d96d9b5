#!/usr/bin/env bash
# session 31, #19: blockmin.sh's trees again (base: 64928be; new: q4_min G32's minima term as one bf16 mma a block)
# and dmin (.carry/dmin: new with that mma into its own accumulators, added once before the store, so the block's
# chain of token-sum mma no longer stalls the scale FMAs), alternating; then the 4-bit GPU tests on dmin and memcheck
# over every 4-bit instance of the new tree (compiled first by `jitgemm aot`). Deadline DL (default 480 s).
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
DL=${DL:-480}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/dmin.tgz o; }
for v in base new dmin base new dmin base new dmin; do
  case $v in base) dir=$PWD/.carry/base ;; new) dir=$PWD ;; dmin) dir=$PWD/.carry/dmin ;; esac
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 120) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
( cd .carry/dmin && PYTHONPATH=/tmp/site:. timeout -s INT $(left 120) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 \
    | tail -3 | tee /tmp/o/dmin-w4-tests.log )
echo "[$SECONDS s]"; save
timeout -s INT $(left 150) python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) --out $JITGEMM_CACHE_DIR >/dev/null; echo "[aot $SECONDS s]"
SANITIZE_LOGS=/tmp/o/san TOOLS=memcheck timeout -s INT $(left 120) bash tools/sanitize.sh --only w4 --launches 1 2>&1 | tail -2
echo "[$SECONDS s]"; save; uptime; echo "done at $SECONDS s"
