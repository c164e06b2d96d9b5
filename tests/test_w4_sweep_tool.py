"""The 4-bit tuning sweep (jitgemm.bench.tune_w4: tools/w4_sweep.py and `jitgemm tune` run it) on the CPU (its
timings need a GPU): each config of the grid reaches the dispatcher's plan as forced, each (config, token
tiling) is checked once a shape, a config that fails is reported in its row and does not end the sweep, and the
dispatcher's own choice is back afterwards; a tables file written from a sweep holds one K order a shape and no
spilling config, and the dispatcher reads it."""
import sys
from pathlib import Path

import pytest

from jitgemm import dispatch
from jitgemm.bench import timing, tune_w4
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


def test_each_config_is_planned_as_forced_checked_once_and_failures_reported(monkeypatch, nv_tables):
    nv_tables(w4={"w4-q4_sym": [(4096, 4096, (4, 1, 1), {1: 1})]})  # a measured row does not displace the forced one
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

    monkeypatch.setattr(tune_w4, "W4Operands", Ops)
    monkeypatch.setattr(tune_w4, "time_bf16", lambda ops, n: {"us_graph": 20.0})
    monkeypatch.setattr(timing, "graph_replay", lambda launch, stream: (launch(0), 10.0)[1])
    configs = tune_w4.grid([1, 2], [8, 16], [2, 4], [1])
    chooser = dispatch.w4_nv_config
    logged = []
    rows = tune_w4.measure_shape(_Cp(), _Stream(), Shape("s", 4096, 4096), "w4-q4_sym", [1, 4, 16], configs, 0,
                                  logged.append)
    assert dispatch.w4_nv_config is chooser
    assert [r["n"] for r in rows] == [1, 4, 16] and logged == rows
    assert planned == [(c, n) for n in (1, 4, 16) for c in configs]
    # N = 1 and 4 share one token tile, N = 16 takes two: each passing config checked at N = 1 and at N = 16
    assert checks == [(c, n) for n in (1, 16) for c in configs if c.U != 4]
    for r in rows:
        assert set(r["configs"]) == {tune_w4.label(c) for c in configs}
        assert all(("error" in v) == (" U4 " in k) for k, v in r["configs"].items()), r["configs"]
        assert r["dispatcher"] == "MT1 WK4 U1 SK1"  # the measured row's config: what the dispatcher runs today
        assert "2.00x bf16 cuBLAS" in w4_sweep.summary_line(r) and "4 errors" in w4_sweep.summary_line(r)


def test_k_splits_past_the_iterations_are_skipped(monkeypatch):
    """SK cluster blocks of WK warps each taking U 128-k slices need K >= SK * WK * 128 * U: a config past that
    is not planned at all (K = 2048 < 2 * 8 * 128 * 2), the others are."""
    planned = []

    class Ops:
        def __init__(self, *args, **kwargs):
            pass

        def prepared(self, n):
            planned.append(dispatch.w4_nv_config("q4_sym", n, 4096, 2048, "", "sm_90a")[0])
            return [_Prep(None)]

        def check(self, n, prep):
            return 0.0

    monkeypatch.setattr(tune_w4, "W4Operands", Ops)
    monkeypatch.setattr(tune_w4, "time_bf16", lambda ops, n: None)
    monkeypatch.setattr(timing, "graph_replay", lambda launch, stream: 1.0)
    split, whole = tune_w4.grid([1], [8], [2], [2, 1])
    rows = tune_w4.measure_shape(_Cp(), _Stream(), Shape("s", 4096, 2048), "w4-q4_sym", [1], [split, whole], 0,
                                  lambda r: None)
    assert planned == [whole] and list(rows[0]["configs"]) == [tune_w4.label(whole)]
    assert "bf16" not in w4_sweep.summary_line(rows[0])


def _result(spilling: str) -> dict:
    """A sweep's result for q4_sym at one shape: K order (16, 2, 1) best at N = 1 and 4 with MT 2, (8, 2, 1) at
    N = 16; (16, 4, 1) fastest everywhere but its instances spill."""
    times = {  # (MT, WK, U, SK): us at N = 1, 4, 16
        (1, 16, 2, 1): (30.0, 31.0, 40.0), (2, 16, 2, 1): (20.0, 21.0, 45.0),
        (1, 8, 2, 1): (25.0, 26.0, 30.0), (2, 8, 2, 1): (24.0, 25.0, 50.0),
        (1, 16, 4, 1): (10.0, 10.0, 10.0)}
    rows = [{"mode": "w4-q4_sym", "shape": "llama8b.gate_up", "m": 28672, "k": 4096, "n": n, "dispatcher": "-",
             "bf16_us": 60.0, "configs": {tune_w4.label(tune_w4.NvConfig(*c)): {"config": list(c), "us": t[i]}
                                          for c, t in times.items()}}
            for i, n in enumerate((1, 4, 16))]
    rows[0]["configs"]["MT1 WK4 U1 SK1"] = {"error": "AssertionError: wrong result"}
    return {"meta": {"device": "NVIDIA H200", "arch": "sm_90a", "date": "today"},
            "resources": {spilling: {"registers": 128, "spill_stores": 64}}, "rows": rows}


