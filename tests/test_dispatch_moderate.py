"""The NVIDIA moderate-N plan and its host pieces on the CPU: the measured table drives the config and
matmul's BLAS routing, `explain` says which and why, shared memory that cannot fit raises (fewer stages
first), and the split-K workspace grows per stream with its counters zeroed once."""
import math

import numpy as np
import pytest

from jitgemm import api, config, dispatch, workspace
from jitgemm.arrays import View, as_view
from jitgemm.kernels import moderate


@pytest.mark.parametrize("arch,cluster", [("sm_90a", True), ("sm_80", False)])
def test_every_n_plans_from_the_table(arch, cluster, monkeypatch):
    monkeypatch.setenv("JITGEMM_BLAS", "0")  # the kernel's plans (cuBLAS routing: the next test)
    config.reload()  # settings are a snapshot: read the environment again
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


def test_table_buckets_and_blas_routing(monkeypatch):
    from jitgemm.runtime import blas
    # the shipped table: every tuned shape has the three N > 16 buckets, each measured against cuBLAS
    # (and maybe bucket 16: N <= 16 measured faster on this family than on the skinny one)
    for m, k, buckets in dispatch.load_table("moderate"):
        assert sorted(b for b in buckets if b > 16) == [32, 64, 128] and set(buckets) <= {16, 32, 64, 128}
        for v in buckets.values():
            assert len(v) == 9 and moderate.from_entry(v)[1] > 0
    monkeypatch.setattr(blas, "available", lambda: (True, "libcublas (test)"))
    api._plan_cached.cache_clear()
    routed = 0
    for m, k, buckets in dispatch.load_table("moderate"):
        for b, v in buckets.items():
            ratio = moderate.from_entry(v)[1]
            for n in {b, b - 1} if b > 16 else ():
                p = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", n, m, k)
                assert (p.family == "blas") == (ratio < 1.0), (m, k, n, str(p))
                routed += p.family == "blas"
                if p.family == "blas":  # the kernel it would have run is named, and how to get it
                    assert "measured" in p.reason and "JITGEMM_BLAS=0" in p.reason and p.config.S >= 1
                    with_bias = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", n, m, k, bias=True)
                    assert with_bias.family == "moderate" and "bias" in with_bias.reason
                    assert str(p).startswith("vendor BLAS: cuBLAS")
    assert routed > 0, "the shipped table measured cuBLAS faster somewhere: those shapes must route"
    # no BLAS for N <= 16, nor on AMD, nor with JITGEMM_BLAS=0, nor without the library
    assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 16, 5120, 4096).family != "blas"
    assert dispatch.plan_moderate("hip", "gfx942", 304, "bfloat16", 128, 5120, 4096).family == "moderate"
    monkeypatch.setenv("JITGEMM_BLAS", "0")
    config.reload()  # settings are a snapshot: read the environment again
    p = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 128, 5120, 4096)
    assert p.family == "moderate" and "JITGEMM_BLAS=0" in p.reason
    monkeypatch.delenv("JITGEMM_BLAS")
    config.reload()  # settings are a snapshot: read the environment again
    monkeypatch.setattr(blas, "available", lambda: (False, "no libcublas"))
    p = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 128, 5120, 4096)
    assert p.family == "moderate" and "not available" in p.reason
    why = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 32, 128, 2880).reason
    assert "cuBLAS's speed there" in why and "the kernel runs" not in why

    # matmul: through gemm (kernel or cuBLAS, the dispatcher's choice) on NVIDIA and the host for N <= 128;
    # AMD device operands above N = 16 (nothing measured) and N > 128 go to the array library's BLAS
    def device_view(shape, kind="cupy", dtype="float16", vendor="cuda"):
        return View(0x1000, shape, (shape[1], 1), dtype, dtype, 0, kind, object(), vendor=vendor)

    def pays(n, m, k, vendor="cuda"):
        return api._skinny_pays(device_view((n, k), vendor=vendor), device_view((k, m), vendor=vendor))
    assert pays(128, 5120, 4096) and pays(16, 5120, 4096) and not pays(129, 128, 2880)
    assert pays(16, 5120, 4096, "hip") and not pays(17, 5120, 4096, "hip")
    host = api._skinny_pays(as_view(np.zeros((128, 4096), np.float16), "a"), as_view(np.zeros((4096, 5120), np.float16), "b"))
    assert host


