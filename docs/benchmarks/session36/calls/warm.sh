#!/usr/bin/env bash
# session 36's second call, on the warm H100 (carry [".whl"]): the experts test fixed for groups of 128 (K a multiple
# of 128), then the persistent grid against this tree in whole 16-bit steps at N = 16 (two rounds; the H100 loses
# 1.5-7 % at N = 16, the H200 8-17 %: a check that it costs nothing here, not the H200's answer). As run, main held
# the persist code (off) and calls/persist_on.patch turned it on; the code now lives in ../persist.patch (code + on).
mkdir -p /tmp/site "$OUT" && pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -1
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache timeout 60 python -m pytest -q -m gpu tests/test_gpu_w4_experts.py \
  2>&1 | tee "$OUT/experts-tests.log" | tail -3
PATCHES="persist=docs/benchmarks/session36/persist.patch" DTYPES=bf16 NS=16 ROUNDS=2 CHECKS=0 \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8 DL=$(( 330 - SECONDS )) bash tools/w4_ab.sh 2>&1 | tail -8
