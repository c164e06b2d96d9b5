#!/usr/bin/env bash
# session 34: row tiles (MT) in the step (tools/mt_patches.py; MT never changes a token's bits). On an H200 its tables
# first (#17, #21: session29/calls/callA.sh). Each model alone through tools/w4_ab.sh, at the N its patches move:
#   16-bit: the 70B TP-8 shard at N = 16 (#17: 0.977x cuBLAS, target 1.0), Llama-3.1-8B at N = 4 (91.6 % of the
#   ceiling, target 93 %); q4_min at N = 16: Llama-3.1-8B, Qwen2.5-7B, the 70B TP-8 shard; then, with what is left,
#   the 70B TP-8 shard's 16-bit rows on other K orders (tools/w4_order_patches.py --format skinny; N = 1 / 4 1.08x,
#   target 1.10).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; exit; fi
d=docs/benchmarks/session34; root=$OUT; T0=$SECONDS
ab() {  # name model dtypes ns rounds patches-dir [most seconds, default 200]
  local left=$(( 575 - (SECONDS - T0) )); [ $left -lt 40 ] && { echo "[$1 skipped: ${left}s left]"; return; }
  mkdir -p $root/$1
  OUT=$root/$1 AB_DIR=/tmp/ab-$1 PATCHES="$(cat $6/patches.txt)" CHECKS=0 MODELS=$2 DTYPES=$3 NS=$4 ROUNDS=$5 \
    DL=$(( left < ${7:-200} ? left : ${7:-200} )) bash tools/w4_ab.sh 2>&1 | grep -E "^\| (llama|qwen)" | tail -4
  echo "[$1 done at $(( SECONDS - T0 ))s]"
}
ab mt70 llama-3.1-70b-tp8 bf16 16 3 $d/mt70
ab mt8b llama-3.1-8b bf16 4 3 $d/mt8b
ab q8 llama-3.1-8b w4-q4_min 16 2 $d/mtq-llama318b
ab q70 llama-3.1-70b-tp8 w4-q4_min 16 2 $d/mtq-llama3170btp8
ab qq qwen2.5-7b w4-q4_min 16 3 $d/mtq-qwen257b
ab o70 llama-3.1-70b-tp8 bf16 1,4,16 2 $d/o70 600
