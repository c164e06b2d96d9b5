"""A table patch of tools/{w4_order,mt,w4_bound}_patches.py in force for one test: the shipped H100 table copied under
tmp_path, the patch applied as tools/w4_ab.sh applies it (patch -p1), parsed, and made the dispatcher's table."""
import shutil
import subprocess
from pathlib import Path

from jitgemm import config, tables

ROOT = Path(__file__).resolve().parent.parent
TABLE = "jitgemm/data/tables/nvidia-h100-80gb-hbm3.json"


def patched_table(tree: Path, patch: Path | None, base: Path = ROOT / TABLE) -> Path:
    """The table `base` (default the shipped one) copied to its repository path under `tree` with `patch` applied
    there (None: as it is); returns the copy's path."""
    (tree / TABLE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(base, tree / TABLE)
    if patch:
        subprocess.run(["patch", "-s", "--batch", "-p1"], cwd=tree, stdin=patch.open(), check=True)
    return tree / TABLE


def use_table(tmp_path: Path, patch: Path | None, monkeypatch) -> None:
    """The shipped table with `patch` applied (None: as shipped) as JITGEMM_NV_TUNING; raises TableError where the
    patched file does not parse."""
    table = patched_table(tmp_path / (patch.stem if patch else "base"), patch)
    tables.load(table)
    monkeypatch.setenv("JITGEMM_NV_TUNING", str(table))
    config.reload()
