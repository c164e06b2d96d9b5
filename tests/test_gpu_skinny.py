"""GPU correctness of the 16-bit skinny family against float64 (run on an H100 before resolving)."""
import itertools

import numpy as np
import pytest

import jitgemm
from reference import NP, assert_close, random
from gpu_helpers import backend_device, chain_operands, empty_device, run_chain, run_gemm, sync, to_device

pytestmark = pytest.mark.gpu
DTYPES = ["float16", "bfloat16"]


run_device = run_gemm


# the seed's wvSplitK grid (its N stops at 4) x bias none / [M] / [N, M]
SEED_WVSPLITK = [(1, 16, 16), (1, 64, 64), (2, 256, 256), (3, 1024, 1024), (4, 4096, 4096), (1, 9216, 512),
                 (2, 10240, 1024), (4, 16384, 8192), (1, 64, 8), (2, 128, 8), (4, 256, 8)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias_mode", [0, 1, 2])
@pytest.mark.parametrize("n,k,m", SEED_WVSPLITK)
def test_seed_wvsplitk_grid(n, k, m, dtype, bias_mode):
    rng = np.random.default_rng(hash((n, k, m, dtype, bias_mode)) % 2**32)
    x, w = random((n, k), dtype, rng), random((m, k), dtype, rng, scale=(2.0 / k) ** 0.5)
    bias = None if bias_mode == 0 else random((m,) if bias_mode == 1 else (n, m), dtype, rng)
    assert_close(run_device(x, w, bias, dtype), x, w, bias, dtype)


SEED_LLMM1 = [(1, 8, 16), (1, 32, 64), (1, 128, 256), (1, 512, 1024), (1, 2048, 4096), (1, 6144, 1024),
              (1, 8192, 2048), (1, 4096, 8192)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,m", SEED_LLMM1)
def test_seed_llmm1_grid_zero_centred(n, k, m, dtype):
    # the seed had to use non-centred inputs because LLMM1 summed in 16 bits; fp32 sums need no such help
    rng = np.random.default_rng(k * 7 + m)
    x, w = random((n, k), dtype, rng), random((m, k), dtype, rng)
    assert_close(run_device(x, w, None, dtype), x, w, None, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 7, 8, 64, 1000, 4096 + 3])
@pytest.mark.parametrize("k", [8, 16, 264, 4096, 8200])
def test_all_n_tails_and_padding(m, k, dtype):
    rng = np.random.default_rng(m * 131 + k)
    w = random((m, k), dtype, rng)
    for n, padded in itertools.product(range(1, 17), (False, True)):
        x = random((n, k), dtype, rng)
        out = run_device(x, w, None, dtype, pad_x=128 if padded else 0, pad_w=128 if padded else 0)
        assert_close(out, x, w, None, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_and_batch_position_independent(dtype):
    rng = np.random.default_rng(5)
    n, m, k = 16, 4096 + 3, 8200
    x, w = random((n, k), dtype, rng), random((m, k), dtype, rng)
    first = run_device(x, w, None, dtype).view(np.uint16)
    for _ in range(9):
        assert np.array_equal(run_device(x, w, None, dtype).view(np.uint16), first)
    # the same token at every batch position, among other tokens, gives the same bits
    for pos in (0, 5, 8, 15):
        x2 = random((n, k), dtype, rng)
        x2[pos] = x[3]
        got = run_device(x2, w, None, dtype).view(np.uint16)
        assert np.array_equal(got[pos], first[3]), f"token bits changed at batch position {pos}"
    # and with a different batch size
    alone = run_device(x[3:4], w, None, dtype).view(np.uint16)
    assert np.array_equal(alone[0], first[3])


def test_numpy_in_numpy_out_and_bias_shapes():
    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        x, w = random((3, 512), dtype, rng), random((300, 512), dtype, rng)
        for bias in (None, random((300,), dtype, rng), random((1, 300), dtype, rng), random((3, 300), dtype, rng)):
            out = jitgemm.gemm(x, w, bias)
            assert isinstance(out, np.ndarray) and out.dtype == NP[dtype]
            assert_close(out, x, w, bias, dtype)


def test_numpy_out_argument_is_written_in_place():
    rng = np.random.default_rng(2)
    x, w = random((2, 64), "float16", rng), random((40, 64), "float16", rng)
    out = np.full((2, 40), np.nan, dtype=np.float16)
    r = jitgemm.gemm(x, w, out=out)
    assert r is out
    assert_close(out, x, w, None, "float16")


def test_linear_and_matmul():
    rng = np.random.default_rng(3)
    x, w, b = random((4, 256), "bfloat16", rng), random((96, 256), "bfloat16", rng), random((96,), "bfloat16", rng)
    layer = jitgemm.Linear(w, b)
    assert_close(layer(x), x, w, b, "bfloat16")
    assert_close(jitgemm.matmul(x, w.T), x, w, None, "bfloat16")
    assert "skinny" in jitgemm.explain(x, w)


@pytest.mark.skipif("not __import__('importlib').util.find_spec('cupy')")
def test_cupy_arrays_streams_out_and_graph_capture():
    import cupy as cp
    rng = np.random.default_rng(4)
    x, w = random((5, 1024), "float16", rng), random((777, 1024), "float16", rng)
    cx, cw = cp.asarray(x), cp.asarray(w)
    got = jitgemm.gemm(cx, cw)
    assert isinstance(got, cp.ndarray)
    assert_close(cp.asnumpy(got), x, w, None, "float16")
    # padded cupy weight (a row pitch of K + 128) through a slice
    big = cp.zeros((777, 1024 + 128), dtype=cp.float16)
    big[:, :1024] = cw
    assert_close(cp.asnumpy(jitgemm.gemm(cx, big[:, :1024])), x, w, None, "float16")
    # a non-default stream and out=
    s = cp.cuda.Stream(non_blocking=True)
    out = cp.full((5, 777), cp.nan, dtype=cp.float16)
    with s:
        jitgemm.gemm(cx, cw, out=out)  # the current stream is picked up
    s.synchronize()
    assert_close(cp.asnumpy(out), x, w, None, "float16")
    out2 = cp.full((5, 777), cp.nan, dtype=cp.float16)
    jitgemm.gemm(cx, cw, out=out2, stream=s)
    s.synchronize()
    assert_close(cp.asnumpy(out2), x, w, None, "float16")
    # graph capture: no synchronisation or allocation inside the call
    out3 = cp.full((5, 777), cp.nan, dtype=cp.float16)
    s.begin_capture()
    jitgemm.gemm(cx, cw, out=out3, stream=s)
    graph = s.end_capture()
    graph.launch(s)
    s.synchronize()
    assert_close(cp.asnumpy(out3), x, w, None, "float16")


@pytest.mark.skipif("not __import__('importlib').util.find_spec('cupy')")
def test_cuda_array_interface_object():
    import cupy as cp

    class Foreign:
        def __init__(self, a):
            self._a = a
            self.__cuda_array_interface__ = a.__cuda_array_interface__

    rng = np.random.default_rng(6)
    x, w = random((2, 128), "float16", rng), random((64, 128), "float16", rng)
    cx, cw = cp.asarray(x), cp.asarray(w)
    out = cp.empty((2, 64), dtype=cp.float16)
    jitgemm.gemm(Foreign(cx), Foreign(cw), out=Foreign(out))
    assert_close(cp.asnumpy(out), x, w, None, "float16")


@pytest.mark.skipif("not __import__('importlib').util.find_spec('torch')")
def test_torch_tensors_through_dlpack_without_import():
    import torch
    rng = np.random.default_rng(7)
    for dtype, tdt in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        x, w = random((3, 512), dtype, rng), random((200, 512), dtype, rng)
        tx = torch.from_numpy(x.view(np.uint16).astype(np.int16)).view(tdt).cuda()
        tw = torch.from_numpy(w.view(np.uint16).astype(np.int16)).view(tdt).cuda()
        y = jitgemm.gemm(tx, tw)
        assert isinstance(y, torch.Tensor) and y.dtype == tdt
        torch.cuda.synchronize()
        got = y.cpu().view(torch.int16).numpy().view(np.uint16).view(NP[dtype])
        assert_close(got, x, w, None, dtype)


def test_weight_past_2_31_elements():
    """65536 x 32776 fp16 = 2.15e9 elements (4.3 GB): offsets past 2^31 elements and 2^32 bytes."""
    rng = np.random.default_rng(8)
    m, k, n = 65536, 32776, 2
    w = rng.random((m, k), dtype=np.float32).astype(np.float16) - np.float16(0.5)
    x = random((n, k), "float16", rng)
    _, xv = to_device(x, "float16")
    _, wv = to_device(w, "float16")
    owner, ov = empty_device((n, m), "float16")
    jitgemm.gemm(xv, wv, out=ov)
    sync()
    out = owner.to_numpy()
    for r0 in range(0, m, 8192):
        sl = slice(r0, r0 + 8192)
        assert_close(out[:, sl], x, w[sl], None, "float16")


@pytest.mark.skipif("not __import__('importlib').util.find_spec('cupy')")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 4, 16])
def test_programmatic_dependent_launch_chain(dtype, n, monkeypatch):
    """JITGEMM_PDL=1 (sm_90+): a chain of dependent calls, each kernel launched while the one before
    drains, gives the bits of plain launches, eagerly and replayed from a captured graph, and every
    stage matches float64 of its own input (a stage that read its tokens before the previous kernel
    wrote them would not)."""
    import cupy as cp
    from jitgemm import config
    from jitgemm.arch import parse
    b, d = backend_device()
    if parse(b.device_info(d).arch).sm < 90:
        pytest.skip("programmatic dependent launch needs sm_90 or later")
    widths = [1024, 2056, 1032, 4096, 1024, 776]  # M not a multiple of 16 at two stages
    s = cp.cuda.Stream(non_blocking=True)

    def run(pdl: bool, graph: bool):
        monkeypatch.setenv("JITGEMM_PDL", "1" if pdl else "0")
        config.reload()
        x, ws, outs = chain_operands(dtype, n, widths)
        plans = [jitgemm.explain(t, w) for t, w in zip([x, *outs], ws)]
        assert any(p.startswith("skinny") for p in plans), plans
        assert all(("programmatic dependent launch" in p) == pdl for p in plans if p.startswith("skinny")), plans

        run_chain(jitgemm.gemm, x, ws, outs, s, graph, lambda o: b.memset(o.ptr, 0xFF, o.nbytes, 0, d))
        return [a.to_numpy() for a in (x, *outs)], [w.to_numpy() for w in ws]

    plain, ws = run(False, False)
    for i, w in enumerate(ws):
        assert_close(plain[i + 1], plain[i], w, None, dtype)
    for graph in (False, True):
        got, _ = run(True, graph)
        for i, w in enumerate(ws):
            assert_close(got[i + 1], got[i], w, None, dtype)
            assert np.array_equal(got[i + 1].view(np.uint16), plain[i + 1].view(np.uint16)), (graph, i)
