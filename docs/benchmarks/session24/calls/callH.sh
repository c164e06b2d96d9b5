#!/usr/bin/env bash
# session 24 call H: an H200 -> its tables; an H100 -> gpt-oss-20b's step with/without bucket 16, ncu of the 4-bit
# kernels (why q4_min reads at 70 %), then the chain probes with what is left
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
export OUT=$OUT JITGEMM_TUNED=0
echo "$gpu" > "$OUT/gpu.txt"
if [[ $gpu == *H200* ]]; then bash tools/gpu_session.sh tables; exit; fi
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1
for tab in "" docs/benchmarks/session23/no-small-n-moderate.json docs/benchmarks/session22/retune/retuned-table.json; do
  JITGEMM_NV_TUNING=$tab timeout 100 python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) --out /tmp/jgcache >/dev/null || echo "aot $tab rc=$?"
done
echo "precompiled [$SECONDS s]"
for tab in shipped no-small-n shipped2; do
  env $([ $tab = no-small-n ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session23/no-small-n-moderate.json) \
    timeout 120 python3 -m jitgemm bench --group model --models gpt-oss-20b --n 1,4,16 --no-plot --name gptoss-$tab --out "$OUT" 2>&1 \
    | grep -E "^\| (gpt|[0-9])"
  echo "[$SECONDS s] $tab"
done
mkdir -p /tmp/ncu
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
for spec in "q4_min 32 28672 4096 1" "q4_sym 32 28672 4096 1" "q4_min 32 28672 4096 16"; do
  set -- $spec
  [ $SECONDS -gt 420 ] && break
  timeout 80 $NCU --clock-control none --kernel-name regex:jg_w4 --launch-skip 1 --launch-count 1 --set full \
    python3 .carry/ncu_w4.py $spec > /tmp/ncu/ncu-$1-g$2-n$5.txt 2>&1 || echo "ncu $spec rc=$?"
  grep -E "Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|L1/TEX Hit|L2 Hit" /tmp/ncu/ncu-$1-g$2-n$5.txt | head -10
  echo "[$SECONDS s] $spec"
done
tar -C /tmp -czf "$OUT/ncu.tgz" ncu
for tc in retuned:6144x4096,4096x4096,28672x4096,4096x14336 shipped:5120x2880,2880x2880; do
  tab=${tc%%:*} c=${tc#*:}
  [ $SECONDS -gt 500 ] && break
  echo "== $tab table, chain $c" | tee -a "$OUT/chain.log"
  env $([ $tab = retuned ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json)     timeout $((580 - SECONDS)) python3 tools/chain_probe.py --chain $c --n 1,4,16 2>&1 | tee -a "$OUT/chain.log"
done
echo "[$SECONDS s] done"
