"""w4_experts_gemm and Q4Experts on the CPU (a null backend: the whole path runs, launches are recorded, nothing
reaches a driver): the stacked layout, the arguments and grid the experts kernel gets, the plan it shares with
w4_gemm, the cached entry, and every refusal before any GPU work. The numbers are tests/test_gpu_w4_experts.py's."""
import numpy as np
import pytest

import jitgemm
from jitgemm import dispatch, quant4
from jitgemm.arrays import View
from jitgemm.device_array import DeviceArray
from jitgemm.kernels import w4
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend
from jitgemm.w4experts import Q4Experts
from jitgemm.w4gemm import Q4Device
from reference import q4_weight

E, M, K = 3, 40, 256


@pytest.fixture
def null():
    with installed(NullBackend()) as b:
        yield b


def experts_of(fmt="q4_min", group=32, e=E, m=M, k=K):
    return [q4_weight(fmt, group, m, k, seed) for seed in range(e)]


def tokens(b, g, n, k=K, dtype="bfloat16"):
    return DeviceArray.from_numpy(b, 0, np.ones((g, n, k), np.float16), dtype)


def ids(b, values):
    return DeviceArray.from_numpy(b, 0, np.asarray(values, np.int32), "int32")


@pytest.mark.parametrize("fmt", quant4.FORMATS)
def test_upload_stacks_each_experts_own_layout(null, fmt):
    group = 32 if fmt == "mxfp4" else 64
    ws = experts_of(fmt, group)
    st = Q4Experts.upload(ws)
    assert st.shape == (E, M, K) and (st.aux is None) == (fmt != "q4_zp")
    for i, w in enumerate(ws):
        one = Q4Device.upload(w)
        assert np.array_equal(st.q.to_numpy()[i], one.q.to_numpy())
        assert np.array_equal(st.scales.to_numpy()[i], one.scales.to_numpy())
        if one.aux is not None:
            assert np.array_equal(st.aux.to_numpy()[i], one.aux.to_numpy())
    assert st.normal_scales == all(Q4Device.upload(w).normal_scales for w in ws)


def test_launch_arguments_grid_and_plan(null):
    st = Q4Experts.upload(experts_of("q4_zp", 64))
    g, n = 4, 2
    x, e = tokens(null, g, n), ids(null, [2, 0, 1, 2])
    bias = DeviceArray.from_numpy(null, 0, np.zeros((E, M), np.float16), "bfloat16")
    out = DeviceArray(null, 0, (g, n, M), "bfloat16")
    assert jitgemm.w4_experts_gemm(x, e, st, bias, out=out) is out
    grid, _stream, _device, words = null.launches[-1]
    plain = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_zp", 64, n, M, K)
    assert grid == (*plain.grid[:2], g)  # one group a grid z
    ldw, lds, lda = st.q.shape[2], st.scales.shape[2], st.aux.shape[2]
    assert words[0] == out.ptr and words[1] == M and words[2] == x.ptr and words[3] == K
    assert words[4] == st.q.ptr and words[5] == ldw and words[6] == st.scales.ptr and words[7] == lds
    assert words[8] == st.aux.ptr and words[9] == lda and words[10] == bias.ptr
    assert [words[i] & 0xFFFFFFFF for i in (12, 13, 14, 15)] == [1, n, M, K]  # one bias row an expert
    # experts, E, then the strides: a group's x and out (elements), an expert's codes, scales, zero points (bytes)
    # and bias row (elements)
    assert words[16] == e.ptr and words[17] & 0xFFFFFFFF == E
    assert words[18:24] == [n * K, n * M, M * ldw, M * lds * 2, M * lda, M]
    p = dispatch.plan_w4_experts("cuda", "sm_90a", 132, "bfloat16", "q4_zp", 64, n, M, K, g)
    assert p.instance.name == plain.instance.name.replace("jg_w4_nv<", "jg_w4_experts_nv<")
    assert p.config == plain.config and "4 groups of 2 tokens" in p.reason
    amd = dispatch.plan_w4_experts("hip", "gfx942", 304, "bfloat16", "q4_zp", 64, 9, M, K, g)
    plain_amd = dispatch.plan_w4("hip", "gfx942", 304, "bfloat16", "q4_zp", 64, 9, M, K)
    assert amd.instance.name.startswith("jg_w4_experts_amd<") and amd.grid == (plain_amd.grid[0], g, plain_amd.grid[2])


