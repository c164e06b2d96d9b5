#!/usr/bin/env bash
# #19, session 32: q4_min G32's loads, two ways against base (alternating rounds, three models' q4_min steps, then
# each tree's 4-bit GPU tests and memcheck through tools/w4_ab.sh):
# - lb6 / lb7: the shipped loop at U = 1 asking ptxas for more blocks an SM (__launch_bounds__' second argument;
#   base 92 registers at NT = 1, 5 blocks of 128 threads): lb6 80 registers at NT <= 2 (6 blocks, 16 / 4 B spilled),
#   lb7 72 at NT = 1 (7 blocks, 16 B spilled);
# - ring / ring8: the weight slices and scale records through a cp.async ring of S stages a warp in shared memory
#   (S = 4 at U = 1, 2 at U = 2; ring8 8 / 4), so S - 1 iterations' loads are in flight without registers
#   (MT = 1, NT <= 2, <= 40 KB a block; else the shipped loop).
d=docs/benchmarks/session32
PATCHES="ring=$d/ring.patch ring8=$d/ring8.patch lb6=$d/lb6.patch lb7=$d/lb7.patch" DTYPES=bf16,w4-q4_min \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 ROUNDS=3 DL=560 bash tools/w4_ab.sh
