#!/usr/bin/env bash
# session 30, #19: q4_min's scales and minima in one record a block (quant4.scale_records: one load where two were)
# against the tree before it (.carry/base, git archive of 39dc792) and the records tree without the token sums' mma
# (tools/w4_variants.py nots: a speed bound, wrong results), alternating; the 4-bit GPU tests on the records tree
# first. One deadline (DL, default 560 s); results tarred after every run.
# (as run in session 30 call 3; the nots variant printed nothing: the bench refuses its wrong results, and the variant
# was taken out of tools/w4_variants.py after it; .carry/base was `git archive 39dc792 jitgemm kernels_src tests
# pyproject.toml tools`)
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o /tmp/w4v; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
python3 tools/w4_variants.py /tmp/w4v --only nots >/dev/null || exit 1
DL=${DL:-560}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/records.tgz o; }
timeout -s INT $(left 150) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -3 | tee /tmp/o/w4-tests.log
echo "[$SECONDS s]"; save
for v in base records base records nots base records nots; do
  [ $SECONDS -gt $(( DL - 60 )) ] && break
  case $v in base) dir=$PWD/.carry/base ;; records) dir=$PWD ;; nots) dir=/tmp/w4v/nots ;; esac
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 120) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
uptime; echo "done at $SECONDS s"
