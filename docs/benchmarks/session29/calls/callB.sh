#!/usr/bin/env bash
# session 29 call B, for the next H200 (after callA.sh or `gpu_session.sh tables`; its tables.tgz json copied to .carry/h200.json): the H200 tables (.carry/h200.json) against the H100 file on the
# same H200, 16-bit steps of four models and the fp8 steps; tables alternate so drift hits both. One deadline (560 s)
# for the whole call; results tarred after every step so a timeout loses nothing finished.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
left() { local l=$(( 560 - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf $OUT/callB.tgz o; }
H100=jitgemm/data/tables/nvidia-h100-80gb-hbm3.json H200=.carry/h200.json
for tab in $H200 $H100; do  # both tables' kernels compiled up front
  JITGEMM_NV_TUNING=$tab timeout $(left 120) python3 -m jitgemm aot --arch sm_90a --jobs $(nproc) --out $JITGEMM_CACHE_DIR >/dev/null || echo "aot rc=$?"
done
echo "[aot done $SECONDS s]"
for rep in 1 2; do for tab in h200 h100; do
  f=$([ $tab = h200 ] && echo $H200 || echo $H100)
  [ $SECONDS -gt 330 ] && break 2
  JITGEMM_NV_TUNING=$f timeout $(left 150) python3 -m jitgemm bench --group model --models llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b,qwen3-30b-a3b \
    --n 1,4,16,64 --name bf16-$tab-$rep --no-plot --out /tmp/o 2>&1 | grep -E "^\| " | tail -8
  echo "[$SECONDS s]"; save
done; done
for tab in h200 h100; do
  f=$([ $tab = h200 ] && echo $H200 || echo $H100)
  [ $SECONDS -gt 470 ] && break
  JITGEMM_NV_TUNING=$f timeout $(left 90) python3 -m jitgemm bench --group model --dtype fp8 --n 1,4,16 --name fp8-$tab \
    --no-plot --out /tmp/o 2>&1 | grep -E "^\| " | tail -6
  echo "[$SECONDS s]"; save
done
save; echo "done at $SECONDS s"
