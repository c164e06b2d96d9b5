#!/usr/bin/env bash
# #19, session 32, after lb8.sh: the 70B TP-8 shard's q4_min instances (U = 2, WK = 4, one token tile: 120 registers,
# 4 blocks an SM) asked for 5 blocks (96 registers, 16 B spilled; u2).
d=docs/benchmarks/session32
PATCHES="u2=$d/u2.patch" DTYPES=bf16,w4-q4_min MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b NS=1,4,16 ROUNDS=3 \
  DL=300 bash tools/w4_ab.sh
