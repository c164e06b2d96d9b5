"""GPU correctness of w4_experts_gemm (a MoE layer's 4-bit experts in one launch): each group's result has the bits
of a w4_gemm call of its own on its expert (and so matches float64 within that call's bound), for every format,
both dtypes, one and several token tiles, repeated and unused experts, a per-expert bias and one token shared by
every group (group stride 0); an expert id out of range gives NaN rows and leaves the other groups right; the
ids are read on the device, so a graph captured once replays with new ids."""
import numpy as np
import pytest

import jitgemm
from jitgemm.arrays import View
from jitgemm.device_array import DeviceArray
from jitgemm.w4experts import Q4Experts
from jitgemm.w4gemm import Q4Device
from gpu_helpers import backend_device, empty_device, sync, to_device
from reference import NP, check_bound, q4_weight, w4_reference

pytestmark = pytest.mark.gpu

KINDS = [("mxfp4", 32), ("q4_sym", 128), ("q4_min", 32), ("q4_zp", 64)]
E, M, K = 5, 1003, 2880  # odd M; K with a partial last 128-k block (groups of 32 and 64)
K128 = 2944  # groups of 128: K a multiple of 128


def _stack(fmt, group, seed=0, k=K):
    ws = [q4_weight(fmt, group, M, k, seed + i) for i in range(E)]
    return ws, Q4Experts.upload(ws), [Q4Device.upload(w) for w in ws]


def _ids(values):
    b, d = backend_device()
    return DeviceArray.from_numpy(b, d, np.asarray(values, np.int32), "int32")


def _groups(x, dtype):
    """(owner, [G, N, K] View) of host tokens, rows padded (ldx != K)."""
    g, n, k = x.shape
    owner, v = to_device(x.reshape(g * n, k), dtype, pad=8)
    return owner, View(v.ptr, (g, n, k), (n * (k + 8), k + 8, 1), dtype, dtype, v.device, "device", owner,
                       vendor=v.vendor)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("fmt,group", KINDS)
def test_each_group_has_the_bits_of_its_own_call(fmt, group, dtype):
    k = K128 if group == 128 else K
    ws, st, ones = _stack(fmt, group, KINDS.index((fmt, group)), k)
    rng = np.random.default_rng(3)
    experts = [4, 0, 4, 2]  # repeated, out of order, 1 and 3 unused
    bias = rng.standard_normal((E, M)).astype(NP[dtype])
    _, bv = to_device(bias, dtype)
    for n in (1, 4, 9, 16):
        x = (rng.standard_normal((len(experts), n, k)) * 0.5).astype(NP[dtype])
        _, xv = _groups(x, dtype)
        for b in (None, bv):
            owner, ov = empty_device((len(experts), n, M), dtype)
            jitgemm.w4_experts_gemm(xv, _ids(experts), st, b, out=ov)
            sync()
            got = owner.to_numpy()
            for g, e in enumerate(experts):
                alone = jitgemm.w4_gemm(x[g], ones[e], None if b is None else bias[e]).view(np.uint16)
                assert np.array_equal(got[g].view(np.uint16), alone), (fmt, dtype, n, g, e)
                ref, mag = w4_reference(x[g], ws[e], None if b is None else bias[e])
                check_bound(got[g], ref, mag, k, dtype)


def test_one_token_shared_by_every_group_and_ids_out_of_range():
    ws, st, ones = _stack("q4_min", 32, 7)
    x = (np.random.default_rng(4).standard_normal((1, K)) * 0.5).astype(NP["bfloat16"])
    xo, xv = to_device(x, "bfloat16")
    shared = View(xv.ptr, (4, 1, K), (0, K, 1), "bfloat16", "bfloat16", xv.device, "device", xo, vendor=xv.vendor)
    owner, ov = empty_device((4, 1, M), "bfloat16", poison=0)
    jitgemm.w4_experts_gemm(shared, _ids([3, -1, 1, E]), st, out=ov)
    sync()
    got = owner.to_numpy().astype(np.float32)
    assert np.isnan(got[1]).all() and np.isnan(got[3]).all()
    for g, e in ((0, 3), (2, 1)):
        assert np.array_equal(owner.to_numpy()[g].view(np.uint16), jitgemm.w4_gemm(x, ones[e]).view(np.uint16))


def test_a_captured_graph_reads_new_ids_at_replay():
    cp = pytest.importorskip("cupy")
    ws, st, ones = _stack("mxfp4", 32, 11)
    x = cp.asarray(np.random.default_rng(12).standard_normal((3, 2, K)).astype(np.float16))
    ids = cp.asarray(np.array([0, 1, 2], np.int32))
    out = cp.empty((3, 2, M), dtype=cp.float16)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        jitgemm.w4_experts_gemm(x, ids, st, out=out)  # the cold path (plan, compile) before the capture
        s.begin_capture()
        jitgemm.w4_experts_gemm(x, ids, st, out=out)  # stream=None: CuPy's current stream, the capturing one
        g = s.end_capture()
        ids[...] = cp.asarray(np.array([4, 4, 0], np.int32))  # a router's next choice, written on the device
        out.fill(0)
        g.launch(s)
        s.synchronize()
    host = cp.asnumpy(x)
    for grp, e in enumerate((4, 4, 0)):
        ref, mag = w4_reference(host[grp], ws[e], None)
        check_bound(cp.asnumpy(out[grp]), ref, mag, K, "float16")
