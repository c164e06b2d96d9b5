#!/usr/bin/env bash
# compute-sanitizer over every NVIDIA kernel instance the dispatcher can choose (tools/sanitize_driver.py
# launches them on tail shapes, padded pitches and the smallest shapes, and checks every result).
#
#   tools/sanitize.sh                      # memcheck, then racecheck
#   TOOLS="memcheck racecheck synccheck initcheck" tools/sanitize.sh
#   tools/sanitize.sh --only fp8 --launches 2      # arguments go to the driver
#
# Prints one summary line per tool (racecheck's warnings are shown there) and exits non-zero if a tool
# reports any error, if the
# driver finds a wrong result, or if a tool's summary is missing (it did not run to the end).
# Logs: $SANITIZE_LOGS (default: a new temporary directory, printed at the end).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TOOLS=${TOOLS:-"memcheck racecheck"}
LOGS=${SANITIZE_LOGS:-$(mktemp -d -t jitgemm-sanitize-XXXXXX)}
mkdir -p "$LOGS"
if ! command -v compute-sanitizer >/dev/null 2>&1; then
  echo "compute-sanitizer is not on PATH (it ships with the CUDA toolkit: \$CUDA_HOME/bin)" >&2
  exit 2
fi
# one fresh compile cache for all tools: the first tool compiles, the others load the same code
export JITGEMM_CACHE_DIR=${JITGEMM_CACHE_DIR:-$LOGS/cache}

status=0
for tool in $TOOLS; do
  log="$LOGS/$tool.log"
  compute-sanitizer --tool "$tool" --print-limit 50 --error-exitcode 86 \
    "$PY" tools/sanitize_driver.py "$@" >"$log" 2>&1
  rc=$?
  summary=$(grep -E "(ERROR|RACECHECK|SYNCCHECK|INITCHECK) SUMMARY" "$log" | tail -n 1 | sed 's/^=* *//')
  driver=$(grep -E "^driver: " "$log" | tail -n 1)
  errors=$(printf '%s' "$summary" | grep -oE '[0-9]+ errors?' | head -n 1 | grep -oE '[0-9]+')
  verdict=ok
  if [ -z "$summary" ]; then
    verdict="FAILED (no summary: the run did not finish)"
  elif [ "${errors:-0}" != 0 ]; then
    verdict="FAILED (sanitizer errors)"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAILED (exit $rc)"
  fi
  [ "$verdict" = ok ] || status=1
  echo "$tool: $verdict; ${summary:-no summary}; ${driver:-driver: no summary}"
done
echo "logs: $LOGS"
exit $status
