#!/usr/bin/env bash
# The measurements issues #15, #17, #19 and #21 wait for, in steps that each fit one device call (<= 10 min), for a
# session with a lent GPU. Run from the repository root on the GPU machine, wheels carried in .whl/:
#   [MAXFAIL=n] bash tools/gpu_session.sh suite [test files]  # the GPU test suite, stopping after n failures
#                                     # (default 10); its summary line goes in the closing note;
#                                     # if all of tests/ overruns one call, name the files in two calls
#   bash tools/gpu_session.sh overhead  # issue #15's per-call table (bench --group overhead), before -> after against
#                                     # the last one measured (docs/benchmarks/h200-overhead.json)
#   bash tools/gpu_session.sh bench   # bench --group model and --group broad with the shipped tables
#   bash tools/gpu_session.sh tune    # jitgemm tune --model (timed: issue #17 says < 3 min), then the model step again
#   bash tools/gpu_session.sh tables  # issue #17: this GPU's tables file: `jitgemm tune` of every family on the shapes the
#                                     # shipped tables hold (16-bit N <= 16 decode suite and all N moderate-n suite, fp8,
#                                     # four 4-bit formats; 358 s on an H100), then tools/ship_tuned.py -> $OUT/tables.tgz
#                                     # (the file to ship in jitgemm/data/tables/, with every tune log); run it alone
#   bash tools/gpu_session.sh carveout  # session 22's open question: the 16-bit steps of the 8B and the 70B TP-8 shard
#                                     # with the re-tuned table (families mixed in a step) and the shipped one, each
#                                     # without and with every kernel asking for the same shared-memory carveout
#                                     # (tools/carveout_probe.py; CARVEOUTS: the percents, default "none 100");
#                                     # 4 runs x (.json, .md)
#   bash tools/gpu_session.sh chain   # the open question of sessions 23-24: why the moderate family's 16-token tile
#                                     # loses next to skinny kernels at N <= 16 (tools/chain_probe.py: each kind's cost
#                                     # inside a layer-by-layer chain against its time alone): the 8B and 70B TP-8
#                                     # layers with session 22's re-tuned table (qkv on the tile) and the shipped one
#                                     # (no tile since session 24: each kind's excess without it); chain.log
#   bash tools/gpu_session.sh hf      # tools/hf_profile.py: why the patched HF model lost at batch 8
#   bash tools/gpu_session.sh torchcall  # issue #15 on today's tree: the torch GPU tests, tools/torch_call_probe.py
#                                     # (a routed call alone and among torch's kernels), examples/hf_decode.py, then the
#                                     # per-call table against session 15's with what is left of the call (~5 min)
#   bash tools/gpu_session.sh cold    # issue #15 (sessions 26-27): the sibling groups' GPU tests, examples/hf_decode.py
#                                     # with --fuse-siblings both (torch / patched with fuse_siblings / patched without,
#                                     # alternating, RUNS rounds, default 16), then tools/cold_call_probe.py (a routed
#                                     # call's pieces hot and between walks; the model step torch / jitgemm.torch / the
#                                     # LeanRoute prototype); needs a quiet host (~6 min)
#   bash tools/gpu_session.sh fp8     # issue #21: the fp8 model steps and the broad suite's fp8 modes
#   bash tools/gpu_session.sh w4      # issue #19: the 4-bit GPU tests first, then the decode suite and model steps
#   bash tools/gpu_session.sh w4sweep # issue #19: every (MT, WK, U, SK) of tools/w4_sweep.py's grid on the decode
#                                     # suite's shapes, four formats, N = 1, 4, 16 (a measured 4-bit table; ~200 s)
#   bash tools/gpu_session.sh tp      # issue #20, on a two-GPU kind: the parallel GPU tests, then bench --group tp
#   bash tools/gpu_session.sh smollm2  # issue #19's example: SmolLM2 with its own Q4_1 weights (the GGUF comes
#                                     # in two carried parts: tools/carry_gguf.sh says how), then 16-bit
#   bash tools/gpu_session.sh sanitize  # compute-sanitizer memcheck over every 4-bit and fp8 instance (tail shapes), and
#                                     # w4_experts_gemm's wrappers
#   bash tools/gpu_session.sh minblocks  # experiment: the skinny/fp8 kernels with __launch_bounds__(32 * WK, 1)
#                                     # (no ptxas register cap: no fp8 spill, more registers) against today's
#   bash tools/gpu_session.sh w4occ   # issue #19's q4_min experiment (tools/w4_variants.py: its loop waits on memory at 27 %
#                                     # occupancy): the 4-bit kernel capped at 80 / 64 registers and with an L2 prefetch of
#                                     # the next iteration, each against today's (run first and last), q4_min and q4_sym
#                                     # steps of three models (N = 1, 4, 16; DTYPES, MODELS, NS override), then
#                                     # tests/test_gpu_w4.py on each variant while time is left; $OUT/w4occ.tgz
#   bash tools/gpu_session.sh pdl     # issue #17's chain experiment: the 8B and Qwen2.5-7B steps (one graph each) with plain
#                                     # launches, programmatic dependent launch, and PDL + L2 prefetch (MODELS, DTYPES
#                                     # e.g. bf16,w4-mxfp4, and NS override)
# Several steps can share one call, e.g. `SUITE_S=330 bash tools/gpu_session.sh suite w4 tests/test_gpu_w4.py`:
# the call has one deadline (DEADLINE, 585 s of the script), each step's timeouts are clipped to what is left
# of it, a step that would start with under a minute left is skipped, and SUITE_S caps the suite's share.
# Results go to $OUT (the device tool brings them back). A session's device time (30 min, machine start
# included) holds about three of these calls: suite first (correctness decides everything else), then the one
# benchmark the issue at hand needs; the rest waits for the next lease.
# Not `set -e`: a failed or timed-out step reports its status and the next step still runs (one call's
# results must not be lost to one failure). $OUT brings back at most 8 files: each step stays within that, steps
# chained in one call may not (suite 1, bench 6, torchcall 7, cold 4, fp8 6, w4 7, pdl 6, minblocks 8 files).
set -uo pipefail
STEPS="suite|overhead|bench|tune|tables|carveout|chain|hf|torchcall|cold|fp8|w4|w4sweep|w4occ|tp|smollm2|sanitize|minblocks|pdl"
steps=() files=()
for a in "$@"; do
  if [[ $a =~ ^($STEPS)$ ]]; then steps+=("$a"); else files+=("$a"); fi
