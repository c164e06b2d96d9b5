"""tools/w4_sweep.py's control flow on the CPU (its timings need a GPU): each config of the grid reaches the
dispatcher's plan as forced, each (config, token tiling) is checked once a shape, a config that fails is
reported in its row and does not end the sweep, and the heuristic is back afterwards."""
import sys
from pathlib import Path


from jitgemm import dispatch
from jitgemm.bench import timing
from jitgemm.bench.suite import Shape
from jitgemm.kernels import w4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import w4_sweep  # noqa: E402


class _Pool:
    def free_all_blocks(self):
        pass


class _Cp:
    def get_default_memory_pool(self):
        return _Pool()


class _Stream:
    ptr = 0


class _Prep:
    def __init__(self, plan):
        self.plan = plan

    def launch(self, _stream):
        pass


def test_each_config_is_planned_as_forced_checked_once_and_failures_reported(monkeypatch):
    planned, checks = [], []

    class Ops:
        def __init__(self, cp, sh, mode, l2, n_max, with_bf16):
            self.sh = sh

        def prepared(self, n):
            plan = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, n, self.sh.m, self.sh.k)
            planned.append((plan.config, n))
            if plan.config.U == 4:
                raise ValueError("a failing config")
            return [_Prep(plan)]

        def check(self, n, prep):
            checks.append((prep.plan.config, n))
            return 1e-3

    monkeypatch.setattr(w4_sweep, "W4Operands", Ops)
    monkeypatch.setattr(w4_sweep, "time_bf16", lambda ops, n: {"us_graph": 20.0})
    monkeypatch.setattr(timing, "graph_replay", lambda launch, stream: (launch(0), 10.0)[1])
    configs = w4_sweep.grid([1, 2], [8, 16], [2, 4], [1])
    heuristic = w4.nv_heuristic
    logged = []
    rows = w4_sweep.measure_shape(_Cp(), _Stream(), Shape("s", 4096, 4096), "w4-q4_sym", [1, 4, 16], configs, 0,
                                  logged.append)
    assert w4.nv_heuristic is heuristic
    assert [r["n"] for r in rows] == [1, 4, 16] and logged == rows
    assert planned == [(c, n) for n in (1, 4, 16) for c in configs]
    # N = 1 and 4 share one token tile, N = 16 takes two: each passing config checked at N = 1 and at N = 16
    assert checks == [(c, n) for n in (1, 16) for c in configs if c.U != 4]
    for r in rows:
        assert set(r["configs"]) == {w4_sweep.label(c) for c in configs}
        assert all(("error" in v) == (" U4 " in k) for k, v in r["configs"].items()), r["configs"]
        assert r["heuristic"] == w4_sweep.label(w4.nv_heuristic(4096, 4096, r["n"], "q4_sym"))
        assert "2.00x bf16 cuBLAS" in w4_sweep.summary_line(r) and "4 errors" in w4_sweep.summary_line(r)


def test_k_splits_past_the_iterations_are_skipped(monkeypatch):
    """SK cluster blocks of WK warps each taking U 128-k slices need K >= SK * WK * 128 * U: a config past that
    is not planned at all (K = 2048 < 2 * 8 * 128 * 2), the others are."""
    planned = []

    class Ops:
        def __init__(self, *args, **kwargs):
            pass

        def prepared(self, n):
            planned.append(w4.nv_heuristic(0, 0))
            return [_Prep(None)]

        def check(self, n, prep):
            return 0.0

    monkeypatch.setattr(w4_sweep, "W4Operands", Ops)
    monkeypatch.setattr(w4_sweep, "time_bf16", lambda ops, n: None)
    monkeypatch.setattr(timing, "graph_replay", lambda launch, stream: 1.0)
    split, whole = w4_sweep.grid([1], [8], [2], [2, 1])
    rows = w4_sweep.measure_shape(_Cp(), _Stream(), Shape("s", 4096, 2048), "w4-q4_sym", [1], [split, whole], 0,
                                  lambda r: None)
    assert planned == [whole] and list(rows[0]["configs"]) == [w4_sweep.label(whole)]
    assert "bf16" not in w4_sweep.summary_line(rows[0])