def test_a_config_whose_instance_for_another_group_or_dtype_spills_is_no_candidate():
    """A format's rows serve each of its groups and both dtypes: the sweep measures G128 with bf16 tokens, so a
    config whose fp16 or G32 instance spills (what write_table compiles) must not enter the table."""
    def result_without_the_fastest():  # as the test below: (16, 4, 1)'s bf16 G128 instances spill
        spill = sorted({w4.nv_instance(tune_w4.NvConfig(1, 16, 4, 1), "bfloat16", "q4_sym", 128, n).name
                        for n in (1, 16)})
        out = _result(spill[0])
        out["resources"][spill[1]] = {"spill_stores": 8}
        return out
    assert tune_w4.table_rows(result_without_the_fastest())["w4-q4_sym"][0]["mt"]["1"] == 2
    for dtype, group in (("float16", 128), ("bfloat16", 32)):
        result = result_without_the_fastest()
        for n in (1, 4):  # MT 2 at N = 1 and 4 of the winning order, in another dtype or group
            name = w4.nv_instance(tune_w4.NvConfig(2, 8, 2, 1), dtype, "q4_sym", group, n).name
            result["resources"][name] = {"registers": 128, "spill_stores": 4}
        (row,) = tune_w4.table_rows(result)["w4-q4_sym"]
        assert row["mt"]["1"] == 1 and row["mt"]["4"] == 1, (dtype, group, row)


def test_the_table_takes_one_k_order_per_shape_and_no_spilling_config(tmp_path, monkeypatch):
    from jitgemm import config, tables
    spill = {w4.nv_instance(tune_w4.NvConfig(1, 16, 4, 1), "bfloat16", "q4_sym", 128, n).name for n in (1, 16)}
    result = _result(sorted(spill)[0])
    result["resources"][sorted(spill)[1]] = {"spill_stores": 8}
    fam = tune_w4.table_rows(result)
    # min-max regret: (16, 2, 1) is 1.33x the fastest at N = 16, (8, 2, 1) 1.2x at N = 1: (8, 2, 1) wins
    assert list(fam) == ["w4-q4_sym"]
    (row,) = fam["w4-q4_sym"]
    assert row["k_order"] == [8, 2, 1] and row["mt"] == {"1": 2, "4": 2, "16": 1} and (row["m"], row["k"]) == (28672, 4096)
    path = w4_sweep.write_table(result, str(tmp_path / "new"))  # the folder is made
    t = tables.load(path)
    base = tables.choose("cuda", "NVIDIA H200", "sm_90a")
    others = [r for r in base.family("w4-q4_sym") if r[:2] != (28672, 4096)]  # the base's rows of other shapes stay
    assert t.device == "NVIDIA H200" and t.family("w4-q4_sym") == [(28672, 4096, (8, 2, 1), {1: 2, 4: 2, 16: 1})] + others
    assert t.family("skinny") == base.family("skinny") and "other_families_from" in t.doc["measured"]
    monkeypatch.setenv("JITGEMM_NV_TUNING", path)
    config.reload()
    plan = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, 1, 28672, 4096, device="NVIDIA H200")
    assert plan.config == tune_w4.NvConfig(2, 8, 2, 1) and "measured table" in plan.reason


def test_the_sweep_takes_shapes_of_the_decode_and_the_broad_suite():
    assert [s.name for s in w4_sweep.sweep_shapes(None)] == [s.name for s in w4_sweep.suite.load()[0]]
    picked = w4_sweep.sweep_shapes(["tail.m1.k8192", "llama8b.o"])
    assert [(s.m, s.k) for s in picked] == [(1, 8192), (4096, 4096)]
    with pytest.raises(ValueError, match=r"in neither the decode nor the broad suite: \['nope'\]"):
        w4_sweep.sweep_shapes(["llama8b.o", "nope"])


def test_cold_copies_cover_four_l2s_but_no_more_than_a_timed_loop_reads():
    """A large weight gets enough copies to be >= 4x L2 (and 256 MB) in all; a tiny one (a one-row tail) gets
    only as many as the longest timed loop reads, not the tens of thousands that stalled the sweep."""
    from jitgemm.bench import operands, timing
    l2 = 50 << 20
    big = 40 << 20
    need = max(4 * l2, 256 << 20)
    assert operands.n_copies(big, l2) * big >= need
    assert (operands.n_copies(big, l2) - 1) * big < need
    tiny = 4096
    assert operands.n_copies(tiny, l2) == max(timing.B2B_CALLS, timing.GRAPH_CALLS)
    assert operands.n_copies(1 << 30, l2) == 2
