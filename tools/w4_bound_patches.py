"""Patches that give one model's 4-bit layers a register bound (a table row's min_blocks), for tools/w4_ab.sh to
measure in the model's step: session 32 found the same bound +5 % on Qwen2.5-7B's step and -3 % on Llama-3.1-8B's,
so a bound is a per-weight choice, measured where it runs.

For each layer of MODEL whose config today (the dispatcher's: its table row or the nearest one) has one slice in
flight (U = 1) and one row tile at N = 1, 4 and 16 (U = 2 lost 15 % under a bound on the 70B TP-8 shard), writes
OUT/<layer>.patch: the table with that layer's weight bounded to the blocks an SM that REGS registers a thread allow
(its row gains min_blocks, or a row with the K order and tiles it ran is added), and OUT/all.patch with every such
layer bounded; then prints the PATCHES= line for tools/w4_ab.sh. A bounded row serves its own weight only
(dispatch._carries), so a patch moves that one layer of the step.

    python tools/w4_bound_patches.py gemma-2-9b /tmp/bp       # then, on the device (carry [".whl"]):
    PATCHES="$(cat /tmp/bp/patches.txt)" MODELS=gemma-2-9b DTYPES=bf16,w4-q4_min NS=1,4,16 ROUNDS=3 bash tools/w4_ab.sh
(the patch files must be inside the working tree the device copies: write OUT under docs/benchmarks/...)."""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jitgemm import dispatch, models, tables  # noqa: E402
from jitgemm.kernels import w4  # noqa: E402

H100 = "NVIDIA H100 80GB HBM3"
TABLE = tables.DATA / "nvidia-h100-80gb-hbm3.json"  # the H100 table the patches edit
BUCKETS = (1, 4, 16)
REGS_PER_SM = 65536


def blocks_for(regs: int, wk: int) -> int:
    """Blocks of 32 WK threads an SM holds at `regs` registers a thread (what __launch_bounds__ then asks for)."""
    return REGS_PER_SM // (regs * 32 * wk)


def boundable(model: str, fmt: str, regs: int, device: str = H100) -> dict:
    """{layer: (m, k, k_order, mt, blocks)} of the model's layers a bound can take (U = 1, one row tile at every
    bucket, at least 2 blocks an SM under the bound, not bounded already)."""
    out = {}
    for name, m, k in models.shapes(model):
        found = dispatch.lookup(f"w4-{fmt}", m, k, device, "sm_90a")
        if found is None or dispatch.bounded_row(found[0]):
            continue  # the heuristic's (no table), or bounded already
        cfgs = [dispatch.row_config(found[0], n, "sm_90a") for n in BUCKETS]
        wk, u, sk = found[0][2]
        if u != 1 or any(c.MT != 1 for c in cfgs) or blocks_for(regs, wk) < 2:
            continue
        out[name.split(".")[-1]] = (m, k, [wk, u, sk], {str(b): 1 for b in BUCKETS}, blocks_for(regs, wk))
    return out


class TableText:
    """A shipped tables file's text, edited line by line (one row a line, as the file is written) so that a patch
    of it moves only the rows it means to: the lines of one family's rows ("skinny", "fp8", or a 4-bit format
    named by itself, "q4_min", or in full, "w4-q4_min") and where the family closes."""

    def __init__(self, text: str, family: str):
        self.lines = text.split("\n")
        if family not in ("skinny", "fp8") and not family.startswith("w4-"):
            family = f"w4-{family}"
        start = self.lines.index(f' "{family}": [')
        self.end = next(i for i in range(start + 1, len(self.lines)) if self.lines[i].startswith(" ]"))
        self.rows = {i: json.loads(self.lines[i].strip().rstrip(",")) for i in range(start + 1, self.end)}

    def weight_row(self, m: int, k: int) -> int | None:
        """The line of the row (M, K)'s weight takes: its own-weight row where a shared row of its shape sits beside
        it (dispatch.nearest_row), else the shape's row; None without one."""
        same = sorted((i for i, r in self.rows.items() if (r["m"], r["k"]) == (m, k)),
                      key=lambda i: not self.rows[i].get("own_weight"))
        return same[0] if same else None

    def put(self, i: int, row: dict) -> None:
        self.rows[i] = row
        self.lines[i] = "  " + json.dumps(row) + ("," if self.lines[i].rstrip().endswith(",") else "")

    def add(self, rows: list) -> None:
        """Rows after the family's last (the file's other lines as they were)."""
        if rows:
            self.lines[self.end - 1] += ","
            self.lines[self.end:self.end] = [",\n".join("  " + json.dumps(r) for r in rows)]
            self.end += 1

    def text(self) -> str:
        return "\n".join(self.lines)


