"""tools/sanitize_driver.py on the null backend (CPU): every 4-bit instance is reached with the config it is
forced to, so a compute-sanitizer run on a GPU covers them all. The null device computes nothing, so each
result is the poisoned output, which the driver reports as unwritten: that, and only that, may fail here."""
import sys
from pathlib import Path

import numpy as np
import pytest

from jitgemm import dispatch
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import sanitize_driver as sd  # noqa: E402


@pytest.fixture(autouse=True)
def _recorder_undone(monkeypatch):
    """The driver wraps the entries' get_kernel for good: undone after each test."""
    from jitgemm import api, scaled, w4gemm
    for mod in (api, scaled, w4gemm):
        monkeypatch.setattr(mod, "get_kernel", mod.get_kernel)


def test_every_w4_instance_is_reached_as_forced():
    with installed(NullBackend()):
        dev, tally = sd.Device(), sd.Tally()
        sd.install_recorder()
        sd.run_w4(dev, tally, np.random.default_rng(0), 3)
    want = {i.name for i in dispatch.all_w4_instances("cuda")}
    assert tally.instances["w4"] == want and tally.launches["w4"] == 3 * len(want)
    assert len(tally.failures) == 3 * len(want)
    assert all("NaN (an unwritten output?)" in f for f in tally.failures), tally.failures[:3]


def test_the_other_families_reach_their_forced_instances():
    """16-bit, moderate N and fp8: a launch whose forced config fetched another instance would fail with
    'forcing ... launched'; here every launch fails only because the null device wrote nothing."""
    moderate = {i.name for i in dispatch.all_instances("cuda") if sd.MODERATE_NAME.fullmatch(i.name)}
    expected = {"16bit": {i.name for i in dispatch.all_instances("cuda")} - moderate, "moderate": moderate,
                "fp8": {i.name for i in dispatch.all_fp8_instances("cuda") if i.name.startswith("jg_fp8_nv<")}}
    runs = {"16bit": lambda d, t, r: sd.run_16bit(d, t, r, 1), "moderate": sd.run_moderate,
            "fp8": lambda d, t, r: sd.run_fp8(d, t, r, 1)}
    with installed(NullBackend()):
        dev = sd.Device()
        sd.install_recorder()
        for family, run in runs.items():
            tally = sd.Tally()
            run(dev, tally, np.random.default_rng(0))
            assert tally.launches[family] > 10 and len(tally.failures) == tally.launches[family], family
            assert tally.instances[family] == expected[family], family
            assert all("NaN (an unwritten output?)" in f for f in tally.failures), (family, tally.failures[:3])


def test_the_experts_wrappers_are_launched_and_checked():
    """w4_experts_gemm on tail shapes, shared and padded token groups, a bias or none, an expert id out of range:
    each format and dtype launched; on the null device every result is the poisoned output, so each launch fails
    only as unwritten (a real GPU must give NaN for the bad id's group and the float64 result for the others)."""
    with installed(NullBackend()):
        dev, tally = sd.Device(), sd.Tally()
        sd.run_w4_experts(dev, tally, np.random.default_rng(0), 4)
    assert tally.launches["w4-experts"] == 4 * 2 * 4 and len(tally.instances["w4-experts"]) == 8
    assert len(tally.failures) == 32
    assert all("NaN (an unwritten output?)" in f for f in tally.failures), tally.failures[:3]
