#!/usr/bin/env bash
# A 4-bit kernel change against other trees in one device call (NOTES.md, sessions 16-17): the 4-bit GPU tests, the Llama-3.1-8B step
# (bf16 cuBLAS and every 4-bit format at N = 1 and 16; DTYPES, NS and MODELS override) in this tree and in each tree under .carry/, each with
# its own kernel cache (a tree that is not there is skipped), then memcheck over the 4-bit instances; each step only if its time is left (CAP seconds).
# Prepare the other trees here, one folder each under .carry/ (they travel as the carried, git-ignored .carry/), e.g.
#   mkdir -p .carry/old .carry/mid
#   git archive <main before the change> jitgemm kernels_src pyproject.toml | tar -x -C .carry/old
#   git archive <a variant of the change> jitgemm kernels_src pyproject.toml | tar -x -C .carry/mid
# and run with the device tool: `CAP=430 bash tools/w4_ab.sh`, carry [".whl", ".carry"]. Results: $OUT/ab.tgz.
set -uo pipefail
SECONDS=0; CAP=${CAP:-430}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/ab"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-new timeout -s INT 150 python3 -m pytest -q -m gpu tests/test_gpu_w4.py "tests/test_gpu_tune.py::test_tune_a_4bit_format_then_w4_gemm_uses_it" 2>&1 | tee "$OUT/ab/gpu-w4.log" | tail -4
echo "[$SECONDS s]"
run() {  # $1 label, $2 tree
  local left=$(( CAP - SECONDS )); [ $left -lt 50 ] || [ ! -d "$2/jitgemm" ] && { echo "skip $1"; return; }
  (cd "$2" && PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-$1 timeout -s INT $(( left < 130 ? left : 130 )) python3 -m jitgemm bench --group model \
     --dtype ${DTYPES:-bf16,w4-q4_sym,w4-mxfp4,w4-q4_min,w4-q4_zp} --models ${MODELS:-llama-3.1-8b} --n ${NS:-1,16} --name model-w4-$1 --out "$OUT/ab" 2>&1 \
     | tee "$OUT/ab/model-w4-$1.log" | tail -12)
  echo "[$SECONDS s]"
}
run new "$PWD"
for tree in .carry/*/; do t=${tree%/}; run "${t##*/}" "$PWD/$t"; done  # old, mid, any other
left=$(( CAP - SECONDS ))
[ $left -gt 40 ] && PATH=$PATH:/usr/local/cuda/bin PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jg-new TOOLS=memcheck timeout -s INT $left \
  bash tools/sanitize.sh --only w4 --launches 2 2>&1 | tee "$OUT/ab/sanitize-w4.log" | tail -6
echo "[$SECONDS s]"
tar -C "$OUT" -czf "$OUT/ab.tgz" ab && rm -rf "$OUT/ab"
