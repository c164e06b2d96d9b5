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
