"""GPU correctness of the 4-bit family (w4_gemm) against float64 of the dequantized weights: every format and
group, both dtypes, N across one and several token tiles, odd M, K with a partial last 128-k block, every
bias form; bits that do not depend on the batch; graph capture."""
import numpy as np
import pytest

import jitgemm
from jitgemm import quant4
from jitgemm.w4gemm import Q4Device
from gpu_helpers import empty_device, run_chain, sync, to_device
from reference import NP, check_bound, q4_weight, w4_reference as reference

pytestmark = pytest.mark.gpu

KINDS = [("mxfp4", 32), ("q4_sym", 32), ("q4_sym", 128), ("q4_min", 32), ("q4_zp", 64), ("q4_zp", 128),
         ("q4_min", 64), ("q4_min", 128)]  # q4_min at every group: each reads its records with another load width


def weight(fmt, group, m, k, seed):
    return q4_weight(fmt, group, m, k, seed)


check = check_bound


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("fmt,group", KINDS)
def test_formats_groups_n_and_bias_forms(fmt, group, dtype):
    m = 1003
    k = 2880 if group < 128 else 3072     # 2880: a partial last 128-k block (K % 128 == 0 where the group is 128)
    w = weight(fmt, group, m, k, KINDS.index((fmt, group)))
    dw = Q4Device.upload(w)
    rng = np.random.default_rng(7)
    for n in (1, 3, 8, 9, 16, 17, 40, 100):  # 17, 40, 100: the 32- and 64-token blocks (w4.token_tiling)
        x = (rng.standard_normal((n, k)) * 0.5).astype(NP[dtype])
        for bias_form in ("none", "m", "nm"):
            bias = None if bias_form == "none" else \
                (rng.standard_normal(m if bias_form == "m" else (n, m))).astype(NP[dtype])
            _, xv = to_device(x, dtype, pad=8)                # padded rows: ldx != K
            bv = None
            if bias is not None:
                _, bv = to_device(bias.reshape(-1, m), dtype)
                if bias.ndim == 1:
                    bv.shape, bv.strides = (m,), (1,)
            owner, ov = empty_device((n, m), dtype)
            jitgemm.w4_gemm(xv, dw, bv, out=ov)
            sync()
            ref, mag = reference(x, w, bias)
            check(owner.to_numpy(), ref, mag, k, dtype)


def test_numpy_tokens_and_the_linear_layer():
    w = weight("q4_min", 32, 300, 2048, 5)
    x = np.random.default_rng(8).standard_normal((4, 2048)).astype(np.float16)
    bias = np.linspace(-1, 1, 300).astype(np.float16)
    layer = jitgemm.Linear.from_quantized(w, bias)
    ref, mag = reference(x, w, bias)
    check(layer(x), ref, mag, 2048, "float16")
    check(jitgemm.w4_gemm(x, layer.weight), ref - bias.astype(np.float64), mag, 2048, "float16")


@pytest.mark.parametrize("fmt,group", [("q4_zp", 128), ("mxfp4", 32), ("q4_min", 32)])
def test_deterministic_and_batch_invariant(fmt, group):
    """Repeated calls give the same bits, and a token's bits do not depend on the batch: 100 tokens take 32- or
    64-token blocks and other row tiles (MXFP4, q4_min: w4.token_tiling) than one token does, the same K order."""
    w = weight(fmt, group, 3000, 8192, 9)
    dw = Q4Device.upload(w)
    n = 100
    x = np.random.default_rng(10).standard_normal((n, 8192)).astype(NP["bfloat16"])
    _, xv = to_device(x, "bfloat16")
    full_owner, full = empty_device((n, 3000), "bfloat16")
    jitgemm.w4_gemm(xv, dw, out=full)
    sync()
    a = full_owner.to_numpy().view(np.uint16)
    for _ in range(3):
        jitgemm.w4_gemm(xv, dw, out=full)
        sync()
        assert np.array_equal(full_owner.to_numpy().view(np.uint16), a)
    for t in (0, 15, 16, 39, 63, 64, 99):
        alone = jitgemm.w4_gemm(x[t:t + 1], dw).view(np.uint16)
        assert np.array_equal(alone[0], a[t]), f"token {t}"
    for t0, t1 in ((0, 17), (40, 80)):  # other batch sizes, other tilings
        part = jitgemm.w4_gemm(x[t0:t1], dw).view(np.uint16)
        assert np.array_equal(part, a[t0:t1]), f"tokens {t0}..{t1}"


