#!/usr/bin/env bash
# Session 37 (carry [".whl"]): 9..16 tokens on multi-wave 16-bit weights with two row tiles a block (half the token
# bytes through L2), ptxas bounded to two 512-thread blocks an SM (calls/mt2.patch): first its bits against this
# tree's on seeded calls (bits.py, each checked against float64 too), then whole 16-bit steps at N = 16 (and 9) in
# three alternating rounds, this tree against mt2, its GPU test, and (time left) the L2 sectors of the 8B gate_up at
# N = 16 in each tree (Nsight Compute: do two row tiles halve the token reads?).
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
c=docs/benchmarks/session37/calls
rm -rf /tmp/mt2tree && mkdir -p /tmp/mt2tree "$OUT" && cp -r jitgemm kernels_src tests tools pyproject.toml /tmp/mt2tree/ \
  && (cd /tmp/mt2tree && patch -s -p1 < "$OLDPWD/$c/mt2.patch") || exit 2
timeout 120 python3 $c/bits.py /tmp/base.npz 2>&1 | tail -3
(cd /tmp/mt2tree && PYTHONPATH=/tmp/site:. timeout 120 python3 "$OLDPWD/$c/bits.py" /tmp/mt2.npz /tmp/base.npz) 2>&1 | tail -13
PATCHES="mt2=$c/mt2.patch" DTYPES=bf16 NS=16,9 ROUNDS=${ROUNDS:-3} CHECKS=0 \
  MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b DL=$(( ${END:-400} - SECONDS )) bash tools/w4_ab.sh 2>&1 | tail -9
(cd /tmp/mt2tree && PYTHONPATH=/tmp/site:. timeout $(( ${END:-400} + 50 - SECONDS )) python3 -m pytest -q -m gpu \
  tests/test_gpu_skinny.py -k two_row_tiles 2>&1 | tail -3)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
M="lts__t_sectors_srcunit_tex_op_read.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld_lookup_hit.sum,gpu__time_duration.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed"
for tree in "$PWD" /tmp/mt2tree; do
  [ $SECONDS -gt $(( ${END:-400} + 90 )) ] && break
  echo "== ncu, 28672 x 4096, N = 16, tree $tree"
  (cd "$tree" && PYTHONPATH=/tmp/site:. timeout 60 $NCU --clock-control none --kernel-name regex:jg_ --launch-skip 1 \
    --launch-count 1 --metrics "$M" python3 "$OLDPWD/docs/benchmarks/session36/calls/ncu_skinny.py" jitgemm 28672 4096 16 \
    2>&1 | grep -E "jg_skinny|sum|pct" | tail -7)
done