def test_an_untuned_shape_above_a_small_m_takes_cublas_not_a_neighbours_verdict(monkeypatch):
    """N > 16 at a shape no row measured: below UNTUNED_KERNEL_MAX_M the nearest row's verdict (the kernel won
    every such shape of the H100 broad run), above it cuBLAS (M = 896-1152 lost to 0.56x on a neighbour's
    config), unless a bias, JITGEMM_BLAS=0 or a missing library keeps the kernel; tuned shapes keep their own."""
    from jitgemm.runtime import blas
    monkeypatch.setattr(blas, "available", lambda: (True, "libcublas (test)"))
    api._plan_cached.cache_clear()
    tuned = {(m, k) for m, k, _ in dispatch.load_table("moderate")}
    for n in (17, 64, 128):
        for m, k in [(1152, 896), (1000, 4096), (896, 4864), (3000, 2048)]:
            assert (m, k) not in tuned
            p = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", n, m, k)
            assert p.family == "blas" and "untuned shape with M > 256" in p.reason and "jitgemm tune" in p.reason, p
            kept = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", n, m, k, bias=True)
            assert kept.family == "moderate" and "untuned shape with M > 256, but this call has a bias" in kept.reason
        for m, k in [(129, 8192), (17, 4096), (256, 2880)]:  # small M: the nearest row's verdict, the kernel here
            assert (m, k) not in tuned
            assert dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", n, m, k).family == "moderate"
    assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 16, 1152, 896).family == "skinny"  # N <= 16
    monkeypatch.setenv("JITGEMM_BLAS", "0")
    config.reload()
    p = dispatch.plan_moderate("cuda", "sm_90a", 132, "bfloat16", 64, 1152, 896)
    assert p.family == "moderate" and "JITGEMM_BLAS=0" in p.reason
    monkeypatch.delenv("JITGEMM_BLAS")
    config.reload()


def test_blas_call_maps_row_major_operands_to_column_major_cublas(monkeypatch):
    """out[N, M] = x[N, K] . w[M, K]^T reaches cublasGemmEx as outT = op_T(w) . x (column-major), pitches as
    leading dimensions, fp32 compute, the stream's own workspace set first."""
    from jitgemm.runtime import blas
    calls = []

    class FakeLib:
        def __getattr__(self, name):
            def f(*args):
                calls.append((name, args))
                return 0
            return f

    class FakeBackend:
        name = "cuda"
        def make_current(self, device):
            calls.append(("current", (device,)))
        def alloc(self, nbytes, device):
            calls.append(("alloc", (nbytes, device)))
            return 0xAB000 + device

    fake = blas._Cublas.__new__(blas._Cublas)
    fake.lib, fake.path, fake.handles = FakeLib(), "fake", {0: "H"}
    monkeypatch.setattr(blas, "_workspaces", {})
    fake.lock = __import__("threading").Lock()
    fake.alpha, fake.beta = blas.ctypes.c_float(1.0), blas.ctypes.c_float(0.0)
    monkeypatch.setattr(blas._cublas, "obj", fake)
    blas.gemm(FakeBackend(), 0, 77, "bfloat16", 24, 5120, 4096, 0x100, 4104, 0x200, 4096, 0x300, 5128)
    blas.gemm(FakeBackend(), 0, 77, "float16", 24, 5120, 4096, 0x100, 4104, 0x200, 4096, 0x300, 5128)
    names = [c[0] for c in calls if c[0] != "current"]
    assert [c for c in calls if c[0] == "current"] == [("current", (0,))] * 2  # the device's context, each call
    calls[:] = [c for c in calls if c[0] != "current"]
    assert names == ["alloc", "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasGemmEx",
                     "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasGemmEx"], names  # one workspace per stream
    assert calls[0][1] == (blas.WORKSPACE_BYTES, 0)
    assert calls[1][1][1].value == 77 and calls[2][1][1].value == 0xAB000 and calls[2][1][2] == blas.WORKSPACE_BYTES
    a = calls[3][1]
    assert a[0] == "H" and a[1:6] == (1, 0, 5120, 24, 4096)        # op_T(w), op_N(x), m=M, n=N, k=K
    assert (a[7].value, a[8], a[9]) == (0x200, 14, 4096)           # A = w, bf16, lda = w's pitch
    assert (a[10].value, a[11], a[12]) == (0x100, 14, 4104)        # B = x, ldb = x's pitch
    assert (a[14].value, a[15], a[16]) == (0x300, 14, 5128)        # C = out, ldc = out's pitch
    assert a[17:] == (68, -1)                                      # CUBLAS_COMPUTE_32F, default algorithm
    assert calls[6][1][8] == 2                                     # fp16: CUDA_R_16F


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
    assert "clusters" in c.requires and "clusters" not in w.requires


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


