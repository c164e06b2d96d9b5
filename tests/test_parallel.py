"""Tensor-parallel layers: sharding math on the CPU; G = 1 equals the plain layer on one GPU; on two
or more GPUs both parallel linears match float64 (marked gpu; the multi-GPU ones skip below 2 GPUs)."""
import numpy as np
import pytest

from jitgemm.parallel import shard_bounds
from reference import assert_close, random


@pytest.mark.parametrize("total,parts", [(4096, 2), (4096, 8), (1000, 3), (7, 7), (28672, 8), (10240, 6)])
def test_shard_bounds_cover_everything_once(total, parts):
    b = shard_bounds(total, parts)
    assert len(b) == parts and b[0][0] == 0 and b[-1][1] == total
    assert all(b[i][1] == b[i + 1][0] for i in range(parts - 1))
    sizes = [e - s for s, e in b]
    assert all(s > 0 for s in sizes) and max(sizes) - min(sizes) <= (16 if total >= 16 * parts else 1)
    if total >= 16 * parts:
        assert all(s % 16 == 0 for s in sizes[:-1])


def test_shard_bounds_rules():
    with pytest.raises(ValueError, match="cannot split 3"):
        shard_bounds(3, 4)
    with pytest.raises(ValueError, match=">= 1"):
        shard_bounds(8, 0)


def _gpus() -> int:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