def test_a_new_output_the_cached_entry_and_one_token_for_every_expert(null):
    st = Q4Experts.upload(experts_of("mxfp4", 32))
    x, e = tokens(null, 2, 3), ids(null, [1, 2])
    out = jitgemm.w4_experts_gemm(x, e, st)
    assert isinstance(out, DeviceArray) and out.shape == (2, 3, M)
    before = dict(null.calls)
    jitgemm.w4_experts_gemm(x, e, st, out=out)
    jitgemm.w4_experts_gemm(x, e, st, out=out)  # the same signature: the cached entry
    assert null.calls["launch"] - before.get("launch", 0) == 2
    # a token routed to several experts: one row of x for every group (group stride 0)
    one = tokens(null, 1, 1)
    bcast = View(one.ptr, (E, 1, K), (0, K, 1), "bfloat16", "bfloat16", 0, "device", one, vendor=null.name)
    o = DeviceArray(null, 0, (E, 1, M), "bfloat16")
    jitgemm.w4_experts_gemm(bcast, ids(null, [0, 1, 2]), st, out=o)
    assert null.launches[-1][3][18] == 0


def _refused(null, exc, match, **kw):
    st = kw.pop("w", None) or Q4Experts.upload(experts_of())
    args = dict(x=tokens(null, 2, 1), experts=ids(null, [0, 1]), bias=None, out=None)
    args.update(kw)
    launches = len(null.launches)
    with pytest.raises(exc, match=match):
        jitgemm.w4_experts_gemm(args["x"], args["experts"], st, args["bias"], out=args["out"])
    assert len(null.launches) == launches


def test_every_rule_refuses_before_the_gpu(null):
    _refused(null, TypeError, "w must be a jitgemm Q4Experts", w=Q4Device.upload(experts_of()[0]))
    _refused(null, ValueError, r"x must be 3-D \[G, N, K\]", x=DeviceArray(null, 0, (2, K), "bfloat16"))
    _refused(null, ValueError, "x and w must agree on K", x=DeviceArray(null, 0, (2, 1, K + 32), "bfloat16"))
    _refused(null, TypeError, "x dtype must be one of", x=DeviceArray(null, 0, (2, 1, K), "float32"))
    _refused(null, ValueError, "G in 1..65535 groups of N in 1..128", x=DeviceArray(null, 0, (2, 129, K), "bfloat16"))
    _refused(null, ValueError, "needs x on the device", x=np.ones((2, 1, K), np.float16))
    _refused(null, ValueError, r"experts must be \[G\] = \[2\]", experts=ids(null, [0, 1, 2]))
    _refused(null, TypeError, r"experts must be int32 expert ids \(0..2\), got float32",
             experts=DeviceArray.from_numpy(null, 0, np.zeros(2, np.float32), "float32"))
    _refused(null, ValueError, "experts must be on the device", experts=np.zeros(2, np.int32))
    _refused(null, ValueError, r"bias must be \[E, M\] = \[3, 40\]", bias=DeviceArray(null, 0, (2, M), "bfloat16"))
    _refused(null, TypeError, r"bias dtype must be x's \(bfloat16\), got float16",
             bias=DeviceArray(null, 0, (E, M), "float16"))
    _refused(null, ValueError, r"out must be \[G, N, M\] = \[2, 1, 40\]", out=DeviceArray(null, 0, (2, 1, M + 1), "bfloat16"))
    _refused(null, TypeError, r"out dtype must be x's", out=DeviceArray(null, 0, (2, 1, M), "float16"))
    o = DeviceArray(null, 0, (1, 1, M), "bfloat16")
    racing = View(o.ptr, (2, 1, M), (8, M, 1), "bfloat16", "bfloat16", 0, "device", o, vendor=null.name)
    _refused(null, ValueError, "out's rows or groups overlap", out=racing)
    x = tokens(null, 2, 2)
    odd = View(x.ptr, (2, 1, K), (K + 4, K, 1), "bfloat16", "bfloat16", 0, "device", x, vendor=null.name)
    _refused(null, ValueError, "multiples of 8 elements", x=odd)
    x = tokens(null, 2, 1)
    out_over_x = View(x.ptr, (2, 1, M), (K, M, 1), "bfloat16", "bfloat16", 0, "device", x, vendor=null.name)
    _refused(null, ValueError, "out shares memory with x", x=x, out=out_over_x)


