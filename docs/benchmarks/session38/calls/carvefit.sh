#!/usr/bin/env bash
# Session 38 (carry [".whl"]): the skinny and 4-bit kernels asking for the smallest shared-memory config that keeps
# the blocks an SM their registers allow, 64 KB at least (calls/carvefit.patch = branch carvefit: runtime.occupancy,
# LoadedKernel.ensure_launchable). Two 512-thread skinny blocks of 16 KB need 34 KB: the 64 KB config, 192 KB of L1,
# where the driver's default took 100 KB (~156 KB of L1; session 37's Nsight Compute); q4_min (84 registers, one
# block an SM) the same 64 KB. Do more of the 16 tokens' sectors hit L1 at N = 16 (session 37: 47 %)? Whole 16-bit
# and q4_min steps at N = 16 and 1 in alternating rounds against this tree, then Nsight Compute of the 8B gate_up at
# N = 16 in each tree (L1 hits, L2 sectors, the config the driver gave). END: seconds for the call.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
c=docs/benchmarks/session38/calls
PATCHES="carvefit=$c/carvefit.patch" DTYPES=${DTYPES:-bf16,w4-q4_min} NS=16,1 ROUNDS=${ROUNDS:-3} CHECKS=0 \
  MODELS=${MODELS:-llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b} DL=$(( ${END:-300} - 75 - SECONDS )) bash tools/w4_ab.sh 2>&1 | tail -8
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
M="launch__shared_mem_config_size,lts__t_sectors_srcunit_tex_op_read.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld_lookup_hit.sum,gpu__time_duration.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed"
for tree in "$PWD" /tmp/ab-trees/carvefit; do
  [ $SECONDS -gt $(( ${END:-300} - 30 )) ] && break
  echo "== ncu, 28672 x 4096, N = 16, tree $tree"
  (cd "$tree" && PYTHONPATH=/tmp/site:. timeout 35 $NCU --clock-control none --kernel-name regex:jg_ --launch-skip 1 \
    --launch-count 1 --metrics "$M" python3 "$OLDPWD/docs/benchmarks/session36/calls/ncu_skinny.py" jitgemm 28672 4096 16 \
    2>&1 | grep -E "sum|pct|size" | tail -7)
done
echo "done at $SECONDS s"
