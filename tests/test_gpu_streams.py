"""What torch and CuPy users meet on the GPU: stream=None means the operands' library's current stream
(ordered with the surrounding work, captured by torch.cuda.graph), nn.Parameter operands are read as
data, every mode returns the input's kind, and jitgemm.torch routes a model's linears. References are
float64 numpy products; outputs start poisoned so an unwritten element fails."""
import numpy as np
import pytest
from conftest import cuda_torch

import jitgemm

pytestmark = pytest.mark.gpu


def _ref(x, w, bias=None):
    r = x.double().cpu().numpy() @ w.double().cpu().numpy().T
    return r if bias is None else r + bias.double().cpu().numpy()


def _close(got, ref, tol=2e-2):
    got = got.double().cpu().numpy() if hasattr(got, "cpu") else np.asarray(got, np.float64)
    assert not np.isnan(got).any(), "an output element was never written"
    err = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
    assert err < tol, f"relative error {err:.3g}"


def test_torch_side_stream_orders_with_torch_work():
    """The issue's reproduction: inside torch.cuda.stream(s), x is written on s after a long kernel and
    gemm(x, w, out=o) with stream=None must read what torch wrote (it ran on stream 0 before: 19 of 20
    calls read the old x)."""
    torch = cuda_torch()
    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16, generator=g) * 0.05
    x = torch.zeros(4, 4096, device="cuda", dtype=torch.bfloat16)
    jitgemm.gemm(x, w)  # compile outside the timed race
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    wrong = 0
    for i in range(20):
        src = torch.randn(4, 4096, device="cuda", dtype=torch.bfloat16, generator=g)
        o = torch.full((4, 4096), float("nan"), device="cuda", dtype=torch.bfloat16)
        torch.cuda.synchronize()
        with torch.cuda.stream(s):
            torch.cuda._sleep(2_000_000)  # ~1 ms of spinning on s: x is written late
            x.copy_(src)
            jitgemm.gemm(x, w, out=o)
        s.synchronize()
        got = o.double().cpu().numpy()
        ref = _ref(src, w)
        wrong += not (np.linalg.norm(got - ref) / np.linalg.norm(ref) < 2e-2)
    assert wrong == 0, f"{wrong} of 20 calls did not see torch's write on the current stream"


def test_torch_graph_capture_records_the_call():
    torch = cuda_torch()
    w = torch.randn(1024, 2048, device="cuda", dtype=torch.bfloat16) * 0.05
    x = torch.randn(2, 2048, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(2, 1024, device="cuda", dtype=torch.bfloat16)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):  # warm-up on a side stream, as torch's graph docs ask
        jitgemm.gemm(x, w, out=o)
        lin = jitgemm.Linear(w)
        y_lin = lin(x)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        jitgemm.gemm(x, w, out=o)
        y = lin(x)  # a graph-owned output, like F.linear's inside capture
    for _ in range(3):
        x.copy_(torch.randn(2, 2048, device="cuda", dtype=torch.bfloat16))
        o.fill_(float("nan"))
        y.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        _close(o, _ref(x, w))
        _close(y, _ref(x, w))
    assert y_lin.shape == (2, 1024)


def test_parameters_are_read_as_data_and_outputs_are_torch():
    torch = cuda_torch()
    layer = torch.nn.Linear(256, 96, bias=True, device="cuda", dtype=torch.float16)
    assert layer.weight.requires_grad
    x = torch.randn(3, 256, device="cuda", dtype=torch.float16, requires_grad=True)
    y = jitgemm.gemm(x, layer.weight, layer.bias)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float16 and y.device == x.device
    _close(y, _ref(x.detach(), layer.weight.detach(), layer.bias.detach()))
    y2 = jitgemm.Linear(layer.weight, layer.bias)(x)
    assert isinstance(y2, torch.Tensor)
    assert torch.equal(y, y2)


def test_fp8_modes_return_torch_tensors():
    torch = cuda_torch()
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs sm_89+")
    w = torch.randn(512, 1024, device="cuda") * 0.05
    x = torch.randn(4, 1024, device="cuda", dtype=torch.bfloat16)
    sw = float(w.abs().max() / 448)
    w8 = (w / sw).to(torch.float8_e4m3fn)
    wdq = w8.float() * sw
    x8, sx = jitgemm.quantize_fp8(x, per_token=False)
    assert isinstance(x8, torch.Tensor) and x8.dtype == torch.float8_e4m3fn and isinstance(sx, torch.Tensor)
    y = jitgemm.scaled_gemm(x8, w8, sx, sw, out_dtype="bfloat16")  # W8A8: was a DeviceArray torch could not read
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16
    xdq = x8.float() * sx.float()
    _close(y, _ref(xdq, wdq))
    y16 = jitgemm.scaled_gemm(x, w8, None, sw)  # W8A16
    assert isinstance(y16, torch.Tensor) and y16.dtype == torch.bfloat16
    _close(y16, _ref(x, wdq))


