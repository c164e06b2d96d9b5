#!/usr/bin/env bash
# the next session's first device call (carry [".whl"]): an H200 takes its tables (#17, #21: session29/calls/callA.sh,
# then callB.sh in the next call; bound.sh after them); an H100 runs calls/bound.sh: the register-bound change
# (branch s32-bound, the same diff as bound.patch) against main, its GPU tests and memcheck. Land the branch
# (git merge --ff-only s32-bound) if every check passes and Qwen2.5-7B's q4_min step gains without another model
# losing.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $gpu"
if [[ $gpu == *H200* ]]; then bash docs/benchmarks/session29/calls/callA.sh; else bash docs/benchmarks/session32/calls/bound.sh; fi
