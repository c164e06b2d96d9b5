"""A 4-bit table row's register bound (min_blocks, session 32): how the file states it, where the dispatcher takes it
(its own weight, the format's table group, N <= 16) and where not, the instance it names, and what `aot` says of
its spill. CPU only: the GPU side is tests/test_gpu_w4.py's (every instance `aot` builds is correct there)."""
import json

import pytest

from jitgemm import dispatch, models, registers, tables
from jitgemm.kernels import skinny, w4

H100 = "NVIDIA H100 80GB HBM3"


def _doc(row: dict, family: str = "w4-q4_min") -> dict:
    return {"schema": tables.SCHEMA, "vendor": "cuda", "device": "test GPU", "arch": "sm_90a", family: [row]}


def _row(**extra) -> dict:
    return {"name": "x", "m": 4608, "k": 3584, "k_order": [8, 1, 1], "mt": {"1": 1, "4": 1, "16": 2}, **extra}


def test_a_w4_row_with_min_blocks_reads_as_a_fifth_element():
    t = tables.parse(_doc(_row(min_blocks={"1": 3, "16": 2})), "f.json")
    assert t.family("w4-q4_min") == [(4608, 3584, (8, 1, 1), {1: 1, 4: 1, 16: 2}, {1: 3, 16: 2})]
    plain = tables.parse(_doc(_row()), "f.json")  # without it, the four-element form every other row has
    assert plain.family("w4-q4_min") == [(4608, 3584, (8, 1, 1), {1: 1, 4: 1, 16: 2})]


@pytest.mark.parametrize("blocks, rule", [
    ({"8": 3}, "min_blocks bucket '8' has no mt entry"),
    ({"1": 0}, "min_blocks values must be an int >= 1, got 0"),
    ({"1": 33}, "min_blocks values must be <= 32"),
    ({"1": True}, "min_blocks values must be an int >= 1, got True"),
    ({"x": 3}, "N bucket keys are token counts"),
    ({}, "min_blocks needs at least one N bucket"),
])
def test_a_bad_min_blocks_is_refused_with_its_rule(blocks, rule):
    with pytest.raises(tables.TableError, match=rule) as e:
        tables.parse(_doc(_row(min_blocks=blocks)), "f.json")
    assert "f.json: w4-q4_min[0]" in str(e.value)


@pytest.mark.parametrize("family", ["skinny", "fp8"])
def test_min_blocks_is_a_4bit_field_only(family):
    with pytest.raises(tables.TableError, match="unknown field 'min_blocks'"):
        tables.parse(_doc(_row(min_blocks={"1": 3}), family), "f.json")


def test_the_row_doc_writes_min_blocks_back():
    doc = tables.skinny_row_doc("x", 4608, 3584, (8, 1, 1), {1: 1}, min_blocks={1: 3})
    assert doc["min_blocks"] == {"1": 3}
    assert tables.parse(_doc(doc), "f.json").family("w4-q4_min")[0][4] == {1: 3}
    assert "min_blocks" not in tables.skinny_row_doc("x", 4608, 3584, (8, 1, 1), {1: 1})


def test_row_config_takes_the_bucket_of_its_mt():
    row = (4608, 3584, (8, 1, 1), {1: 1, 4: 1, 16: 2}, {1: 3, 16: 2})
    assert dispatch.row_config(row, 1, "sm_90a") == skinny.NvConfig(1, 8, 1, 1, MB=3)
    assert dispatch.row_config(row, 4, "sm_90a").MB == 1   # bucket 4 has no bound
    assert dispatch.row_config(row, 12, "sm_90a") == skinny.NvConfig(2, 8, 1, 1, MB=2)
    assert dispatch.row_config(row[:4], 1, "sm_90a").MB == 1


@pytest.mark.parametrize("group, n, mb", [(32, 1, 6), (32, 16, 6), (32, 17, 1), (64, 1, 1), (128, 16, 1)])
def test_the_bound_holds_at_the_table_group_and_n_up_to_16(group, n, mb):
    cfg = w4.token_tiling(skinny.NvConfig(1, 4, 1, 1, MB=6), "q4_min", n)
    assert w4.measured_bound(cfg, "q4_min", group, n).MB == mb


