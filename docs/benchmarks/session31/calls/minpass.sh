#!/usr/bin/env bash
# session 31, #19: q4_min G32's minima term in a pass of its own before the codes' loop (nv/w4.h jg_w4_minima_step:
# the loop's registers 92 -> 68-70 at U = 1, so 7 blocks an SM where 5 were) against the tree before (.carry/base:
# git archive of 46dfe1b), alternating; first the 4-bit GPU tests and memcheck over every 4-bit instance on the new
# tree. One deadline (DL, default 330 s); tarred after every step.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
DL=${DL:-330}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/minpass.tgz o; }
timeout -s INT $(left 100) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -3 | tee /tmp/o/w4-tests.log
echo "[$SECONDS s]"; save
for v in base new base new base new base new; do
  [ $SECONDS -gt $(( DL - 110 )) ] && break
  dir=$PWD; [ $v = base ] && dir=$PWD/.carry/base
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 60) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
timeout -s INT $(left 60) python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) --out $JITGEMM_CACHE_DIR >/dev/null; echo "[aot $SECONDS s]"
SANITIZE_LOGS=/tmp/o/san TOOLS=memcheck timeout -s INT $(left 60) bash tools/sanitize.sh --only w4 --launches 1 2>&1 | tail -2
echo "[$SECONDS s]"; save; uptime; echo "done at $SECONDS s"
