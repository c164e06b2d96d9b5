"""4-bit weight formats (issue #19, the host side): each format's exact decode rule, a numpy reference, and
converters from the packed layouts checkpoints ship (GGUF Q4_0 / Q4_1 / MXFP4 blocks; GPTQ and AWQ int32
tensors) into jitgemm's layout, and device_layout: the byte order the kernels (kernels_src/w4.hip) read.

jitgemm's layout of a weight [M, K], chosen for 16-byte weight loads (16 bytes = 32 consecutive k of a row):
  q       uint8 [M, K / 2]: k = 2j in the low nibble of byte j, k = 2j + 1 in the high nibble
  scales  [M, K / group]: float16 (the int4 formats) or uint8 e8m0 (mxfp4)
  mins    float16 [M, K / group]   (q4_min only; on the device inside the scales: scale_records)
  zeros   uint8 [M, K / group], 0..15   (q4_zp only)
The value of the code c = nibble(m, k) in group g = k // group:
  "mxfp4"   e2m1(c) * 2^(scales[m, g] - 127)   (OCP MX: group 32; e2m1 = sign bit 3, then 0, 0.5, 1, 1.5,
            2, 3, 4, 6; scale 255 is NaN, as OCP says: ggml reads it as 2^128)
  "q4_sym"  (c - 8) * scales[m, g]             (GGUF Q4_0; GPTQ symmetric)
  "q4_min"  c * scales[m, g] + mins[m, g]      (GGUF Q4_1)
  "q4_zp"   (c - zeros[m, g]) * scales[m, g]   (GPTQ / AWQ with zero points)
each computed in float32 from the stored values (what a kernel computes before it multiplies)."""
from __future__ import annotations

from dataclasses import dataclass

import functools

import numpy as np

FORMATS = ("mxfp4", "q4_sym", "q4_min", "q4_zp")
GROUPS = (32, 64, 128)
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)
GGUF_BLOCK = 32   # values per GGUF block of Q4_0, Q4_1 and MXFP4


