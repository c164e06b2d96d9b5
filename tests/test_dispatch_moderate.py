"""The NVIDIA moderate-N plan and its host pieces on the CPU: the measured table drives the config and
matmul's BLAS routing, `explain` says which and why, shared memory that cannot fit raises (fewer stages
first), and the split-K workspace grows per stream with its counters zeroed once."""
import math

import numpy as np
import pytest

from jitgemm import api, dispatch, workspace
from jitgemm.arrays import View, as_view
from jitgemm.kernels import moderate


@pytest.mark.parametrize("arch,cluster", [("sm_90a", True), ("sm_80", False)])
def test_every_n_plans_from_the_table(arch, cluster):
    insts = set(dispatch.all_instances("cuda"))
    for n in range(17, 129):
        for m, k in [(128, 2880), (640, 4096), (2880, 2888), (5120, 4096), (300, 88)]:
            p = dispatch.plan_moderate("cuda", arch, 132, "float16", n, m, k)
            cfg, t = p.config, p.config.tile
            assert p.family == "moderate" and p.instance in insts, p.instance.name
            kb, per = math.ceil(k / moderate.BK), cfg.kb_per_split(k)
            tiles = math.ceil(m / t.BM) * math.ceil(n / t.BN)
            assert p.extra["tiles"] == tiles
            assert per * cfg.S >= kb and per * (cfg.S - 1) < kb  # K covered, no empty slice
            assert cfg.RED != moderate.RED_CLUSTER or (cluster and 2 <= cfg.S <= moderate.MAX_CLUSTER)
            assert (cfg.RED == moderate.RED_NONE) == (cfg.S == 1)
            assert p.grid == (math.ceil(m / t.BM), math.ceil(n / t.BN), cfg.S)
            assert p.extra["ws_floats"] == (p.grid[0] * p.grid[1] * cfg.S * t.BM * t.BN
                                            if cfg.RED == moderate.RED_WORKSPACE else 0)
            assert "N bucket" in p.reason and "measured table" in p.reason


def test_table_buckets_and_blas_routing():
    # the shipped table: every tuned shape has the three buckets, each measured against cuBLAS
    for m, k, buckets in dispatch.load_table("moderate"):
        assert sorted(buckets) == [32, 64, 128]
        for v in buckets.values():
            assert len(v) == 9 and moderate.from_entry(v)[1] > 0
    # matmul on CuPy fp16 (cuBLAS is there): the kernel where it measured faster than cuBLAS, cuBLAS where not
    def device_view(shape, kind="cupy", dtype="float16"):
        return View(0x1000, shape, (shape[1], 1), dtype, dtype, 0, kind, object(), vendor="cuda")

    def pays(n, m, k):
        return api._skinny_pays(device_view((n, k)), device_view((k, m)))
    for m, k, buckets in dispatch.load_table("moderate"):
        for b, v in buckets.items():
            ratio = moderate.from_entry(v)[1]
            assert pays(b, m, k) == (ratio >= 1.0), (m, k, b)
            assert pays(b - 1, m, k) == (ratio >= 1.0)
    assert pays(16, 5120, 4096) and not pays(129, 128, 2880)
    # no GPU BLAS for these operands (numpy on the host, CuPy-held bf16): the GPU kernel always
    host = api._skinny_pays(as_view(np.zeros((128, 4096), np.float16), "a"), as_view(np.zeros((4096, 5120), np.float16), "b"))
    bf16 = api._skinny_pays(device_view((128, 4096), "device", "bfloat16"), device_view((4096, 5120), "device", "bfloat16"))
    assert host and bf16
    why = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 128, 5120, 4096).reason
    assert "sends this shape to cuBLAS" in why
    why = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 32, 128, 2880).reason
    assert "runs this kernel" in why


def test_shared_memory_that_cannot_fit_raises_after_fewer_stages():
    big = moderate.ModerateConfig(moderate.NvTile(128, 128, 2, 4, 4), 2, moderate.RED_CLUSTER)
    assert big.tile.shared_bytes() == 4 * 256 * 128
    fitted = dispatch.fit_shared(big, 100 << 10)  # 4 stages = 128 KiB > 100 KiB: 3 stages (96 KiB)
    assert fitted.tile.ST == 3 and fitted.tile.shared_bytes() <= 100 << 10
    with pytest.raises(ValueError, match=r"needs \d+ B of shared memory per block, more than this device's 40000 B"):
        dispatch.fit_shared(big, 40000)
    small = moderate.ModerateConfig(moderate.NvTile(32, 32, 2, 1, 4), 1, moderate.RED_NONE)
    assert dispatch.fit_shared(small, 48 << 10) == small


