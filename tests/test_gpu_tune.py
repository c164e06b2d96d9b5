"""`jitgemm.tune` end to end on the GPU: two small shapes tuned, stored, used first by the dispatcher,
and the results it then computes correct against float64. The tuning file lives in the test's own folder
(conftest._private_tuning: never the user's) and is removed afterwards."""
import numpy as np
import pytest

import jitgemm
from gpu_helpers import run_gemm, to_device
from jitgemm import config, tuned
from jitgemm.runtime.backend import default_backend
from reference import assert_close, random

pytestmark = pytest.mark.gpu

SHAPES = [("tune-a", 1000, 1032), ("tune-b", 272, 2056)]


@pytest.fixture
def nvidia_with_cupy(monkeypatch):
    pytest.importorskip("cupy", reason="jitgemm tune needs CuPy")
    b = default_backend()
    if b.name != "cuda":
        pytest.skip("tuning measures NVIDIA configs")
    name = b.device_info(b.current_device()).name
    # these tests are about the tuning file being used: on even where the caller's JITGEMM_TUNED=0 turns it off
    # (a benchmark session's setting; they failed there with no tuning to read)
    monkeypatch.setenv("JITGEMM_TUNED", "1")
    config.reload()
    yield name
    tuned.path(name).unlink(missing_ok=True)
    monkeypatch.undo()
    config.reload()


def test_tune_two_shapes_then_the_dispatcher_uses_them(nvidia_with_cupy):
    name = nvidia_with_cupy
    res = jitgemm.tune(SHAPES, dtype="bfloat16", n=(1, 4, 64), progress=False)
    assert res.path == tuned.path(name) and res.path.is_file() and len(res.rows) == 2
    t = tuned.current(name)
    assert t is not None and t.key == tuned.machine_key(name)
    assert {(r[0], r[1]) for r in t.family("skinny")} == {(m, k) for _, m, k in SHAPES}
    assert {(r[0], r[1]) for r in t.family("moderate") if 64 in r[2]} == {(m, k) for _, m, k in SHAPES}
    rng = np.random.default_rng(7)
    for _, m, k in SHAPES:
        w = random((m, k), "bfloat16", rng, (2.0 / k) ** 0.5)
        _, wv = to_device(w, "bfloat16")
        for n in (1, 3, 4, 64):
            x = random((n, k), "bfloat16", rng)
            _, xv = to_device(x, "bfloat16")
            assert "tuned on this GPU" in jitgemm.explain(xv, wv) or "cuBLAS" in jitgemm.explain(xv, wv)
            assert_close(run_gemm(x, w, None, "bfloat16"), x, w, None, "bfloat16")
    # a second run of N > 16 only keeps the N <= 16 verdicts of the first
    jitgemm.tune(SHAPES[:1], dtype="bfloat16", n=(128,), progress=False)
    t = tuned.current(name)
    assert {(r[0], r[1]) for r in t.family("skinny")} == {(m, k) for _, m, k in SHAPES}
    row = [r for r in t.family("moderate") if (r[0], r[1]) == SHAPES[0][1:]][0]
    assert {64, 128} <= set(row[2])


def test_tune_a_4bit_format_then_w4_gemm_uses_it(nvidia_with_cupy):
    """`jitgemm tune --dtype w4-q4_sym`: a row for the shape, used first by the 4-bit dispatcher for every group
    of the format, and w4_gemm's results then correct against float64 of the dequantized weights."""
    from jitgemm import dispatch
    from jitgemm.w4gemm import Q4Device
    from reference import check_bound, q4_weight, w4_reference
    name = nvidia_with_cupy
    m, k = 1000, 2048
    res = jitgemm.tune([("tune-w4", m, k)], dtype="w4-q4_sym", n=(1, 16), progress=False)
    assert res.path == tuned.path(name) and "w4-q4_sym" in res.rows[0]["summary"][0]
    (row,) = tuned.current(name).family("w4-q4_sym")
    assert (row[0], row[1]) == (m, k) and set(row[3]) == {1, 16}
    b = default_backend()
    info = b.device_info(b.current_device())
    for group in (32, 128):
        w = q4_weight("q4_sym", group, m, k, group)
        plan = dispatch.plan_w4("cuda", info.arch, info.multiprocessors, "bfloat16", "q4_sym", group, 3, m, k,
                                device=name)
        assert "tuned on this GPU" in plan.reason and plan.config.k_order == row[2]
        x = np.random.default_rng(group).standard_normal((3, k)).astype(np.float16)
        ref, mag = w4_reference(x, w, None)
        check_bound(jitgemm.w4_gemm(x, Q4Device.upload(w)), ref, mag, k, "float16")
