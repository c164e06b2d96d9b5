#!/usr/bin/env bash
# for the next device session (#19): q4_min G32's minima term in a pass of its own AFTER the codes' loop
# (session31/minafter.patch: the pass's iterations one at a time; minafter2.patch: two at a time; minafterlb.patch:
# minafter with U = 1, NT <= 2 instances asking ptxas for 7 blocks of 128 threads an SM, 72 registers, no spill),
# when its tokens are in L1 and its records in L2; sm_90a registers at U = 1 WK 4: 92 -> 78 / 80 / 72 (5 -> 6 / 6 /
# 7 blocks an SM), NT = 2: 86 -> 72 / 72 / 66. Before the loop (minpass.patch) it was correct and 17-26 % slower.
# Three alternating rounds of the q4_min steps of three models in this tree and the three patched copies, then each
# copy's 4-bit GPU tests and memcheck (tools/w4_ab.sh; ~400 s). Run from the repository root, carrying [".whl"].
d=docs/benchmarks/session31
PATCHES="after=$d/minafter.patch after2=$d/minafter2.patch lb=$d/minafterlb.patch" DTYPES=bf16,w4-q4_min \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 ROUNDS=3 DL=540 bash tools/w4_ab.sh