def test_cluster_instances_are_known_and_skipped_before_sm90():
    c = moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2), 4, moderate.RED_CLUSTER).instance("bfloat16")
    w = moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2), 4, moderate.RED_WORKSPACE).instance("bfloat16")
    assert dispatch.needs_cluster(c) and not dispatch.needs_cluster(w)


class _FakeBackend:
    """Records allocations and memsets: the workspace logic without a GPU."""
    name = "fake"

    def __init__(self):
        self.allocs, self.memsets, self.freed, self._next = [], [], [], 0x1000

    def alloc(self, nbytes, device):
        self._next += 1 << 20
        self.allocs.append(nbytes)
        return self._next

    def free(self, ptr, device):
        self.freed.append(ptr)

    def memset(self, ptr, byte, nbytes, stream, device):
        self.memsets.append((ptr, byte, nbytes, stream))


def test_workspace_is_per_stream_grows_and_zeroes_counters_once(monkeypatch):
    monkeypatch.setattr(workspace, "_spaces", {})
    monkeypatch.setattr(workspace, "_retired", [])
    b = _FakeBackend()
    a1 = workspace.get(b, 0, 7, 5000, 10)
    assert a1.floats == 8192 and a1.tiles == 256          # next power of two, at least 1024 / 256
    assert b.memsets == [(a1.counters.ptr, 0, 256 * 4, 7)]  # counters zeroed on the stream that uses them
    assert workspace.get(b, 0, 7, 8000, 200) is a1 and len(b.memsets) == 1   # reused, no zeroing again
    other = workspace.get(b, 0, 9, 100, 1)
    assert other is not a1 and len(b.memsets) == 2          # another stream: its own
    a2 = workspace.get(b, 0, 7, 9000, 10)
    assert a2 is not a1 and a2.floats == 16384 and len(b.memsets) == 3
    assert a1 in workspace._retired and not b.freed         # outgrown, kept: a queued kernel may read it
    assert workspace.held_bytes() == sum(w.floats * 4 + w.tiles * 4 for w in (a1, a2, other))
    monkeypatch.setattr(workspace, "_spaces", {})
    monkeypatch.setattr(workspace, "_retired", [])


def test_table_entries_old_and_new_format():
    """Tables written before KS existed (7 or 8 fields) still load, as KS = 1."""
    cfg, ratio = moderate.from_entry((64, 64, 2, 2, 4, 3, 1, 0.9))
    assert cfg == moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2, 4, 1), 3, 1) and ratio == 0.9
    assert moderate.from_entry((64, 64, 2, 2, 4, 3, 1))[1] is None
    new = moderate.ModerateConfig(moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2), 4, 1)
    assert moderate.from_entry(moderate.to_entry(new, 1.25)) == (new, 1.25)


def test_wgmma_tile_falls_back_off_sm90a(monkeypatch):
    """A wgmma table entry runs only on sm_90a; elsewhere an mma.sync tile with the same K slices."""
    wg = moderate.ModerateConfig(moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2), 4, moderate.RED_CLUSTER)
    monkeypatch.setattr(dispatch, "moderate_entry", lambda n, m, k: (2880, 2880, 64, moderate.to_entry(wg, 1.1)))
    on90a, why90a = dispatch.moderate_nv_config(64, 2880, 2880, 132, "sm_90a")
    assert on90a == wg and "sm_90a" not in why90a
    for arch, red in (("sm_100a", moderate.RED_CLUSTER), ("sm_90", moderate.RED_CLUSTER),
                      ("sm_80", moderate.RED_WORKSPACE)):
        cfg, why = dispatch.moderate_nv_config(64, 2880, 2880, 132, arch)
        assert not cfg.tile.wgmma and cfg.S == 4 and cfg.RED == red, (arch, cfg)
        assert "needs sm_90a" in why
    p = dispatch.plan_moderate("cuda", "sm_100a", 148, "bfloat16", 64, 2880, 2880)
    assert not dispatch.needs_wgmma(p.instance)
    assert dispatch.needs_wgmma(wg.instance("bfloat16"))


def test_wgmma_geometry():
    t = moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2)
    assert t.threads == 256 and t.runs_on("sm_90a") and not t.runs_on("sm_90") and not t.runs_on("sm_100a")
    assert t.shared_bytes() == 4 * 2 * (128 + 64) * 128 + 1024  # + 1 KiB to align the stages to 1024 bytes
    assert "wgmma m64n64k16" in moderate.ModerateConfig(t, 2, 1).describe()