def bounded_text(text: str, fmt: str, layers: dict, model: str, regs: int) -> str:
    """The table file's text with each layer's weight bounded: the row its weight takes edited where it has one
    (same m and k), else a row added after the family's last; every other line as it was."""
    t = TableText(text, fmt)
    note = f"tools/w4_bound_patches.py: {model} at {regs} registers a thread, to measure in its step"
    added = []
    for layer, (m, k, order, mt, blocks) in layers.items():
        i = t.weight_row(m, k)
        if i is not None:
            t.put(i, {**t.rows[i], "min_blocks": {b: blocks for b in t.rows[i]["mt"]}, "note": note})
        else:
            added.append({"name": f"{model}.{layer}", "m": m, "k": k, "k_order": order, "mt": mt,
                          "min_blocks": {b: blocks for b in mt}, "note": note})
    t.add(added)
    return t.text()


def sharers(family: str, m: int, k: int, device: str = H100) -> list[str]:
    """Every model layer whose nearest row is (m, k)'s: what a patch of a shared (16-bit) row moves."""
    out = []
    for model in models.names():
        for name, mm, kk in models.shapes(model):
            found = dispatch.lookup(family, mm, kk, device, "sm_90a")
            if found and tuple(found[0][:2]) == (m, k):
                out.append(name)
    return out


def patch(old: str, new: str, path: str) -> str:
    """A unified diff of one file that `patch -p1` (tools/w4_ab.sh) and `git apply` take."""
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}")
    return "".join(diff)


def write_patches(out: Path, table: Path, texts: dict) -> list[Path]:
    """OUT/<name>.patch of the table file for each {name: its new text}, and the PATCHES= value (name=path from the
    repository root, as tools/w4_ab.sh reads it on the device) in OUT/patches.txt. A table from outside the tree (a
    test's variant of the shipped one) is patched under the shipped table's path."""
    inside = table.resolve().is_relative_to(ROOT)
    rel = (table.resolve() if inside else TABLE).relative_to(ROOT).as_posix()
    old = table.read_text()
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, new in texts.items():
        path = out / f"{name}.patch"
        path.write_text(patch(old, new, rel))
        made.append(path)
    (out / "patches.txt").write_text(" ".join(f"{p.stem}={_from_root(p)}" for p in made) + "\n")
    return made


def _from_root(p: Path) -> str:
    """A patch's path as tools/w4_ab.sh reads it on the device: from the repository root where it is inside."""
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return p.as_posix()


def make(model: str, out: Path, fmt: str = "q4_min", regs: int = 80, table: Path | None = None) -> list[Path]:
    """OUT/<layer>.patch per boundable layer and OUT/all.patch (none when no layer can take a bound); the
    PATCHES= value in OUT/patches.txt."""
    table = table or TABLE
    text = table.read_text()
    layers = boundable(model, fmt, regs)
    chosen = [(layer, {layer: v}) for layer, v in layers.items()] + ([("all", layers)] if len(layers) > 1 else [])
    return write_patches(out, table, {name: bounded_text(text, fmt, c, model, regs) for name, c in chosen})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=models.names())
    ap.add_argument("out", type=Path)
    ap.add_argument("--format", default="q4_min", choices=sorted(w4.TABLE_GROUP))
    ap.add_argument("--regs", type=int, default=80, help="registers a thread the bound allows (default 80: lb6's)")
    args = ap.parse_args()
    made = make(args.model, args.out, args.format, args.regs)
    if not made:
        print(f"{args.model}: no {args.format} layer can take a bound (U = 2, two row tiles, WK 16 or bounded already)")
        return
    for p in made:
        print(p)
    print("PATCHES=\"" + (args.out / "patches.txt").read_text().strip() + "\"")


if __name__ == "__main__":
    main()
