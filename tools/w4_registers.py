"""Registers, spills and blocks an SM of the NVIDIA 4-bit kernel instances, on a machine without a GPU (NVRTC only),
for this tree and optionally another one (`--base DIR`: a `git archive` of another commit, or a variant tree).

Why (session 31, docs/benchmarks/NOTES.md): the 4-bit loop waits on memory, so its speed follows the warps an SM
holds, i.e. its registers: q4_min G32 without its minima term held 70 registers and 7 blocks of 128 threads an SM
against 92 and 5, and ran 12 % faster; a kernel change that keeps an instance's blocks an SM moved it by about 1 %.
So a 4-bit kernel change should show this table before it takes device time.

    python tools/w4_registers.py 'jg_w4_nv<jg_bf16, 2, 32,'                 # q4_min G32, bf16 tokens
    python tools/w4_registers.py 'jg_w4_nv<jg_bf16, 2, 32,' --base /tmp/base  # against another tree
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGS_PER_SM, MAX_WARPS, MAX_BLOCKS = 65536, 64, 32  # sm_90 (and sm_80: the same three limits)


def blocks_per_sm(registers: int, threads: int) -> int:
    """Blocks of `threads` an SM holds at `registers` a thread (registers are given out 8 a thread at a time; no
    shared-memory limit: the 4-bit kernels' few KB never bind)."""
    if registers < 1 or threads < 32 or threads % 32:
        raise ValueError(f"registers must be >= 1 and threads a multiple of 32, got {registers}, {threads}")
    per_thread = -(-registers // 8) * 8
    return min(REGS_PER_SM // (per_thread * threads), MAX_WARPS // (threads // 32), MAX_BLOCKS)


def threads_of(name: str) -> int:
    """A jg_w4_nv instance's threads a block: 32 WK (its template arguments: T, FMT, GROUP, NT, MT, WK, U, SK and,
    for a table row's register bound, MB)."""
    args = name[name.index("<") + 1:name.rindex(">")].split(",")
    if len(args) not in (8, 9):
        raise ValueError(f"not a jg_w4_nv instance name: {name!r}")
    return 32 * int(args[5])


def measure(pattern: str, arch: str) -> dict:
    """{instance: [registers, spill bytes, stack bytes] or the compile error} for this process's jitgemm."""
    from jitgemm import dispatch, precompile
    insts = [i for i in dispatch.all_w4_instances("cuda") if pattern in i.name]
    if not insts:
        raise SystemExit(f"no 4-bit instance name contains {pattern!r}")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, _sym, res, _fresh, err in precompile.results(arch, d, insts, os.cpu_count() or 2):
            out[name] = str(err) if err or not res else [res["registers"], res["spill_stores"], res["stack_frame"]]
    return out


def measure_in(tree: Path, pattern: str, arch: str) -> dict:
    """measure() with another tree's jitgemm and kernels (a subprocess whose import path starts there)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import w4_registers as w; " \
           f"print(json.dumps(w.measure({pattern!r}, {arch!r})))"
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"--base {tree}: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def cell(r, threads: int) -> str:
    if isinstance(r, str):
        return f"error: {r[:60]}"
    regs, spill, stack = r
    extra = f", spills {spill} B" if spill else ""
    extra += f", stack {stack} B" if stack else ""
    b = blocks_per_sm(regs, threads)
    return f"{regs} ({b} block{'' if b == 1 else 's'}{extra})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pattern", help="a part of the instance names, e.g. 'jg_w4_nv<jg_bf16, 2, 32,'")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--base", type=Path, help="another tree (with jitgemm/ and kernels_src/) to compare with")
    args = ap.parse_args()
    if args.base is not None and not (args.base / "jitgemm").is_dir():
        ap.error(f"--base must be a tree with jitgemm/ and kernels_src/, got {args.base}")
    here = measure(args.pattern, args.arch)
    base = measure_in(args.base.resolve(), args.pattern, args.arch) if args.base else {}
    head = "| instance | registers (blocks an SM) |" + (" base |" if base else "")
    print(head + "\n|---|---|" + ("---|" if base else ""))
    for name in sorted(here):
        t = threads_of(name)
        row = f"| `{name}` | {cell(here[name], t)} |"
        if base:
            row += f" {cell(base[name], t) if name in base else 'absent'} |"
        print(row)


if __name__ == "__main__":
    main()
