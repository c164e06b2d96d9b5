import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _gpu_present() -> tuple[bool, str]:
    try:
        from jitgemm.runtime.backend import default_backend
        b = default_backend()
        return True, f"{b.name}: {b.device_info(0).name}"
    except Exception as e:
        return False, str(e)


GPU, GPU_WHY = _gpu_present()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA or AMD GPU; skipped (reported as skipped) without one")


def pytest_collection_modifyitems(config, items):
    if GPU:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {GPU_WHY}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    """Each test session compiles into its own cache unless a test sets JITGEMM_CACHE_DIR itself."""
    if "JITGEMM_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("JITGEMM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _fresh_settings():
    """jitgemm reads its settings into a snapshot once: each test starts (and leaves) with the
    environment's (a test that changes it calls config.reload() itself)."""
    from jitgemm import config
    config.reload()
    yield
    config.reload()
