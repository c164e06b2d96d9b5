"""tools/w4_variants.py on the CPU: each variant tree differs from this one in the 4-bit kernel's one edit (the speed
bounds also in their bench's check, and only there), and a source that no longer holds the text an edit needs stops it
with the file named."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import w4_variants  # noqa: E402


def test_each_variant_is_this_tree_with_one_edit(tmp_path):
    base = (ROOT / w4_variants.W4).read_text()
    runner = (ROOT / w4_variants.RUNNER).read_text()
    trees = w4_variants.make(tmp_path)
    assert [t.name for t in trees] == ["cap80", "cap64", "prefetch", "nots", "nomma"]
    for tree in trees:
        text = (tree / w4_variants.W4).read_text()
        assert text != base
        assert (tree / "jitgemm" / "__init__.py").read_text() == (ROOT / "jitgemm" / "__init__.py").read_text()
        assert (tree / "tests" / "conftest.py").is_file() and (tree / "pyproject.toml").is_file()
        assert not list(tree.rglob("__pycache__"))
        bound = tree.name in ("nots", "nomma")  # wrong results by design: their bench must not refuse them
        assert ((tree / w4_variants.RUNNER).read_text() == runner) != bound
        assert (w4_variants.UNCHECKED in (tree / w4_variants.RUNNER).read_text()) == bound
    cap80, cap64, prefetch, nots, nomma = ((t / w4_variants.W4).read_text() for t in trees)
    ones = "ONE, ONE, ONE, ONE, xv[j]"
    assert base.count(ones) == 2 and nots.count(ones) == nomma.count(ones) == 0
    assert w4_variants.MIN_FMA in base and w4_variants.MIN_FMA in nomma and w4_variants.MIN_FMA not in nots
    assert "__launch_bounds__(32 * WK, 819 / (32 * WK))" in cap80   # 65536 / 80: 6 blocks of 128 threads an SM
    assert "__launch_bounds__(32 * WK, 1024 / (32 * WK))" in cap64
    assert prefetch.count("prefetch.global.L2") == 3 and "__launch_bounds__(32 * WK, MB)" in prefetch
    # the plain kernel's bounds and the experts wrapper's (w4_experts_gemm); the caps edit the plain one only
    assert base.count("__launch_bounds__(32 * WK, MB)") == 2 and cap80.count("__launch_bounds__(32 * WK, MB)") == 1


def test_an_edit_whose_text_is_gone_stops_with_the_file():
    with pytest.raises(SystemExit, match=r"kernels_src/nv/w4.h changed"):
        w4_variants.VARIANTS["cap80"][w4_variants.W4]("a kernel without the bounds line")
    with pytest.raises(SystemExit, match="not there once"):
        w4_variants.VARIANTS["prefetch"][w4_variants.W4](w4_variants.LOOP + w4_variants.LOOP)
    with pytest.raises(SystemExit, match=r"jitgemm/bench/w4_runner.py changed"):
        w4_variants.VARIANTS["nots"][w4_variants.RUNNER]("a bench without its check")
