"""GPU correctness of moderate N (17..128 tokens): the seed's wvSplitKrc grid, determinism, and the
shapes the seed skipped for lack of CUs (here they simply run)."""
import numpy as np
import pytest

import jitgemm
from reference import assert_close, random
from gpu_helpers import run_gemm

pytestmark = pytest.mark.gpu

NS = [13, 16, 17, 25, 29, 31, 32, 41, 51, 64, 71, 81, 91, 103, 117, 128]
KS = [2880, 2888, 3072, 3080]
MS = [128, 144, 256, 272, 640, 656]


run = run_gemm


@pytest.fixture
def kernel_route(monkeypatch):
    """JITGEMM_BLAS=0: the moderate kernel also where the dispatcher would send a bias-free call to cuBLAS (an
    untuned shape with M > 256, or a row that measured cuBLAS faster); these tests are about the kernel, the
    cuBLAS route has its own below."""
    from jitgemm import config
    monkeypatch.setenv("JITGEMM_BLAS", "0")
    config.reload()  # settings are a snapshot: read the environment again
    yield
    monkeypatch.delenv("JITGEMM_BLAS")
    config.reload()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k", KS)
def test_seed_wvsplitkrc_grid(k, m, dtype, kernel_route):
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


def test_token_position_does_not_change_bits(kernel_route):
    rng = np.random.default_rng(3)
    n, m, k = 100, 656, 3080
    x, w = random((n, k), "float16", rng), random((m, k), "float16", rng)
    a = run(x, w, None, "float16").view(np.uint16)
    perm = rng.permutation(n)
    b = run(x[perm], w, None, "float16").view(np.uint16)
    assert np.array_equal(b, a[perm])


# ---- every tile and every reduction, forced ------------------------------------------------------------
from jitgemm import api, config
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
            plan = api._plan_cached("cuda", "sm_90a", 132, dtype, n, m, k, 50 << 20, 227 << 10, True, ())
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
    replays_in_a_graph(p, out, cp.cuda.Stream(non_blocking=True), x, w)


def replays_in_a_graph(p, out, s, x, w):
    """One launch on stream s (binding its workspace before capture), checked against float64; then a
    graph of three launches replayed four times, each giving the same bits. Returns those bits."""
    import cupy as cp
    p.launch(s.ptr)
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
    return first


def test_dispatcher_plan_explains_the_family():
    rng = np.random.default_rng(1)
    x, w = random((64, 2880), "bfloat16", rng), random((640, 2880), "bfloat16", rng)
    text = jitgemm.explain(x, w)
    assert text.startswith("moderate jg_moderate_nv<") and ("measured table" in text or "heuristic" in text), text


# ---- N <= 16 on the moderate family (where the table measured it faster than the skinny one) -------------
# shapes whose row adopted the 16-token tile (its bucket 16: the shipped H100 table's until session 24, put back by
# conftest.small_n_tables, as `jitgemm tune` may adopt it); the rule takes exact shapes only
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("m,k", [(640, 2880), (128, 4096), (5120, 2880)])
def test_small_n_on_the_moderate_family_is_batch_invariant(m, k, dtype, small_n_tables):
    rng = np.random.default_rng(m + k)
    x, w = random((16, k), dtype, rng), random((m, k), dtype, rng, (2.0 / k) ** 0.5)
    for n in range(1, 17):
        assert jitgemm.explain(x[:n], w).startswith("moderate jg_moderate_nv<"), jitgemm.explain(x[:n], w)
    full = run(x, w, None, dtype)
    assert_close(full, x, w, None, dtype)
    bits = full.view(np.uint16)
    for n in range(1, 16):  # every batch size gives each token the bits it has in the 16-token batch
        assert np.array_equal(run(x[:n], w, None, dtype).view(np.uint16), bits[:n]), f"N={n} changed bits"
    perm = rng.permutation(16)
    assert np.array_equal(run(x[perm], w, None, dtype).view(np.uint16), bits[perm])
    alone = run(np.ascontiguousarray(x[9:10]), w, None, dtype).view(np.uint16)
    assert np.array_equal(alone[0], bits[9])
    for bias in (random((m,), dtype, rng), random((5, m), dtype, rng)):
        assert_close(run(x[:5], w, bias, dtype), x[:5], w, bias, dtype)


@pytest.mark.parametrize("m,k", [(136, 4104), (5104, 2880)])
def test_an_untuned_neighbour_of_an_adopting_shape_keeps_the_skinny_family(m, k, small_n_tables):
    """A win of the 16-token tile measured at one shape does not carry to its neighbours (on an H200 that
    lost 0.76-0.79x against cuBLAS): N <= 16 of an untuned shape next to an adopting one runs the skinny
    family (its K order, and so its bits, the same at every N: the skinny family's own tests check that)."""
    rng = np.random.default_rng(m + k)
    x, w = random((16, k), "bfloat16", rng), random((m, k), "bfloat16", rng, (2.0 / k) ** 0.5)
    for n in range(1, 17):
        assert jitgemm.explain(x[:n], w).startswith("skinny jg_skinny_nv<"), jitgemm.explain(x[:n], w)
    assert_close(run(x[:7], w, None, "bfloat16"), x[:7], w, None, "bfloat16")


