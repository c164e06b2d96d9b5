#!/usr/bin/env bash
# session 26 call E: issue #15 on one host: this tree (branch s26-lean: routed layers through pipeline.torch_pair)
# in cold_call_probe (each piece hot and between walks; the model step torch / this tree / the LeanRoute prototype),
# hf_decode on this tree, the torch GPU tests, then main's model step and hf_decode (.carry/main) while time is left
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1
SECONDS=0
cap() { local left=$(( 225 - SECONDS )); echo $(( $1 < left ? $1 : (left > 1 ? left : 1) )); }
PYTHONPATH=/tmp/site:. timeout -s INT $(cap 110) python3 tools/cold_call_probe.py 2>&1 | tee $OUT/cold-call-probe.log
echo "[$SECONDS s]"
PYTHONPATH=/tmp/site:. timeout -s INT $(cap 80) python3 examples/hf_decode.py 2>&1 | tee $OUT/hf-decode-lean.log | sed -n '/^batch  torch/,/^$/p'
echo "[$SECONDS s]"
PYTHONPATH=/tmp/site:. timeout -s INT $(cap 45) python3 -m pytest -q -m gpu tests/test_gpu_streams.py tests/test_gpu_skinny.py \
  -k "torch or stream or graph" 2>&1 | tee $OUT/gpu-torch-tests.log | tail -3
echo "[$SECONDS s]"
(cd .carry/main && PYTHONPATH=/tmp/site:. timeout -s INT $(cap 45) python3 tools/torch_call_probe.py model_step 2>&1 | tee $OUT/main-model-step.log)
echo "[$SECONDS s]"
(cd .carry/main && PYTHONPATH=/tmp/site:. timeout -s INT $(cap 80) python3 examples/hf_decode.py 2>&1 | tee $OUT/hf-decode-main.log | sed -n '/^batch  torch/,/^$/p')
echo "[$SECONDS s]"