@pytest.mark.gpu
def test_one_gpu_parallel_layers_equal_the_plain_layer():
    if _gpus() < 1:
        pytest.skip("needs a GPU with CuPy")
    import jitgemm
    from jitgemm.parallel import ColumnParallelLinear, RowParallelLinear
    rng = np.random.default_rng(0)
    x, w = random((4, 1024), "bfloat16", rng), random((640, 1024), "bfloat16", rng, 1 / 32)
    b = random((640,), "bfloat16", rng)
    plain = jitgemm.Linear(w, b)(x)
    col = ColumnParallelLinear(w, b, devices=[0])
    assert np.array_equal(col.gather(col.forward(x)).view(np.uint16), plain.view(np.uint16))
    row = RowParallelLinear(w, b, devices=[0])
    assert np.array_equal(row.forward(row.split_input(x))[0].to_numpy().view(np.uint16), plain.view(np.uint16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_multi_gpu_column_and_row_parallel_match_float64(dtype):
    g = _gpus()
    if g < 2:
        pytest.skip(f"needs 2 or more GPUs, found {g}")
    from jitgemm.parallel import ColumnParallelLinear, RowParallelLinear
    from jitgemm.runtime.backend import default_backend
    rng = np.random.default_rng(1)
    n, k, m = 4, 8192, 10240 // 8 * g
    x = random((n, k), dtype, rng)
    w = random((m, k), dtype, rng, (1 / k) ** 0.5)
    col = ColumnParallelLinear(w, devices=list(range(g)))
    y = col.gather(col.forward(x))
    assert_close(y, x, w, None, dtype)
    # row-parallel: partials rounded to the dtype before the all-reduce (as TP serving does), so the
    # bound grows by one rounding per GPU
    row = RowParallelLinear(w, devices=list(range(g)))
    outs = row.forward(row.split_input(x))
    for d in range(g):
        default_backend().synchronize(d)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    for o in outs:
        got = o.to_numpy().astype(np.float64)
        err = np.abs(got - ref)
        eps = 2.0 ** (-8 if dtype == "bfloat16" else -11)
        assert (err <= (g + 1) * eps * np.abs(ref) + k * 2.0 ** -23 * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + 1e-3).all()
        assert np.array_equal(o.to_numpy().view(np.uint16), outs[0].to_numpy().view(np.uint16))  # same sum everywhere


# ---- at launch speed, on a null backend with two devices (issue #20's CPU side) ---------------------------
def _two_null_gpus():
    import dataclasses
    from jitgemm.runtime.null import DEFAULT_DEVICE, NullBackend
    return NullBackend(devices=[DEFAULT_DEVICE, dataclasses.replace(DEFAULT_DEVICE, index=1)])


class _Recorder:
    """A stand-in all-reduce: what it was asked to sum, on which streams."""

    def __init__(self):
        self.calls = []

    def __call__(self, buffers, dtype, streams):
        self.calls.append((list(buffers), dtype, list(streams)))


def test_forward_is_a_cached_launch_per_gpu_with_its_collective_on_the_same_stream():
    from jitgemm.device_array import DeviceArray
    from jitgemm.parallel import ColumnParallelLinear, RowParallelLinear
    from jitgemm.runtime.backend import installed
    rng = np.random.default_rng(2)
    w = random((512, 1024), "bfloat16", rng)
    with installed(_two_null_gpus()) as b:
        col = ColumnParallelLinear(w, devices=[0, 1])
        reduce = _Recorder()
        row = RowParallelLinear(w, devices=[0, 1], all_reduce=reduce)
        xs = [DeviceArray.from_numpy(b, d, random((4, 1024), "bfloat16", rng), "bfloat16") for d in (0, 1)]
        parts = row.split_input(random((4, 1024), "bfloat16", rng))
        first = col.forward(xs, streams=[5, 6])
        assert [(l[1], l[2]) for l in b.launches[-2:]] == [(5, 0), (6, 1)]   # (stream, device) of each GPU's GEMM
        loads = b.calls["load"]
        before = dict(b.calls)
        again = col.forward(xs, streams=[5, 6])
        assert again is first or all(a is f for a, f in zip(again, first))     # the layer's own buffers, reused
        assert {k: v - before.get(k, 0) for k, v in b.calls.items() if v != before.get(k, 0)} == {"launch": 2}
        assert loads == 2   # one module load per instance and GPU (both GPUs run the same instance)
        outs = row.forward(parts, streams=[7, 8])
        assert [(l[1], l[2]) for l in b.launches[-2:]] == [(7, 0), (8, 1)]
        assert reduce.calls == [([(o.ptr, 4 * 512) for o in outs], "bfloat16", [7, 8])]
        with pytest.raises(ValueError, match=r"streams must be one per GPU \(2\), got 1"):
            col.forward(xs, streams=[5])


def test_prepared_tp_call_is_one_launch_per_gpu_then_the_reduce():
    from jitgemm.parallel import RowParallelLinear
    from jitgemm.runtime.backend import installed
    rng = np.random.default_rng(3)
    w = random((256, 2048), "float16", rng)
    with installed(_two_null_gpus()) as b:
        reduce = _Recorder()
        row = RowParallelLinear(w, random((256,), "float16", rng), devices=[0, 1], all_reduce=reduce)
        call = row.prepare(8, streams=[3, 4])
        assert [x.shape for x in call.x] == [(8, 1024), (8, 1024)] and call.out == row.outputs(8)
        n_launch, before = len(b.launches), dict(b.calls)
        call.launch()
        assert {k: v - before.get(k, 0) for k, v in b.calls.items() if v != before.get(k, 0)} == {"launch": 2}
        assert [(l[1], l[2]) for l in b.launches[n_launch:]] == [(3, 0), (4, 1)]
        assert reduce.calls[-1] == ([(o.ptr, 8 * 256) for o in call.out], "float16", [3, 4])
        assert b.launches[n_launch][3][6] != 0 and b.launches[n_launch + 1][3][6] == 0   # the bias on GPU 0 only


@pytest.mark.gpu
def test_multi_gpu_prepared_step_and_its_graphs_equal_forward():
    """The launch-speed path on 2+ GPUs: a prepared row-parallel call (GEMM then all-reduce on each GPU's
    stream) gives forward's bits, and one CUDA graph per GPU of it replays them."""
    g = _gpus()
    if g < 2:
        pytest.skip(f"needs 2 or more GPUs, found {g}")
    import cupy as cp
    from jitgemm.bench.tp import _capture
    from jitgemm.parallel import RowParallelLinear
    rng = np.random.default_rng(4)
    devs = list(range(g))
    n, k, m = 4, 4096, 2048
    x, w = random((n, k), "float16", rng), random((m, k), "float16", rng, (1 / k) ** 0.5)
    row = RowParallelLinear(w, devices=devs)
    want = [o.to_numpy().view(np.uint16) for o in row.forward(row.split_input(x))]
    streams = []
    for d in devs:
        with cp.cuda.Device(d):
            streams.append(cp.cuda.Stream(non_blocking=True))
    call = row.prepare(n, streams=streams)
    for d, xb, part in zip(devs, call.x, row.split_input(x)):
        with cp.cuda.Device(d):
            cp.cuda.runtime.memcpy(xb.ptr, part.ptr, part.nbytes, cp.cuda.runtime.memcpyDeviceToDevice)
    call.launch()
    for d in devs:
        with cp.cuda.Device(d):
            cp.cuda.runtime.deviceSynchronize()
    assert all(np.array_equal(o.to_numpy().view(np.uint16), w0) for o, w0 in zip(call.out, want))
    graphs = _capture(cp, devs, streams, call.launch)
    for o in call.out:
        with cp.cuda.Device(o.device):
            cp.cuda.runtime.memset(o.ptr, 0, o.nbytes)
    for d, gr, s in zip(devs, graphs, streams):
        with cp.cuda.Device(d):
            gr.launch(s)
    for d in devs:
        with cp.cuda.Device(d):
            cp.cuda.runtime.deviceSynchronize()
    assert all(np.array_equal(o.to_numpy().view(np.uint16), w0) for o, w0 in zip(call.out, want))
