#!/usr/bin/env bash
# #19, session 33: the register bound (landed: s32-bound) on the other U = 1 models' q4_min layers, all of a
# model's boundable layers at once (tools/w4_bound_patches.py MODEL OUT, all.patch); each patch serves only its own
# model's weights, so each tree is the other's control. Mistral-7B shares Llama-3.1-8B's shapes (lb6 lost 3 % there).
d=docs/benchmarks/session33
PATCHES="gemma=$d/bp-gemma-2-9b/all.patch qwen3=$d/bp-qwen3-30b-a3b/all.patch" DTYPES=bf16,w4-q4_min \
  MODELS=gemma-2-9b,qwen3-30b-a3b NS=1,4,16 ROUNDS=3 DL=500 bash tools/w4_ab.sh
