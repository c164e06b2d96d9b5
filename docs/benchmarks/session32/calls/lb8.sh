#!/usr/bin/env bash
# #19, session 32, after calls/lb.sh (lb6: Qwen2.5-7B +5 % at N <= 4 and +8 % at N = 16, Llama-3.1-8B -2.5 to -3 %):
# the cap where it adds the most warps only: q4_min G32 U = 1 NT <= 2 at WK = 8 asks for 3 blocks of 256 threads an
# SM (78-80 registers, was 2 blocks at 86-92; lb8), and with it NT = 2 at WK = 4 for 6 blocks (lb8n2).
d=docs/benchmarks/session32
PATCHES="lb8=$d/lb8.patch lb8n2=$d/lb8n2.patch" DTYPES=bf16,w4-q4_min \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 ROUNDS=3 DL=400 bash tools/w4_ab.sh
