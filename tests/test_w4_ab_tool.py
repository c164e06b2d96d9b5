"""tools/w4_ab.sh and tools/ab_summary.py on the CPU: the A/B script run in a stand-in repository whose `python3` and
`nvidia-smi` are shims (the bench writes a fake result file, the tests and `aot` print, everything else goes to the
real Python), so what it does is checked without a GPU: which trees it makes (this tree, .carry/ trees, patched
copies), the alternating order of their runs, the summary read against the base tree, and the refusal of a bad
PATCHES entry."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import ab_summary  # noqa: E402

needs_bash_patch = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("patch") and shutil.which("tar")),
                                      reason="needs bash, patch and tar")

# the bench shim: a step time from the tree's marker file (so each tree has its own speed), one row a model and N
SHIM = r'''#!/usr/bin/env bash
log=${SHIM_LOG:?}
if [ "$1" = -m ] && [ "$2" = jitgemm ] && [ "$3" = bench ]; then
  name=; out=; prev=
  for a in "$@"; do
    [ "$prev" = --name ] && name=$a; [ "$prev" = --out ] && out=$a; prev=$a
  done
  echo "bench $(cat jitgemm/marker) $name" >> "$log"
  ms=$(cat jitgemm/marker)
  printf '{"meta": {}, "rows": [{"model": "m8b", "N": 1, "dtype": "w4-q4_min", "jitgemm_ms": %s}, {"model": "m8b", "N": 1, "dtype": "bfloat16", "jitgemm_ms": 5.0}]}' "$ms" > "$out/$name.json"
  echo "| w4-q4_min 1 | 2.5 | 2.5 (m8b) | 2.50 | yes |"
elif [ "$1" = -m ] && [ "$2" = pytest ]; then echo "tests $(cat jitgemm/marker)" >> "$log"; echo "24 passed in 1.00s"
elif [ "$1" = -m ] && [ "$2" = jitgemm ] && [ "$3" = aot ]; then echo "aot $(cat jitgemm/marker)" >> "$log"
elif [ "$1" = -m ] && [ "$2" = pip ]; then exit 0
else exec "$REAL_PY" "$@"
fi
'''


def _repo(tmp_path: Path) -> Path:
    """A stand-in repository: the two tools, a sanitize.sh stand-in, a tree marker the patches change, .carry/old."""
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    for t in ("w4_ab.sh", "ab_summary.py"):
        shutil.copy2(ROOT / "tools" / t, repo / "tools" / t)
    (repo / "tools" / "sanitize.sh").write_text('echo "memcheck: ok; $(cat jitgemm/marker)"\n')
    for d in ("jitgemm", "kernels_src", "tests"):
        (repo / d).mkdir()
    (repo / "pyproject.toml").write_text("")
    (repo / "jitgemm" / "marker").write_text("2.0\n")
    old = repo / ".carry" / "old"
    (old / "jitgemm").mkdir(parents=True)
    (old / "tools").mkdir()
    shutil.copy2(repo / "tools" / "sanitize.sh", old / "tools" / "sanitize.sh")
    (old / "jitgemm" / "marker").write_text("2.5\n")
    (repo / ".carry" / "notes").mkdir()  # no jitgemm/: not a tree
    (repo / "fast.patch").write_text("--- a/jitgemm/marker\n+++ b/jitgemm/marker\n@@ -1 +1 @@\n-2.0\n+1.6\n")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python3").write_text(SHIM)
    (bin_ / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'Stand-in GPU, 0.0'\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return repo


def _run(repo: Path, tmp_path: Path, **env):
    e = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", REAL_PY=sys.executable,
             SHIM_LOG=str(tmp_path / "calls.log"), OUT=str(tmp_path / "out"), AB_DIR=str(tmp_path / "ab"),
             TREES_DIR=str(tmp_path / "trees"), **env)
    return subprocess.run(["bash", "tools/w4_ab.sh"], cwd=repo, env=e, capture_output=True, text=True, timeout=120)


@needs_bash_patch
def test_trees_alternate_and_the_summary_reads_them_against_base(tmp_path):
    repo = _repo(tmp_path)
    run = _run(repo, tmp_path, PATCHES="fast=fast.patch", ROUNDS="2", DL="600")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "trees: base old fast" in run.stdout
    calls = (tmp_path / "calls.log").read_text().split("\n")
    benches = [c.split()[1:] for c in calls if c.startswith("bench")]
    assert benches == [["2.0", "base-r1"], ["2.5", "old-r1"], ["1.6", "fast-r1"],
                       ["2.0", "base-r2"], ["2.5", "old-r2"], ["1.6", "fast-r2"]]
    # the checks run in each other tree (the patched copy reads its own marker), not in base
    assert [c for c in calls if c.startswith(("tests", "aot"))] == ["tests 2.5", "aot 2.5", "tests 1.6", "aot 1.6"]
    summary = (tmp_path / "ab" / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if "w4-q4_min" in line)
    assert "| m8b | 1 | w4-q4_min | 2.0000 |" in row and "1.2500 (1.2500-1.2500, 2)" in row and "0.8000" in row
    with tarfile.open(tmp_path / "out" / "ab.tgz") as t:
        assert "ab/summary.md" in t.getnames() and "ab/fast-r2.json" in t.getnames()
    assert (repo / "jitgemm" / "marker").read_text() == "2.0\n"  # the patch went into the copy only


@needs_bash_patch
@pytest.mark.parametrize("spec", ["fast", "a-b=fast.patch", "fast=missing.patch"])
def test_a_bad_patches_entry_stops_before_any_run(tmp_path, spec):
    repo = _repo(tmp_path)
    run = _run(repo, tmp_path, PATCHES=spec)
    assert run.returncode == 2 and "name=file.patch" in run.stderr
    assert "bench" not in ((tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else "")


def test_summary_needs_the_base_tree_and_skips_files_that_are_not_bench_results(tmp_path):
    rows = lambda ms: {"rows": [{"model": "m", "N": 4, "dtype": "w4-q4_min", "jitgemm_ms": ms}]}  # noqa: E731
    (tmp_path / "new-r1.json").write_text(json.dumps(rows(1.0)))
    (tmp_path / "tables.json").write_text(json.dumps({"rows_are": "absent"}))
    with pytest.raises(SystemExit, match="no run of the base tree 'base'"):
        ab_summary.table(ab_summary.collect(tmp_path), "base")
    (tmp_path / "base-r1.json").write_text(json.dumps(rows(1.5)))
    (tmp_path / "base-r2.json").write_text(json.dumps(rows(2.5)))
    out = ab_summary.table(ab_summary.collect(tmp_path, "w4-q4_min"), "base")
    assert out[2] == "| m | 4 | w4-q4_min | 2.0000 | 1.0000 | 2.0000 (2.0000-2.0000, 1) |"
    with pytest.raises(SystemExit, match="no bench JSON"):
        ab_summary.collect(tmp_path / "nothing")