def test_the_instance_name_carries_the_bound_only_when_there_is_one():
    bounded = w4.nv_instance(skinny.NvConfig(1, 4, 1, 1, MB=6), "bfloat16", "q4_min", 32, 1)
    plain = w4.nv_instance(skinny.NvConfig(1, 4, 1, 1), "bfloat16", "q4_min", 32, 1)
    assert bounded.name == "jg_w4_nv<jg_bf16, 2, 32, 1, 1, 4, 1, 1, 6>" and w4.bounded(bounded.name)
    assert plain.name == "jg_w4_nv<jg_bf16, 2, 32, 1, 1, 4, 1, 1>" and not w4.bounded(plain.name)
    assert not w4.bounded("jg_skinny_nv<jg_bf16, 1, 2, 16, 2, 1>")


def _instances(model: str, n: int, group: int = 32) -> dict:
    return {name: dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_min", group, n, m, k, device=H100).instance.name
            for name, m, k in models.shapes(model)}


def test_the_shipped_bounds_reach_qwen_and_no_other_model():
    """The H100 table's bounded rows (Qwen2.5-7B's qkv, o, gate_up: measured there, +5 % of its step) serve those
    weights at N <= 16 and G32 only; every other model's layers, N = 32 and other groups keep unbounded kernels."""
    qwen = _instances("qwen2.5-7b", 1)
    assert {s for s, name in qwen.items() if w4.bounded(name)} == {"qwen2.5-7b.qkv", "qwen2.5-7b.o", "qwen2.5-7b.gate_up"}
    assert qwen["qwen2.5-7b.gate_up"].endswith(", 4, 1, 1, 6>") and qwen["qwen2.5-7b.o"].endswith(", 8, 1, 1, 3>")
    assert sum(w4.bounded(v) for v in _instances("qwen2.5-7b", 16).values()) == 3
    assert not any(w4.bounded(v) for v in _instances("qwen2.5-7b", 32).values())
    assert not any(w4.bounded(v) for v in _instances("qwen2.5-7b", 1, group=128).values())
    for model in models.names():
        if model != "qwen2.5-7b":
            assert not any(w4.bounded(v) for n in (1, 16) for v in _instances(model, n).values()), model


def test_a_bounded_row_serves_its_own_weight_only(nv_tables):
    """A shape nearer the bounded row than any other takes the nearest unbounded row's config, unbounded."""
    nv_tables(w4={"w4-q4_min": [(4096, 4096, (16, 2, 1), {1: 1}), (4608, 3584, (8, 1, 1), {1: 1}, {1: 3})]})
    own = dispatch.w4_nv_config("q4_min", 1, 4608, 3584, H100, "sm_90a")[0]
    assert own == skinny.NvConfig(1, 8, 1, 1, MB=3)
    near = dispatch.w4_nv_config("q4_min", 1, 4600, 3500, H100, "sm_90a")
    assert near[0] == skinny.NvConfig(1, 16, 2, 1) and "M=4096 K=4096" in near[1]


def test_aot_builds_the_bounded_instances(nv_tables):
    nv_tables(w4={"w4-q4_min": [(4608, 3584, (8, 1, 1), {1: 1, 16: 1}, {1: 3, 16: 3})]})
    names = {i.name for i in dispatch.all_w4_instances("cuda")}
    assert {"jg_w4_nv<jg_bf16, 2, 32, 1, 1, 8, 1, 1, 3>", "jg_w4_nv<jg_bf16, 2, 32, 2, 1, 8, 1, 1, 3>",
            "jg_w4_nv<jg_f16, 2, 32, 1, 1, 8, 1, 1, 3>"} <= names
    assert not {n for n in names if w4.bounded(n) and ", 2, 32, " not in n}  # other groups: unbounded


def test_aot_says_why_a_bounded_instance_spills(capsys):
    res = {"registers": 78, "spill_stores": 16, "spill_loads": 16, "stack_frame": 16, "smem": 0}
    rows = [("sm_90a", "jg_w4_nv<jg_bf16, 2, 32, 1, 1, 4, 1, 1, 6>", "jg_w4_nv", res),
            ("sm_90a", "jg_w4_nv<jg_bf16, 2, 32, 1, 1, 4, 1, 1>", "jg_w4_nv", res)]
    registers.print_spills(rows)
    bounded, plain = capsys.readouterr().out.splitlines()
    assert "spills (regs  78" in bounded and "a table row's register bound" in bounded
    assert "spills (regs  78" in plain and "register bound" not in plain


def test_the_shipped_bounded_rows_say_where_they_were_measured():
    doc = json.loads((tables.DATA / "nvidia-h100-80gb-hbm3.json").read_text())
    bounded = [r for r in doc["w4-q4_min"] if "min_blocks" in r]
    assert {r["name"] for r in bounded} == {"qwen2.5-7b.qkv", "qwen2.5-7b.o", "qwen2.5-7b.gate_up"}
    assert all("session32" in r["note"] for r in bounded)