def test_workspace_is_per_stream_grows_and_zeroes_counters_once():
    b = _FakeBackend()   # workspaces are per backend object: this one starts with none
    a1 = workspace.get(b, 0, 7, 5000, 10)
    assert a1.floats == 8192 and a1.tiles == 256          # next power of two, at least 1024 / 256
    assert b.memsets == [(a1.counters.ptr, 0, 256 * 4, 7)]  # counters zeroed on the stream that uses them
    assert workspace.get(b, 0, 7, 8000, 200) is a1 and len(b.memsets) == 1   # reused, no zeroing again
    other = workspace.get(b, 0, 9, 100, 1)
    assert other is not a1 and len(b.memsets) == 2          # another stream: its own
    a2 = workspace.get(b, 0, 7, 9000, 10)
    assert a2 is not a1 and a2.floats == 16384 and len(b.memsets) == 3
    assert not b.freed                                      # outgrown, kept: a queued kernel may read it
    assert workspace.held_bytes(b) == sum(w.floats * 4 + w.tiles * 4 for w in (a1, a2, other))


def test_table_entries_old_and_new_format():
    """Tables written before KS existed (7 or 8 fields) still load, as KS = 1."""
    cfg, ratio = moderate.from_entry((64, 64, 2, 2, 4, 3, 1, 0.9))
    assert cfg == moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2, 4, 1), 3, 1) and ratio == 0.9
    assert moderate.from_entry((64, 64, 2, 2, 4, 3, 1))[1] is None
    new = moderate.ModerateConfig(moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2), 4, 1)
    assert moderate.from_entry(moderate.to_entry(new, 1.25)) == (new, 1.25)


def test_wgmma_tile_falls_back_off_sm90a(nv_tables):
    """A wgmma table entry runs only on sm_90a; elsewhere an mma.sync tile with the same K slices."""
    wg = moderate.ModerateConfig(moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2), 4, moderate.RED_CLUSTER)
    nv_tables(moderate=[(2880, 2880, {64: moderate.to_entry(wg, 1.1)})])
    on90a, why90a = dispatch.moderate_nv_config(64, 2880, 2880, 132, "sm_90a")
    assert on90a == wg and "sm_90a" not in why90a
    for arch, red in (("sm_100a", moderate.RED_CLUSTER), ("sm_90", moderate.RED_CLUSTER),
                      ("sm_80", moderate.RED_WORKSPACE)):
        cfg, why = dispatch.moderate_nv_config(64, 2880, 2880, 132, arch)
        assert not cfg.tile.wgmma and cfg.S == 4 and cfg.RED == red, (arch, cfg)
        assert "needs sm_90a" in why
    p = dispatch.plan_moderate("cuda", "sm_100a", 148, "bfloat16", 64, 2880, 2880)
    assert "wgmma" not in p.instance.requires
    assert "wgmma" in wg.instance("bfloat16").requires


def test_wgmma_geometry():
    t = moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2)
    assert t.threads == 256 and t.runs_on("sm_90a") and not t.runs_on("sm_90") and not t.runs_on("sm_100a")
    assert t.shared_bytes() == 4 * 2 * (128 + 64) * 128 + 1024  # + 1 KiB to align the stages to 1024 bytes
    assert "wgmma m64n64k16" in moderate.ModerateConfig(t, 2, 1).describe()


