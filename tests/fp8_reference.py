"""float64 references for the fp8 family."""
import ml_dtypes
import numpy as np

FMT = {"float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz}
MAX = {"float8_e4m3fn": 448.0, "float8_e4m3fnuz": 240.0}


def quantize(a, scale, fmt):
    """The documented token quantization, bit for bit: fp32(x) * fp32(1 / fp32(s)) in fp32, then
    round-to-nearest-even to e4m3 with saturation (ml_dtypes rounds RNE from float32 in one step;
    clip first, since ml_dtypes turns out-of-range values into NaN)."""
    s32 = np.asarray(scale, np.float32).reshape(-1, 1) if np.ndim(scale) else np.float32(scale)
    inv = (np.float32(1.0) / s32).astype(np.float32)
    v = np.asarray(a, np.float32) * inv
    return np.clip(v, -MAX[fmt], MAX[fmt]).astype(np.float32).astype(FMT[fmt])


def reference(x, w8, sx, sw, bias=None):
    """x: fp8 or 16-bit tokens (already what the kernel multiplies), w8: fp8 weights."""
    acc = x.astype(np.float64) @ w8.astype(np.float64).T
    sxv = np.asarray(sx, np.float64).reshape(-1, 1) if np.ndim(sx) else float(sx)
    swv = np.asarray(sw, np.float64).reshape(1, -1) if np.ndim(sw) else float(sw)
    ref = acc * sxv * swv
    mag = (np.abs(x.astype(np.float64)) @ np.abs(w8.astype(np.float64)).T) * np.abs(sxv) * np.abs(swv)
    if bias is not None:
        ref = ref + np.asarray(bias).astype(np.float64).reshape(-1, w8.shape[0])
    return ref, mag
