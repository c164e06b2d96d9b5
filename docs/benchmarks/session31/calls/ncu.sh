#!/usr/bin/env bash
# session 31, #19: where q4_min's minima term goes (NOTES session 31: it costs 6-15 % of the step; blockmin's fewer
# instructions took 1 %): Nsight Compute (--set full, clocks not locked: cold L2 by ncu's flush) of one launch of the
# 8B gate_up (28672 x 4096, G32, bf16 tokens, the shipped table's config) at N = 1 and 16 in three trees: base (this
# tree), nots (tools/w4_variants.py: no minima term, wrong by design), blockmin (.carry/blockmin). Each report's
# details page and raw page (CSV: the stall reasons) come back in one tgz. Deadline DL (default 420 s). (As run, the
# launcher was .carry/ncu_w4.py, a copy of session24/calls/ncu_w4.py.)
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
# an H200 takes its tables instead (#17, #21), in the device time this session had left
[[ $gpu == *H200* ]] && { TDL=340 SDL=420 bash .carry/h200try.sh; exit; }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 JITGEMM_TUNED=0 JITGEMM_CACHE_DIR=/tmp/jgcache
rm -rf /tmp/ncu /tmp/w4v; mkdir -p /tmp/ncu; echo "$gpu" > /tmp/ncu/gpu.txt
python3 tools/w4_variants.py /tmp/w4v --only nots >/dev/null || exit 1
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
DL=${DL:-420}
root=$PWD
for n in 1 16; do for v in base nots blockmin; do
  [ $SECONDS -gt $(( DL - 45 )) ] && break 2
  case $v in base) dir=$root ;; nots) dir=/tmp/w4v/nots ;; blockmin) dir=$root/.carry/blockmin ;; esac
  r=/tmp/ncu/$v-n$n
  ( cd $dir && PYTHONPATH=/tmp/site:. timeout $(( DL - SECONDS )) $NCU --clock-control none --kernel-name regex:jg_w4 \
      --launch-skip 1 --launch-count 1 --set full -o $r python3 $root/docs/benchmarks/session24/calls/ncu_w4.py q4_min 32 28672 4096 $n > $r.log 2>&1 \
      || echo "ncu $v n=$n rc=$?" )
  $NCU --import $r.ncu-rep --page details > $r.txt 2>&1
  $NCU --import $r.ncu-rep --page raw --csv > $r.raw.csv 2>&1
  echo "== $v N=$n [$SECONDS s]"
  grep -E "^ +(Duration|DRAM Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued)" $r.txt | head -8
  tar -C /tmp --exclude='*.ncu-rep' -czf $OUT/ncu.tgz ncu
done; done
echo "done at $SECONDS s"
