"""The measured tables as data files (jitgemm.tables): the shipped files load and validate, a file that
breaks the schema is refused with the field and the rule, and the dispatcher picks the file of the
device, then of its arch, and JITGEMM_NV_TUNING's for the families it has."""
import json

import pytest

from conftest import table_doc
from jitgemm import config, dispatch, tables
from jitgemm.kernels import moderate, skinny


def test_shipped_tables_load_validate_and_round_trip():
    files = tables.shipped()
    assert files, "jitgemm/data/tables/ holds at least one measured file"
    for t in files:
        assert t.vendor == "cuda" and t.arch.startswith("sm_") and t.device
        assert t.family("skinny") and t.family("fp8") and t.family("moderate")
        again = tables.parse(json.loads(tables.dumps(t.doc)), "round trip")
        assert again.rows == t.rows
        for m, k, order, mts in t.family("skinny") + t.family("fp8"):
            for mt in mts.values():  # every config a row names is one the tuner searches (aot compiles it)
                assert skinny.NvConfig(mt, *order) in skinny.NV_CONFIGS
        for m, k, buckets in t.family("moderate"):
            for entry in buckets.values():
                cfg, ratio = moderate.from_entry(entry)
                assert cfg.tile in moderate.NV_TILES and (ratio is None or ratio > 0)


def _doc(**over):
    d = table_doc(skinny=[(4096, 4096, (16, 2, 1), {1: 2, 16: 1})],
                  moderate=[(640, 4096, {64: (64, 64, 1, 0, 4, 2, 8, 1, 1.2)})])
    d.update(over)
    return d


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(schema="jitgemm.tables/0"), "schema must be 'jitgemm.tables/1'"),
    (lambda d: d.update(colour="blue"), "unknown field 'colour'"),
    (lambda d: d.pop("device"), "field 'device' is missing"),
    (lambda d: d.update(vendor="intel"), "vendor must be 'cuda' or 'hip'"),
    (lambda d: d["skinny"][0].update(mt={"one": 2}), "N bucket keys are token counts"),
    (lambda d: d["skinny"][0].update(k_order=[16, 2]), "k_order is [WK, U, SK]"),
    (lambda d: d["skinny"][0].update(m=0), "m must be an int >= 1"),
    (lambda d: d["skinny"][0].update(m=True), "field 'm' must be int"),
    (lambda d: d["skinny"][0].update(extra=1), "unknown field 'extra'"),
    (lambda d: d["moderate"][0]["buckets"]["64"].update(reduction="atomic"), "reduction must be one of"),
    (lambda d: d["moderate"][0]["buckets"]["64"].update(tile=[64, 64, 1]), "tile is [BM, BN, WM, WN, ST, KS]"),
    (lambda d: d["moderate"][0]["buckets"]["64"].update(speed=3), "unknown field 'speed'"),
])
def test_a_file_off_the_schema_is_refused_with_the_field_and_the_rule(change, message):
    d = _doc()
    change(d)
    with pytest.raises(tables.TableError, match="where.json") as e:
        tables.parse(d, "where.json")
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_load_names_the_file_when_it_is_not_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("{not json")
    with pytest.raises(tables.TableError, match="t.json: not JSON"):
        tables.load(p)
    with pytest.raises(tables.TableError, match="cannot read it"):
        tables.load(tmp_path / "missing.json")


def test_choose_prefers_the_device_then_its_arch_then_the_vendors_first():
    h100 = tables.parse(table_doc(skinny=[], device="NVIDIA H100 80GB HBM3", arch="sm_90a"), "h100")
    h200 = tables.parse(table_doc(skinny=[], device="NVIDIA H200", arch="sm_90a"), "h200")
    b200 = tables.parse(table_doc(skinny=[], device="NVIDIA B200", arch="sm_100a"), "b200")
    files = [b200, h100, h200]
    assert tables.choose("cuda", "NVIDIA H200", "sm_90a", files=files) is h200
    assert tables.choose("cuda", "NVIDIA H100 PCIe", "sm_90a", files=files) is h100   # same arch: the first such
    assert tables.choose("cuda", "NVIDIA B200", "sm_100a", files=files) is b200
    assert tables.choose("cuda", "NVIDIA A100", "sm_80", files=files) is b200         # no file of the arch: the first
    assert tables.choose("hip", "MI300X", "gfx942", files=files) is None