def test_upload_refuses_mixed_experts(null):
    with pytest.raises(ValueError, match=r"weights\[1\] is q4_min, 32, \[40, 288\]"):
        Q4Experts.upload([q4_weight("q4_min", 32, M, K, 0), q4_weight("q4_min", 32, M, K + 32, 1)])
    with pytest.raises(TypeError, match="non-empty sequence of jitgemm.quant4.Q4Weight"):
        Q4Experts.upload([])


def test_experts_instances_name_the_same_body():
    for inst in dispatch.all_w4_instances("cuda")[:3] + dispatch.all_w4_instances("hip", "gfx942")[:3]:
        e = w4.experts_instance(inst)
        assert e.source == inst.source and e.name.split("<", 1)[1] == inst.name.split("<", 1)[1]
        assert e.name.startswith(("jg_w4_experts_nv<", "jg_w4_experts_amd<"))
    assert len(w4.EXPERTS_ARG_KINDS) == len(w4.ARG_KINDS) + 8


def test_the_cache_lets_no_invalid_call_through(null):
    """Calls of one signature, valid and invalid in turn: the cached entry's per-call checks send the invalid ones
    to the cold path, whose rules refuse them; the valid ones still run."""
    st = Q4Experts.upload(experts_of())
    owner = DeviceArray(null, 0, (2 * K + 8,), "bfloat16")
    e = ids(null, [0, 1])
    apart = DeviceArray(null, 0, (2, 1, M), "bfloat16")
    o = View(apart.ptr, (2, 1, M), (M, M, 1), "bfloat16", "bfloat16", 0, "device", apart, vendor=null.name)

    def x_at(offset):  # the same signature (a View's key has no pointer), the base moved by `offset` elements
        return View(owner.ptr + 2 * offset, (2, 1, K), (K, K, 1), "bfloat16", "bfloat16", 0, "device", owner,
                    vendor=null.name)
    for _ in range(2):
        jitgemm.w4_experts_gemm(x_at(0), e, st, out=o)
        launches = len(null.launches)
        with pytest.raises(ValueError, match="16-byte aligned"):
            jitgemm.w4_experts_gemm(x_at(4), e, st, out=o)
        over = View(owner.ptr, (2, 1, M), (M, M, 1), "bfloat16", "bfloat16", 0, "device", owner, vendor=null.name)
        with pytest.raises(ValueError, match="out shares memory with x"):  # o's signature: the cached entry's check
            jitgemm.w4_experts_gemm(x_at(0), e, st, out=over)
        assert len(null.launches) == launches


def test_explain_names_the_experts_plan_and_its_refusals(null):
    st = Q4Experts.upload(experts_of("q4_min", 32))
    text = jitgemm.explain(np.zeros((4, 2, K), np.float16), st)  # host tokens: only their shape and dtype count
    assert text.startswith("w4 jg_w4_experts_nv<jg_f16, ") and "4 groups of 2 tokens, each against its expert" in text
    amd = jitgemm.explain(np.zeros((3, 1, K), np.float16), st, arch="gfx942")
    assert "jg_w4_experts_amd<jg_f16, " in amd and "3 groups of 1 tokens" in amd
    assert jitgemm.explain(np.zeros((2, K), np.float16), st).startswith(
        "w4_experts_gemm would refuse this: x must be 3-D [G, N, K]")
    assert jitgemm.explain(np.zeros((2, 1, 128), np.float16), st).startswith(
        "w4_experts_gemm would refuse this: x and w must agree on K")
