#!/usr/bin/env bash
# NOTES idea 11 on a GPU (carry [".whl"]; H100 or H200), within DL seconds (default 540): per model, (1) the per-expert
# steps and the stacked-experts steps (models.STACKED: a grouped call's bytes and launches), bf16 and two 4-bit
# formats; (2) the grouped call itself (NAME+experts-grouped: w4_experts_gemm, one a layer kind; its baseline the
# per-expert bf16 cuBLAS step); (3) the grouped step's bf16 torch._grouped_mm baseline (bench.moe_baseline, a process
# of its own: a device-side assert in torch's kernel would end it). N = 1 and 4. Results tarred to $OUT/moe.tgz.
set -uo pipefail
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); echo "GPU: $gpu"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=/tmp/jgcache PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
rm -rf /tmp/o; mkdir -p /tmp/o "$OUT"; echo "$gpu" > /tmp/o/gpu.txt
DL=${DL:-540}; T0=$SECONDS
left() { local l=$(( DL - (SECONDS - T0) )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
save() { tar -C /tmp -czf "$OUT/moe.tgz" o; }
bench() { local t=$1 label=$2; shift 2
  timeout -s INT "$(left "$t")" python3 -m jitgemm bench --group model --no-plot --out /tmp/o --name "$label" "$@" 2>&1 \
    | grep -E "^\| |grouped baseline|Error|error" | tail -24; save; echo "[$label at $(( SECONDS - T0 )) s]"; }
for m in ${MODELS:-qwen3-30b-a3b gpt-oss-20b}; do
  bench 170 "grouped-$m" --models "$m+experts-grouped" --dtype w4-q4_min,w4-mxfp4 --n 1,4
  bench 120 "torchgrouped-$m" --models "$m+experts-grouped" --dtype bf16 --n 1,4
  bench 170 "stacked-$m" --models "$m,$m+experts-stacked" --dtype bf16,w4-q4_min,w4-mxfp4 --n 1,4
done
echo "done at $(( SECONDS - T0 )) s"
