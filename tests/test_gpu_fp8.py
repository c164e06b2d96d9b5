"""GPU correctness of the fp8 family (scaled_gemm, quantize_fp8, Fp8 Linear) against float64."""
import numpy as np
import pytest

import jitgemm
from fp8_reference import FMT, quantize, reference
from gpu_helpers import backend_device, empty_device, sync, to_device
from reference import NP, check_bound

pytestmark = pytest.mark.gpu
FMT_NV = "float8_e4m3fn"


def native_fmt():
    from jitgemm.kernels import fp8
    b, d = backend_device()
    return fp8.native_format(b.name, b.device_info(d).arch)


check = check_bound


def fp8_device(a8, pad=0):
    """fp8 bytes on the device as a View with the fp8 dtype (rows padded by `pad` bytes)."""
    owner, v = to_device(a8.view(np.uint8), "uint8", pad)
    v.dtype = v.raw_dtype = str(a8.dtype)
    return owner, v


# (n, k, m) from the seed's wvSplitKQ test grid, sizes kept moderate
SEED_FP8 = [(1, 16, 16), (1, 64, 80), (1, 80, 64), (4, 80, 80), (2, 512, 512), (3, 512, 528), (3, 2048, 2064),
            (4, 2064, 2048), (4, 4096, 4096), (4, 16400, 2064), (1, 14336, 1024), (2, 24576, 2048), (4, 32768, 1040)]


