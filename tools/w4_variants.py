"""Experiment (session 24, issue #19): trees whose NVIDIA 4-bit kernel differs in one way each, for an A/B on a GPU
(`bash tools/gpu_session.sh w4occ`). Why: Nsight Compute on an H100 (q4_min G32, 28672 x 4096, N = 1, bf16) read
27 % achieved occupancy at 96 registers a thread, 65 % of DRAM throughput and issue slots 42 % busy, against q4_sym's
38 % / 70 registers / 73 %; and 13 % fewer loop instructions (the biased widening) moved q4_min's steps by < 1 %.
So the loop waits on memory with too few bytes in flight, not on issue. Variants:

- cap80 / cap64: `__launch_bounds__(32 * WK, 65536 / (R * 32 * WK))`, so ptxas keeps each thread within R registers
  (R = 80: 6 blocks of 4 warps an SM against 5; R = 64: 8); ptxas spills 16-20 B at U = 1, more at U = 2 (sm_90a)
- prefetch: each warp asks L2 for its next iteration's weight slices, scales and zero points
  (`prefetch.global.L2`, no registers) before it computes this one, so the next loads find them in L2
- nots / nomma (session 31, idea 6's bounds; WRONG RESULTS: these trees' bench skips its float64 check, never
  ship or test them): q4_min without its token sums' all-ones mma and the minima's FMAs (nots), or with the FMAs
  kept on a fake token sum (nomma): how much of q4_min's time each costs

    python tools/w4_variants.py OUT      # OUT/<variant>/ with jitgemm, kernels_src, tests, pyproject.toml

Each tree compiles with its own kernel cache (the source is part of the cache key)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
W4 = "kernels_src/nv/w4.h"
BOUNDS = "__launch_bounds__(32 * WK, MB) JG_CLUSTER_K(SK) jg_w4_nv("
LOOP = """  for (; k0 + STEP <= K; k0 += kstride) {
    jg_w4_step<T, FMT, GROUP, NT, MT, U, TIGHT>(acc, bound, wrow, srow, arow, xrow, nibbles);"""
PREFETCH = """  for (; k0 + STEP <= K; k0 += kstride) {
    if (k0 + kstride < K) {  // experiment (tools/w4_variants.py): the next iteration's bytes into L2 meanwhile
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int u = 0; u < U; ++u) asm volatile("prefetch.global.L2 [%0];" ::"l"(wrow[i][h] + kstride / 2 + 64 * u));
          asm volatile("prefetch.global.L2 [%0];" ::"l"(srow[i][h] + kstride / GROUP * SB));
          if constexpr (F == JG_Q4_ZP)  // q4_min's minima come with its scales (quant4.scale_records)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(arow[i][h] + kstride / GROUP * AB));
        }
    }
    jg_w4_step<T, FMT, GROUP, NT, MT, U, TIGHT>(acc, bound, wrow, srow, arow, xrow, nibbles);"""


RUNNER = "jitgemm/bench/w4_runner.py"


def cap(regs: int):
    return lambda text: _replace(text, BOUNDS, BOUNDS.replace("(32 * WK, MB)", f"(32 * WK, {65536 // regs} / (32 * WK))"))


def _replace(text: str, old: str, new: str, path: str = W4) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"{path} changed: the text this variant edits is not there once ({old.splitlines()[0]!r})")
    return text.replace(old, new)


TS_MMA = """            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].x, xv[j].y);
            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].z, xv[j].w);"""
FAKE_TS = """            ts[j][0] += __uint_as_float(xv[j].x); ts[j][1] += __uint_as_float(xv[j].y);  // bound: not a sum
            ts[j][2] += __uint_as_float(xv[j].z); ts[j][3] += __uint_as_float(xv[j].w);"""
MIN_FMA = "if constexpr (F == JG_Q4_MIN) acc[i][j][r] = __fmaf_rn(ts[j][r], o[r / 2], acc[i][j][r]);"
CHECK = '        raise AssertionError(f"{label}: wrong result (max err {err.max():.3g})")'
UNCHECKED = "        return float('nan')  # speed bound (tools/w4_variants.py): wrong by design, never refused here"


def unchecked(edit):
    """A speed bound: the kernel's edit, and the bench's float64 check in that tree no longer refusing its results."""
    return {W4: edit, RUNNER: lambda text: _replace(text, CHECK, UNCHECKED, RUNNER)}


# each variant: the files it edits (paths from the root) and each one's edit
VARIANTS = {"cap80": {W4: cap(80)}, "cap64": {W4: cap(64)},
            "prefetch": {W4: lambda text: _replace(text, LOOP, PREFETCH)},
            "nots": unchecked(lambda text: _replace(_replace(text, TS_MMA, ""), MIN_FMA, "")),
            "nomma": unchecked(lambda text: _replace(text, TS_MMA, FAKE_TS))}


def make(out: Path, names=tuple(VARIANTS)) -> list[Path]:
    """OUT/<name>/ for each variant: a copy of the package, kernels, tests and pyproject with its edits applied."""
    made = []
    for name in names:
        tree = out / name
        if tree.exists():
            shutil.rmtree(tree)
        for part in ("jitgemm", "kernels_src", "tests"):
            shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
        for rel, edit in VARIANTS[name].items():
            path = tree / rel
            path.write_text(edit(path.read_text()))
        made.append(tree)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"--only: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    for tree in make(args.out, names):
        print(tree)


if __name__ == "__main__":
    main()