# ---- cuBLAS where the table measured it faster (N > 16, no bias) -------------------------------------------
def _blas_shape_or_skip():
    from jitgemm.runtime import blas
    ok, why = blas.available()
    if not ok:
        pytest.skip(f"no cuBLAS here: {why}")
    from jitgemm import dispatch
    for m, k, buckets in dispatch.load_table("moderate"):
        for b, v in buckets.items():
            if b > 16 and moderate.from_entry(v)[1] < 1.0:
                return b, m, k
    pytest.skip("the shipped table has no shape where cuBLAS measured faster")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_blas_route_is_correct_deterministic_and_strided(dtype, monkeypatch):
    n, m, k = _blas_shape_or_skip()
    rng = np.random.default_rng(n * m)
    x, w = random((n, k), dtype, rng), random((m, k), dtype, rng, (2.0 / k) ** 0.5)
    text = jitgemm.explain(x, w)
    assert text.startswith("vendor BLAS: cuBLAS"), text
    first = run(x, w, None, dtype, pad_x=24, pad_w=64)  # row pitches that are not the row length
    assert_close(first, x, w, None, dtype)
    bits = first.view(np.uint16)
    for _ in range(19):
        assert np.array_equal(run(x, w, None, dtype).view(np.uint16), bits)
    assert np.array_equal(np.asarray(jitgemm.gemm(x, w)).view(np.uint16), bits)  # numpy in, numpy out
    perm = rng.permutation(n)  # a token's bits do not depend on its position in the batch
    assert np.array_equal(run(x[perm], w, None, dtype).view(np.uint16), bits[perm])
    # with a bias the kernel runs (it fuses the bias); so it does with JITGEMM_BLAS=0
    bias = random((m,), dtype, rng)
    assert jitgemm.explain(x, w, bias).startswith("moderate jg_moderate_nv<")
    assert_close(run(x, w, bias, dtype), x, w, bias, dtype)
    monkeypatch.setenv("JITGEMM_BLAS", "0")
    config.reload()  # settings are a snapshot: read the environment again
    assert jitgemm.explain(x, w).startswith("moderate jg_moderate_nv<")
    assert_close(run(x, w, None, dtype), x, w, None, dtype)


def test_blas_route_replays_in_a_graph_and_on_two_streams():
    import cupy as cp
    n, m, k = _blas_shape_or_skip()
    rng = np.random.default_rng(7)
    x, w = random((n - 3, k), "float16", rng), random((m, k), "float16", rng, 0.02)
    xd, wd = cp.asarray(x), cp.asarray(w)
    out = cp.empty((n - 3, m), cp.float16)
    p = jitgemm.prepare(xd, wd, out=out)
    assert p.plan.family == "blas"
    s1, s2 = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    first = replays_in_a_graph(p, out, s1, x, w)  # s1's cuBLAS workspace exists before the capture
    outs = [cp.empty_like(out) for _ in range(8)]
    for i, o in enumerate(outs):  # alternating streams, no synchronisation between: separate workspaces
        jitgemm.gemm(xd, wd, out=o, stream=(s1, s2)[i % 2])
    s1.synchronize()
    s2.synchronize()
    for o in outs:
        assert np.array_equal(cp.asnumpy(o).view(np.uint16), first)
    # matmul takes the same route
    assert np.array_equal(cp.asnumpy(jitgemm.matmul(xd, wd.T)).view(np.uint16), first)


def test_blas_route_on_two_gpus_in_turn():
    """cuBLAS handles are per device and used with that device's context current: calls alternating
    between two GPUs each give the reference's result, the same bits on both (same GPU model)."""
    import cupy as cp
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs 2 or more GPUs")
    n, m, k = _blas_shape_or_skip()
    rng = np.random.default_rng(11)
    x, w = random((n, k), "float16", rng), random((m, k), "float16", rng, 0.02)
    ops = []
    for d in (0, 1):
        with cp.cuda.Device(d):
            ops.append((cp.asarray(x), cp.asarray(w)))
    bits = []
    for i in range(6):
        d = i % 2
        with cp.cuda.Device(1 - d):  # the other device current: jitgemm must use the operands' device
            out = jitgemm.gemm(*ops[d])
        assert jitgemm.explain(*ops[d]).startswith("vendor BLAS: cuBLAS")
        with cp.cuda.Device(d):
            bits.append(cp.asnumpy(out).view(np.uint16))
    assert_close(bits[0].view(np.float16), x, w, None, "float16")
    assert all(np.array_equal(b, bits[0]) for b in bits)