done
if [ ${#steps[@]} -eq 0 ] || { [ ${#files[@]} -gt 0 ] && [[ " ${steps[*]} " != *" suite "* ]]; }; then
  echo "usage: bash tools/gpu_session.sh STEP [STEP ...] [test files for suite]; STEP: ${STEPS//|/, }" >&2; exit 2
fi
# One deadline for the whole call, so that steps can share it: each step's timeout is what it asks for or
# what is left, and a step that would start with under a minute left is skipped (and says so).
DEADLINE=${DEADLINE:-585}
budget() { local left=$(( DEADLINE - SECONDS )); echo $(( $1 < left ? $1 : (left > 1 ? left : 1) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "installing the carried wheels (.whl/) failed" >&2; exit 1; }
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=${JITGEMM_CACHE_DIR:-/tmp/jgcache} PYTHONUNBUFFERED=1
OUT=$(realpath -m "${OUT:-/tmp/out}")  # absolute: the minblocks step runs from another folder
mkdir -p "$OUT"
# every kernel the dispatcher can choose on this GPU, compiled in parallel before the steps that would
# otherwise compile them one at a time (the step after it gets what is left of the call's 10 minutes)
precompile() {
  local arch
  arch=$(python3 -c 'import jitgemm.runtime.backend as b; d = b.default_backend(); print(d.device_info(d.current_device()).arch)')
  timeout -k 10 -s INT $(budget 180) python3 -m jitgemm aot --arch "${arch%%:*}" --jobs "$(nproc)" --out "$JITGEMM_CACHE_DIR" >/dev/null \
    || echo "precompile for $arch: rc=$? (the steps compile what they need)"
}
run_step() {
case "$1" in
  suite)
    precompile
    timeout -s INT $(budget ${SUITE_S:-570}) python3 -m pytest -q -m gpu --maxfail=${MAXFAIL:-10} --durations=15 "${files[@]:-tests}" 2>&1 \
      | tee -a "$OUT/gpu-suite.log" | tail -60 ;;
  overhead)
    timeout -s INT $(budget 240) python3 -m jitgemm bench --group overhead --label "${LABEL:-after}" \
      --compare docs/benchmarks/h200-overhead.json --out "$OUT" 2>&1 | tee "$OUT/overhead.log" | tail -70 ;;
  bench)
    timeout -s INT $(budget 280) python3 -m jitgemm bench --group model --out "$OUT" 2>&1 | tee "$OUT/model.log" | tail -30
    timeout -s INT $(budget 280) python3 -m jitgemm bench --group broad --dtype bf16 --no-plot --out "$OUT" 2>&1 \
      | tee "$OUT/broad.log" | tail -30 ;;
  tune)
    timeout -s INT $(budget 300) /usr/bin/time -v python3 -m jitgemm tune --model llama-3.1-8b 2>&1 | tee "$OUT/tune.log" | tail -30
    cp "$JITGEMM_CACHE_DIR"/tuned/*.json "$OUT/" 2>/dev/null || true
    timeout -s INT $(budget 200) python3 -m jitgemm bench --group model --models llama-3.1-8b --name model-tuned --out "$OUT" 2>&1 \
      | tail -20 ;;
  tables)
    # the order is the table's worth if the call runs short: an interrupted tune stores the shapes it finished
    mkdir -p "$OUT/tables"; rm -rf "$JITGEMM_CACHE_DIR/tuned"
    python3 -c 'import json; d = json.load(open("jitgemm/data/decode_suite.json"))
for g in ("decode", "moderate-n"): json.dump({"shapes": d[g]}, open(f"/tmp/shapes-{g}.json", "w"))'
    for spec in bf16:decode:bf16:1,4,8,16 mxfp4:decode:w4-mxfp4:1,4,16 q4_sym:decode:w4-q4_sym:1,4,16 \
                fp8:decode:fp8:1,4,8,16 q4_zp:decode:w4-q4_zp:1,4,16 q4_min:decode:w4-q4_min:1,4,16 \
                moderate:moderate-n:bf16:1,4,8,16,32,64,128; do
      IFS=: read -r name group dtype ns <<< "$spec"
      timeout -s INT $(budget 200) python3 -m jitgemm tune --shapes /tmp/shapes-$group.json --dtype $dtype --n $ns \
        > "$OUT/tables/tune-$name.log" 2>&1 || echo "tune $name: rc=$?"
      grep "^tuned" "$OUT/tables/tune-$name.log"
    done
    python3 tools/ship_tuned.py "$JITGEMM_CACHE_DIR"/tuned/*.json --out "$OUT/tables" \
      --fill-from jitgemm/data/tables/nvidia-h100-80gb-hbm3.json --note "tools/gpu_session.sh tables"
    tar -C "$OUT" -czf "$OUT/tables.tgz" tables && rm -rf "$OUT/tables" ;;
  carveout)
    for tab in shipped retuned; do for co in ${CARVEOUTS:-none 100}; do
      env $([ $tab = retuned ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json) JITGEMM_TUNED=0 \
        timeout -s INT $(budget 140) python3 tools/carveout_probe.py $co -- bench --group model \
        --models llama-3.1-8b,llama-3.1-70b-tp8 --n 1,4,16 --name carveout-$tab-$co --out "$OUT" 2>&1 | grep "^|" | tail -9
    done; done ;;
  chain)
    # (session 24 ran its first part, gpt-oss-20b's step with and without the shipped bucket-16 rows, and dropped
    # them: docs/benchmarks/session24/gptoss)
    for tab in retuned shipped; do for c in 6144x4096,4096x4096,28672x4096,4096x14336 1280x8192,8192x1024,7168x8192,8192x3584; do
      echo "== $tab table, chain $c" | tee -a "$OUT/chain.log"
      env $([ $tab = retuned ] && echo JITGEMM_NV_TUNING=docs/benchmarks/session22/retune/retuned-table.json) JITGEMM_TUNED=0 \
        timeout -s INT $(budget 100) python3 tools/chain_probe.py --chain $c --n 1,4,16 2>&1 | tee -a "$OUT/chain.log"
    done; done ;;
  w4occ)
    rm -rf /tmp/w4v /tmp/w4occ && mkdir -p /tmp/w4occ && python3 tools/w4_variants.py /tmp/w4v >/dev/null || return 1
    # one kernel cache for every tree (a kernel's key hashes its source closure: a variant compiles only the 4-bit
    # kernels it changes) and no precompile: `aot` would build all 386 4-bit instances a tree, the bench compiles the
    # few dozen its steps take (its first run a tree: 110 s; the second base run finds them compiled)
    for v in base cap80 cap64 prefetch base; do
      dir=$PWD; [ $v != base ] && dir=/tmp/w4v/$v
      ( cd "$dir" && JITGEMM_TUNED=0 timeout -s INT $(budget 110) python3 -m jitgemm bench --group model \
          --dtype ${DTYPES:-bf16,w4-q4_min,w4-q4_sym} --models ${MODELS:-llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b} \
          --n ${NS:-1,4,16} --no-plot --name $v-$SECONDS --out /tmp/w4occ 2>&1 | grep -E "^\| w4" | sed "s/^/$v /" )
    done
    for v in cap80 cap64 prefetch; do
      ( cd /tmp/w4v/$v && timeout -s INT $(budget 80) python3 -m pytest -q -m gpu tests/test_gpu_w4.py \
          2>&1 | tail -2 | sed "s/^/$v tests: /" | tee -a /tmp/w4occ/tests.log )
    done
    tar -C /tmp -czf "$OUT/w4occ.tgz" w4occ ;;
  hf) timeout -s INT $(budget 560) python3 tools/hf_profile.py 2>&1 | tee "$OUT/hf-profile.log" | tail -80 ;;
  torchcall)
    timeout -s INT $(budget 90) python3 -m pytest -q -m gpu tests/test_gpu_streams.py tests/test_gpu_skinny.py \
      -k "torch or stream or graph" 2>&1 | tee "$OUT/gpu-torch-tests.log" | tail -3
    timeout -s INT $(budget 150) python3 tools/torch_call_probe.py inference_mode 2>&1 | tee "$OUT/torch-call-probe.log" \
      | grep "^|\|^NVIDIA"
    timeout -s INT $(budget 150) python3 examples/hf_decode.py --json "$OUT/hf-decode.json" 2>&1 | tee "$OUT/hf-decode.log" \
      | tail -22
    timeout -s INT $(budget 240) python3 -m jitgemm bench --group overhead --label "${LABEL:-after}" \
      --compare docs/benchmarks/session15-h100/overhead.json --out "$OUT" 2>&1 | tee "$OUT/overhead.log" | tail -45 ;;
  cold)
    timeout -s INT $(budget 90) python3 -m pytest -q -m gpu tests/test_gpu_siblings.py 2>&1 | tee "$OUT/gpu-siblings.log" | tail -3
    # 16 rounds: session 28's H100 host spread one way's decode call over 0.73-1.76 s, and best of 3 ranked nothing
    timeout -s INT $(budget 260) python3 examples/hf_decode.py --fuse-siblings both --runs ${RUNS:-16} \
      --json "$OUT/hf-decode.json" 2>&1 | tee "$OUT/hf-decode.log" | tail -28
    timeout -s INT $(budget 120) python3 tools/cold_call_probe.py 2>&1 | tee "$OUT/cold-call-probe.log" | grep "^|\|^LeanRoute" ;;
  fp8)
    timeout -s INT $(budget 280) python3 -m jitgemm bench --group model --dtype fp8,fp8-channel,w8a16 --name model-fp8 --out "$OUT" \
      2>&1 | tee "$OUT/model-fp8.log" | tail -40
    timeout -s INT $(budget 280) python3 -m jitgemm bench --group broad --dtype fp8,fp8-channel,w8a16 --n 1,4,16 --name broad-fp8 \
      --no-plot --out "$OUT" 2>&1 | tee "$OUT/broad-fp8.log" | tail -30 ;;
  w4sweep)
    timeout -s INT $(budget 560) python3 tools/w4_sweep.py --out "$OUT/w4-sweep.json" --table "$OUT" --budget $(( $(budget 560) - 60 )) \
      2>&1 | tee "$OUT/w4-sweep.log" | tail -70 ;;
  w4)
    # the 4-bit tests, unless the suite in this call ran them already
    [[ " ${steps[*]} " == *" suite "* && ( ${#files[@]} -eq 0 || " ${files[*]} " == *test_gpu_w4* ) ]] \
      || timeout -s INT $(budget 200) python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 | tee "$OUT/gpu-w4.log" | tail -15
    timeout -s INT $(budget 200) python3 -m jitgemm bench --dtype w4-q4_sym,w4-mxfp4,w4-q4_min --n 1,4,16 --name decode-w4 \
      --no-plot --out "$OUT" 2>&1 | tee "$OUT/decode-w4.log" | tail -30
    timeout -s INT $(budget 180) python3 -m jitgemm bench --group model --dtype bf16,w4-q4_sym,w4-mxfp4 --models llama-3.1-8b \
      --n 1,4,16 --name model-w4 --out "$OUT" 2>&1 | tee "$OUT/model-w4.log" | tail -30 ;;
  tp)
    export NCCL_NVLS_ENABLE=0
    timeout -s INT $(budget 200) python3 -m pytest -q -m gpu tests/test_parallel.py 2>&1 | tee "$OUT/gpu-parallel.log" | tail -15
    timeout -s INT $(budget 300) python3 -m jitgemm bench --group tp --out "$OUT" 2>&1 | tee "$OUT/tp.log" | tail -20 ;;
  smollm2)
    cat .carry/smollm2.gguf.a .carry/smollm2.gguf.b > /tmp/smollm2.gguf
    [ "$(sha256sum < /tmp/smollm2.gguf | cut -d' ' -f1)" = "$(cat .carry/smollm2.gguf.sha256)" ] \
      || { echo "the reassembled GGUF does not match its sha256: carry both parts again" >&2; return 1; }
    python3 -c 'import gguf' || { echo "no gguf package: carry its wheel in .whl/" >&2; return 1; }
    for w in q4 16bit; do
      timeout -s INT $(budget 250) python3 examples/smollm2_decode.py --gguf /tmp/smollm2.gguf --weights $w --tokens 32 2>&1 \
        | tee "$OUT/smollm2-$w.log" | tail -25
    done ;;
  sanitize)
    precompile
    SANITIZE_LOGS="$OUT/sanitize" TOOLS=memcheck timeout -s INT $(budget 570) bash tools/sanitize.sh --only w4 --only w4-experts --only fp8 \
      --launches 2 2>&1 | tail -20 ;;
  pdl)
    # the same process settings but for the launch flags: each run its own bench (NOTES.md compares them)
    for v in plain:0:0 pdl:1:0 pdl-prefetch:1:1; do
      IFS=: read -r name p f <<< "$v"
      JITGEMM_PDL=$p JITGEMM_PREFETCH=$f timeout -s INT $(budget 170) python3 -m jitgemm bench --group model \
        --models ${MODELS:-llama-3.1-8b,qwen2.5-7b} ${DTYPES:+--dtype $DTYPES} --n ${NS:-1,4,16} --name model-$name \
        --out "$OUT" 2>&1 | tail -14 || echo "$name: rc=$?"
    done ;;
  minblocks)
    # the same benchmarks from a copy of the tree whose skinny and fp8 kernels carry a minimum of one block
    # per SM (its own cache): if it wins, the change goes into kernels_src with these numbers
    rm -rf /tmp/mb && mkdir -p /tmp/mb && cp -r jitgemm kernels_src /tmp/mb/
    sed -i 's/__launch_bounds__(32 \* WK) JG_CLUSTER_K/__launch_bounds__(32 * WK, 1) JG_CLUSTER_K/' \
      /tmp/mb/kernels_src/nv/skinny.h /tmp/mb/kernels_src/nv/fp8.h
    grep -c "32 \* WK, 1)" /tmp/mb/kernels_src/nv/skinny.h /tmp/mb/kernels_src/nv/fp8.h \
      || { echo "the launch-bounds patch did not apply: kernels_src changed" >&2; return 1; }
    for tree in base mb; do
      dir=$PWD cache=$JITGEMM_CACHE_DIR
      if [ $tree = mb ]; then dir=/tmp/mb cache=/tmp/jgcache-mb; fi
      ( cd "$dir" && export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=$cache
        # 4 benches x (.json, .md): the 8 files a call brings back, so no logs (the tails come back as output)
        timeout -s INT $(budget 130) python3 -m jitgemm bench --group model --models llama-3.1-8b --n 1,4,16 \
          --name model-$tree --out "$OUT" 2>&1 | tail -12 || echo "model-$tree: rc=$?"
        timeout -s INT $(budget 130) python3 -m jitgemm bench --group model --dtype fp8,fp8-channel --models llama-3.1-8b \
          --n 1,16 --name model-fp8-$tree --out "$OUT" 2>&1 | tail -12 || echo "model-fp8-$tree: rc=$?" )
    done ;;
esac
}
for step in "${steps[@]}"; do
  if [ $(( DEADLINE - SECONDS )) -lt 60 ]; then echo "== $step: skipped, $(( DEADLINE - SECONDS )) s left of the call"; continue; fi
  echo "== $step (at ${SECONDS} s)"
  run_step "$step" || echo "== $step: stopped, rc=$?"
done