def test_fast_path_bits_equal_cold_path_and_prepared():
    """The cached entry, a fresh (cold) call and a Prepared launch give the same bits, per family."""
    torch = cuda_torch()
    from jitgemm import pipeline
    for n, m, k in [(1, 4096, 4096), (16, 640, 2880), (64, 2880, 4096), (128, 5120, 4096), (3, 1000, 1032)]:
        x = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) * 0.05
        pipeline.clear()
        cold = jitgemm.gemm(x, w)
        warm = jitgemm.gemm(x, w)
        o = torch.empty(n, m, device="cuda", dtype=torch.bfloat16)
        jitgemm.prepare(x, w, out=o).launch(torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        assert torch.equal(cold, warm) and torch.equal(cold, o), (n, m, k)
        _close(cold, _ref(x, w))


def _wrong_on_a_busy_cupy_stream(cp, step, calls: int = 10) -> int:
    """How many of `calls` steps gave a wrong result, each run on a non-blocking CuPy stream kept busy just
    before it (so a launch on any other stream would run first and read stale x). step(i) writes x on
    the current stream, calls jitgemm and returns (result on the host, float64 reference)."""
    big = cp.ones(1 << 26, dtype=cp.float32)
    wrong = 0
    with cp.cuda.Stream(non_blocking=True):
        for i in range(calls):
            cp.cuda.get_current_stream().synchronize()
            for _ in range(20):
                big *= 1.0000001
            got, ref = step(i)
            wrong += not (np.linalg.norm(got - ref) / np.linalg.norm(ref) < 2e-2)
    return wrong


def test_cupy_current_stream_orders_with_cupy_work():
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(0)
    w = cp.asarray(rng.standard_normal((2048, 4096)).astype(np.float16) * 0.05)
    w64 = cp.asnumpy(w).astype(np.float64)
    x = cp.zeros((4, 4096), dtype=cp.float16)
    jitgemm.gemm(x, w)
    cp.cuda.Device().synchronize()

    def step(_i):
        src = rng.standard_normal((4, 4096)).astype(np.float16)
        o = cp.full((4, 2048), cp.nan, dtype=cp.float16)
        x.set(src, stream=cp.cuda.get_current_stream())
        jitgemm.gemm(x, w, out=o)
        return o.get().astype(np.float64), src.astype(np.float64) @ w64.T  # get() waits for the stream
    wrong = _wrong_on_a_busy_cupy_stream(cp, step)
    assert wrong == 0, f"{wrong} of 10 calls did not see CuPy's write on the current stream"


def test_cupy_bf16_orders_with_cupy_work_on_the_stream_its_interface_names():
    """stream=None with jitgemm.CupyBf16 operands (bf16 bits in CuPy uint16 arrays, CuPy having no
    bfloat16): the stream their interface names (CuPy's current one), on the cached path too (each call is
    the same signature), bf16 against float64; without out= the result is a CupyBf16 of the same values."""
    cp = pytest.importorskip("cupy")
    import ml_dtypes
    rng = np.random.default_rng(1)
    w_h = (rng.standard_normal((2048, 4096)) * 0.05).astype(ml_dtypes.bfloat16)
    w, w64 = jitgemm.CupyBf16.from_host(w_h), w_h.astype(np.float64)
    x = jitgemm.CupyBf16.empty((4, 4096))
    jitgemm.gemm(x, w)
    cp.cuda.Device().synchronize()

    def step(i):
        src = rng.standard_normal((4, 4096)).astype(ml_dtypes.bfloat16)
        x.bits.set(src.view(np.uint16), stream=cp.cuda.get_current_stream())
        if i % 2:
            o = jitgemm.CupyBf16(cp.full((4, 2048), 0x7FC0, dtype=cp.uint16))  # bf16 NaN
            assert jitgemm.gemm(x, w, out=o) is o
        else:
            o = jitgemm.gemm(x, w)
            assert isinstance(o, jitgemm.CupyBf16)
        return o.get().astype(np.float64), src.astype(np.float64) @ w64.T  # get() waits for the stream
    wrong = _wrong_on_a_busy_cupy_stream(cp, step)
    assert wrong == 0, f"{wrong} of 10 calls did not see CuPy's write on the current stream"


class _OnStream:
    """A CuPy array behind an interface that names `stream` (as a producer on that stream exports it)."""

    def __init__(self, a, stream):
        self.a, self.shape, self.dtype, self.device, self.stream = a, a.shape, a.dtype, a.device, stream

    @property
    def __cuda_array_interface__(self):
        return dict(self.a.__cuda_array_interface__, stream=self.stream.ptr or 1, version=3)


def test_an_operand_named_on_another_stream_is_waited_for():
    """x's interface names an idle stream A (the launch goes there: stream=None), w's the busy current
    stream B where w is rewritten before each call: the interface's rule makes A wait for B's work first,
    or the kernel reads the old weights. Cold on the first call, cached after."""
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(4)
    x_h = rng.standard_normal((4, 4096)).astype(np.float16)
    x, w_d = cp.asarray(x_h), cp.zeros((2048, 4096), dtype=cp.float16)
    srcs = [cp.asarray((rng.standard_normal((2048, 4096)) * 0.05).astype(np.float16)) for _ in range(10)]
    a = cp.cuda.Stream(non_blocking=True)

    def step(i):
        b = cp.cuda.get_current_stream()
        w_d[...] = srcs[i]  # on the busy stream B
        o = cp.full((4, 2048), cp.nan, dtype=cp.float16)
        jitgemm.gemm(_OnStream(x, a), _OnStream(w_d, b), out=_OnStream(o, b))
        assert a.ptr != b.ptr
        a.synchronize()
        b.synchronize()
        return cp.asnumpy(o).astype(np.float64), x_h.astype(np.float64) @ cp.asnumpy(srcs[i]).astype(np.float64).T
    wrong = _wrong_on_a_busy_cupy_stream(cp, step)
    assert wrong == 0, f"{wrong} of 10 calls read w before the stream its interface names had written it"


def test_outputs_jitgemm_allocates_reuse_their_streams_block_in_order():
    """gemm(x, w) with interface wrappers of fp16 CuPy arrays (the bench's Wrapped: no kind of their own
    for results) makes jitgemm DeviceArray outputs on the stream the interface names; each is copied out on
    that stream and dropped at once, while the copy may still be queued: the next call on the stream takes
    the same block (no driver free, which would wait for the device), and stream order must still put the
    copy before the overwrite. Busy work ahead of every call widens the race."""
    cp = pytest.importorskip("cupy")
    from jitgemm.bench.overhead import Wrapped
    rng = np.random.default_rng(2)
    w_h = (rng.standard_normal((2048, 4096)) * 0.05).astype(np.float16)
    w = Wrapped(cp.asarray(w_h))
    x_d = cp.zeros((4, 4096), dtype=cp.float16)
    big = cp.ones(1 << 26, dtype=cp.float32)
    srcs, copies, blocks = [], [], set()
    with cp.cuda.Stream(non_blocking=True):
        for _ in range(10):
            src = rng.standard_normal((4, 4096)).astype(np.float16)
            srcs.append(src)
            for _ in range(20):
                big *= 1.0000001
            x_d.set(src, stream=cp.cuda.get_current_stream())
            y = jitgemm.gemm(Wrapped(x_d), w)
            assert y.stream == cp.cuda.get_current_stream().ptr
            blocks.add(y.ptr)
            view = cp.asarray(y)  # zero-copy through y's interface; keeps y alive until dropped
            copies.append(view.copy())
            del y, view  # the block goes back while the copy above may still wait on the stream
        cp.cuda.get_current_stream().synchronize()
    assert len(blocks) == 1, f"{len(blocks)} blocks for 10 outputs dropped in turn: the block was not reused"
    for src, got in zip(srcs, copies):
        _close(cp.asnumpy(got), src.astype(np.float64) @ w_h.astype(np.float64).T)


def test_chained_outputs_stay_on_the_stream_they_were_made_on():
    """y = gemm(wrapped x, w1) is a jitgemm DeviceArray made on CuPy's (busy, non-blocking) stream; gemm(y, w2)
    with stream=None must run there too (y's interface names it), and CuPy reading y through its interface
    must wait for it: both would read y unwritten on another stream."""
    cp = pytest.importorskip("cupy")
    from jitgemm.bench.overhead import Wrapped
    rng = np.random.default_rng(3)
    w1_h = (rng.standard_normal((1024, 4096)) * 0.03).astype(np.float16)
    w2_h = (rng.standard_normal((512, 1024)) * 0.03).astype(np.float16)
    w1, w2 = Wrapped(cp.asarray(w1_h)), Wrapped(cp.asarray(w2_h))  # no CuPy operand decides the stream
    x_d = cp.zeros((4, 4096), dtype=cp.float16)
    jitgemm.gemm(jitgemm.gemm(Wrapped(x_d), w1), w2)
    cp.cuda.Device().synchronize()

    def step(_i):
        src = rng.standard_normal((4, 4096)).astype(np.float16)
        x_d.set(src, stream=cp.cuda.get_current_stream())
        y = jitgemm.gemm(Wrapped(x_d), w1)
        z = jitgemm.gemm(y, w2)
        y64 = src.astype(np.float64) @ w1_h.astype(np.float64).T
        ref = y64.astype(np.float16).astype(np.float64) @ w2_h.astype(np.float64).T
        return cp.asnumpy(cp.asarray(z)).astype(np.float64), ref
    wrong = _wrong_on_a_busy_cupy_stream(cp, step)
    assert wrong == 0, f"{wrong} of 10 chained calls read an output before it was written"


def test_patch_linears_matches_torch_and_unpatches():
    torch = cuda_torch()
    import jitgemm.torch as jt
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256, bias=False),
                                torch.nn.Linear(256, 250)).to("cuda", torch.bfloat16)
    x = torch.randn(2, 5, 512, device="cuda", dtype=torch.bfloat16)  # 10 tokens in [B, T, K]
    with torch.no_grad():
        ref = model(x)
        assert jt.patch_linears(model) == 3
        calls = []  # jitgemm's two doors: the full call, and a bias-free layer's cached entry (pipeline.torch_pair)
        real, real_pair = jitgemm.api.linear, jitgemm.pipeline.torch_pair
        jitgemm.api.linear = lambda *a, **k: calls.append(1) or real(*a, **k)

        def pair(*a):
            y = real_pair(*a)
            if y is not None:
                calls.append(1)
            return y
        jitgemm.pipeline.torch_pair = pair
        jt.routing(reset=True)
        try:
            got = model(x)
            big = model(torch.randn(2, 100, 512, device="cuda", dtype=torch.bfloat16))  # 200 tokens: torch's
            model(x)  # again: every signature is known now
        finally:
            jitgemm.api.linear, jitgemm.pipeline.torch_pair = real, real_pair
        assert len(calls) == 6, "every linear of a 10-token call ran on jitgemm; the 200-token call on torch"
        routes = jt.routing(reset=True)
        assert routes["jitgemm"] == 6 and routes["torch: more tokens than max_tokens or K % 8 != 0"] == 3
        assert routes.get("cold path: new signature", 0) <= 3 and jt.routing() == {}
        assert big.shape == (2, 100, 250)
        assert got.shape == ref.shape
        _close(got, ref.double().cpu().numpy(), tol=3e-2)
        assert jt.unpatch(model) == 3
        assert torch.equal(model(x), ref), "unpatch did not restore torch's own forward"
    y = model(x)  # grad enabled, parameters require grad: patched or not, torch runs (autograd works)
    assert y.requires_grad


