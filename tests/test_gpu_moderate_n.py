"""GPU correctness of moderate N (17..128 tokens): the seed's wvSplitKrc grid, determinism, and the
shapes the seed skipped for lack of CUs (here they simply run)."""
import numpy as np
import pytest

import jitgemm
from reference import assert_close, random
from gpu_helpers import empty_device, run_gemm, sync, to_device

pytestmark = pytest.mark.gpu

NS = [13, 16, 17, 25, 29, 31, 32, 41, 51, 64, 71, 81, 91, 103, 117, 128]
KS = [2880, 2888, 3072, 3080]
MS = [128, 144, 256, 272, 640, 656]


run = run_gemm


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k", KS)
def test_seed_wvsplitkrc_grid(k, m, dtype):
    rng = np.random.default_rng(k * 1000 + m)
    xavier = (2.0 / k) ** 0.5
    w = random((m, k), dtype, rng, xavier)
    for n in NS:
        x = random((n, k), dtype, rng, xavier)
        for bias in (None, random((m,), dtype, rng), random((n, m), dtype, rng)):
            assert_close(run(x, w, bias, dtype), x, w, bias, dtype)


@pytest.mark.parametrize("n,m,k", [(128, 640, 2880), (33, 5120, 4096), (64, 128, 3080)])
def test_bitwise_deterministic_over_20_runs(n, m, k):
    rng = np.random.default_rng(n + m + k)
    x, w = random((n, k), "bfloat16", rng), random((m, k), "bfloat16", rng)
    first = run(x, w, None, "bfloat16").view(np.uint16)
    for _ in range(19):
        assert np.array_equal(run(x, w, None, "bfloat16").view(np.uint16), first)


def test_token_position_does_not_change_bits():
    rng = np.random.default_rng(3)
    n, m, k = 100, 656, 3080
    x, w = random((n, k), "float16", rng), random((m, k), "float16", rng)
    a = run(x, w, None, "float16").view(np.uint16)
    perm = rng.permutation(n)
    b = run(x[perm], w, None, "float16").view(np.uint16)
    assert np.array_equal(b, a[perm])


# ---- every tile and every reduction, forced ------------------------------------------------------------
from jitgemm import api
from jitgemm.bench.runner import forced_config
from jitgemm.kernels import moderate


def forced(cfg):
    """Plans for N > 16 use `cfg` (the dispatcher's choice replaced, plan cache cleared around it)."""
    return forced_config(cfg, "forced by test")


REDUCTIONS = [(1, moderate.RED_NONE), (2, moderate.RED_CLUSTER), (8, moderate.RED_CLUSTER),
              (3, moderate.RED_WORKSPACE), (16, moderate.RED_WORKSPACE)]


@pytest.mark.parametrize("tile", moderate.NV_TILES, ids=lambda t: f"{t.BM}x{t.BN}{'wg' if t.wgmma else ''}-st{t.ST}-ks{t.KS}")
@pytest.mark.parametrize("s,red", REDUCTIONS, ids=lambda v: str(v))
def test_every_tile_and_reduction(tile, s, red):
    """Tails in M, N and K (M = 656 + 5, N = 117, K = 3080) with a 2-D bias and padded rows; wgmma
    tiles (sm_90a) in fp16 too: their instruction names the input type."""
    for dtype in ("bfloat16", "float16") if tile.wgmma else ("bfloat16",):
        rng = np.random.default_rng(s * 100 + red)
        n, m, k = 117, 661, 3080
        x, w = random((n, k), dtype, rng), random((m, k), dtype, rng, (2.0 / k) ** 0.5)
        bias = random((n, m), dtype, rng)
        cfg = moderate.ModerateConfig(tile, s, red)
        with forced(cfg):
            plan = api._plan_cached("cuda", "sm_90a", 132, dtype, n, m, k, 50 << 20, 227 << 10, ())
            assert plan.instance == cfg.instance(dtype)
            got = run_gemm(x, w, bias, dtype, pad_x=8, pad_w=16)
        assert_close(got, x, w, bias, dtype)


@pytest.mark.parametrize("tile", [moderate.NvTile(64, 64, 2, 2), moderate.NvTile(128, 64, 2, moderate.WGMMA, 4, 2)],
                         ids=["mma", "wgmma"])
@pytest.mark.parametrize("s,red", REDUCTIONS[1:], ids=lambda v: str(v))
def test_split_reductions_are_bitwise_deterministic(s, red, tile):
    rng = np.random.default_rng(7)
    x, w = random((64, 2880), "float16", rng), random((640, 2880), "float16", rng, 0.03)
    with forced(moderate.ModerateConfig(tile, s, red)):
        first = run_gemm(x, w, None, "float16").view(np.uint16)
        for _ in range(19):
            assert np.array_equal(run_gemm(x, w, None, "float16").view(np.uint16), first)


def test_workspace_counters_reset_across_shapes_and_streams():
    """One workspace per stream, reused by calls of other shapes (more tiles, fewer slices): the
    counters each kernel leaves at zero must be right for the next; two streams in flight at once."""
    import cupy as cp
    rng = np.random.default_rng(11)
    cfgs = [moderate.ModerateConfig(moderate.NvTile(32, 32, 2, 1), 16, moderate.RED_WORKSPACE),
            moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2), 5, moderate.RED_WORKSPACE)]
    cases = []
    for n, m, k in [(40, 256, 4096), (100, 1000, 2888), (17, 128, 2880)]:
        cases.append((random((n, k), "float16", rng), random((m, k), "float16", rng, 0.03)))
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    for rep in range(3):
        for cfg in cfgs:
            with forced(cfg):
                outs = []
                for i, (x, w) in enumerate(cases):
                    s = streams[(i + rep) % 2]
                    xd, wd = cp.asarray(x), cp.asarray(w)
                    outs.append((jitgemm.gemm(xd, wd, stream=s), x, w))
                for s in streams:
                    s.synchronize()
                for o, x, w in outs:
                    assert_close(cp.asnumpy(o), x, w, None, "float16")


def test_prepared_workspace_plan_replays_in_a_graph():
    import cupy as cp
    rng = np.random.default_rng(5)
    x, w = random((77, 2880), "float16", rng), random((640, 2880), "float16", rng, 0.03)
    xd, wd = cp.asarray(x), cp.asarray(w)
    out = cp.empty((77, 640), cp.float16)
    with forced(moderate.ModerateConfig(moderate.NvTile(64, 128, 2, 4), 12, moderate.RED_WORKSPACE)):
        p = jitgemm.prepare(xd, wd, out=out)
    s = cp.cuda.Stream(non_blocking=True)
    p.launch(s.ptr)  # binds this stream's workspace before capture
    s.synchronize()
    first = cp.asnumpy(out).view(np.uint16)
    assert_close(first.view(np.float16), x, w, None, "float16")
    s.begin_capture()
    for _ in range(3):
        p.launch(s.ptr)
    g = s.end_capture()
    for _ in range(4):
        out.fill(0)
        g.launch(s)
        s.synchronize()
        assert np.array_equal(cp.asnumpy(out).view(np.uint16), first)


def test_dispatcher_plan_explains_the_family():
    rng = np.random.default_rng(1)
    x, w = random((64, 2880), "bfloat16", rng), random((640, 2880), "bfloat16", rng)
    text = jitgemm.explain(x, w)
    assert text.startswith("moderate jg_moderate_nv<") and ("measured table" in text or "heuristic" in text), text
