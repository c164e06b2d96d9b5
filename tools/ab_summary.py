"""Trees against one another from `bench --group model` runs in alternating rounds (tools/w4_ab.sh): per model, N and
dtype, each tree's mean step time and its speed against the base tree (base mean / tree mean), with the rounds'
range, so a change is read off the same rounds on the same GPU.

    python tools/ab_summary.py DIR [--base base] [--dtype w4-q4_min]

DIR holds the runs' JSON files, named `<tree>-<anything>.json` (the tree is the name up to its first '-')."""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def collect(folder: Path, dtype: str | None = None) -> dict:
    """{(model, N, dtype): {tree: [step ms of each round]}} from folder's `<tree>-*.json` bench files."""
    found = defaultdict(lambda: defaultdict(list))
    files = sorted(folder.glob("*.json"))
    if not files:
        raise SystemExit(f"no bench JSON files in {folder}")
    for f in files:
        tree = f.name.split("-", 1)[0]
        data = json.loads(f.read_text())
        if not isinstance(data, dict) or "rows" not in data:
            continue  # not a bench file (e.g. a tables file beside them)
        for r in data["rows"]:
            if dtype is None or r["dtype"] == dtype:
                found[(r["model"], r["N"], r["dtype"])][tree].append(float(r["jitgemm_ms"]))
    return found


def table(found: dict, base: str) -> list[str]:
    """Markdown rows: model, N, dtype, base mean, then per other tree its mean, speed and rounds."""
    trees = sorted({t for per in found.values() for t in per} - {base})
    if not any(base in per for per in found.values()):
        raise SystemExit(f"no run of the base tree {base!r} (trees: {', '.join(trees) or 'none'})")
    head = f"| model | N | dtype | {base} ms | " + " | ".join(f"{t} ms | {t} speed (rounds)" for t in trees) + " |"
    rows = [head, "|" + "---|" * (4 + 2 * len(trees))]
    for (model, n, dt), per in sorted(found.items()):
        if base not in per:
            continue
        b = statistics.mean(per[base])
        cells = []
        for t in trees:
            if t not in per:
                cells += ["-", "-"]
                continue
            m = statistics.mean(per[t])
            speeds = sorted(b / x for x in per[t])
            cells += [f"{m:.4f}", f"{b / m:.4f} ({speeds[0]:.4f}-{speeds[-1]:.4f}, {len(per[t])})"]
        rows.append(f"| {model} | {n} | {dt} | {b:.4f} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--base", default="base", help="the tree the others are read against (default: base)")
    ap.add_argument("--dtype", help="only this dtype's rows (e.g. w4-q4_min)")
    args = ap.parse_args()
    print("\n".join(table(collect(args.folder, args.dtype), args.base)))


if __name__ == "__main__":
    main()