def test_graph_capture_replays_the_call():
    cp = pytest.importorskip("cupy")
    w = weight("mxfp4", 32, 2048, 4096, 11)
    dw = Q4Device.upload(w)
    x = cp.asarray(np.random.default_rng(12).standard_normal((4, 4096)).astype(np.float16))
    out = cp.empty((4, 2048), dtype=cp.float16)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        jitgemm.w4_gemm(x, dw, out=out)       # the cold path (plan, compile) before the capture
        s.synchronize()
        out.fill(0)
        s.begin_capture()
        jitgemm.w4_gemm(x, dw, out=out)       # stream=None: CuPy's current stream, the capturing one
        g = s.end_capture()
        g.launch(s)
        s.synchronize()
    ref, mag = reference(cp.asnumpy(x), w, None)
    check(cp.asnumpy(out), ref, mag, 4096, "float16")


def test_programmatic_dependent_launch_chain(monkeypatch):
    """JITGEMM_PDL=1 (sm_90+): a chain of 4-bit calls (MXFP4 and q4_sym alternating), each kernel launched while
    the one before drains, gives the bits of plain launches, eagerly and replayed from a captured graph, and each
    stage matches float64 of its own input (a stage that read its tokens before the previous kernel wrote them,
    or wrote its output while the previous one still read it, would not)."""
    cp = pytest.importorskip("cupy")
    from jitgemm import config
    from jitgemm.arch import parse
    from gpu_helpers import backend_device
    b, d = backend_device()
    if parse(b.device_info(d).arch).sm < 90:
        pytest.skip("programmatic dependent launch needs sm_90 or later")
    widths = [2048, 1056, 4096, 1024, 776]  # K of each stage is the width before it; 776: M not a multiple of 16
    kinds = [("mxfp4", 32), ("q4_sym", 32), ("mxfp4", 32), ("q4_sym", 128)]  # each K a multiple of its group
    ws = [weight(f, g, m, k, 30 + i) for i, ((f, g), k, m) in enumerate(zip(kinds, widths, widths[1:]))]
    dws = [Q4Device.upload(w) for w in ws]
    # each stage grows the values 5-60x (q4_weight's scales): small tokens keep the last stage finite in fp16
    x = cp.asarray((np.random.default_rng(31).standard_normal((5, widths[0])) * 1e-4).astype(np.float16))
    outs = [cp.empty((5, m), dtype=cp.float16) for m in widths[1:]]
    s = cp.cuda.Stream(non_blocking=True)

    def run(pdl: bool, graph: bool):
        monkeypatch.setenv("JITGEMM_PDL", "1" if pdl else "0")
        config.reload()
        plans = [jitgemm.explain(t, dw) for t, dw in zip([x, *outs], dws)]
        assert all(("programmatic dependent launch" in p) == pdl for p in plans), plans

        run_chain(jitgemm.w4_gemm, x, dws, outs, s, graph, lambda o: o.fill(np.nan))
        return [cp.asnumpy(a) for a in (x, *outs)]

    plain = run(False, False)
    for graph in (False, True):
        got = run(True, graph)
        for i, w in enumerate(ws):
            ref, mag = reference(got[i], w, None)
            check(got[i + 1], ref, mag, widths[i], "float16")
            assert np.array_equal(got[i + 1].view(np.uint16), plain[i + 1].view(np.uint16)), (graph, i)
    monkeypatch.delenv("JITGEMM_PDL")
    config.reload()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mxfp4_short_and_exact_scale_decodes(dtype):
    """All-normal e8m0 scales (one 0 on an all-zero block counts: quant4.empty_group_scales_normal): the short
    decode (Q4Device.normal_scales) gives the exact decode's bits (the same device arrays forced through it).
    A 0 scale (2^-127) and a 255 (NaN) in another weight of the same shape: upload picks the exact decode; the
    NaN block's row is NaN, every other row within the bound; the two weights alternate through the cache."""
    m, k = 301, 2880
    base = weight("mxfp4", 32, m, k, 11)
    codes = quant4.unpack(base.q)
    codes[2, 128:160] = 8                         # row 2, group 4: -0 codes only, with a 0 (2^-127) scale: still normal
    plain = quant4.Q4Weight("mxfp4", quant4.pack(codes), base.scales.copy(), 32)
    plain.scales[2, 4] = 0
    odd = quant4.Q4Weight("mxfp4", plain.q, plain.scales.copy(), 32)
    odd.scales[5, 3], odd.scales[9, 10] = 0, 255
    a, b = Q4Device.upload(plain), Q4Device.upload(odd)
    assert a.normal_scales and not b.normal_scales
    exact_a = Q4Device(a.format, a.group, a.shape, a.q, a.scales, a.aux)   # the same arrays, the exact decode
    rng = np.random.default_rng(12)
    for n in (1, 9, 40):
        x = (rng.standard_normal((n, k)) * 0.5).astype(NP[dtype])
        _, xv = to_device(x, dtype)
        for _ in range(2):
            got = {}
            for name, dw in (("short", a), ("exact", exact_a), ("odd", b)):
                owner, ov = empty_device((n, m), dtype, poison=0 if name == "odd" else 0xFF)  # odd: its NaN written
                jitgemm.w4_gemm(xv, dw, out=ov)
                sync()
                got[name] = owner.to_numpy()
            assert np.array_equal(got["short"].view(np.uint16), got["exact"].view(np.uint16))
            ref, mag = reference(x, plain, None)
            check(got["short"], ref, mag, k, dtype)
            ref, mag = reference(x, odd, None)
            assert np.isnan(got["odd"][:, 9].astype(np.float64)).all()
            keep = np.arange(m) != 9
            check(got["odd"][:, keep], ref[:, keep], mag[:, keep], k, dtype)


