#!/usr/bin/env bash
# for the next device session (#19): q4_min G32's minima term in a pass of its own AFTER the codes' loop
# (session31/minafter.patch: the pass's iterations one at a time; minafter2.patch: two at a time; minafterlb.patch:
# minafter with U = 1, NT <= 2 instances asking ptxas for 7 blocks of 128 threads an SM, 72 registers, no spill),
# when its tokens are in L1 and its records in L2; sm_90a registers at U = 1 WK 4: 92 -> 78 / 80 / 72 (5 -> 6 / 6 /
# 7 blocks an SM), NT = 2: 86 -> 72 / 72 / 66. Before the loop (minpass.patch) it was correct and 17-26 % slower.
# Base is this tree; the three trees are made here from the patches. Alternating steps, then each tree's 4-bit GPU tests and memcheck over its
# 4-bit instances. One deadline (DL, default 540 s); tarred after every step.
#   run from the repository root on the GPU machine, .whl carried: bash docs/benchmarks/session31/calls/minafter.sh
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o /tmp/after /tmp/after2 /tmp/afterlb; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
root=$PWD
for v in after after2 afterlb; do
  mkdir -p /tmp/$v && cp -r jitgemm kernels_src tests tools pyproject.toml /tmp/$v/ \
    && (cd /tmp/$v && patch -s -p1 < $root/docs/benchmarks/session31/min$v.patch) \
    || { echo "making /tmp/$v failed"; exit 1; }
done
DL=${DL:-540}
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/minafter.tgz o; }
for v in base after after2 afterlb base after after2 afterlb base afterlb after after2; do
  [ $SECONDS -gt $(( DL - 260 )) ] && break
  dir=$root; [ $v != base ] && dir=/tmp/$v
  ( cd "$dir" && PYTHONPATH=/tmp/site:. timeout -s INT $(left 90) python3 -m jitgemm bench --group model \
      --dtype bf16,w4-q4_min --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b --n 1,4,16 --no-plot \
      --name $v-$SECONDS --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
for v in afterlb after after2; do
  ( cd /tmp/$v && PYTHONPATH=/tmp/site:. timeout -s INT $(left 80) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 \
      | tail -2 | sed "s/^/$v tests: /" | tee -a /tmp/o/w4-tests.log )
  ( cd /tmp/$v && PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-$v timeout -s INT $(left 60) python3 -m jitgemm aot \
      --arch sm_90a --jobs $(nproc) --out /tmp/jg-$v >/dev/null
    PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-$v SANITIZE_LOGS=/tmp/o/san-$v TOOLS=memcheck \
      timeout -s INT $(left 40) bash tools/sanitize.sh --only w4 --launches 1 2>&1 | tail -2 | sed "s/^/$v /" )
  echo "[$SECONDS s]"; save
done
uptime; echo "done at $SECONDS s"
