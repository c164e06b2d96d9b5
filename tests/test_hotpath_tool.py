"""tools/hotpath_cpu.py (issue #15's hot path timed without a GPU or torch): it runs through in its own process, the
stand-in torch gives jitgemm.linear a torch-kind output of the right shape (the tool asserts it), and every row it
promises is printed with a number."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_hot_path_tool_times_every_piece(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "", "HOME": str(tmp_path), "JITGEMM_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "hotpath_cpu.py"), "--calls", "300"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    rows = dict(re.findall(r"^\| (.+?) \| ([0-9.]+) us", r.stdout, re.M))
    for name in ("two operands' signatures", "the entry's lookup", "the per-call checks (accepts)",
                 "Entry.run (stream, output, launch)", "112 weights of 7 shapes, model order", "one weight, 112 calls"):
        assert name in rows and float(rows[name]) > 0, (name, r.stdout)
    assert any(k.startswith("jitgemm.linear(") for k in rows)
    assert any(k.startswith("pipeline.torch_pair(") for k in rows), "jitgemm.torch's one-frame door was not timed"
    assert "112 weights of 7 shapes, model order, torch_pair" in rows