def _same_bits_under_rows(nv_tables, dtype, m, k, seed, rows: dict, ns, expect) -> None:
    """A q4_min G32 weight [m, k] called at each N of `ns` under each table row of `rows` ({label: row}, one at a
    time, the pipeline's cache cleared between them); expect(label, n, explain's text) holds for each plan; every
    label gives the first one's bits, which match float64."""
    from jitgemm import pipeline
    w = weight("q4_min", 32, m, k, seed)
    dw = Q4Device.upload(w)
    x = np.random.default_rng(seed + 1).standard_normal((max(ns), k)).astype(NP[dtype])
    got = {}
    for label, row in rows.items():
        nv_tables(w4={"w4-q4_min": [row]})
        pipeline.clear()
        for n in ns:
            text = jitgemm.explain(x[:n], dw)
            assert expect(label, n, text), text
            got[label, n] = jitgemm.w4_gemm(x[:n], dw).view(np.uint16)
    first, *others = rows
    for n in ns:
        for label in others:
            assert np.array_equal(got[first, n], got[label, n]), f"N = {n}, {label}"
        ref, mag = reference(x[:n], w, None)
        check(got[first, n].view(NP[dtype]), ref, mag, k, dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_register_bound_changes_no_bit(nv_tables, dtype):
    """A table row's register bound (min_blocks: kernels.w4.bounded, session 32) moves registers only, never the
    order of a row's sums: Qwen2.5-7B's gate_up geometry cut to 2000 rows through a bounded row (6 blocks an SM,
    ptxas spills 16 B at bf16) and the same row without the bound give the same bits at N = 1, 4 and 16 (one and
    two token tiles), and both match float64."""
    m, k, tiles = 2000, 3584, {1: 1, 4: 1, 16: 1}
    rows = {6: (m, k, (4, 1, 1), tiles, {1: 6, 4: 6, 16: 6}), 1: (m, k, (4, 1, 1), tiles)}
    _same_bits_under_rows(nv_tables, dtype, m, k, 13, rows, (1, 4, 16),
                          lambda mb, n, text: (", 4, 1, 1, 6> grid" in text) == (mb > 1))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_row_tiles_change_no_bit(nv_tables, dtype):
    """A row's MT at N bucket 16 (row tiles a block, session 34: Llama-3.1-8B's q4_min gate_up takes two there,
    1.9 % faster in its step) decides how many rows share a block's token reads, never the order of a row's sums:
    the same K order with one and with two row tiles at bucket 16 gives the same bits at N = 9 and 16 (and at 4,
    which keeps one), an odd M included, and both match float64."""
    m, k = 2003, 4096
    rows = {mt: (m, k, (4, 1, 1), {1: 1, 4: 1, 16: mt}) for mt in (2, 1)}
    _same_bits_under_rows(nv_tables, dtype, m, k, 15, rows, (4, 9, 16),
                          lambda mt, n, text: ", 4, 1, 1> grid" in text
                          and f"{16 * (mt if n > 8 else 1)} rows/block" in text)
