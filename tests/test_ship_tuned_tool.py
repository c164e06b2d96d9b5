"""tools/ship_tuned.py on the CPU: a tuning file `jitgemm tune` wrote becomes a shipped tables file that the
dispatcher reads for that device (its machine key dropped, the driver kept in "measured"); what the tuning did not
measure is filled from another GPU's file row by row (moderate: bucket by bucket) and says so, a moderate bucket 16
never ships, and without a fill file the unmeasured families stay absent."""
import json
import sys
from pathlib import Path

from conftest import table_doc
from jitgemm import tables

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import ship_tuned  # noqa: E402

GPU = "NVIDIA Shipping Test"


TILE = (64, 16, 1, 0, 6, 2, 5, 1, None)  # a moderate entry (16-token tile, 5 cluster slices)


def _tuned_file(tmp_path) -> Path:
    """A tuning of two shapes at N <= 16 that the fill file's skinny rows have (6144 x 4096, 4096 x 4096), of one
    moderate shape it has (128 x 2880, at N = 64) and one it has not (4096 x 4096), with a 16-token tile at bucket
    16 as an older tuner adopted it."""
    doc = table_doc(device=GPU, skinny=[(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1}),
                                        (6144, 4096, (8, 4, 1), {1: 2, 4: 2, 8: 2, 16: 2})], fp8=[],
                    moderate=[(128, 2880, {16: TILE, 64: TILE}), (4096, 4096, {16: TILE})])
    doc["key"] = {"device": GPU, "driver": 13000, "compiler": [13, 0], "jitgemm": "test"}
    p = tmp_path / "tuned.json"
    p.write_text(tables.dumps(doc))
    return p


def test_a_tuning_file_ships_for_its_device_and_fills_what_it_did_not_measure(tmp_path):
    h100 = next(t for t in tables.shipped() if t.vendor == "cuda")
    assert ship_tuned.main([str(_tuned_file(tmp_path)), "--out", str(tmp_path / "out"), "--fill-from", h100.source]) == 0
    path = tmp_path / "out" / f"{tables.slug(GPU)}.json"
    t = tables.load(path)
    assert t.device == GPU and not t.key and "key" not in json.loads(path.read_text())
    assert t.doc["measured"]["driver"] == 13000
    # skinny: the tuned rows, then every fill row of another shape (the fill's rows of the two tuned shapes replaced)
    others = [r for r in h100.doc["skinny"] if (r["m"], r["k"]) not in ((6144, 4096), (4096, 4096))]
    assert len(others) == len(h100.doc["skinny"]) - 2
    assert t.doc["skinny"] == [r for r in json.loads(_tuned_file(tmp_path).read_text())["skinny"]] + others
    said = t.doc["measured"]["by_family"]
    assert said["skinny"]["rows"] == 2 and said["skinny"]["kept"].startswith(f"{len(others)} rows")
    # moderate: 128 x 2880's bucket 64 tuned, its 32 and 128 kept; no bucket 16 anywhere (the 4096 x 4096 row had
    # only that one, so it goes); the fill's other shapes whole
    fill_mod = {(r["m"], r["k"]): r["buckets"] for r in h100.doc["moderate"]}
    got_mod = {(r["m"], r["k"]): r["buckets"] for r in t.doc["moderate"]}
    assert set(got_mod) == set(fill_mod) and all("16" not in b for b in got_mod.values())
    assert got_mod[(128, 2880)] == {"64": tables.moderate_entry_doc(TILE), "32": fill_mod[(128, 2880)]["32"],
                                    "128": fill_mod[(128, 2880)]["128"]}
    assert all(got_mod[s] == fill_mod[s] for s in fill_mod if s != (128, 2880))
    # families the tuning did not run (fp8 was empty): the fill's rows, said so
    for fam in ("fp8", "w4-mxfp4", "w4-q4_min"):
        assert t.doc[fam] == h100.doc[fam]
        assert h100.device in said[fam]["kept"] and "rows" not in said[fam]
    # the dispatcher takes the file for its device
    got = tables.choose("cuda", GPU, "sm_90a", files=[h100, t])
    assert got is t
    assert t.family("skinny")[0] == (4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})


def test_without_a_fill_file_the_unmeasured_families_stay_absent(tmp_path):
    ship_tuned.main([str(_tuned_file(tmp_path)), "--out", str(tmp_path / "out")])
    t = tables.load(tmp_path / "out" / f"{tables.slug(GPU)}.json")
    assert t.has("skinny") and t.has("moderate") and not any(t.has(f) for f in ("fp8", "w4-q4_sym"))
    assert t.doc["moderate"] == [{"name": "m128.k2880", "m": 128, "k": 2880, "buckets": {"64": tables.moderate_entry_doc(TILE)}}]
