"""A device's shipped tables file from what `jitgemm tune` measured on it (issue #17: tables per GPU, measured there).

    python tools/ship_tuned.py <cache dir>/tuned/nvidia-h200.json --out jitgemm/data/tables \
        [--fill-from jitgemm/data/tables/nvidia-h100-80gb-hbm3.json] [--note "..."]

`jitgemm tune` writes the same schema (jitgemm.tables) as the shipped files, plus a machine key (driver, NVRTC,
jitgemm version) that makes the dispatcher ignore it anywhere else. This drops the key, keeps the driver in
"measured", says how the rows were measured, and writes <out>/<device slug>.json. With --fill-from (another GPU's
file) every row of a shape the tuning did not measure is kept from that file, row by row and moderate bucket by
bucket, and "measured.by_family" says how many, so no shape the other file knew falls back to the heuristics on
this GPU (the device's own file wins over a same-arch one, so a row absent from it is a shape lost: session 35's
first H200 file, filled family by family, dropped the moderate family's N > 16 buckets of eight shapes and made the
16-bit steps at N = 64 0.71-0.77x cuBLAS where the H100 file ran them at 1.00x on the same H200). Without
--fill-from the unmeasured families stay absent. A moderate bucket 16 (the 16-token tile at N <= 16) is never
shipped: it lost every model step it ran in (sessions 23-24 on an H100; session 35 on an H200: the 70B TP-8
shard's qkv, 11 % faster alone, made its step 1.05x cuBLAS at N = 1 where the H100 file made it 1.12x)."""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jitgemm import tables  # noqa: E402

HOW = ("python -m jitgemm tune on this GPU (graph replay, cold weight copies, every candidate checked against "
       "float64 first)")


def shipped_doc(tuned: tables.Tables, fill: tables.Tables | None, note: str | None) -> dict:
    """The shipped form of a tuning file: its rows and provenance, the key's driver kept, the key dropped, and
    (with `fill`) the other file's rows of every shape it did not measure."""
    doc = tuned.doc
    key = doc.get("key") or doc.get("measured", {})  # a tuning file, or a file shipped from one (re-filled)
    measured = {"driver": key.get("driver"), "compiler": key.get("compiler"), "jitgemm": key.get("jitgemm"),
                "date": doc.get("measured", {}).get("date", datetime.date.today().isoformat()), "how": HOW,
                "by_family": {}}
    if note:
        measured["notes"] = [note]
    families = {}
    for fam in tables.FAMILIES:
        rows, other = list(doc.get(fam) or []), list(fill.doc.get(fam) or []) if fill is not None else []
        if fam == "moderate":
            tuned_rows = [r for r in rows if _without_small_n(r)["buckets"]]
            merged, kept = _moderate(tuned_rows, other)
        else:
            tuned_rows, kept_rows = rows, _kept(rows, other)
            merged, kept = rows + kept_rows, len(kept_rows)
        if not merged:
            continue
        families[fam] = merged
        said = {}
        if tuned_rows:  # the tuner writes empty skinny/moderate/fp8 lists for families it did not run
            said = {"rows": len(tuned_rows), "shapes": ", ".join(sorted({r["name"] for r in tuned_rows}))}
        if kept:
            what = "N buckets" if fam == "moderate" else "rows"
            said["kept"] = f"{kept} {what} of shapes not measured on {tuned.device}, from {fill.device} " \
                           f"({Path(fill.source).name})"
        measured["by_family"][fam] = said
    return tables.document(tuned.vendor, tuned.device, tuned.arch, measured, families)


def _without_small_n(row: dict) -> dict:
    """A moderate row without bucket 16 (see the module's doc)."""
    return {**row, "buckets": {b: e for b, e in row["buckets"].items() if int(b) > 16}}


def _kept(rows: list, other: list) -> list:
    """`other`'s rows of the shapes (M, K) `rows` did not measure, own-weight rows included."""
    fresh = {(r["m"], r["k"]) for r in rows}
    return [r for r in other if (r["m"], r["k"]) not in fresh]


def _moderate(rows: list, other: list) -> tuple[list, int]:
    """Moderate rows, one a shape: this tuning's, each with `other`'s buckets it did not measure, then `other`'s
    rows of the shapes it did not tune (bucket 16 of neither); and how many of `other`'s buckets were kept."""
    theirs = {(r["m"], r["k"]): _without_small_n(r)["buckets"] for r in other}
    out, kept = [], 0
    for r in rows:
        mine = _without_small_n(r)["buckets"]
        add = {b: e for b, e in theirs.pop((r["m"], r["k"]), {}).items() if b not in mine}
        out.append({**r, "buckets": {**mine, **add}})
        kept += len(add)
    for r in other:
        if theirs.get((r["m"], r["k"])):
            out.append({**r, "buckets": theirs[(r["m"], r["k"])]})
            kept += len(theirs[(r["m"], r["k"])])
    return out, kept


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tuned", help="a tuning file jitgemm tune wrote (<cache dir>/tuned/<device>.json)")
    p.add_argument("--out", required=True, help="folder for <device slug>.json (jitgemm/data/tables to ship it)")
    p.add_argument("--fill-from", default=None, help="a tables file whose families fill those not tuned")
    p.add_argument("--note", default=None, help="one line kept in measured.notes (what was tuned, where the log is)")
    a = p.parse_args(argv)
    tuned = tables.load(a.tuned)
    fill = tables.load(a.fill_from) if a.fill_from else None
    doc = shipped_doc(tuned, fill, a.note)
    os.makedirs(a.out, exist_ok=True)
    path = Path(a.out) / f"{tables.slug(tuned.device)}.json"
    path.write_text(tables.dumps(doc))
    print(f"wrote {path}: " + ", ".join(f"{f} {len(doc[f])}" for f in tables.FAMILIES if f in doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