def test_two_gpus_in_turn_route_to_each_device():
    """Calls alternating between two GPUs' tensors: each runs on its operands' device (the cached entry of
    one signature is per device: the device is part of the key)."""
    torch = cuda_torch()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    ws = [torch.randn(512, 1024, device=f"cuda:{d}", dtype=torch.bfloat16) * 0.05 for d in (0, 1)]
    for i in range(6):
        d = i % 2
        x = torch.randn(3, 1024, device=f"cuda:{d}", dtype=torch.bfloat16)
        y = jitgemm.gemm(x, ws[d])
        assert y.device == x.device
        torch.cuda.synchronize(d)
        _close(y, _ref(x, ws[d]))


def test_linear_takes_leading_dimensions_like_f_linear():
    torch = cuda_torch()
    w = torch.randn(384, 512, device="cuda", dtype=torch.float16) * 0.05
    b = torch.randn(384, device="cuda", dtype=torch.float16)
    for shape in [(512,), (3, 512), (2, 5, 512), (2, 2, 2, 512)]:
        x = torch.randn(*shape, device="cuda", dtype=torch.float16)
        y = jitgemm.linear(x, w, b)
        ref = torch.nn.functional.linear(x.float(), w.float(), b.float())
        assert y.shape == ref.shape and y.dtype == torch.float16
        _close(y, ref.double().cpu().numpy())
    seq = torch.randn(4, 7, 512, device="cuda", dtype=torch.float16)
    last = seq[:, -1:, :]  # the LM head's input in decode: rows of a longer sequence
    _close(jitgemm.linear(last, w), torch.nn.functional.linear(last.float(), w.float()).double().cpu().numpy())
