#!/usr/bin/env bash
# #19, session 32: bound.patch (a 4-bit table row's register bound as data: min_blocks in the w4 rows, the kernel's
# __launch_bounds__ second argument a template parameter, rows for Qwen2.5-7B's qkv / o / gate_up with lb6's bound,
# serving their own weights only) against main: the q4_min steps of three models (Qwen2.5-7B should gain lb6's
# +5-8 %, the others not move), then the patched tree's 4-bit GPU tests (its new bit-identity test included) and
# memcheck over every 4-bit instance (the bounded ones included).
d=docs/benchmarks/session32
PATCHES="bound=$d/bound.patch" DTYPES=bf16,w4-q4_min \
  MODELS=qwen2.5-7b,llama-3.1-8b,llama-3.1-70b-tp8 NS=1,4,16 ROUNDS=3 DL=400 bash tools/w4_ab.sh
