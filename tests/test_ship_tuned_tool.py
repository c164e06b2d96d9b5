"""tools/ship_tuned.py on the CPU: a tuning file `jitgemm tune` wrote becomes a shipped tables file that the
dispatcher reads for that device (its machine key dropped, the driver kept in "measured"), the families the tuning
did not measure are filled from another GPU's file and say so, and without a fill file they stay absent."""
import json
import sys
from pathlib import Path

from conftest import table_doc
from jitgemm import tables

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import ship_tuned  # noqa: E402

GPU = "NVIDIA Shipping Test"


def _tuned_file(tmp_path) -> Path:
    doc = table_doc(device=GPU, skinny=[(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})], fp8=[], moderate=[])
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
    assert [r["name"] for r in t.doc["skinny"]] == ["m4096.k4096"]
    # fp8 and moderate were empty in the tuning (not run): another GPU's rows, said so
    for fam in ("fp8", "moderate", "w4-mxfp4"):
        assert t.doc[fam] == h100.doc[fam]
        assert h100.device in t.doc["measured"]["by_family"][fam]["from"]
    assert t.doc["measured"]["by_family"]["skinny"]["rows"] == 1
    # the dispatcher takes the file for its device
    got = tables.choose("cuda", GPU, "sm_90a", files=[h100, t])
    assert got is t
    assert t.family("skinny") == [(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})]


def test_without_a_fill_file_the_unmeasured_families_stay_absent(tmp_path):
    ship_tuned.main([str(_tuned_file(tmp_path)), "--out", str(tmp_path / "out")])
    t = tables.load(tmp_path / "out" / f"{tables.slug(GPU)}.json")
    assert t.has("skinny") and not any(t.has(f) for f in ("fp8", "moderate", "w4-q4_sym"))
