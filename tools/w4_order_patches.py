"""Patches that give one layer of a model another K order [WK, U, SK] for tools/w4_ab.sh to time in the model's step:
kernels timed alone picked K orders that lose in a chain (NOTES idea 10), and session 33's step-level search moved
the 70B TP-8 shard's o weight to [4, 1, 1] (+0.8-1.0 % of its q4_min step at N <= 4). Each patch writes the order
as an own-weight row (tables: own_weight), the form a winner ships in, so the patched tree moves that one weight
and nothing nearest to it; a layer under a register bound (min_blocks) is left out (its bound was measured with its
order). `--format skinny` does the same for the 16-bit family, whose rows have no own-weight form: its patch edits the
row the layer takes, which moves the shapes nearest to it too (the note names the models' layers among them; a WK
other than the table's common one serves its own shape only, so they may go to the next row: dispatch._carries).

    python tools/w4_order_patches.py qwen2.5-7b docs/benchmarks/sessionNN/op     # then, on the device:
    PATCHES="$(cat docs/benchmarks/sessionNN/op/patches.txt)" CHECKS=0 MODELS=qwen2.5-7b DTYPES=w4-q4_min \\
      NS=1,4,16 ROUNDS=2 bash tools/w4_ab.sh
(OUT must be inside the working tree the device copies. Table-only patches: every instance they can pick is one
`aot` builds and memcheck runs, so CHECKS=0 is safe. Each tree takes ~8 s a round for one model's q4_min step.)"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from jitgemm import dispatch, models  # noqa: E402
from jitgemm.kernels import w4  # noqa: E402
from w4_bound_patches import BUCKETS, H100, TABLE, TableText, sharers, write_patches  # noqa: E402

# WK warps x U slices in flight; split K (SK = 2) lost 6-18 % on every 70B TP-8 weight (session 33): ask for it
ORDERS = tuple((wk, u, 1) for wk in (4, 8, 16) for u in (1, 2))
# the 16-bit family (--format skinny): its NV_CONFIGS' U is 2 or 4 (32-element steps in flight)
ORDERS_16 = tuple((wk, u, 1) for wk in (4, 8, 16) for u in (2, 4))


def family_of(fmt: str) -> str:
    """The tables family of --format: "skinny" (16-bit weights) or a 4-bit format's "w4-<format>"."""
    return fmt if fmt == "skinny" else f"w4-{fmt}"


def layers_of(model: str, fmt: str, device: str = H100) -> dict:
    """{layer: (m, k, (WK, U, SK), {bucket: MT})} of the model's layers as the dispatcher runs them today, but those
    under a register bound; a 16-bit layer's row (m, k) is the nearest row's, which the patch edits."""
    out = {}
    for name, m, k in models.shapes(model):
        found = dispatch.lookup(family_of(fmt), m, k, device, "sm_90a")
        if found is None or (fmt != "skinny" and dispatch.bounded_row(found[0])):
            continue  # the heuristic's (no table), or bounded
        if fmt == "skinny":
            m, k = found[0][:2]
            out[name[len(model) + 1:]] = (m, k, tuple(found[0][2]), dict(found[0][3]))
            continue
        cfgs = {b: dispatch.row_config(found[0], b, "sm_90a") for b in BUCKETS}
        out[name[len(model) + 1:]] = (m, k, tuple(found[0][2]), {b: c.MT for b, c in cfgs.items()})
    return out


def ordered_text(text: str, fmt: str, m: int, k: int, order, mt: dict, name: str, note: str) -> str:
    """The table file's text with (M, K)'s weight on `order`: its own-weight row edited where it has one, else an
    own-weight row added after the family's last; every other line as it was. A WK = 16 order takes one row tile
    (two did not fit 512-thread blocks' 128 registers: kernels/w4.token_tiling). A 16-bit (skinny) row has no
    own-weight form: its row, shared by the shapes nearest to it, is edited in place (the note names them)."""
    t = TableText(text, family_of(fmt))
    if fmt == "skinny":
        i = t.weight_row(m, k)
        t.put(i, {**t.rows[i], "k_order": list(order), "note": note})
        return t.text()
    mts = {str(b): (1 if order[0] == 16 else v) for b, v in mt.items()}
    row = {"name": name, "m": m, "k": k, "k_order": list(order), "mt": mts, "own_weight": True, "note": note}
    i = t.weight_row(m, k)
    if i is not None and t.rows[i].get("own_weight"):
        t.put(i, row)
    else:
        t.add([row])
    return t.text()


