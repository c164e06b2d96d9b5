"""float64 references and the fp32-accumulation error bound used by the GPU tests."""
import ml_dtypes
import numpy as np

NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def random(shape, dtype, rng, scale=1.0):
    """Fresh random values (never zeros), already rounded to `dtype`."""
    return (rng.standard_normal(shape) * scale).astype(NP[dtype])


def reference(x, w, bias=None):
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    if bias is not None:
        ref = ref + np.asarray(bias).astype(np.float64).reshape((-1, w.shape[0]))
    return ref


def ulp(v, dtype):
    """Spacing of the output dtype at |v| (bf16: 8 significand bits, fp16: 11)."""
    mant = 8 if dtype == "bfloat16" else 11
    a = np.maximum(np.abs(v), 2.0 ** -14)
    return 2.0 ** (np.floor(np.log2(a)) - (mant - 1))


def assert_close(out, x, w, bias, dtype):
    """|out - ref| <= 1 ulp(ref) + K * 2^-23 * sum_k |x w| (+ bias rounding) elementwise; NaN fails."""
    out = np.asarray(out).astype(np.float64)
    ref = reference(x, w, bias)
    k = x.shape[1]
    mag = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    tol = ulp(ref, dtype) + k * 2.0 ** -23 * mag
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert not np.isnan(out).any(), "NaN in output"
    err = np.abs(out - ref)
    bad = err > tol
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements out of bound; worst err {err.max():.3g} "
                           f"at {np.unravel_index(np.argmax(err - tol), err.shape)}")


def check_bound(out, ref, mag, k, dtype):
    """|out - ref| <= 1 ulp(ref) + K * 2^-23 * mag elementwise (mag: the sum of the terms' magnitudes, so
    fp32 accumulation in any order fits); NaN fails (an element never written)."""
    out = np.asarray(out).astype(np.float64)
    assert not np.isnan(out).any(), "NaN in output (an element never written?)"
    tol = ulp(ref, dtype) + k * 2.0 ** -23 * mag
    err = np.abs(out - ref)
    assert (err <= tol).all(), f"max err {err.max():.3g}; {int((err > tol).sum())} of {err.size} out of bound"


def q4_weight(fmt, group, m, k, seed, scale=0.05):
    """A random jitgemm.quant4.Q4Weight: codes 0..15, fp16 scales in [scale / 10, 1.1 scale) (e8m0 around
    2^-6), mins near 0, zero points 0..15."""
    from jitgemm import quant4
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, (m, k)).astype(np.uint8)
    g = k // group
    if fmt == "mxfp4":
        return quant4.Q4Weight(fmt, quant4.pack(codes), rng.integers(118, 128, (m, g)).astype(np.uint8), group)
    scales = (rng.random((m, g)) * scale + scale / 10).astype(np.float16)
    mins = (rng.standard_normal((m, g)) * scale).astype(np.float16) if fmt == "q4_min" else None
    zeros = rng.integers(0, 16, (m, g)).astype(np.uint8) if fmt == "q4_zp" else None
    return quant4.Q4Weight(fmt, quant4.pack(codes), scales, group, mins=mins, zeros=zeros)


def w4_reference(x, w, bias):
    """(float64 reference, magnitude bound of the terms) of x . dequant(w).T + bias for a 4-bit weight
    (jitgemm.quant4.Q4Weight); q4_min's bound counts the scaled codes and the min terms apart, as the
    kernels sum them (s * sum(c x) + min * sum(x))."""
    from jitgemm import quant4
    xd = np.asarray(x).astype(np.float64)
    deq = quant4.dequantize(w).astype(np.float64)
    ref = xd @ deq.T + (0 if bias is None else np.asarray(bias).astype(np.float64).reshape(-1, deq.shape[0]))
    part = np.abs(deq)
    if w.format == "q4_min":
        mins = np.repeat(w.mins, w.group, axis=1)
        part = np.abs(deq - mins) + np.abs(mins)
    return ref, np.abs(xd) @ part.T
