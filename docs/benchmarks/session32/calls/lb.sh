#!/usr/bin/env bash
# #19, session 32: q4_min G32 at U = 1 with the minima term in the loop (as shipped), asking ptxas for more blocks an
# SM through __launch_bounds__' second argument (base: 92 registers at NT = 1, 5 blocks of 128 threads; 86 at NT = 2):
# lb6 caps NT <= 2 at 80 (6 blocks; 16 B / 4 B spilled), lb6n1 NT = 1 only, lb7 NT = 1 at 72 (7 blocks, 16 B
# spilled) and NT = 2 at 80. Session 31's bounds: without the term (70 registers, 7 blocks) the step was 7-15 % faster.
# Three alternating rounds of three models' q4_min steps, then each tree's 4-bit GPU tests and memcheck.
d=docs/benchmarks/session32
PATCHES="lb6=$d/lb6.patch lb6n1=$d/lb6n1.patch lb7=$d/lb7.patch" DTYPES=bf16,w4-q4_min \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 ROUNDS=3 DL=540 bash tools/w4_ab.sh
