#!/usr/bin/env bash
# the next session's first device call (carry [".whl"]): an H200 takes its tables (#17, #21: session29/calls/callA.sh,
# then callB.sh in the next call); an H100 runs calls/verify.sh (the 4-bit GPU tests on this tree, session 34's new
# test_row_tiles_change_no_bit among them, then the 8B gate_up's two-row-tile row against the table before it, with
# Mistral-7B), then, with what is left, the 70B TP-8 shard's 16-bit o / gate_up / down on other K orders
# (session34/o70: 15 table-only patches; qkv's ran in session 34 and held).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; exit; fi
bash docs/benchmarks/session34/calls/verify.sh
d=docs/benchmarks/session34; left=$(( 570 - SECONDS ))
[ $left -lt 60 ] && { echo "no time left for o70"; exit; }
PATCHES="$(tr ' ' '\n' < $d/o70/patches.txt | grep -v '^qkv' | tr '\n' ' ')" CHECKS=0 MODELS=llama-3.1-70b-tp8 \
  DTYPES=bf16 NS=1,4,16 ROUNDS=2 DL=$left bash tools/w4_ab.sh 2>&1 | grep -E "^\| llama" | tail -4
echo "done at ${SECONDS}s"
