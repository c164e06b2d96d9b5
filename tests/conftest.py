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


def cuda_torch():
    """torch, for GPU tests that need it with a CUDA device (skips the test otherwise)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return torch


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
def _private_tuning(tmp_path_factory, monkeypatch, request):
    """Tuning files (jitgemm.tuned) in a folder of the test's own, also where JITGEMM_CACHE_DIR is the user's
    (to reuse compiled kernels): a tuning the user made must neither change the plans tests assert nor be
    overwritten or removed by the tests that tune (session 22: a tuning left in the cache failed six)."""
    from jitgemm import tables, tuned
    root = tmp_path_factory.getbasetemp() / "tuned" / f"{abs(hash(request.node.nodeid)):x}"
    monkeypatch.setattr(tuned, "path", lambda device: root / f"{tables.slug(device)}.json")


@pytest.fixture(autouse=True)
def _fresh_settings():
    """jitgemm reads its settings into a snapshot once: each test starts (and leaves) with the
    environment's (a test that changes it calls config.reload() itself)."""
    from jitgemm import config
    config.reload()
    yield
    config.reload()


def table_doc(skinny=None, moderate=None, fp8=None, device="test GPU", arch="sm_90a", w4=None) -> dict:
    """A tables document (jitgemm.tables) from rows in the dispatcher's tuple forms: skinny/fp8 and w4
    ({"w4-<format>": rows}) (M, K, (WK, U, SK), {bucket: MT}[, {bucket: min_blocks}, {} for own weight only]), moderate (M, K, {bucket:
    (BM, BN, WM, WN, ST, KS, S, RED, ratio)})."""
    from jitgemm import tables

    def skinny_rows(rows):
        return None if rows is None else [tables.skinny_row_doc(f"m{r[0]}.k{r[1]}", *r[:4], min_blocks=r[4],
                                                                  own_weight=not r[4])
                                          if len(r) > 4 else tables.skinny_row_doc(f"m{r[0]}.k{r[1]}", *r)
                                          for r in rows]
    fams = {"skinny": skinny_rows(skinny), "fp8": skinny_rows(fp8),
            "moderate": None if moderate is None else [
                {"name": f"m{m}.k{k}", "m": m, "k": k,
                 "buckets": {str(b): tables.moderate_entry_doc(e) for b, e in buckets.items()}}
                for m, k, buckets in moderate]}
    fams.update({fam: skinny_rows(rows) for fam, rows in (w4 or {}).items()})
    return tables.document("cuda", device, arch, {"date": "test"}, fams)


@pytest.fixture
def nv_tables(tmp_path, monkeypatch):
    """Point the dispatcher at a tables file of the test's rows (JITGEMM_NV_TUNING, the public seam):
    nv_tables(moderate=[...]) -> its path. A family left out stays as shipped; [] means no rows."""
    from jitgemm import config, tables

    def use(**families):
        path = tmp_path / f"tables-{len(list(tmp_path.glob('tables-*.json')))}.json"
        path.write_text(tables.dumps(table_doc(**families)))
        monkeypatch.setenv("JITGEMM_NV_TUNING", str(path))
        config.reload()
        return path
    return use


# bucket 16 (N <= 16 on the moderate family's 16-token tile) of the six shapes the shipped H100 table adopted it for
# until session 24 (as measured then): the dispatcher's small-N path, which `jitgemm tune` may still take, tested on
# the rows it was built for
SMALL_N_BUCKETS = {(128, 2880): (64, 16, 1, 0, 4, 1, 8, 1, 1.528), (640, 2880): (64, 16, 1, 0, 4, 2, 8, 1, 1.473),
                   (5120, 2880): (64, 16, 1, 0, 8, 2, 1, 0, 1.008), (128, 4096): (64, 16, 1, 0, 3, 4, 8, 1, 1.432),
                   (640, 4096): (64, 16, 1, 0, 4, 2, 8, 1, 1.502), (5120, 4096): (64, 16, 1, 0, 6, 2, 1, 0, 1.04)}


@pytest.fixture
def small_n_tables(nv_tables):
    """The shipped moderate rows with SMALL_N_BUCKETS' bucket 16 put back (JITGEMM_NV_TUNING); returns the adopting
    shapes. Reductions: 0 none, 1 cluster (jitgemm.kernels.moderate.RED_*)."""
    from jitgemm import dispatch
    rows = [(m, k, {**({16: SMALL_N_BUCKETS[(m, k)]} if (m, k) in SMALL_N_BUCKETS else {}), **b})
            for m, k, b in dispatch.load_table("moderate")]
    nv_tables(moderate=rows)
    return sorted(SMALL_N_BUCKETS)


@pytest.fixture
def no_device():
    """A machine without a GPU, whatever this one has: the installed stand-in backend raises BackendUnavailable
    from every device method, as the real backends do with no driver (fake pointers never reach a kernel)."""
    from jitgemm.errors import BackendUnavailable
    from jitgemm.runtime.backend import installed
    from jitgemm.runtime.null import NullBackend

    def unavailable(what):
        return BackendUnavailable(f"fuzz: no device ({what})")
    with installed(NullBackend(fail=unavailable)):
        yield


class GpuTouched(Exception):
    """Raised by the tripwire fixture's stand-in backends: a call reached GPU work."""


@pytest.fixture
def tripwire():
    """Both vendors' backends replaced by stand-ins whose every device method raises GpuTouched: a rule that
    fires first raises its own ValueError/TypeError; the same call with the rule satisfied raises GpuTouched."""
    from jitgemm.runtime.backend import installed
    from jitgemm.runtime.null import NullBackend

    def touched(what):
        return GpuTouched(f"GPU work reached: {what}")
    with installed(NullBackend("hip", fail=touched)), installed(NullBackend("cuda", fail=touched)):
        yield
