#!/usr/bin/env bash
# A 4-bit kernel change against other trees in one device call (NOTES.md, sessions 16-17, 30-31): each tree's model
# steps in ROUNDS alternating rounds (so a host's drift hits every tree alike), the rounds read against this tree by
# tools/ab_summary.py, then each other tree's 4-bit GPU tests and memcheck over its 4-bit instances, each step only
# while the call's deadline (DL seconds) lasts, the results tarred to $OUT/ab.tgz after every step.
# Trees: this one ("base"); each folder under .carry/ that holds a jitgemm/ (carried, git-ignored; e.g.
#   mkdir -p .carry/old && git archive <rev> jitgemm kernels_src tests tools pyproject.toml | tar -x -C .carry/old);
# and one per PATCHES entry "name=file.patch": this tree's jitgemm, kernels_src, tests, tools and pyproject.toml
# copied to /tmp/ab-trees/name and the patch applied (patch -p1). Run with the device tool, carrying [".whl", ".carry"]:
#   PATCHES="after=docs/benchmarks/session31/minafter.patch" DTYPES=bf16,w4-q4_min NS=1,4,16 \
#     MODELS=llama-3.1-8b,llama-3.1-70b-tp8,qwen2.5-7b ROUNDS=3 DL=540 bash tools/w4_ab.sh
# DTYPES (default bf16 and the four 4-bit formats), MODELS (llama-3.1-8b), NS (1,16), ROUNDS (2), DL (540; CAP is
# its old name), CHECKS (1: the other trees' GPU tests and memcheck; 0: none). One kernel cache serves every tree (a
# kernel's key hashes its source). JITGEMM_TUNED=0: every tree reads the shipped table. AB_DIR (/tmp/ab) and
# TREES_DIR (/tmp/ab-trees) say where the results and the patched trees go.
set -uo pipefail
SECONDS=0; DL=${DL:-${CAP:-540}}
root=$PWD
left() { local l=$(( DL - SECONDS )); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null \
  || echo "no carried wheels installed (.whl/): platformdirs and gguf may be missing"
export PYTHONPATH=/tmp/site:. JITGEMM_CACHE_DIR=${JITGEMM_CACHE_DIR:-/tmp/jgcache} PYTHONUNBUFFERED=1 JITGEMM_TUNED=0
OUT=${OUT:-/tmp/out}; ab=${AB_DIR:-/tmp/ab}; trees=${TREES_DIR:-/tmp/ab-trees}
mkdir -p "$OUT"; rm -rf "$ab" "$trees"; mkdir -p "$ab" "$trees"
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); echo "GPU: $gpu" | tee "$ab/gpu.txt"
save() { tar -C "$(dirname "$ab")" -czf "$OUT/ab.tgz" "$(basename "$ab")"; }
names=(base) dirs=("$root")
for t in .carry/*/; do
  [ -d "$t/jitgemm" ] || continue
  t=${t%/}; n=${t##*/}; n=${n//-/_}  # no '-' (ab_summary reads a tree's name up to it), and "base" is this tree
  [ "$n" = base ] && n=carry_base
  names+=("$n"); dirs+=("$root/$t")
done
for spec in ${PATCHES:-}; do
  name=${spec%%=*} file=${spec#*=}
  if [[ $spec != *=* || -z $name || $name == *-* || ! -f $file ]]; then
    echo "PATCHES entry '$spec': must be name=file.patch with a name without '-' and a patch file that exists" >&2; exit 2
  fi
  mkdir -p "$trees/$name" && cp -r jitgemm kernels_src tests tools pyproject.toml "$trees/$name/" \
    && (cd "$trees/$name" && patch -s --batch -p1 < "$root/$file") || { echo "patch $file does not apply here" >&2; exit 2; }
  names+=("$name"); dirs+=("$trees/$name")
done
echo "trees: ${names[*]}"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for i in "${!names[@]}"; do
    [ $(( DL - SECONDS )) -lt 60 ] && { echo "round $round, ${names[$i]}: skipped (under a minute left)"; continue; }
    ( cd "${dirs[$i]}" && PYTHONPATH=/tmp/site:. timeout -s INT "$(left 150)" python3 -m jitgemm bench --group model \
        --dtype "${DTYPES:-bf16,w4-q4_sym,w4-mxfp4,w4-q4_min,w4-q4_zp}" --models "${MODELS:-llama-3.1-8b}" \
        --n "${NS:-1,16}" --no-plot --name "${names[$i]}-r$round" --out "$ab" 2>&1 | grep -E "^\| w4" | sed "s/^/${names[$i]} /" )
    echo "[$SECONDS s]"; save
  done
done
python3 tools/ab_summary.py "$ab" | tee "$ab/summary.md"
arch=$(python3 -c 'import jitgemm.runtime.backend as b; d = b.default_backend(); print(d.device_info(d.current_device()).arch)' \
  2>/dev/null) || arch=sm_90a
if [ "${CHECKS:-1}" = 1 ]; then
  for i in "${!names[@]}"; do
    [ "$i" = 0 ] && continue  # base: its own session's GPU suite covers it
    [ $(( DL - SECONDS )) -lt 60 ] && { echo "${names[$i]} checks: skipped (under a minute left)"; continue; }
    ( cd "${dirs[$i]}" && PYTHONPATH=/tmp/site:. timeout -s INT "$(left 120)" python3 -m pytest -q -m gpu tests/test_gpu_w4.py 2>&1 \
        | tail -2 | sed "s/^/${names[$i]} tests: /" | tee -a "$ab/w4-tests.log"
      PYTHONPATH=/tmp/site:. timeout -s INT "$(left 90)" python3 -m jitgemm aot --arch "${arch%%:*}" --jobs "$(nproc)" \
        --out "$JITGEMM_CACHE_DIR" >/dev/null
      PATH=$PATH:/usr/local/cuda/bin PYTHONPATH=/tmp/site:. SANITIZE_LOGS="$ab/san-${names[$i]}" TOOLS=memcheck \
        timeout -s INT "$(left 90)" bash tools/sanitize.sh --only w4 --launches 1 2>&1 | tail -2 | sed "s/^/${names[$i]} /" )
    echo "[$SECONDS s]"; save
  done
fi
save; echo "done at $SECONDS s"