def test_the_override_replaces_the_families_it_has(nv_tables):
    shipped_fp8 = dispatch.load_table("fp8")
    nv_tables(skinny=[(4096, 4096, (8, 4, 1), {1: 1, 4: 1, 8: 1, 16: 1})])
    assert dispatch.load_table("skinny") == [(4096, 4096, (8, 4, 1), {1: 1, 4: 1, 8: 1, 16: 1})]
    assert dispatch.load_table("fp8") == shipped_fp8          # a family the file lacks: the shipped one
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, 1000, 3000)
    assert p.config == skinny.NvConfig(1, 8, 4, 1) and "test GPU" in p.reason
    nv_tables(skinny=[])                                      # present but empty: no measured rows
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, 4096, 4096)
    assert "heuristic" in p.reason


def test_a_broken_override_says_which_variable(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "jitgemm.tables/1", "vendor": "cuda", "device": "x", "arch": "sm_90a",
                               "skinny": [{"m": 1}]}))
    monkeypatch.setenv("JITGEMM_NV_TUNING", str(bad))
    config.reload()
    with pytest.raises(ValueError, match=r"JITGEMM_NV_TUNING: .*bad.json: skinny\[0\]: field 'k' is missing"):
        dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, 4096, 4096)


def test_merged_keeps_the_other_families_and_says_where_they_came_from():
    base = tables.shipped()[0]
    doc = tables.merged(base, "cuda", "NVIDIA H200", "sm_90a", {"date": "today"}, "skinny",
                        [tables.skinny_row_doc("a", 100, 200, (16, 2, 1), {1: 1})])
    t = tables.parse(doc, "merged")
    assert t.family("skinny") == [(100, 200, (16, 2, 1), {1: 1})] + base.family("skinny")
    assert t.family("fp8") == base.family("fp8") and t.family("moderate") == base.family("moderate")
    assert base.device in doc["measured"]["other_families_from"]
    assert doc["measured"]["base_measured"] == base.doc["measured"]  # how the kept families were measured
    assert doc["measured"]["by_family"]["skinny"]["date"] == "today"


def test_merged_replaces_only_the_measured_shapes_rows():
    """A sweep over some shapes (bench --tune --only ...) keeps the base's rows of the others, and says so."""
    base = tables.shipped()[0]
    first = base.doc["skinny"][0]
    doc = tables.merged(base, "cuda", "NVIDIA H200", "sm_90a", {"date": "today"}, "skinny",
                        [tables.skinny_row_doc("x", first["m"], first["k"], (4, 1, 1), {1: 1})])
    t = tables.parse(doc, "merged")
    assert t.family("skinny")[0] == (first["m"], first["k"], (4, 1, 1), {1: 1})
    assert t.family("skinny")[1:] == base.family("skinny")[1:]
    assert f"{len(base.family('skinny')) - 1} rows" in doc["measured"]["by_family"]["skinny"]["kept_rows"]


def test_merged_on_the_same_device_keeps_its_provenance():
    """Adding a family to a device's own file keeps how the other families were measured."""
    base = tables.shipped()[0]
    doc = tables.merged(base, "cuda", base.device, base.arch, {"date": "today"}, "w4-q4_sym",
                        [tables.skinny_row_doc("a", 100, 256, (4, 1, 1), {1: 1})])
    earlier = {k: v for k, v in base.doc["measured"].items() if k != "by_family"}
    assert {k: v for k, v in doc["measured"].items() if k != "by_family"} == earlier
    assert doc["measured"]["by_family"]["w4-q4_sym"]["date"] == "today"


def test_slug():
    assert tables.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert tables.slug("  ") == "device"
