"""A 4-bit table row kept to its own weight (own_weight: true, session 33): a K order measured in one model's step
is no evidence for the shapes nearest to it, so the row serves its weight only, beside a shared row of the same
shape that goes on serving its neighbours. How the file states it, what it refuses, which row each shape takes.
CPU only: the kernels are the unbounded instances the GPU tests already run."""
import json

import pytest

from jitgemm import dispatch, models, tables
from jitgemm.kernels import skinny

H100 = "NVIDIA H100 80GB HBM3"


def _doc(*rows: dict, family: str = "w4-q4_min") -> dict:
    return {"schema": tables.SCHEMA, "vendor": "cuda", "device": "test GPU", "arch": "sm_90a", family: list(rows)}


def _row(**extra) -> dict:
    return {"name": "x", "m": 8192, "k": 1024, "k_order": [4, 1, 1], "mt": {"1": 1, "16": 1}, **extra}


def test_own_weight_reads_as_an_empty_fifth_element():
    t = tables.parse(_doc(_row(own_weight=True)), "f.json")
    assert t.family("w4-q4_min") == [(8192, 1024, (4, 1, 1), {1: 1, 16: 1}, {})]
    shared = tables.parse(_doc(_row(own_weight=False)), "f.json")  # false: the four-element form of a shared row
    assert shared.family("w4-q4_min") == [(8192, 1024, (4, 1, 1), {1: 1, 16: 1})]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_own_weight_must_be_a_bool(value):
    with pytest.raises(tables.TableError, match="field 'own_weight' must be bool") as e:
        tables.parse(_doc(_row(own_weight=value)), "f.json")
    assert "f.json: w4-q4_min[0]" in str(e.value)


def test_own_weight_false_beside_min_blocks_is_refused():
    with pytest.raises(tables.TableError, match="serves its own weight only; own_weight: false contradicts it"):
        tables.parse(_doc(_row(own_weight=False, min_blocks={"1": 3})), "f.json")
    both = tables.parse(_doc(_row(own_weight=True, min_blocks={"1": 3})), "f.json")  # true says it again: fine
    assert both.family("w4-q4_min")[0][4] == {1: 3}


@pytest.mark.parametrize("family", ["skinny", "fp8"])
def test_own_weight_is_a_4bit_field_only(family):
    with pytest.raises(tables.TableError, match="unknown field 'own_weight'"):
        tables.parse(_doc(_row(own_weight=True), family=family), "f.json")


def test_the_row_doc_writes_own_weight_back():
    doc = tables.skinny_row_doc("x", 8192, 1024, (4, 1, 1), {1: 1}, own_weight=True)
    assert doc["own_weight"] is True
    assert tables.parse(_doc(doc), "f.json").family("w4-q4_min")[0][4] == {}
    assert "own_weight" not in tables.skinny_row_doc("x", 8192, 1024, (4, 1, 1), {1: 1})


def test_the_weight_takes_its_own_row_and_its_neighbours_the_shared_one(nv_tables):
    nv_tables(w4={"w4-q4_min": [(8192, 1024, (4, 2, 1), {1: 1}), (8192, 1024, (4, 1, 1), {1: 1}, {}),
                                (4096, 4096, (8, 1, 1), {1: 1})]})
    own = dispatch.w4_nv_config("q4_min", 1, 8192, 1024, H100, "sm_90a")[0]
    assert own == skinny.NvConfig(1, 4, 1, 1)  # unbounded: MB 1
    near = dispatch.w4_nv_config("q4_min", 1, 2048, 768, H100, "sm_90a")
    assert near[0] == skinny.NvConfig(1, 4, 2, 1) and "M=8192 K=1024" in near[1]
    # the rows' order in the file does not decide it
    nv_tables(w4={"w4-q4_min": [(8192, 1024, (4, 1, 1), {1: 1}, {}), (8192, 1024, (4, 2, 1), {1: 1})]})
    assert dispatch.w4_nv_config("q4_min", 1, 8192, 1024, H100, "sm_90a")[0].U == 1
    assert dispatch.w4_nv_config("q4_min", 1, 2048, 768, H100, "sm_90a")[0].U == 2


def test_an_own_weight_row_alone_serves_no_neighbour(nv_tables):
    nv_tables(w4={"w4-q4_min": [(8192, 1024, (4, 1, 1), {1: 1}, {}), (4096, 4096, (8, 1, 1), {1: 1})]})
    near = dispatch.w4_nv_config("q4_min", 1, 8100, 1010, H100, "sm_90a")  # within 2 %: the same weight, padded
    assert near[0] == skinny.NvConfig(1, 4, 1, 1) and "M=8192 K=1024" in near[1]
    far = dispatch.w4_nv_config("q4_min", 1, 2048, 768, H100, "sm_90a")
    assert far[0] == skinny.NvConfig(1, 8, 1, 1) and "M=4096 K=4096" in far[1]


def test_the_shipped_own_weight_row_moves_the_70b_shards_o_weight_only():
    doc = json.loads((tables.DATA / "nvidia-h100-80gb-hbm3.json").read_text())
    own = [r for fam in doc.values() if isinstance(fam, list) for r in fam if r.get("own_weight")]
    assert own and all("step" in r["note"] and "session" in r["note"] for r in own)
    (name, m, k), = [s for s in models.shapes("llama-3.1-70b-tp8") if s[0].endswith(".o")]
    assert dispatch.w4_nv_config("q4_min", 1, m, k, H100, "sm_90a")[0] == skinny.NvConfig(1, 4, 1, 1)
    # qwen3-30b-a3b's expert down (2048 x 768) is nearest to the shard's o weight: it keeps the shared row's order
    assert dispatch.w4_nv_config("q4_min", 1, 2048, 768, H100, "sm_90a")[0] == skinny.NvConfig(1, 4, 2, 1)
