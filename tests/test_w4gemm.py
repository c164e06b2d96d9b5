"""w4_gemm, Q4Device and Linear.from_quantized on the CPU (a null backend: the whole path runs, launches are
recorded, nothing reaches a driver): the arguments the kernel gets, the plan per vendor, the cached entry,
and every refusal before any GPU work. The numbers themselves are tests/test_gpu_w4.py's (GPU)."""
import json

import numpy as np
import pytest

import jitgemm
from jitgemm import dispatch, quant4
from jitgemm.device_array import DeviceArray
from jitgemm.kernels import w4
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend
from jitgemm.w4gemm import Q4Device
from conftest import table_doc
from reference import q4_weight


def weight(fmt="q4_zp", m=40, k=160, group=32, seed=0) -> quant4.Q4Weight:
    return q4_weight(fmt, group, m, k, seed)


@pytest.fixture
def null():
    with installed(NullBackend()) as b:
        yield b


def device_x(b, n, k, dtype="bfloat16"):
    import ml_dtypes
    host = np.ones((n, k), dtype=np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    d = DeviceArray.from_numpy(b, 0, host, dtype)
    return d


@pytest.mark.parametrize("fmt", quant4.FORMATS)
def test_upload_and_launch_arguments(null, fmt):
    group = 32 if fmt == "mxfp4" else 64
    w = Q4Device.upload(weight(fmt, 40, 320, group))
    pitch = 3 * 128 // group  # K / group padded to whole 128-k blocks (three here)
    lds = 2 * pitch if fmt == "q4_min" else pitch  # q4_min: each block's scales, then its minima
    assert w.q.shape == (40, 3 * 64) and w.scales.shape == (40, lds) and (w.aux is None) == (fmt != "q4_zp")
    host = weight(fmt, 40, 320, group)
    dev_scales = w.scales.to_numpy().view(host.scales.dtype)
    if fmt == "q4_min":
        gpb = 128 // group
        blocks = dev_scales.reshape(40, 3, 2, gpb)  # [row, block, scales / minima, group in the block]
        for half, values in ((0, host.scales), (1, host.mins)):
            row = blocks[:, :, half].reshape(40, -1)
            assert np.array_equal(row[:, :320 // group], values) and not row[:, 320 // group:].any()  # padding: 0
    else:
        assert np.array_equal(dev_scales[:, :320 // group], host.scales)
        assert not dev_scales[:, 320 // group:].any()  # the padding: zeros, never used
    assert np.array_equal(w.q.to_numpy(), quant4.device_layout(weight(fmt, 40, 320, group).q, 320, fmt))
    x = device_x(null, 3, 320)
    out = DeviceArray(null, 0, (3, 40), "bfloat16")
    jitgemm.w4_gemm(x, w, out=out)
    grid, stream, device, words = null.launches[-1]
    # out, ldo, x, ldx, w, ldw (bytes), scales, lds, aux, lda, bias, bias_ld, bias_rows, N, M, K
    assert words[0] == out.ptr and words[1] == 40 and words[2] == x.ptr and words[3] == 320
    assert words[4] == w.q.ptr and words[5] == 3 * 64 and words[6] == w.scales.ptr and words[7] == lds
    assert words[8] == (w.aux.ptr if w.aux is not None else 0) and words[9] == (pitch if fmt == "q4_zp" else 0)
    assert words[10] == 0
    assert [words[i] & 0xFFFFFFFF for i in (13, 14, 15)] == [3, 40, 320]
    plan = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", fmt, group, 3, 40, 320)
    assert grid == plan.grid and plan.instance.name.startswith(f"jg_w4_nv<jg_bf16, {w4.FMT_ID[fmt]}, {group}, 1,")


def test_the_second_call_is_a_cached_entry_and_bias_rows(null):
    w = Q4Device.upload(weight("q4_sym", 40, 128, 128))
    x = device_x(null, 17, 128)
    bias = DeviceArray.from_numpy(null, 0, np.zeros((17, 40), np.float16), "bfloat16")
    out = jitgemm.w4_gemm(x, w, bias)          # N = 17: two 16-token tiles, side by side in grid.x
    assert out.shape == (17, 40) and null.launches[-1][0] == (2 * 3, 1, 1)  # 40 rows: 3 blocks of 16, 2 tiles each
    words = null.launches[-1][3]
    assert words[10] == bias.ptr and words[11] == 40 and words[12] & 0xFFFFFFFF == 17
    jitgemm.w4_gemm(x, w, bias, out=out)
    before = dict(null.calls)
    jitgemm.w4_gemm(x, w, bias, out=out)       # the same signature: the cached entry, one launch and nothing else
    assert {k: v - before.get(k, 0) for k, v in null.calls.items() if v != before.get(k, 0)} == {"launch": 1}


def test_amd_plans_take_token_groups():
    p = dispatch.plan_w4("hip", "gfx942", 304, "float16", "mxfp4", 32, 40, 5000, 2880)
    assert p.instance.name == "jg_w4_amd<jg_f16, 0, 32, 4, 2, 16>" and p.grid == (157, 1, 10) and p.block == (64, 16, 1)
    assert dispatch.plan_w4("hip", "gfx90a", 104, "float16", "q4_min", 32, 9, 5000, 2880).config.NMAX == 2
    assert "40 tokens in 10 tiles" in p.reason


def test_every_aot_instance_names_a_kernel_and_the_k_order_ignores_n():
    for vendor, arch in (("cuda", None), ("hip", "gfx942")):
        insts = dispatch.all_w4_instances(vendor, arch)
        assert insts and all(i.source == "w4.hip" for i in insts)
        for fmt in quant4.FORMATS:
            group = quant4.groups_of(fmt)[0]
            for n in (1, 5, 16, 17, 32, 40, 128):
                for m, k in ((1, 128), (4096, 2944), (8192, 4096), (151936, 2048), (4096, 14336)):
                    plan = dispatch.plan_w4(vendor, arch or "sm_90a", 132, "bfloat16", fmt, group, n, m, k)
                    assert plan.instance in insts, plan.instance.name
                    one = dispatch.plan_w4(vendor, arch or "sm_90a", 132, "bfloat16", fmt, group, 1, m, k)
                    if vendor == "cuda":
                        assert plan.config.k_order == one.config.k_order, (fmt, n, m, k)


@pytest.mark.parametrize("fmt", quant4.FORMATS)
def test_more_than_16_tokens_take_wider_blocks_where_measured_and_keep_the_k_order(fmt):
    """w4.token_tiling: N <= 16 as the row says; MXFP4 and q4_min take 32 tokens a block to N = 32, then MXFP4
    two row tiles of 64 tokens, q4_min 32 tokens (two row tiles with one slice in flight); q4_sym two row
    tiles of 16 tokens; q4_zp and 512-thread blocks keep their row's tiles; the K order never changes; the grid covers every token."""
    base = w4.NvConfig(1, 8, 2, 1)
    for n in (1, 9, 16):
        assert w4.token_tiling(base, fmt, n) == base
    wide = {n: w4.token_tiling(base, fmt, n) for n in (17, 32, 33, 64, 128)}
    assert all(c.k_order == base.k_order for c in wide.values())
    if fmt == "q4_zp":
        assert all(c == base for c in wide.values())
    elif fmt == "q4_sym":
        assert all(c == w4.NvConfig(2, 8, 2, 1) for c in wide.values())
    else:
        assert wide[17].NT == wide[32].NT == 4 and wide[17].MT == 1
        assert (wide[64].MT, wide[64].NT) == ((2, 8) if fmt == "mxfp4" else (1, 4))
        assert w4.token_tiling(w4.NvConfig(1, 8, 1, 1), "q4_min", 64).MT == 2
    assert w4.token_tiling(w4.NvConfig(1, 16, 2, 1), fmt, 64) == w4.NvConfig(1, 16, 2, 1)
    plan = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", fmt, quant4.groups_of(fmt)[0], 40, 4096, 4096)
    assert ("64 tokens a block" in plan.reason) == (fmt == "mxfp4"), plan.reason
    for n, c in wide.items():
        grid, _block, _ = c.geometry(4096, n)
        assert grid[0] == 4096 // (16 * c.MT) * -(-n // (8 * c.nt(n)))


def test_a_measured_w4_row_is_taken_for_its_format_only_and_aot_builds_it(nv_tables):
    """A tables file's "w4-q4_sym" row (tools/w4_sweep.py --table writes them): its K order at every N, the MT
    of N's bucket, at its shape and (nearest tuned shape) others; a format without rows keeps the heuristic; aot
    compiles the row's configs; and a call plans through it with the device's name."""
    nv_tables(w4={"w4-q4_sym": [(28672, 4096, (8, 2, 2), {1: 2, 4: 1, 16: 1})], "w4-mxfp4": []})  # [] : no rows
    plans = {n: dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, n, 28672, 4096, device="x")
             for n in (1, 3, 6, 16, 100)}
    assert {n: (p.config.MT, p.config.k_order) for n, p in plans.items()} == {
        1: (2, (8, 2, 2)), 3: (1, (8, 2, 2)), 6: (1, (8, 2, 2)), 16: (1, (8, 2, 2)),
        100: (2, (8, 2, 2))}  # N > 16: q4_sym takes two row tiles (w4.token_tiling)
    assert plans[1].grid == (28672 // 32, 2, 1)  # the K split over a cluster of two blocks
    assert "measured table: nearest tuned shape M=28672 K=4096" in plans[1].reason
    assert dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 32, 1, 4096, 2048).config.k_order == (8, 2, 2)
    other = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "mxfp4", 32, 1, 28672, 4096)
    assert other.config == w4.nv_heuristic(28672, 4096, 1, "mxfp4") and "heuristic" in other.reason
    insts = dispatch.all_w4_instances("cuda")
    assert all(p.instance in insts for p in plans.values())
    assert dispatch.plan_w4("cuda", "sm_80", 108, "bfloat16", "q4_sym", 128, 1, 28672, 4096).config.SK == 1  # no clusters


def test_w4_rows_off_the_schema_are_refused():
    from jitgemm import tables
    doc = json.loads(tables.dumps(table_doc(w4={"w4-mxfp4": [(64, 64, (16, 2, 1), {1: 1})]})))
    doc["w4-mxfp4"][0]["k_order"] = [16, 2]
    with pytest.raises(ValueError, match=r"w4-mxfp4\[0\]: k_order is \[WK, U, SK\]"):
        tables.parse(doc, "f.json")


@pytest.mark.parametrize("call,message", [
    (lambda w, x: jitgemm.w4_gemm(x, np.zeros((40, 160), np.uint8)), "w must be a jitgemm Q4Device"),
    (lambda w, x: jitgemm.w4_gemm(x[:, :128], w), r"agree on K: x is \[N, K\] = \(3, 128\), w is \[M, K\] = \(40, 160\)"),
    (lambda w, x: jitgemm.w4_gemm(x.astype(np.float32), w), "x dtype must be one of float16, bfloat16, got float32"),
    (lambda w, x: jitgemm.w4_gemm(np.zeros((129, 160), np.float16), w), r"N \(tokens\) in 1..128, got N=129"),
    (lambda w, x: jitgemm.w4_gemm(x, w, np.zeros(39, np.float16)), "bias of shape"),
    (lambda w, x: jitgemm.w4_gemm(x, w, np.zeros(40, np.float32)), "bias dtype must equal the output dtype"),
    (lambda w, x: jitgemm.w4_gemm(x, w, out=np.zeros((3, 41), np.float16)), r"out must have shape \[N, M\] = \(3, 40\)"),
    (lambda w, x: jitgemm.w4_gemm(x, w, stream="s"), "stream"),
    (lambda w, x: Q4Device.upload(w), "must be a jitgemm.quant4.Q4Weight"),
    (lambda w, x: Q4Device.upload(quant4.Q4Weight("q4_sym", np.zeros((4, 16), np.uint8), np.zeros((4, 1), np.float16), 128)),
     "K must be a multiple of the group"),
    (lambda w, x: jitgemm.Linear.from_quantized(weight(), np.zeros(40, np.float32)), "bias must be a 1-D float16"),
])
def test_refusals_name_the_rule_before_any_gpu_work(call, message):
    with installed(NullBackend()) as b:
        w = Q4Device.upload(weight("q4_zp", 40, 160, 32))
    x = np.zeros((3, 160), np.float16)
    with installed(NullBackend(fail=lambda what: AssertionError(f"reached the device: {what}"))):
        with pytest.raises((ValueError, TypeError), match=message):
            call(w, x)
    assert b.launches == []


def test_linear_from_quantized_host_tokens(null):
    layer = jitgemm.Linear.from_quantized(weight("q4_min", 40, 160, 32), np.zeros(40, np.float16))
    assert (layer.out_features, layer.in_features) == (40, 160)
    y = layer(np.ones((2, 160), np.float16))     # numpy in, numpy out (the null device computes nothing)
    assert isinstance(y, np.ndarray) and y.shape == (2, 40) and y.dtype == np.float16
    words = null.launches[-1][3]
    assert words[10] == layer.bias.ptr and words[6] == layer.weight.scales.ptr and words[8] == 0  # q4_min: no aux


def test_explain_names_the_4bit_plan(null):
    w = Q4Device.upload(weight("mxfp4", 64, 256, 32))  # e8m0 scales 118..127: all normal
    text = jitgemm.explain(np.zeros((2, 256), np.float16), w)
    assert text.startswith(f"w4 jg_w4_nv<jg_f16, {w4.MXFP4_NORMAL_ID}, 32, 1,")
    assert "mxfp4 weights, groups of 32 (every e8m0 scale normal)" in text
    assert "jg_w4_amd<jg_f16, 0, 32," in jitgemm.explain(np.zeros((2, 256), np.float16), w, arch="gfx942")


@pytest.mark.parametrize("special", [0, 255])
def test_mxfp4_scales_choose_the_decode_and_the_cache_keeps_them_apart(null, special):
    """A weight whose e8m0 scales are all normal takes the short decode; one 0 (2^-127) or 255 (NaN) anywhere
    in it, the exact one; the two weights alternate through the cache, each keeping its own kernel."""
    from jitgemm import pipeline
    plain = weight("mxfp4", 40, 256, 32, seed=3)
    odd = quant4.Q4Weight("mxfp4", plain.q, plain.scales.copy(), 32)
    odd.scales[39, 7] = special              # the last row's last group: the whole weight takes the exact decode
    a, b = Q4Device.upload(plain), Q4Device.upload(odd)
    assert a.normal_scales and not b.normal_scales
    pipeline.clear()
    x = device_x(null, 2, 256)
    out = DeviceArray(null, 0, (2, 40), "bfloat16")
    for w in (a, b, a, b):
        jitgemm.w4_gemm(x, w, out=out)
    names = sorted(e.launch.kernel.symbol for e in pipeline._ENTRIES.values())
    assert [n.split(", ")[1] for n in names] == [str(w4.FMT_ID["mxfp4"]), str(w4.MXFP4_NORMAL_ID)], names
    assert dispatch.plan_w4("hip", "gfx942", 304, "bfloat16", "mxfp4", 32, 2, 40, 256, normal_scales=True) \
        .instance.name.startswith("jg_w4_amd<jg_bf16, 0, 32,")  # AMD decodes every scale one way


def test_a_subnormal_scale_on_an_empty_block_keeps_the_normal_decode(null):
    """e8m0 0 on a group whose codes are all zero (+0 and -0) reads as 127 on the device (the same sums) and the
    weight keeps the normal decode; on a group with a nonzero code it stays 0 and the weight takes the exact one."""
    base = weight("mxfp4", 40, 256, 32, seed=4)
    codes = quant4.unpack(base.q)
    codes[3, 64:96] = np.where(np.arange(32) % 2, 0, 8)            # row 3, group 2: +0 and -0 only
    empty = quant4.Q4Weight("mxfp4", quant4.pack(codes), base.scales.copy(), 32)
    empty.scales[3, 2] = 0
    d = Q4Device.upload(empty)
    assert d.normal_scales and d.scales.to_numpy()[3, 2] == 127 and empty.scales[3, 2] == 0  # the host's untouched
    same = quant4.Q4Weight("mxfp4", empty.q, quant4.empty_group_scales_normal(empty), 32)
    np.testing.assert_array_equal(quant4.dequantize(empty), quant4.dequantize(same))
    codes[3, 70] = 1                                                # one nonzero code in that group
    busy = quant4.Q4Weight("mxfp4", quant4.pack(codes), empty.scales, 32)
    d = Q4Device.upload(busy)
    assert not d.normal_scales and d.scales.to_numpy()[3, 2] == 0


def test_normal_scales_is_a_bool_and_only_for_mxfp4(null):
    w = Q4Device.upload(weight("q4_sym", 40, 160, 32))
    with pytest.raises(ValueError, match="normal_scales must be a bool, True only for mxfp4"):
        Q4Device("q4_sym", 32, (40, 160), w.q, w.scales, None, normal_scales=True)
    m = Q4Device.upload(weight("mxfp4", 40, 160, 32))
    with pytest.raises(ValueError, match="normal_scales must be a bool"):
        Q4Device("mxfp4", 32, (40, 160), m.q, m.scales, None, normal_scales=1)
    assert not Q4Device("mxfp4", 32, (40, 160), m.q, m.scales, None).normal_scales  # the exact decode by default
    assert jitgemm.explain(np.zeros((2, 128), np.float16), w).startswith("w4_gemm would refuse this: x and w must agree on K")


def test_prepared_call_launches_with_its_own_values(null):
    from jitgemm.w4gemm import prepare_w4
    w = Q4Device.upload(weight("q4_sym", 40, 256, 128))
    x, out = device_x(null, 4, 256), DeviceArray(null, 0, (4, 40), "bfloat16")
    p = prepare_w4(x, w, out=out)
    p.launch(7)
    grid, stream, _dev, words = null.launches[-1]
    assert stream == 7 and words[0] == out.ptr and words[2] == x.ptr and words[4] == w.q.ptr
    with pytest.raises(ValueError, match="prepare_w4 needs device arrays"):
        prepare_w4(np.zeros((4, 256), np.float16), w, out=np.zeros((4, 40), np.float16))


def test_a_hand_made_device_weight_is_checked(null):
    w = Q4Device.upload(weight("q4_zp", 40, 160, 32))
    with pytest.raises(ValueError, match=r"scales must be a DeviceArray float16 \[40, 8\]"):  # 5 groups padded to 2 blocks
        Q4Device("q4_zp", 32, (40, 160), w.q, DeviceArray(null, 0, (40, 5), "float16"), w.aux)
    with pytest.raises(ValueError, match="aux must be a DeviceArray uint8"):
        Q4Device("q4_zp", 32, (40, 160), w.q, w.scales, None)
    with pytest.raises(ValueError, match="aux is only for q4_zp"):
        Q4Device("q4_sym", 32, (40, 160), w.q, w.scales, w.aux)
    m = Q4Device.upload(weight("q4_min", 40, 160, 32))
    with pytest.raises(ValueError, match=r"q4_min's minima are in its scales"):
        Q4Device("q4_min", 32, (40, 160), m.q, m.scales, m.scales)
    with pytest.raises(ValueError, match=r"scales must be a DeviceArray float16 \[40, 16\]"):  # 2 blocks x (4 + 4)
        Q4Device("q4_min", 32, (40, 160), m.q, w.scales, None)
    with pytest.raises(ValueError, match="format/group"):
        Q4Device("mxfp4", 64, (40, 160), w.q, w.scales, None)


def test_a_cached_signature_never_lets_an_invalid_call_through(null):
    """Valid, invalid (the same signature, a misaligned pointer: only the per-call check sees it), valid
    again: the invalid one is refused with the rule, the others launch."""
    w = Q4Device.upload(weight("q4_min", 40, 256, 32))
    x = device_x(null, 4, 264)
    good = x.view()
    good.shape, good.strides = (4, 256), (264, 1)
    bad = x.view()
    bad.shape, bad.strides, bad.ptr = (4, 256), (264, 1), x.ptr + 2
    out = DeviceArray(null, 0, (4, 40), "bfloat16")
    for _ in range(2):
        jitgemm.w4_gemm(good, w, out=out)
        n = len(null.launches)
        with pytest.raises(ValueError, match="16-byte aligned"):
            jitgemm.w4_gemm(bad, w, out=out)
        assert len(null.launches) == n


def test_out_over_the_tokens_is_refused_cold_and_cached(null):
    from jitgemm import pipeline
    from jitgemm.arrays import View
    w = Q4Device.upload(weight("q4_sym", 40, 320, 64))
    x = device_x(null, 3, 320)
    at = lambda ptr: View(ptr, (3, 40), (40, 1), "bfloat16", "bfloat16", 0, "device", None, vendor="cuda")  # noqa: E731
    apart = DeviceArray(null, 0, (3, 40), "bfloat16")
    for warm in (False, True):
        pipeline.clear()
        if warm:
            jitgemm.w4_gemm(x, w, out=at(apart.ptr))
        with pytest.raises(ValueError, match="out shares memory with x"):
            jitgemm.w4_gemm(x, w, out=at(x.ptr + 64))
        with pytest.raises(ValueError, match="out shares memory with w's scales"):
            jitgemm.w4_gemm(x, w, out=at(w.scales.ptr))
