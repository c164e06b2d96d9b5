"""Patches that give one model's layers another row-tile count (MT: 16-row weight tiles a block) at one N bucket, for
tools/w4_ab.sh to time in the model's step. MT is the one knob of a table row that does not touch a token's bits (a
row's K terms are summed in the order (WK, U, SK) fixes; MT only says how many rows a block takes, so how often it
reads the tokens from L2: at N = 16 a 16-bit block of one row tile reads as many token bytes as weight bytes, a 4-bit
one four times as many). The shipped MTs were chosen by timing each kernel alone, which picked rows that lose in a
step's chain for the K order (NOTES idea 10); this asks the same of MT, in the step.

For each layer of MODEL and each bucket of --buckets, OUT/<layer>b<bucket>mt<MT>.patch for each MT of --mts but the
one it runs there, and OUT/allb<bucket>mt<MT>.patch with every layer that can take it; then the PATCHES= line. 4-bit
layers take the change as an own-weight row (tables: own_weight), so a patch moves that weight only; a 16-bit
(skinny) row is shared by the shapes nearest to it, so its patch edits the row itself and says in its note which other
models' layers it moves. A layer under a register bound (4-bit min_blocks) is left out (its bound was measured with
its tiles), and so is an MT whose instances spill (NVRTC, sm_90a: checked here, on the CPU, with --check).

    python tools/mt_patches.py llama-3.1-70b-tp8 docs/benchmarks/sessionNN/mt70 --family skinny --buckets 16 --check
    PATCHES="$(cat docs/benchmarks/sessionNN/mt70/patches.txt)" CHECKS=0 MODELS=llama-3.1-70b-tp8 DTYPES=bf16 \\
      NS=1,4,16 ROUNDS=2 bash tools/w4_ab.sh                      # on the device, carrying [".whl"]
(OUT must be inside the working tree the device copies.)"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from jitgemm import dispatch, models  # noqa: E402
from jitgemm.kernels import skinny, w4  # noqa: E402
from w4_bound_patches import H100, TABLE, TableText, sharers, write_patches  # noqa: E402

ARCH = "sm_90a"
DTYPES = ("bfloat16", "float16")
MTS = (1, 2)  # the skinny family's NV_CONFIGS; MT 4 won no decode-suite shape alone (skinny.py)


def layers_of(model: str, family: str, device: str = H100) -> dict:
    """{layer: (m, k, the row the dispatcher gives it)} of the model's layers that have a table row and no register
    bound."""
    out = {}
    for name, m, k in models.shapes(model):
        found = dispatch.lookup(family, m, k, device, ARCH)
        if found is None or (family != "skinny" and dispatch.bounded_row(found[0])):
            continue
        out[name[len(model) + 1:]] = (m, k, found[0])
    return out


def instances(family: str, order, mt: int, bucket: int) -> list:
    """The kernel instances a row with K order `order` and `mt` row tiles runs at N = bucket, both 16-bit dtypes."""
    wk, u, sk = order
    cfg = skinny.NvConfig(mt, wk, u, sk)
    if family == "skinny":
        return [cfg.instance(d, bucket) for d in DTYPES]
    fmt = family[len("w4-"):]
    group = w4.TABLE_GROUP[fmt]
    cfg = w4.token_tiling(cfg, fmt, bucket)
    return [w4.nv_instance(cfg, d, fmt, group, bucket, normal) for d in DTYPES for normal in w4.scale_decodes(fmt)]


def spills(insts: list) -> dict:
    """{instance name: spill bytes} of each instance that spills (or fails to compile: -1) at sm_90a."""
    from jitgemm import precompile
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, _sym, res, _fresh, err in precompile.results(ARCH, d, insts, os.cpu_count() or 2):
            if err or not res:
                out[name] = -1
            elif res["spill_stores"] or res["stack_frame"]:
                out[name] = res["spill_stores"] or res["stack_frame"]
    return out


def retiled_text(text: str, family: str, edits: list, model: str, note: str) -> str:
    """The table file's text with each (layer, m, k, row, bucket, mt) of `edits` applied: a 4-bit weight's own-weight
    row (edited where it has one, else added after the family's last), the 16-bit row itself; other lines as they
    were."""
    t = TableText(text, family)
    added = []
    for layer, m, k, row, bucket, mt in edits:
        i = t.weight_row(*row[:2]) if family == "skinny" else t.weight_row(m, k)
        if family == "skinny" or (i is not None and t.rows[i].get("own_weight")):
            t.put(i, {**t.rows[i], "mt": {**t.rows[i]["mt"], str(bucket): mt}, "note": note})
        else:
            mts = {**{str(b): v for b, v in row[3].items()}, str(bucket): mt}
            added.append({"name": f"{model}.{layer}.step", "m": m, "k": k, "k_order": list(row[2]), "mt": mts,
                          "own_weight": True, "note": note})
    t.add(added)
    return t.text()


def patch_name(layer: str, bucket: int, mt: int) -> str:
    """A tools/w4_ab.sh tree name: letters and digits only (it refuses '-'; ab_summary reads names up to one)."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', layer)}b{bucket}mt{mt}"


def make(model: str, out: Path, family: str = "skinny", buckets=(16,), mts=MTS, check: bool = False,
         table: Path | None = None) -> list[Path]:
    """The patches (see the module's text); with check, MTs whose instances spill are left out and said."""
    table = table or TABLE
    text = table.read_text()
    layers = layers_of(model, family)
    plans = {}  # name: [edits]
    for bucket in buckets:
        for mt in mts:
            every = []
            for layer, (m, k, row) in layers.items():
                now = dispatch.row_config(row, bucket, ARCH).MT
                if mt == now or (mt > 1 and row[2][0] == 16 and family != "skinny"):
                    continue  # two 4-bit row tiles do not fit 512-thread blocks' 128 registers (w4.token_tiling)
                edit = (layer, m, k, row, bucket, mt)
                plans[patch_name(layer, bucket, mt)] = [edit]
                every.append(edit)
            if len(every) > 1:
                plans[patch_name("all", bucket, mt)] = every
    if check:
        per_plan = {name: [i for *_, row, b, mt in edits for i in instances(family, row[2], mt, b)]
                    for name, edits in plans.items()}
        bad = spills(list({i.name: i for insts in per_plan.values() for i in insts}.values()))
        for name, insts in per_plan.items():
            hit = [i.name for i in insts if i.name in bad]
            if hit:
                print(f"{name}: left out, {hit[0]} spills {bad[hit[0]]} B" if bad[hit[0]] > 0
                      else f"{name}: left out, {hit[0]} does not compile")
                del plans[name]
    texts = {}
    for name, edits in plans.items():
        moved = sorted({s for *_, row, _b, _mt in edits for s in sharers(family, row[0], row[1])}) \
            if family == "skinny" else [f"{model}.{e[0]}" for e in edits]
        note = (f"tools/mt_patches.py: {name} for {model}'s step; moves "
                + ", ".join(moved))
        texts[name] = retiled_text(text, family, edits, model, note)
    return write_patches(out, table, texts)


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers, got {s!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=models.names())
    ap.add_argument("out", type=Path)
    ap.add_argument("--family", default="skinny", choices=["skinny"] + [f"w4-{f}" for f in sorted(w4.TABLE_GROUP)])
    ap.add_argument("--buckets", type=_ints, default=(16,), help="N buckets to retile (default 16)")
    ap.add_argument("--mts", type=_ints, default=MTS, help="row tiles a block to try (default 1,2)")
    ap.add_argument("--check", action="store_true", help="leave out MTs whose instances spill (compiles with NVRTC)")
    args = ap.parse_args()
    bad = [b for b in args.buckets if b not in (1, 4, 8, 16)] + [v for v in args.mts if v not in (1, 2, 4)]
    if bad:
        ap.error(f"--buckets take 1, 4, 8, 16 and --mts 1, 2, 4; got {bad}")
    made = make(args.model, args.out, args.family, args.buckets, args.mts, args.check)
    for p in made:
        print(p)
    print(f"{len(made)} patches; PATCHES=\"" + (args.out / "patches.txt").read_text().strip() + "\"")


if __name__ == "__main__":
    main()
