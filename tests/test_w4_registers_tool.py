"""tools/w4_registers.py on the CPU: blocks an SM from registers and block size (the occupancy rule the 4-bit loop's
speed follows, NOTES session 31), instance names read as their block size, and one instance measured through NVRTC
in this tree and in another."""
import shutil
import sys
from pathlib import Path

import pytest

from jitgemm.runtime.backend import get_backend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import w4_registers  # noqa: E402


def _nvrtc_ok():
    return get_backend("cuda").compiler.available()


@pytest.mark.parametrize("regs,threads,blocks", [
    (92, 128, 5), (70, 128, 7), (72, 128, 7), (73, 128, 6), (80, 128, 6), (120, 128, 4), (64, 128, 8),
    (92, 256, 2), (70, 256, 3), (120, 512, 1), (32, 32, 32), (255, 1024, 0)])
def test_blocks_per_sm_follow_the_register_file_in_steps_of_8(regs, threads, blocks):
    assert w4_registers.blocks_per_sm(regs, threads) == blocks


def test_bad_arguments_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="multiple of 32"):
        w4_registers.blocks_per_sm(80, 100)
    with pytest.raises(ValueError, match="not a jg_w4_nv instance"):
        w4_registers.threads_of("jg_skinny_nv<jg_bf16, 1, 2, 16, 2, 1>")
    assert w4_registers.threads_of("jg_w4_nv<jg_bf16, 2, 32, 1, 1, 8, 2, 1>") == 256


@pytest.mark.skipif(not _nvrtc_ok()[0], reason=f"NVRTC: {_nvrtc_ok()[1]}")
def test_one_instance_measured_here_and_in_another_tree(tmp_path):
    name = "jg_w4_nv<jg_bf16, 2, 32, 1, 1, 4, 1, 1>"
    here = w4_registers.measure(name, "sm_90a")
    assert list(here) == [name] and isinstance(here[name], list)
    regs, spill, stack = here[name]
    assert 32 <= regs <= 255 and spill == 0 and stack == 0
    for part in ("jitgemm", "kernels_src"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert w4_registers.measure_in(tmp_path, name, "sm_90a") == here  # the same sources, the same counts
    with pytest.raises(SystemExit, match="no 4-bit instance"):
        w4_registers.measure("jg_w4_nv<no such", "sm_90a")
