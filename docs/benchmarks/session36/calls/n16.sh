#!/usr/bin/env bash
# #17 on an H200 (carry [".whl"]): why the 16-bit skinny kernel loses at N = 16 on large weights there (the 8B step
# 0.918x cuBLAS at N = 16 against 1.018x at N = 1; on an H100 1.035x at N = 16). Nsight Compute (--set full, clocks
# not locked, cold L2 by ncu's flush) of one launch of the 8B gate_up (28672 x 4096) and qkv (6144 x 4096), bf16, at
# N = 1 and 16, jitgemm's plan and torch.mm's cuBLAS kernel; each report's details and raw pages come back (ncu.tgz).
# What to read: L2 <-> SM bytes (lts__t_sectors_srcunit_tex) against DRAM bytes at N = 16 (the token loads: as many
# bytes as the weights at MT = 1), L1 hit rate of the token loads, the stall reasons (long scoreboard: memory;
# LG throttle: the load queue) and achieved occupancy, then the same for cuBLAS's kernel. Deadline DL (default 420 s).
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 JITGEMM_TUNED=0 JITGEMM_CACHE_DIR=/tmp/jgcache
rm -rf /tmp/ncu; mkdir -p /tmp/ncu "$OUT"; echo "$gpu" > /tmp/ncu/gpu.txt
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
DL=${DL:-420}
for shape in ${SHAPES:-28672x4096 6144x4096}; do shape=${shape/x/ }; for n in 16 1; do for who in jitgemm torch; do
  [ $SECONDS -gt $(( DL - 45 )) ] && break 3
  r=/tmp/ncu/$who-${shape/ /x}-n$n
  kern=$([ $who = jitgemm ] && echo "regex:jg_" || echo "regex:(gemm|gemv|xmma|cutlass|sm90)")
  PYTHONPATH=/tmp/site:. timeout $(( DL - SECONDS )) $NCU --clock-control none --kernel-name "$kern" --launch-skip 1 \
    --launch-count 1 --set full -o $r python3 docs/benchmarks/session36/calls/ncu_skinny.py $who $shape $n > $r.log 2>&1 \
    || echo "ncu $who $shape n=$n rc=$?"
  $NCU --import $r.ncu-rep --page details > $r.txt 2>&1
  $NCU --import $r.ncu-rep --page raw --csv > $r.raw.csv 2>&1
  echo "== $who $shape N=$n [$SECONDS s]"
  grep -E "^ +(Duration|DRAM Throughput|L1/TEX Hit Rate|L2 Hit Rate|Mem Busy|Max Bandwidth|Registers Per Thread|Achieved Occupancy|Warp Cycles Per Issued)" $r.txt | head -10
  tar -C /tmp --exclude='*.ncu-rep' -czf "$OUT/ncu.tgz" ncu
done; done; done
echo "done at $SECONDS s"
