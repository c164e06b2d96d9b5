#!/usr/bin/env bash
# session 25 call B (H100 or H200 alike): issue #15's numbers on today's tree: the torch GPU tests, the torch call
# probe (the fair nn.Module pair, gc off), hf_decode, then the per-call table against session 15's with what is left
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
mkdir -p $OUT; echo "$gpu" > $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1
timeout 80 python3 -m pytest -q -m gpu tests/test_gpu_streams.py tests/test_gpu_skinny.py -k "torch or stream or graph" 2>&1 \
  | tee $OUT/gpu-torch-tests.log | tail -3
echo "[$SECONDS s]"
timeout 80 python3 tools/torch_call_probe.py inference_mode 2>&1 | tee $OUT/torch-call-probe.log | grep "^|\|^NVIDIA"
echo "[$SECONDS s]"
timeout 120 python3 examples/hf_decode.py --json $OUT/hf-decode.json 2>&1 | tee $OUT/hf-decode.log | tail -22
echo "[$SECONDS s]"
timeout $(( SECONDS < 240 ? 250 - SECONDS : 1 )) python3 -m jitgemm bench --group overhead --label session25 \
  --compare docs/benchmarks/session15-h100/overhead.json --out /tmp/ov 2>&1 | tee $OUT/overhead.log | tail -45
cp /tmp/ov/*.json /tmp/ov/*.md $OUT/ 2>/dev/null
echo "[$SECONDS s]"