def group_pitch(k: int, group: int) -> int:
    """Scale (and min / zero point) values a row takes on the device: K's groups padded to whole 128-k blocks,
    as the codes are, so a kernel reads a block's scales of a row in one aligned load (4 groups of 32: 8 bytes
    of fp16, 4 of e8m0)."""
    return -(-k // 128) * (128 // group)


def pad_groups(a: np.ndarray, k: int, group: int) -> np.ndarray:
    """Per-group values [M, K / group] as the device holds them: [M, group_pitch(K, group)], zeros after."""
    m, g = a.shape
    out = np.zeros((m, group_pitch(k, group)), a.dtype)
    out[:, :g] = a
    return out


def scale_records(scales: np.ndarray, mins: np.ndarray, k: int, group: int) -> np.ndarray:
    """q4_min's scales and minima as the device holds them, one record a row and 128-k block: the block's 128 / group
    scales, then its minima (float16 [M, 2 * group_pitch(K, group)]), so a kernel reads a block's both in one aligned
    load (16 bytes at group 32) where two arrays took two loads, each touching other sectors."""
    return records(pad_groups(scales, k, group), pad_groups(mins, k, group), group)


def records(scales, mins, group: int, xp=np):
    """scale_records of scales and minima already padded to group_pitch, with the array module xp (numpy, or CuPy
    for arrays made on a GPU)."""
    m, pitch = scales.shape
    gpb = 128 // group
    return xp.concatenate([scales.reshape(m, -1, gpb), mins.reshape(m, -1, gpb)], axis=2).reshape(m, 2 * pitch)


def split_records(rec: np.ndarray, k: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """scale_records' inverse: (scales, mins), each [M, K / group]."""
    m = rec.shape[0]
    blocks = rec.reshape(m, -1, 2, 128 // group)
    g = k // group
    return blocks[:, :, 0].reshape(m, -1)[:, :g], blocks[:, :, 1].reshape(m, -1)[:, :g]


def groups_of(fmt: str) -> tuple[int, ...]:
    """The group sizes a format takes (MXFP4's is the OCP MX block, 32)."""
    return (32,) if fmt == "mxfp4" else GROUPS


@dataclass(frozen=True)
class Q4Weight:
    """A 4-bit weight [M, K] in jitgemm's layout (see the module's doc)."""
    format: str
    q: np.ndarray
    scales: np.ndarray
    group: int
    mins: np.ndarray | None = None
    zeros: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape[0], 2 * self.q.shape[1]


def check(w: Q4Weight) -> Q4Weight:
    """The weight, or a ValueError/TypeError that names the field and the rule."""
    if w.format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {w.format!r}")
    if w.group not in GROUPS or (w.format == "mxfp4" and w.group != 32):
        allowed = "32 (OCP MX)" if w.format == "mxfp4" else ", ".join(map(str, GROUPS))
        raise ValueError(f"group must be {allowed} for {w.format}, got {w.group!r}")
    if not isinstance(w.q, np.ndarray) or w.q.dtype != np.uint8 or w.q.ndim != 2:
        raise TypeError(f"q must be a 2-D uint8 array [M, K / 2] (two 4-bit codes a byte), got "
                        f"{getattr(w.q, 'dtype', type(w.q).__name__)} {getattr(w.q, 'shape', '')}")
    m, k = w.shape
    if m < 1 or k % w.group or k % 32:
        raise ValueError(f"K must be a multiple of the group ({w.group}) and of 32 (16-byte weight loads), and M >= 1; "
                         f"got M={m}, K={k}")
    want = (m, k // w.group)
    sdt = np.uint8 if w.format == "mxfp4" else np.float16
    _field(w.scales, "scales", want, sdt)
    if w.format == "q4_min":
        _field(w.mins, "mins", want, np.float16)
    if w.format == "q4_zp":
        _field(w.zeros, "zeros", want, np.uint8)
        if (w.zeros > 15).any():
            raise ValueError("zeros must be 4-bit codes, 0..15")
    for name in ("mins", "zeros"):
        if getattr(w, name) is not None and not (name == "mins" and w.format == "q4_min") \
                and not (name == "zeros" and w.format == "q4_zp"):
            raise ValueError(f"{name} is only for format {'q4_min' if name == 'mins' else 'q4_zp'}, not {w.format}")
    return w


def _field(a, name: str, shape: tuple, dtype) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
        raise ValueError(f"{name} must be {np.dtype(dtype).name} of shape [M, K / group] = {list(shape)}, got "
                         f"{getattr(a, 'dtype', type(a).__name__)} {list(getattr(a, 'shape', ()))}")


def unpack(q: np.ndarray) -> np.ndarray:
    """The 4-bit codes [M, K] of packed bytes [M, K / 2] (low nibble first)."""
    out = np.empty((q.shape[0], 2 * q.shape[1]), np.uint8)
    out[:, 0::2] = q & 0x0F
    out[:, 1::2] = q >> 4
    return out


def pack(codes: np.ndarray) -> np.ndarray:
    """Codes [M, K] (0..15, K even) as bytes [M, K / 2], low nibble first."""
    c = np.asarray(codes, np.uint8)
    return (c[:, 0::2] & 0x0F) | (c[:, 1::2] << 4)


#: nibble position p of a device word holds element NIBBLE_ELEMENT[p] of its 8 codes (kernels_src/w4.hip)
NIBBLE_ELEMENT = (0, 2, 4, 6, 1, 3, 5, 7)


def empty_group_scales_normal(w: "Q4Weight") -> np.ndarray:
    """An MXFP4 weight's e8m0 scales with each 0 (2^-127) of a group whose codes are all zero (+0 or -0) made 127
    (2^0): that group's terms are zeros (NaN with a non-finite token) under either scale, so every sum is the
    same, and a checkpoint whose only subnormal scales sit on empty blocks (what a quantizer gives an all-zero
    block) can take the kernels' normal-scale decode (w4gemm.Q4Device.normal_scales). Other scales as they are."""
    zero = w.scales == 0
    if not zero.any():
        return w.scales
    rows = np.flatnonzero(zero.any(axis=1))
    mags = unpack(w.q[rows]) & 7                                    # the codes' magnitudes, rows with a 0 scale
    empty = ~mags.reshape(len(rows), -1, w.group).any(axis=2)      # [rows, groups]: only +0 / -0 codes
    out = w.scales.copy()
    sub = out[rows]
    sub[zero[rows] & empty] = 127
    out[rows] = sub
    return out


#: MXFP4 words (device_layout with fmt="mxfp4"): where the bits m, e0, e1 and the sign of the code of nibble
#: p = j + 4 h go, as offsets within half h (bits 16 h ..): pairs j = 0..2 keep the magnitude's three bits
#: together and the sign 9 above them, where one shift puts all four under a bf16 value's fields (m e0 e1 at
#: 6..8, the sign at 15); the last pair takes the four bits left (kernels_src/w4.hip)
MX_BITS = ((0, 1, 2, 9), (3, 4, 5, 12), (6, 7, 8, 15), (10, 11, 13, 14))


@functools.lru_cache(maxsize=2)
def _mx_table(to_mx: bool) -> np.ndarray:
    """uint16 [65536]: each 16-bit half of a nibble word as the same half of the MXFP4 word (or back). A code's
    bits never leave their half, so one table lookup a half moves them all."""
    half = np.arange(1 << 16, dtype=np.uint32)
    out = np.zeros_like(half)
    for j, bits in enumerate(MX_BITS):
        for b, at in enumerate(bits):   # bit b of the code of nibble j (j + 4 in the high half)
            src, dst = (4 * j + b, at) if to_mx else (at, 4 * j + b)
            out |= ((half >> np.uint32(src)) & np.uint32(1)) << np.uint32(dst)
    return out.astype(np.uint16)


def _mx_words(dev: np.ndarray, to_mx: bool) -> np.ndarray:
    """Device-layout bytes with nibble words (NIBBLE_ELEMENT order) as MXFP4 words (MX_BITS), or back."""
    halves = np.ascontiguousarray(dev, np.uint8).view("<u2")
    return _mx_table(to_mx)[halves].astype("<u2").view(np.uint8)


def device_layout(q: np.ndarray, k: int | None = None, fmt: str | None = None) -> np.ndarray:
    """Packed codes [M, K / 2] (jitgemm's layout) as the kernels read them, uint8 [M, ceil(K / 128) * 64]:
    each row in 128-k blocks of 64 bytes (zero codes pad the last), block b four 16-byte slices t, slice t
    four 32-bit words w, word w the codes of k = 128 b + 32 w + 8 t + e (e = 0..7), element e in nibble
    NIBBLE_ELEMENT.index(e) (so nibbles p and p + 4 are elements 2p and 2p + 1); for fmt "mxfp4" each
    word's bits then placed by MX_BITS. See kernels_src/w4.hip."""
    dev = _nibble_layout(q, k)
    if fmt == "mxfp4":
        dev = _mx_words(dev, True)
    return dev


def _nibble_layout(q: np.ndarray, k: int | None) -> np.ndarray:
    codes = unpack(np.asarray(q, np.uint8))
    m, kk = codes.shape
    if k is not None and k != kk:
        raise ValueError(f"q holds K = {kk} codes a row, not {k}")
    blocks = -(-kk // 128)
    full = np.zeros((m, blocks * 128), np.uint8)
    full[:, :kk] = codes
    # [m, b, w, t, e] -> [m, b, t, w, nibble position]
    c = full.reshape(m, blocks, 4, 4, 8).transpose(0, 1, 3, 2, 4)[..., list(NIBBLE_ELEMENT)]
    nib = c.reshape(m, blocks * 128)
    return np.ascontiguousarray(nib[:, 0::2] | (nib[:, 1::2] << 4))


def from_device_layout(dev: np.ndarray, k: int, fmt: str | None = None) -> np.ndarray:
    """The packed codes [M, K / 2] (jitgemm's layout) of device-layout bytes: device_layout's inverse."""
    d = np.asarray(dev, np.uint8)
    m, blocks = d.shape[0], -(-k // 128)
    if k % 32 or d.shape[1] != blocks * 64:
        raise ValueError(f"device-layout bytes of K = {k} (a multiple of 32) are [M, {blocks * 64}], got {list(d.shape)}")
    if fmt == "mxfp4":
        d = _mx_words(d, False)
    nib = np.empty((m, blocks * 128), np.uint8)
    nib[:, 0::2], nib[:, 1::2] = d & 0x0F, d >> 4
    c = np.empty((m, blocks, 4, 4, 8), np.uint8)   # [m, b, t, w, e]
    c[..., list(NIBBLE_ELEMENT)] = nib.reshape(m, blocks, 4, 4, 8)
    return pack(c.transpose(0, 1, 3, 2, 4).reshape(m, blocks * 128)[:, :k])


def dequantize(w: Q4Weight) -> np.ndarray:
    """float32 [M, K]: each value by its format's rule (see the module's doc)."""
    check(w)
    codes = unpack(w.q)
    per = lambda a: np.repeat(a, w.group, axis=1)  # noqa: E731 - one group's value for each of its k
    if w.format == "mxfp4":
        e = per(w.scales).astype(np.int32)
        scale = np.where(e == 255, np.float32(np.nan), np.ldexp(np.float32(1), np.minimum(e, 254) - 127))
        return E2M1[codes] * scale
    s = per(w.scales).astype(np.float32)
    if w.format == "q4_sym":
        return (codes.astype(np.float32) - 8) * s
    if w.format == "q4_min":
        return codes.astype(np.float32) * s + per(w.mins).astype(np.float32)
    return (codes.astype(np.float32) - per(w.zeros).astype(np.float32)) * s


# ---- GGUF ----------------------------------------------------------------------------------------------
_GGUF = {"Q4_0": ("q4_sym", 18), "Q4_1": ("q4_min", 20), "MXFP4": ("mxfp4", 17)}


def from_gguf(data, qtype: str, shape: tuple[int, int]) -> Q4Weight:
    """A GGUF tensor of type Q4_0, Q4_1 or MXFP4 (its raw bytes, e.g. gguf's ReaderTensor.data) of logical
    shape [M, K] (ggml's ne = [K, M]) in jitgemm's layout, values unchanged. A GGUF block holds 32
    consecutive k of a row: its scale (fp16 d; Q4_1 also an fp16 min; MXFP4 one e8m0 byte), then 16 bytes
    whose low nibbles are k = 0..15 and high nibbles k = 16..31."""
    if qtype not in _GGUF:
        raise ValueError(f"qtype must be one of {', '.join(_GGUF)}, got {qtype!r}")
    fmt, block_bytes = _GGUF[qtype]
    # a tuple, a list or an integer array (gguf's ReaderTensor.shape is one, in ggml's order: reverse it)
    dims = tuple(shape.tolist()) if isinstance(shape, np.ndarray) and shape.dtype.kind in "iu" else \
        tuple(shape) if isinstance(shape, (tuple, list)) else ()
    if len(dims) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in dims) \
            or dims[0] < 1 or dims[1] < 1 or dims[1] % GGUF_BLOCK:
        raise ValueError(f"shape must be [M, K], two positive ints with K a multiple of {GGUF_BLOCK}, got {shape!r}")
    m, k = int(dims[0]), int(dims[1])
    if isinstance(data, np.ndarray):
        raw = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    else:
        try:  # bytes, bytearray, memoryview, mmap: anything with the buffer protocol
            raw = np.frombuffer(memoryview(data).tobytes(), np.uint8)
        except TypeError:
            raise TypeError(f"data must be the tensor's raw bytes (a numpy array such as gguf's ReaderTensor.data, "
                            f"or any buffer), got {type(data).__name__}") from None
    if raw.size != m * (k // GGUF_BLOCK) * block_bytes:
        raise ValueError(f"a {qtype} tensor [{m}, {k}] has {m * (k // GGUF_BLOCK) * block_bytes} bytes, got {raw.size}")
    blocks = raw.reshape(m, k // GGUF_BLOCK, block_bytes)
    head = 1 if fmt == "mxfp4" else 2 if fmt == "q4_sym" else 4
    nib = blocks[:, :, head:]
    codes = np.concatenate([nib & 0x0F, nib >> 4], axis=2).reshape(m, k)   # k = 0..15, then 16..31, per block
    if fmt == "mxfp4":
        return check(Q4Weight(fmt, pack(codes), np.ascontiguousarray(blocks[:, :, 0]), 32))
    d = np.ascontiguousarray(blocks[:, :, 0:2]).view(np.float16).reshape(m, k // GGUF_BLOCK)
    if fmt == "q4_sym":
        return check(Q4Weight(fmt, pack(codes), d, 32))
    mins = np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16).reshape(m, k // GGUF_BLOCK)
    return check(Q4Weight(fmt, pack(codes), d, 32, mins=mins))


# ---- GPTQ ----------------------------------------------------------------------------------------------
def from_gptq(qweight: np.ndarray, scales: np.ndarray, qzeros: np.ndarray | None = None, g_idx=None, *,
              group: int, zero_offset: int = 1) -> Q4Weight:
    """A 4-bit GPTQ linear layer (qweight int32 [K / 8, M]: eight consecutive k of column m, k = 8i + j in bits
    4j..4j+3; scales float16 [K / group, M]; qzeros int32 [K / group, M / 8]: eight consecutive m in bits 4j;
    None: symmetric, zero 8) as a Q4Weight [M, K]. zero_offset: what the checkpoint's stored zeros are off
    by (1: the original GPTQ format stores zero - 1; 0: GPTQ v2 / GPTQModel's). A g_idx that is not
    k // group (act-order) is refused: its groups are not contiguous in K."""
    qw = np.asarray(qweight)
    if qw.dtype != np.int32 or qw.ndim != 2:
        raise TypeError(f"qweight must be a 2-D int32 array [K / 8, M], got {qw.dtype} {qw.shape}")
    k, m = 8 * qw.shape[0], qw.shape[1]
    if g_idx is not None and not np.array_equal(np.asarray(g_idx), np.arange(k) // group):
        raise ValueError("g_idx is not k // group (an act-order checkpoint): its groups are not contiguous in K, "
                         "which jitgemm's layout needs; re-export it without act-order (desc_act=False)")
    codes = ((qw.view(np.uint32)[:, None, :] >> (4 * np.arange(8, dtype=np.uint32))[None, :, None]) & 0xF)
    codes = codes.reshape(k, m).T.astype(np.uint8)
    sc = np.ascontiguousarray(np.asarray(scales, np.float16).T)
    if qzeros is None:
        return check(Q4Weight("q4_sym", pack(codes), sc, group))
    qz = np.asarray(qzeros)
    if qz.dtype != np.int32 or qz.shape != (k // group, m // 8):
        raise ValueError(f"qzeros must be int32 [K / group, M / 8] = {[k // group, m // 8]}, got {qz.dtype} {list(qz.shape)}")
    z = ((qz.view(np.uint32)[:, :, None] >> (4 * np.arange(8, dtype=np.uint32))[None, None, :]) & 0xF)
    z = z.reshape(k // group, m).T.astype(np.int32) + zero_offset
    if (z > 15).any() or (z < 0).any():
        raise ValueError(f"zeros + zero_offset ({zero_offset}) leave 0..15: is this checkpoint's format the other one?")
    return check(Q4Weight("q4_zp", pack(codes), sc, group, zeros=z.astype(np.uint8)))


# ---- AWQ (the GEMM packing of llm-awq / AutoAWQ checkpoints) ----------------------------------------------
#: which of 8 consecutive output columns each nibble of an AWQ int32 holds (nibble i: column AWQ_ORDER[i])
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _awq_columns(packed: np.ndarray) -> np.ndarray:
    """int32 [R, C / 8] packed the AWQ way -> uint8 codes [R, C] in column order."""
    p = packed.view(np.uint32)
    nib = (p[:, :, None] >> (4 * np.arange(8, dtype=np.uint32))[None, None, :]) & 0xF   # [R, C/8, nibble]
    cols = np.empty_like(nib)
    cols[:, :, list(AWQ_ORDER)] = nib   # column AWQ_ORDER[i] is nibble i
    return cols.reshape(p.shape[0], -1).astype(np.uint8)


def from_awq(qweight: np.ndarray, scales: np.ndarray, qzeros: np.ndarray, *, group: int) -> Q4Weight:
    """An AWQ linear layer (qweight int32 [K, M / 8]; qzeros int32 [K / group, M / 8], both with eight
    output columns an int32 in AWQ's interleaved nibble order, AWQ_ORDER; scales float16 [K / group, M]) as a
    Q4Weight [M, K] of format q4_zp: value = (code - zero) * scale."""
    qw, qz = np.asarray(qweight), np.asarray(qzeros)
    if qw.dtype != np.int32 or qw.ndim != 2:
        raise TypeError(f"qweight must be a 2-D int32 array [K, M / 8], got {qw.dtype} {qw.shape}")
    k, m = qw.shape[0], 8 * qw.shape[1]
    if qz.dtype != np.int32 or qz.shape != (k // group, m // 8):
        raise ValueError(f"qzeros must be int32 [K / group, M / 8] = {[k // group, m // 8]}, got {qz.dtype} {list(qz.shape)}")
    codes = np.ascontiguousarray(_awq_columns(qw).T)
    zeros = np.ascontiguousarray(_awq_columns(qz).T)
    return check(Q4Weight("q4_zp", pack(codes), np.ascontiguousarray(np.asarray(scales, np.float16).T), group,
                          zeros=zeros))
