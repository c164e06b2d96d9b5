"""tools/w4_order_patches.py on the CPU: its patches apply as tools/w4_ab.sh applies them (patch -p1), the patched
table parses, and under it the chosen layer's weight takes the new K order while every other layer of the model and
every other shape keeps the config it had (the own-weight row's promise)."""
import argparse
import shutil
import sys
from pathlib import Path

import pytest

from jitgemm import dispatch, models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import w4_order_patches  # noqa: E402
from table_patches import use_table  # noqa: E402

H100 = w4_order_patches.H100
pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch program (.ci/run installs it)")
# shapes nearest to the model rows of the shipped table (small K, odd M, the 70B shard's neighbours)
OTHERS = [(2048, 768), (512, 1024), (18944, 1024), (1280, 8192), (7168, 8192), (4096, 4096), (3584, 14336),
          (128, 2048), (151936, 256), (10240, 8192)]


def _configs(model: str) -> dict:
    shapes = [(m, k) for _, m, k in models.shapes(model)] + OTHERS
    return {(m, k, n): dispatch.w4_nv_config("q4_min", n, m, k, H100, "sm_90a")[0] for m, k in shapes for n in (1, 16)}


@pytest.mark.parametrize("model, layer", [("llama-3.1-70b-tp8", "o"), ("llama-3.1-70b-tp8", "qkv"),
                                          ("qwen2.5-7b", "down")])
def test_each_patch_moves_its_layers_weight_only(tmp_path, monkeypatch, model, layer):
    made = w4_order_patches.make(model, tmp_path / "p", only=[layer])
    use_table(tmp_path, None, monkeypatch)
    before = _configs(model)
    now = w4_order_patches.layers_of(model, "q4_min")[layer][2]
    assert len(made) == 5 and now in w4_order_patches.ORDERS  # six orders but the one it runs
    (_, m, k), = [s for s in models.shapes(model) if s[0] == f"{model}.{layer}"]
    for p in made:
        use_table(tmp_path, p, monkeypatch)
        after = _configs(model)
        moved = {key for key in before if after[key] != before[key]}
        assert moved == {(m, k, 1), (m, k, 16)}, p.name
        cfg = after[(m, k, 1)]
        assert p.stem == w4_order_patches.patch_name(layer, (cfg.WK, cfg.U, cfg.SK))
        assert cfg.MB == 1 and (cfg.WK < 16 or cfg.MT == 1)
    assert (tmp_path / "p" / "patches.txt").read_text().split() == [f"{p.stem}={p.as_posix()}" for p in made]


def test_a_bounded_layer_is_left_out():
    assert "gate_up" not in w4_order_patches.layers_of("qwen2.5-7b", "q4_min")  # min_blocks 6 (session 32)
    assert "gate_up" in w4_order_patches.layers_of("llama-3.1-8b", "q4_min")


def test_names_are_w4_ab_tree_names():
    assert w4_order_patches.patch_name("expert.gate_up", (8, 1, 1)) == "expertgateup811"
    assert "-" not in w4_order_patches.patch_name("a-b", (4, 2, 1))


def test_an_unknown_layer_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(SystemExit, match="gate not among llama-3.1-8b's q4_min layers .*qkv, o, gate_up, down"):
        w4_order_patches.make("llama-3.1-8b", tmp_path, only=["gate"])


@pytest.mark.parametrize("text, rule", [("4,1", "three ints"), ("32,1,1", "WK in 4/8/16"), ("4,3,1", "U in 1/2")])
def test_a_bad_order_is_refused_with_its_rule(text, rule):
    with pytest.raises(argparse.ArgumentTypeError, match=rule):
        w4_order_patches._order(text)


def _skinny_configs() -> dict:
    shapes = {(m, k) for model in models.names() for _, m, k in models.shapes(model)} | set(OTHERS)
    return {(m, k, n): dispatch.row_config(dispatch.lookup("skinny", m, k, H100, "sm_90a")[0], n, "sm_90a")
            for m, k in shapes for n in (1, 16)}


def test_a_sixteen_bit_patch_edits_the_shared_row_and_names_what_it_moves(tmp_path, monkeypatch):
    made = w4_order_patches.make("llama-3.1-70b-tp8", tmp_path / "p", "skinny", only=["o"])
    assert [p.stem for p in made] == [w4_order_patches.patch_name("o", o) for o in w4_order_patches.ORDERS_16
                                      if o != (16, 2, 1)]  # the row's order today
    use_table(tmp_path, None, monkeypatch)
    before = _skinny_configs()
    sharers = w4_order_patches.sharers("skinny", 8192, 1024)
    assert "llama-3.1-70b-tp8.o" in sharers and "qwen3-30b-a3b.expert.down" in sharers
    nearest = {(m, k) for m, k, _ in before if dispatch.lookup("skinny", m, k, H100, "sm_90a")[0][:2] == (8192, 1024)}
    for p in made:
        assert all(s in p.read_text() for s in sharers)
        use_table(tmp_path, p, monkeypatch)
        after = _skinny_configs()
        moved = {key for key in before if after[key] != before[key]}
        # the weight itself takes the order; a neighbour follows it, or (a WK other than the table's common one
        # serves its own shape only: dispatch._carries) goes to the next row
        assert {(8192, 1024, 1), (8192, 1024, 16)} <= moved <= {(m, k, n) for m, k in nearest for n in (1, 16)}
        assert p.stem == w4_order_patches.patch_name("o", after[(8192, 1024, 1)].k_order)


def test_orders_outside_a_family_are_refused():
    with pytest.raises(SystemExit, match="skinny takes U in 2/4"):
        w4_order_patches.check_orders("skinny", [(8, 1, 1)])
    with pytest.raises(SystemExit, match="q4_min takes U in 1/2"):
        w4_order_patches.check_orders("q4_min", [(8, 4, 1)])
    w4_order_patches.check_orders("skinny", [(8, 4, 2)])
