#!/usr/bin/env bash
# session 30, an H100 call for #19: q4_min's step on the two models that miss 2.5x (the 70B TP-8 shard, Qwen2.5-7B)
# with `jitgemm tune --model M --dtype w4-q4_min` (a user's remedy: rows for the model's own weights) against the
# shipped table (JITGEMM_TUNED=0), alternating; then tests/test_gpu_w4.py in what is left (session 29's suite did not
# reach it). One deadline (580 s); results tarred after every step.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"; uptime
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1
rm -rf /tmp/o; mkdir -p /tmp/o; echo "$gpu" > /tmp/o/gpu.txt
left() { local l=$(( 580 - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { cp -f $JITGEMM_CACHE_DIR/tuned/*.json /tmp/o/ 2>/dev/null; tar -C /tmp -czf $OUT/h100w4.tgz o; }
MODELS=llama-3.1-70b-tp8,qwen2.5-7b,llama-3.1-8b
for m in llama-3.1-70b-tp8 qwen2.5-7b llama-3.1-8b; do
  timeout -s INT $(left 90) python3 -m jitgemm tune --model $m --dtype w4-q4_min --n 1,4,16 > /tmp/o/tune-$m.log 2>&1 \
    || echo "tune $m rc=$?"
  grep -E "^tuned|configs|s$" /tmp/o/tune-$m.log | tail -3; echo "[$SECONDS s]"
done
save
for rep in 1 2; do for t in 0 1; do
  [ $SECONDS -gt 470 ] && break 2
  JITGEMM_TUNED=$t timeout -s INT $(left 100) python3 -m jitgemm bench --group model --dtype bf16,w4-q4_min --models $MODELS \
    --n 1,4,16 --no-plot --name q4min-tuned$t-$rep --out /tmp/o 2>&1 | grep -E "^\| w4" | sed "s/^/tuned=$t /"
  echo "[$SECONDS s]"; save
done; done
[ $SECONDS -lt 500 ] && timeout -s INT $(left 90) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tail -3 | tee /tmp/o/w4-tests.log
save; uptime; echo "done at $SECONDS s"
