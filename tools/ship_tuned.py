"""A device's shipped tables file from what `jitgemm tune` measured on it (issue #17: tables per GPU, measured there).

    python tools/ship_tuned.py <cache dir>/tuned/nvidia-h200.json --out jitgemm/data/tables \
        [--fill-from jitgemm/data/tables/nvidia-h100-80gb-hbm3.json] [--note "..."]

`jitgemm tune` writes the same schema (jitgemm.tables) as the shipped files, plus a machine key (driver, NVRTC,
jitgemm version) that makes the dispatcher ignore it anywhere else. This drops the key, keeps the driver in
"measured", says how the rows were measured, and writes <out>/<device slug>.json. Families the tuning did not
measure are taken from --fill-from (another GPU's file) and "measured.by_family" says so, so that no family
silently falls back to the heuristics on this GPU (the device's own file wins over a same-arch one, and a family
absent from it means the heuristics); without --fill-from they stay absent.""" 
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
    """The shipped form of a tuning file: its families and provenance, the key's driver kept, the key dropped."""
    doc = tuned.doc
    key = doc.get("key", {})
    measured = {"driver": key.get("driver"), "compiler": key.get("compiler"), "jitgemm": key.get("jitgemm"),
                "date": doc.get("measured", {}).get("date", datetime.date.today().isoformat()), "how": HOW,
                "by_family": {}}
    if note:
        measured["notes"] = [note]
    families = {}
    for fam in tables.FAMILIES:
        rows = doc.get(fam)
        if rows:  # the tuner writes empty skinny/moderate/fp8 lists for families it did not run
            families[fam] = rows
            measured["by_family"][fam] = {"rows": len(rows), "shapes": ", ".join(sorted({r["name"] for r in rows}))}
        elif fill is not None and fill.doc.get(fam) is not None:
            families[fam] = fill.doc[fam]
            measured["by_family"][fam] = {"from": f"{fill.device} ({Path(fill.source).name}): not measured on "
                                                  f"{tuned.device}"}
    return tables.document(tuned.vendor, tuned.device, tuned.arch, measured, families)


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