@pytest.mark.parametrize("out_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,k,m", SEED_FP8)
def test_w8a8_seed_grid_per_tensor_and_channel_token(n, k, m, out_dtype, padded):
    fmt = native_fmt()
    rng = np.random.default_rng(n * 7 + k + m)
    x = rng.standard_normal((n, k)) * (2.0 / k) ** 0.5
    w = rng.standard_normal((m, k))
    bias = rng.standard_normal(m).astype(NP[out_dtype])
    # per-tensor scales (the seed), then per-token x per-channel (FP8-Dynamic checkpoints)
    for per in (False, True):
        sx = (np.abs(x).max(axis=1) / 448 if per else np.abs(x).max() / 448).astype(np.float32)
        sw = (np.abs(w).max(axis=1) / 448 if per else np.abs(w).max() / 448).astype(np.float32)
        x8, w8 = quantize(x, sx, fmt), quantize(w, sw, fmt)
        _, xv = fp8_device(x8, 256 if padded else 0)
        _, wv = fp8_device(w8, 256 if padded else 0)   # vLLM pads each fp8 weight row by 256 bytes
        _, bv = to_device(bias.reshape(1, -1), out_dtype)
        sxd = to_device(sx.reshape(1, -1), "float32")[1] if per else float(sx)
        swd = to_device(sw.reshape(1, -1), "float32")[1] if per else float(sw)
        if per:
            sxd.shape, sxd.strides, swd.shape, swd.strides = (n,), (1,), (m,), (1,)
        owner, ov = empty_device((n, m), out_dtype)
        jitgemm.scaled_gemm(xv, wv, sxd, swd, bv, out_dtype=out_dtype, out=ov)
        sync()
        ref, mag = reference(x8, w8, sx, sw, bias)
        check(owner.to_numpy(), ref, mag, k, out_dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("n", [1, 3, 8, 9, 16])
def test_w8a16_and_static_quantization_in_kernel(dtype, n):
    fmt = native_fmt()
    rng = np.random.default_rng(n)
    m, k = 1000, 4096 + 16
    x = rng.standard_normal((n, k)).astype(NP[dtype])
    w = rng.standard_normal((m, k))
    sw = (np.abs(w).max(axis=1) / 448).astype(np.float32)
    w8 = quantize(w, sw, fmt)
    # W8A16: 16-bit tokens, fp8 weights widened exactly
    out = jitgemm.scaled_gemm(x, w8, None, sw)
    ref, mag = reference(x, w8, 1.0, sw)
    check(out, ref, mag, k, dtype)
    # static activation scale: the kernel quantizes x itself
    sx = float(np.abs(x.astype(np.float64)).max() / 448)
    out = jitgemm.scaled_gemm(x, w8, sx, sw)
    ref, mag = reference(quantize(x, sx, fmt), w8, sx, sw)
    check(out, ref, mag, k, dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("per_token", [True, False])
def test_quantize_fp8_matches_reference(dtype, per_token):
    fmt = native_fmt()
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((5, 3000 + 8)) * 3).astype(NP[dtype])
    x[2, 7] = 0
    x8, s = jitgemm.quantize_fp8(x, per_token=per_token)
    xf = x.astype(np.float64)
    amax = np.abs(xf).max(axis=1) if per_token else np.abs(xf).max().reshape(1)
    exp_s = (amax / 448).astype(np.float32)
    np.testing.assert_allclose(s, exp_s, rtol=1e-6)
    want = quantize(xf, s.reshape(-1) if per_token else float(s[0]), fmt)
    assert x8.dtype == FMT[fmt]
    assert np.array_equal(x8.view(np.uint8), want.view(np.uint8))


def test_quantize_saturates_and_keeps_nan():
    x = np.array([[1.0, -1e4, 1e4, 0.5, np.nan, 2.0, 3.0, 4.0]], dtype=np.float16)
    x8, s = jitgemm.quantize_fp8(x, per_token=True)
    codes = x8.astype(np.float64)
    assert np.isnan(codes[0, 4])
    assert s[0] == np.float32(np.float16(1e4).astype(np.float64) / 448)  # NaN did not poison the scale
    assert codes[0, 1] == -448 and codes[0, 2] == 448  # saturated, not NaN or inf


def test_dynamic_linear_and_from_float():
    from jitgemm.scaled import quantize_weight
    fmt = native_fmt()
    rng = np.random.default_rng(12)
    w = rng.standard_normal((640, 2048)).astype(np.float32)
    x = rng.standard_normal((4, 2048)).astype(NP["bfloat16"])
    w8, sw = quantize_weight(w, True, fmt)  # what from_float stores (deterministic, on the host)
    for activation in (None, "dynamic"):
        layer = jitgemm.Linear.from_float(w, activation=activation)
        got = np.asarray(layer(x))
        if activation is None:  # W8A16: exactly the dequantized weights times the 16-bit tokens
            ref, mag = reference(x, w8, 1.0, sw)
        else:  # per-token dynamic quantization first, as quantize_fp8 documents
            xf = x.astype(np.float64)
            sx = (np.abs(xf).max(axis=1) / 448).astype(np.float32)
            ref, mag = reference(quantize(xf, sx, fmt), w8, sx, sw)
        check(got, ref, mag, 2048, "bfloat16")
        # and the fp8 model stays close to the float one (quantization error only)
        full = x.astype(np.float64) @ w.astype(np.float64).T
        assert np.linalg.norm(got.astype(np.float64) - full) / np.linalg.norm(full) < 0.06


def test_fp8_deterministic_and_batch_invariant():
    """Bits run to run, and a token's bits alone, at N = 16 and at N = 128 (8 token tiles a row block)."""
    fmt = native_fmt()
    rng = np.random.default_rng(13)
    x8 = quantize(rng.standard_normal((128, 8192)), 0.01, fmt)
    w8 = quantize(rng.standard_normal((3000, 8192)), 0.01, fmt)
    full = jitgemm.scaled_gemm(x8, w8, 0.01, 0.01).view(np.uint16)
    a = jitgemm.scaled_gemm(x8[:16], w8, 0.01, 0.01).view(np.uint16)
    for _ in range(5):
        assert np.array_equal(jitgemm.scaled_gemm(x8[:16], w8, 0.01, 0.01).view(np.uint16), a)
    assert np.array_equal(a, full[:16]) and np.array_equal(jitgemm.scaled_gemm(x8[16:32], w8, 0.01, 0.01).view(np.uint16),
                                                           full[16:32])
    for t in (5, 16, 77, 127):
        assert np.array_equal(jitgemm.scaled_gemm(x8[t:t + 1], w8, 0.01, 0.01).view(np.uint16)[0], full[t]), f"token {t}"


def test_fnuz_refused_on_nvidia_with_the_rule():
    b, d = backend_device()
    if b.name != "cuda":
        pytest.skip("NVIDIA rule")
    x8 = np.ones((1, 32), dtype=FMT["float8_e4m3fnuz"])
    with pytest.raises(ValueError, match="e4m3fnuz"):
        jitgemm.scaled_gemm(x8, x8)


@pytest.mark.parametrize("n", [17, 24, 33, 64, 100, 128])
def test_every_mode_at_n_17_to_128(n):
    """N beyond one token tile: every mode, per-token and per-channel scales and an [N, M] bias, against
    float64; odd M and a K that is no multiple of the kernels' K steps."""
    fmt = native_fmt()
    rng = np.random.default_rng(100 + n)
    m, k = 1000 + n % 7, 2048 + 48
    x = rng.standard_normal((n, k)) * (2.0 / k) ** 0.5
    w = rng.standard_normal((m, k))
    sw = (np.abs(w).max(axis=1) / 448).astype(np.float32)
    w8 = quantize(w, sw, fmt)
    bias = rng.standard_normal((n, m)).astype(NP["bfloat16"])
    # W8A8 with per-token scales
    sx = (np.abs(x).max(axis=1) / 448).astype(np.float32)
    x8 = quantize(x, sx, fmt)
    out = jitgemm.scaled_gemm(x8, w8, sx, sw, bias, out_dtype="bfloat16")
    ref, mag = reference(x8, w8, sx, sw, bias)
    check(out, ref, mag, k, "bfloat16")
    # W8A16 and the in-kernel quantization, 16-bit tokens
    xb = x.astype(NP["bfloat16"])
    out = jitgemm.scaled_gemm(xb, w8, None, sw, bias)
    ref, mag = reference(xb, w8, 1.0, sw, bias)
    check(out, ref, mag, k, "bfloat16")
    s1 = float(np.abs(xb.astype(np.float64)).max() / 448)
    out = jitgemm.scaled_gemm(xb, w8, s1, sw)
    ref, mag = reference(quantize(xb, s1, fmt), w8, s1, sw)
    check(out, ref, mag, k, "bfloat16")


def _cublaslt_or_skip():
    from jitgemm.arch import parse
    from jitgemm.runtime import blaslt
    b, d = backend_device()
    if b.name != "cuda" or parse(b.device_info(d).arch).sm < 89:
        pytest.skip("cuBLASLt's fp8 route: NVIDIA sm_89 and later")
    ok, why = blaslt.available()
    if not ok:
        pytest.skip(why)


def _scalar_on_device(v: float):
    owner, view = to_device(np.array([[v]], np.float32), "float32")
    view.shape, view.strides = (1,), (1,)
    return owner, view


# Hopper's fp8 tensor cores add each k-block's products at reduced precision before cuBLASLt's fp32
# accumulation: a bound of 2^-12 of the terms' magnitude (a wrong result is off by ~the magnitude itself)
LT_BOUND = 2.0 ** -12


def check_lt(out, ref, mag, dtype):
    check(out, ref, mag, int(LT_BOUND * 2 ** 23), dtype)  # check_bound's K * 2^-23 * mag, with K * 2^-23 = LT_BOUND


@pytest.mark.parametrize("n", [16, 17, 64, 128])
def test_cublaslt_route_per_tensor_matches_float64(n):
    """W8A8 per-tensor from 16 tokens runs in cuBLASLt: scales as numbers, as one-element device arrays and
    mixed, padded weight rows, both output types; the cached call gives the prepared call's bits."""
    _cublaslt_or_skip()
    from jitgemm import scaled
    fmt = "float8_e4m3fn"
    rng = np.random.default_rng(300 + n)
    m, k = 1024, 2048 + 16
    x, w = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    sx, sw = float(np.abs(x).max() / 448), float(np.abs(w).max() / 448)
    x8, w8 = quantize(x, sx, fmt), quantize(w, sw, fmt)
    _, xv = fp8_device(x8)
    _, wv = fp8_device(w8, 32)
    keep = [_scalar_on_device(sx), _scalar_on_device(sw)]
    sxd, swd = keep[0][1], keep[1][1]
    ref, mag = reference(x8, w8, sx, sw)
    for (scale_x, scale_w), out_dtype in zip(((sx, sw), (sxd, sw), (sx, swd), (sxd, swd)),
                                             ("bfloat16", "float16", "bfloat16", "float16")):
        owner, ov = empty_device((n, m), out_dtype)
        p = scaled.prepare_scaled(xv, wv, scale_x, scale_w, out=ov, out_dtype=out_dtype)
        assert p.plan.family == "blaslt", p.plan.reason
        p.launch(0)
        sync()
        got = owner.to_numpy()
        check_lt(got, ref, mag, out_dtype)
        owner2, ov2 = empty_device((n, m), out_dtype)
        jitgemm.scaled_gemm(xv, wv, scale_x, scale_w, out=ov2, out_dtype=out_dtype)
        jitgemm.scaled_gemm(xv, wv, scale_x, scale_w, out=ov2, out_dtype=out_dtype)  # the cached entry
        sync()
        assert np.array_equal(owner2.to_numpy().view(np.uint16), got.view(np.uint16))


def _vector_on_device(v: np.ndarray):
    owner, view = to_device(v.astype(np.float32).reshape(1, -1), "float32")
    view.shape, view.strides = (v.size,), (1,)
    return owner, view


@pytest.mark.parametrize("n", [17, 64, 128])
def test_cublaslt_epilogue_route_scale_vectors_and_bias(n):
    """W8A8 with per-token x per-channel scales, mixed scale forms or a bias, from 17 tokens: cuBLASLt's fp32 sums
    and jitgemm's epilogue kernel, against float64; an out with an odd pitch and a 2-byte address; the cached
    call gives the prepared call's bits, and so does a CUDA graph replay on another stream."""
    _cublaslt_or_skip()
    import cupy as cp
    from jitgemm import scaled
    from jitgemm.arrays import View
    fmt = "float8_e4m3fn"
    rng = np.random.default_rng(500 + n)
    m, k = 1024, 2048 + 16
    x, w = rng.standard_normal((n, k)), rng.standard_normal((m, k)) * np.linspace(0.1, 4, m)[:, None]
    sx = (np.abs(x).max(axis=1) / 448).astype(np.float32)
    sw = (np.abs(w).max(axis=1) / 448).astype(np.float32)
    x8, w8 = quantize(x, sx, fmt), quantize(w, sw, fmt)
    bias = rng.standard_normal((n, m)).astype(NP["bfloat16"])
    _, xv = fp8_device(x8)
    _, wv = fp8_device(w8, 16)
    keep = [_vector_on_device(sx), _vector_on_device(sw), to_device(bias, "bfloat16")]  # owners live to the end
    sxd, swd, bv = (v for _, v in keep)
    b, d = backend_device()
    for scale_x, scale_w, bias_v, hx, hw, hb in ((sxd, swd, None, sx[:, None], sw, None),
                                                 (sxd, 0.5, None, sx[:, None], 0.5, None),
                                                 (0.25, swd, bv, 0.25, sw, bias),
                                                 (sxd, swd, bv, sx[:, None], sw, bias)):
        ref, mag = reference(x8, w8, hx, hw, hb)
        owner, _ = empty_device((n + 1, m + 3), "bfloat16")  # pitch m + 3, address 2 bytes past a row start
        ov = View(owner.ptr + 2, (n, m), (m + 3, 1), "bfloat16", "bfloat16", d, "device", owner, vendor=b.name)
        p = scaled.prepare_scaled(xv, wv, scale_x, scale_w, bias_v, out=ov)
        assert p.plan.family == "blaslt" and "epilogue" in p.plan.reason, p.plan.reason
        p.launch(0)
        sync()
        got = owner.to_numpy().reshape(-1)[1:1 + n * (m + 3)].reshape(n, m + 3)[:, :m].copy()
        check_lt(got, ref, mag, "bfloat16")
        owner2, ov2 = empty_device((n, m), "bfloat16")
        for _ in range(2):  # cold, then the cached entry
            jitgemm.scaled_gemm(xv, wv, scale_x, scale_w, bias_v, out=ov2)
        sync()
        assert np.array_equal(owner2.to_numpy().view(np.uint16), got.view(np.uint16))
    # graph replay on a stream of its own: the stream's workspace, the same bits
    out = cp.empty((n, m), cp.uint16)
    q = scaled.prepare_scaled(xv, wv, sxd, swd, bv, out=_as(out, "bfloat16"))
    eager, replayed = _eager_then_replayed(q, out)
    assert np.array_equal(eager, got.view(np.uint16)) and np.array_equal(replayed, eager)


def test_cublaslt_route_pitched_out_graph_and_the_kernel_where_it_cannot():
    """An out with a row pitch of 8-element multiples stays on cuBLASLt, one with a pitch of 4 more takes the
    kernel (and says so); a prepared cuBLASLt call replays in a CUDA graph with the same bits."""
    _cublaslt_or_skip()
    import cupy as cp
    from jitgemm import scaled
    from jitgemm.arrays import View
    fmt = "float8_e4m3fn"
    rng = np.random.default_rng(17)
    n, m, k = 48, 2048, 4096
    x8 = quantize(rng.standard_normal((n, k)), 0.01, fmt)
    w8 = quantize(rng.standard_normal((m, k)), 0.02, fmt)
    ref, mag = reference(x8, w8, 0.01, 0.02)
    _, xv = fp8_device(x8)
    _, wv = fp8_device(w8)
    b, d = backend_device()
    for pad, family in ((64, "blaslt"), (4, "fp8")):
        owner, _ = empty_device((n, m + pad), "bfloat16")
        ov = View(owner.ptr, (n, m), (m + pad, 1), "bfloat16", "bfloat16", d, "device", owner, vendor=b.name)
        p = scaled.prepare_scaled(xv, wv, 0.01, 0.02, out=ov)
        assert p.plan.family == family, p.plan.reason
        if family == "fp8":
            assert "no multiple of 8" in p.plan.reason
        p.launch(0)
        sync()
        check_lt(owner.to_numpy()[:, :m], ref, mag, "bfloat16")
    xd, wd = cp.asarray(x8.view(np.uint8)), cp.asarray(w8.view(np.uint8))
    out = cp.empty((n, m), cp.uint16)
    p = scaled.prepare_scaled(_as(xd, fmt), _as(wd, fmt), 0.01, 0.02, out=_as(out, "bfloat16"))
    assert p.plan.family == "blaslt"
    first, replayed = _eager_then_replayed(p, out)
    assert np.array_equal(replayed, first)


def _eager_then_replayed(p, out):
    """(out's bits after p's launch on a stream of its own, and after a CUDA graph of that launch replayed there,
    out poisoned between the two). out: the CuPy array p writes."""
    import cupy as cp
    s = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()  # the copies before ran on the legacy stream, which s does not wait for
    p.launch(s.ptr)  # the stream's workspaces exist before the capture
    s.synchronize()
    first = cp.asnumpy(out).copy()
    out.fill(0xFFFF)
    cp.cuda.Device().synchronize()
    s.begin_capture()
    p.launch(s.ptr)
    g = s.end_capture()
    g.launch(s)
    s.synchronize()
    return first, cp.asnumpy(out)


def _as(a, dtype):
    """A CuPy array's memory as a jitgemm View of another dtype (CuPy has no fp8 or bf16)."""
    from jitgemm.arrays import View
    return View(a.data.ptr, a.shape, tuple(st // a.itemsize for st in a.strides), dtype, dtype, a.device.id, "device",
                a, vendor="cuda")
