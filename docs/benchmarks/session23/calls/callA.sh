#!/usr/bin/env bash
# Session 23 call A: on an H200, the tables step (issue #17's H200 table); on an H100, the fp8 GPU tests on the
# W8A16 trigger (session 22 left them unrun) in the whole GPU suite, then the carveout probe. One tarball back.
set -uo pipefail
name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); echo "GPU: $name"
REAL_OUT=${OUT:-/tmp/out}; export OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT  # a warm machine keeps the last call's
if [[ $name == *H200* ]]; then
  DEADLINE=585 bash tools/gpu_session.sh tables
else
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
  CARVEOUTS="${CARVEOUTS:-none 100}" SUITE_S=400 DEADLINE=580 bash tools/gpu_session.sh ${STEPS:-suite carveout}
fi
echo "$name" > $OUT/gpu.txt
tar -C $OUT -czf "$REAL_OUT/a.tgz" . && ls -la $REAL_OUT
