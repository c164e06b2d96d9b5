"""tools/mt_patches.py on the CPU: its patches apply as tools/w4_ab.sh applies them (patch -p1), the patched table
parses, and under it only the chosen weights change, only at the chosen N bucket, only in their row tiles (MT): the K
order, hence every token's bits, stays. A 4-bit patch moves its own weight only (an own-weight row); a 16-bit one
moves every layer whose nearest row it edits, and its note names them."""
import shutil
import sys
from pathlib import Path

import pytest

from jitgemm import dispatch, models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import mt_patches  # noqa: E402
from table_patches import use_table  # noqa: E402

H100 = mt_patches.H100
pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch program (.ci/run installs it)")
OTHERS = [(2048, 768), (512, 1024), (1280, 8192), (7168, 8192), (4096, 4096), (3584, 14336), (128, 2048)]


def _configs(family: str) -> dict:
    shapes = {(m, k) for model in models.names() for _, m, k in models.shapes(model)} | set(OTHERS)
    if family == "skinny":
        def cfg(n, m, k):
            found = dispatch.lookup("skinny", m, k, H100, "sm_90a")
            return dispatch.row_config(found[0], n, "sm_90a") if found else None
    else:
        def cfg(n, m, k):
            return dispatch.w4_nv_config(family[3:], n, m, k, H100, "sm_90a")[0]
    return {(m, k, n): cfg(n, m, k) for m, k in shapes for n in (1, 4, 16)}


def _moved(tmp_path, monkeypatch, family, made):
    use_table(tmp_path, None, monkeypatch)
    before = _configs(family)
    out = {}
    for p in made:
        use_table(tmp_path, p, monkeypatch)
        after = _configs(family)
        moved = {key for key in before if after[key] != before[key]}
        for key in moved:  # row tiles only: the K order (a token's bits) never moves
            assert after[key].k_order == before[key].k_order and after[key].MT != before[key].MT, (p.name, key)
        out[p.stem] = moved
    return out


def test_four_bit_patch_moves_its_weight_at_its_bucket_only(tmp_path, monkeypatch):
    made = mt_patches.make("llama-3.1-8b", tmp_path / "p", "w4-q4_min", buckets=(16,), mts=(2,))
    names = {p.stem for p in made}
    assert {"qkvb16mt2", "ob16mt2", "allb16mt2"} <= names
    moved = _moved(tmp_path, monkeypatch, "w4-q4_min", made)
    shapes = {layer.split(".")[-1]: (m, k) for layer, m, k in models.shapes("llama-3.1-8b")}
    singles = {name: keys for name, keys in moved.items() if not name.startswith("all")}
    for name, keys in singles.items():
        layer = name[:name.index("b16")]
        assert keys == {(*shapes[{"gateup": "gate_up"}.get(layer, layer)], 16)}, name
    assert moved["allb16mt2"] == set().union(*singles.values())


def test_sixteen_bit_patch_moves_the_rows_sharers_and_says_so(tmp_path, monkeypatch):
    made = mt_patches.make("llama-3.1-70b-tp8", tmp_path / "p", "skinny", buckets=(16,), mts=(2,))
    assert {p.stem for p in made} == {"qkvb16mt2", "ob16mt2", "gateupb16mt2", "downb16mt2", "allb16mt2"}
    moved = _moved(tmp_path, monkeypatch, "skinny", made)
    qkv = moved["qkvb16mt2"]
    assert qkv and all(n == 16 for _, _, n in qkv) and (1280, 8192, 16) in qkv
    sharers = mt_patches.sharers("skinny", 1280, 8192)
    assert "llama-3.1-70b-tp8.qkv" in sharers
    note = (tmp_path / "p" / "qkvb16mt2.patch").read_text()
    assert all(s in note for s in sharers)
    assert moved["allb16mt2"] == set().union(*(v for k, v in moved.items() if k != "allb16mt2"))


def test_spilling_tiles_are_left_out(tmp_path, monkeypatch, capsys):
    """--check drops a patch any of whose instances spills (here a stand-in for NVRTC's report)."""
    monkeypatch.setattr(mt_patches, "spills", lambda insts: {i.name: 8 for i in insts if ", 2, 16, 2, 2>" in i.name})
    made = mt_patches.make("llama-3.1-70b-tp8", tmp_path / "p", "skinny", buckets=(16,), mts=(2,), check=True)
    names = {p.stem for p in made}
    assert "qkvb16mt2" not in names and "allb16mt2" not in names  # qkv's row is [16, 2, 2]
    assert {"ob16mt2", "gateupb16mt2", "downb16mt2"} <= names
    assert "qkvb16mt2: left out" in capsys.readouterr().out


def test_patch_names_are_tree_names():
    assert mt_patches.patch_name("expert.gate_up", 16, 2) == "expertgateupb16mt2"
    assert "-" not in mt_patches.patch_name("a-b", 4, 1)