def patch_name(layer: str, order) -> str:
    """A tools/w4_ab.sh tree name: letters and digits only (it refuses '-'; ab_summary reads names up to one)."""
    return re.sub(r"[^A-Za-z0-9]", "", layer) + "".join(str(v) for v in order)


def make(model: str, out: Path, fmt: str = "q4_min", orders=None, only=None, table: Path | None = None) -> list[Path]:
    """OUT/<layer><WK><U><SK>.patch for each of the model's layers (or those in `only`) and each order in `orders`
    but the one it runs (default ORDERS, or ORDERS_16 for skinny); the PATCHES= value in OUT/patches.txt."""
    table = table or TABLE
    text = table.read_text()
    orders = ORDERS_16 if orders is None and fmt == "skinny" else orders or ORDERS
    layers = layers_of(model, fmt)
    unknown = set(only or ()) - set(layers)
    if unknown:
        raise SystemExit(f"--layers: {', '.join(sorted(unknown))} not among {model}'s {fmt} layers that can take "
                         f"another order ({', '.join(layers)})")
    texts = {}
    for layer, (m, k, now, mt) in layers.items():
        if only and layer not in only:
            continue
        for order in orders:
            if tuple(order) == now:
                continue
            note = f"tools/w4_order_patches.py: {model}'s {layer} on {list(order)} (runs {list(now)}), to time in its step"
            if fmt == "skinny":
                note += "; the row served " + ", ".join(sharers("skinny", m, k))
            texts[patch_name(layer, order)] = ordered_text(text, fmt, m, k, order, mt, f"{model}.{layer}.step", note)
    return write_patches(out, table, texts)


def _order(s: str) -> tuple:
    try:
        wk, u, sk = (int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a K order is WK,U,SK (three ints, e.g. 4,1,1), got {s!r}") from None
    if wk not in (4, 8, 16) or u not in (1, 2, 4) or sk not in (1, 2, 4):
        raise argparse.ArgumentTypeError(f"a K order takes WK in 4/8/16, U in 1/2/4, SK in 1/2/4, got {s!r}")
    return wk, u, sk


def check_orders(fmt: str, orders) -> None:
    """A family's own K orders only: 4-bit U 1 / 2 and SK 1 / 2 (kernels/w4.py), 16-bit U 2 / 4 (skinny.NV_CONFIGS)."""
    us, sks = ((2, 4), (1, 2, 4)) if fmt == "skinny" else ((1, 2), (1, 2))
    bad = [o for o in orders if o[1] not in us or o[2] not in sks]
    if bad:
        raise SystemExit(f"--orders {bad}: {fmt} takes U in {'/'.join(map(str, us))} and SK in "
                         f"{'/'.join(map(str, sks))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=models.names())
    ap.add_argument("out", type=Path)
    ap.add_argument("--format", default="q4_min", choices=sorted(w4.TABLE_GROUP) + ["skinny"],
                    help="a 4-bit format, or skinny: the 16-bit family, whose shared row a patch edits in place")
    ap.add_argument("--layers", type=lambda s: s.split(","), help="comma-separated layers (default: every one)")
    ap.add_argument("--orders", nargs="+", type=_order,
                    help="K orders WK,U,SK to try (default: WK 4/8/16 x U 1/2, SK 1; skinny: U 2/4)")
    args = ap.parse_args()
    if args.orders:
        check_orders(args.format, args.orders)
    made = make(args.model, args.out, args.format, args.orders, args.layers)
    for p in made:
        print(p)
    print(f"{len(made)} patches; PATCHES=\"" + (args.out / "patches.txt").read_text().strip() + "\"")


if __name__ == "__main__":
    main()
