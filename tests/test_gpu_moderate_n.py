"""GPU correctness of moderate N (17..128 tokens): the seed's wvSplitKrc grid, determinism, and the
shapes the seed skipped for lack of CUs (here they simply run)."""
import numpy as np
import pytest

import jitgemm
from reference import assert_close, random
from gpu_helpers import empty_device, run_gemm, sync, to_device

pytestmark = pytest.mark.gpu

NS = [13, 16, 17, 25, 29, 31, 32, 41, 51, 64, 71, 81, 91, 103, 117, 128]
KS = [2880, 2888, 3072, 3080]
MS = [128, 144, 256, 272, 640, 656]


run = run_gemm


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k", KS)
def test_seed_wvsplitkrc_grid(k, m, dtype):
    rng = np.random.default_rng(k * 1000 + m)
    xavier = (2.0 / k) ** 0.5
    w = random((m, k), dtype, rng, xavier)
    for n in NS:
        x = random((n, k), dtype, rng, xavier)
        for bias in (None, random((m,), dtype, rng), random((n, m), dtype, rng)):
            assert_close(run(x, w, bias, dtype), x, w, bias, dtype)


@pytest.mark.parametrize("n,m,k", [(128, 640, 2880), (33, 5120, 4096), (64, 128, 3080)])
def test_bitwise_deterministic_over_20_runs(n, m, k):
    rng = np.random.default_rng(n + m + k)
    x, w = random((n, k), "bfloat16", rng), random((m, k), "bfloat16", rng)
    first = run(x, w, None, "bfloat16").view(np.uint16)
    for _ in range(19):
        assert np.array_equal(run(x, w, None, "bfloat16").view(np.uint16), first)


def test_token_position_does_not_change_bits():
    rng = np.random.default_rng(3)
    n, m, k = 100, 656, 3080
    x, w = random((n, k), "float16", rng), random((m, k), "float16", rng)
    a = run(x, w, None, "float16").view(np.uint16)
    perm = rng.permutation(n)
    b = run(x[perm], w, None, "float16").view(np.uint16)
    assert np.array_equal(b, a[perm])
