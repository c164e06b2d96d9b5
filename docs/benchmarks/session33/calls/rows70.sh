#!/usr/bin/env bash
# #19, session 33: the 70B TP-8 shard's q4_min step (2.48-2.49x bf16 cuBLAS, target 2.5) with one row's K order
# moved a patch (row_variants.py: gate_up / down / qkv / o, WK / U / SK), timed in the step, three alternating
# rounds; table-only patches, so no checks (every instance is memchecked by the other calls).
d=docs/benchmarks/session33
CHECKS=0 PATCHES="g422=docs/benchmarks/session33/rv/g422.patch g821=docs/benchmarks/session33/rv/g821.patch g411=docs/benchmarks/session33/rv/g411.patch g822=docs/benchmarks/session33/rv/g822.patch d422=docs/benchmarks/session33/rv/d422.patch d821=docs/benchmarks/session33/rv/d821.patch d411=docs/benchmarks/session33/rv/d411.patch q821=docs/benchmarks/session33/rv/q821.patch q1611=docs/benchmarks/session33/rv/q1611.patch o411=docs/benchmarks/session33/rv/o411.patch o821=docs/benchmarks/session33/rv/o821.patch" DTYPES=w4-q4_min \
  MODELS=llama-3.1-70b-tp8 NS=1,4,16 ROUNDS=3 DL=400 bash tools/w4_ab.sh
