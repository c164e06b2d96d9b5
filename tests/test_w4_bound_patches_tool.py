"""tools/w4_bound_patches.py on the CPU: its patches apply as tools/w4_ab.sh applies them (patch -p1), the patched
table still parses, and under it exactly the chosen layers of the model take a bounded kernel."""
import shutil
import sys
from pathlib import Path

import pytest

from jitgemm import config, dispatch, models, tables
from jitgemm.kernels import w4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import w4_bound_patches  # noqa: E402
from table_patches import patched_table  # noqa: E402

TABLE = "jitgemm/data/tables/nvidia-h100-80gb-hbm3.json"
pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch program (.ci/run installs it)")


def _bounded_layers(model: str, table: Path, monkeypatch) -> set:
    monkeypatch.setenv("JITGEMM_NV_TUNING", str(table))
    config.reload()
    return {name.split(".")[-1] for name, m, k in models.shapes(model) for n in (1, 16)
            if w4.bounded(dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_min", 32, n, m, k,
                                           device=w4_bound_patches.H100).instance.name)}


def _without_row(tmp_path: Path, name: str, monkeypatch) -> Path:
    """The shipped table without one row (the file's line of it) as the dispatcher's table."""
    lines = (ROOT / TABLE).read_text().split("\n")
    i = next(i for i, line in enumerate(lines) if f'"name": "{name}"' in line)
    del lines[i]
    if lines[i].startswith(" ]"):  # it was its family's last row
        lines[i - 1] = lines[i - 1].rstrip(",")
    path = tmp_path / "base.json"
    path.write_text("\n".join(lines))
    monkeypatch.setenv("JITGEMM_NV_TUNING", str(path))
    config.reload()
    return path


def test_each_patch_bounds_its_layer_and_all_bounds_every_one(tmp_path, monkeypatch):
    # the table of session 33: since session 34 the 8B's gate_up runs two row tiles at N = 16, which no bound takes
    base = _without_row(tmp_path, "llama-3.1-8b.gate_up.step", monkeypatch)
    made = w4_bound_patches.make("llama-3.1-8b", tmp_path / "p", table=base)
    assert [p.stem for p in made] == ["o", "gate_up", "all"]  # qkv and down run two slices in flight (U = 2)
    assert (tmp_path / "p" / "patches.txt").read_text().split() == [f"{p.stem}={p.as_posix()}" for p in made]
    before = tables.load(base).family("w4-q4_min")
    for p, layers, blocks in ((made[0], {"o"}, {4096: 3}), (made[1], {"gate_up"}, {28672: 6}),
                              (made[2], {"o", "gate_up"}, {4096: 3, 28672: 6})):
        table = patched_table(tmp_path / p.stem / "tree", p, base)
        after = tables.load(table).family("w4-q4_min")
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(after) == len(before) and {b[0]: b[4][1] for _, b in changed} == blocks
        assert all(a == b[:4] and set(b[4]) == set(b[3]) for a, b in changed)  # the row's K order and tiles kept
        assert _bounded_layers("llama-3.1-8b", table, monkeypatch) == layers


def test_a_weight_without_a_row_gets_one_with_the_config_it_ran(tmp_path, monkeypatch):
    made = w4_bound_patches.make("gemma-2-9b", tmp_path / "p")
    gate_up = next(p for p in made if p.stem == "gate_up")
    before = tables.load(ROOT / TABLE).family("w4-q4_min")
    after = tables.load(patched_table(tmp_path / "tree", gate_up)).family("w4-q4_min")
    (new,) = [r for r in after if r not in before]
    m, k = next((m, k) for name, m, k in models.shapes("gemma-2-9b") if name.endswith(".gate_up"))
    monkeypatch.delenv("JITGEMM_NV_TUNING", raising=False)
    config.reload()
    ran = dispatch.w4_nv_config("q4_min", 1, m, k, w4_bound_patches.H100, "sm_90a")[0]
    assert new[:3] == (m, k, (ran.WK, ran.U, ran.SK)) and new[4] == {1: 6, 4: 6, 16: 6}
    again = patched_table(tmp_path / "again" / "tree", gate_up)
    assert _bounded_layers("gemma-2-9b", again, monkeypatch) == {"gate_up"}


def test_no_patch_where_no_layer_can_take_a_bound(tmp_path):
    assert w4_bound_patches.make("qwen2.5-7b", tmp_path) == []          # bounded already, or U = 2 (down)
    assert w4_bound_patches.blocks_for(80, 4) == 6 and w4_bound_patches.blocks_for(80, 16) == 1


def test_the_70b_shards_o_weight_is_bounded_on_its_own_weight_row(tmp_path):
    """Its U = 1 K order (session 33) is an own-weight row beside the shared U = 2 row of the same shape: the patch
    bounds the row the weight takes, not the shared one; the shard's other layers run U = 2 (no bound)."""
    made = w4_bound_patches.make("llama-3.1-70b-tp8", tmp_path)
    assert [p.name for p in made] == ["o.patch"]
    plus = [ln for ln in made[0].read_text().splitlines() if ln.startswith("+ ")]
    assert len(plus) == 1 and '"own_weight": true' in plus[0] and '"min_blocks": {"1": 6, "4": 6, "16": 6}' in plus[0]