def test_the_shipped_h100_table_keeps_n_up_to_16_on_the_skinny_family():
    """Session 24: the 16-token tile at N <= 16 lost in every model-order step that ran it (gpt-oss-20b's qkv 7 %
    at N = 1), so no shipped row has bucket 16 any more, and `jitgemm tune` no longer times it (the last test)."""
    rows = dispatch.load_table("moderate")
    assert rows and all(16 not in b for _, _, b in rows)
    for m, k, _ in rows:
        assert not dispatch.small_n_moderate(m, k, "sm_90a")
        assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, m, k).family == "skinny"


def test_small_n_runs_the_moderate_family_only_where_the_table_adopted_it(small_n_tables):
    """N = 1..16 go to the moderate family only at shapes whose table row has bucket 16 (the tuner's
    choice over N = 1, 4, 8, 16 against the skinny family), and then with one config for every N <= 16: one 16-token
    tile, the same K slices, so a token's bits cannot depend on the batch size. The table: the shipped rows with the
    bucket 16 six of them had until session 24 (conftest.small_n_tables)."""
    rows = [(m, k) for m, k, b in dispatch.load_table("moderate") if 16 in b]
    assert sorted(rows) == small_n_tables
    for m, k in rows:
        assert dispatch.small_n_moderate(m, k, "sm_90a")
        plans = [dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", n, m, k) for n in range(1, 17)]
        assert {p.family for p in plans} == {"moderate"}
        assert len({(p.instance, p.grid, p.extra["kb"]) for p in plans}) == 1, "one config for every N <= 16"
        assert plans[0].grid[1] == 1 and plans[0].config.tile.BN == 16
        assert "do not depend on the batch size" in plans[0].reason
        # its wgmma tile runs on sm_90a only: elsewhere the skinny family keeps N <= 16
        assert dispatch.plan_gemm("cuda", "sm_90", 132, "bfloat16", 8, m, k).family == "skinny"
        assert dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 8, m, k).family == "skinny"
    # shapes only the skinny table measured (the decode suite) stay skinny
    for m, k, _, _ in dispatch.load_table("skinny"):
        if (m, k) in rows:
            continue
        assert not dispatch.small_n_moderate(m, k, "sm_90a")
        assert dispatch.plan_gemm("cuda", "sm_90a", 132, "float16", 16, m, k).family == "skinny"
    # ... and so do untuned shapes, however near an adopting row (a neighbour's win is not generalized: on an
    # H200 that lost 0.76-0.79x against cuBLAS), and shapes far from every row
    for m, k in [(m + 16, k + 8) for m, k in rows] + [(m * 3 // 2, k) for m, k in rows] + [(32, 2880), (640, 1024)]:
        assert not dispatch.small_n_moderate(m, k, "sm_90a"), (m, k)
        assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, m, k).family == "skinny"
    # rows without bucket 16 (measured slower at some N) keep the skinny family
    for m, k, b in dispatch.load_table("moderate"):
        if 16 not in b:
            assert not dispatch.small_n_moderate(m, k, "sm_90a")


def test_tune_has_no_16_token_tile_among_its_n_up_to_16_candidates():
    """Timed alone the moderate family's 16-token tile won at some decode shapes (up to 11 % on an H200 at the 70B
    TP-8 shard's qkv, 1280 x 8192) and lost every model step that ran it (the same qkv: that step 6 % slower at
    N = 1 and 4, session 35), so `jitgemm tune` times only the skinny family at N <= 16 and never writes bucket 16;
    N > 16 still times the moderate tiles."""
    from types import SimpleNamespace
    from jitgemm import tuning
    fake_cp = SimpleNamespace(cuda=SimpleNamespace(Stream=lambda non_blocking: None))
    info = SimpleNamespace(arch="sm_90a", multiprocessors=132, name="NVIDIA H200", l2_bytes=60 << 20)
    shapes = [tuning.Shape("llama70b-tp8.qkv", 1280, 8192)]
    small = tuning._Sweep(fake_cp, info, "bfloat16", (1, 4, 8, 16))
    names = small.instances(shapes)
    assert names and all(i.source == "skinny.hip" for i in names)
    assert small.count(shapes) == 4 * len(small.skinny)
    both = tuning._Sweep(fake_cp, info, "bfloat16", (16, 64))
    assert {i.source for i in both.instances(shapes)} == {"skinny.hip", "moderate.hip"}
