"""The per-call overhead bench's pure-Python parts on the CPU: its timers (fake clock and device), the
correctness gate of each timed row, the tables, the JSON/markdown it writes, and the CLI hook."""
import json
import os
import subprocess
import sys
import types
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from jitgemm.bench import main as bench_main
from jitgemm.bench import overhead as oh
from jitgemm.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


class FakeDevice:
    """A host clock that each call advances by the current per-call cost; each sync moves on to the
    next cost and takes `sync_s` seconds (queued work draining)."""

    def __init__(self, costs, sync_s=0.0):
        self.t, self.costs, self.sync_s, self.calls, self.syncs = 0.0, list(costs), sync_s, 0, 0

    def clock(self):
        return self.t

    def call(self):
        self.calls += 1
        self.t += self.costs[0]

    def sync(self):
        self.syncs += 1
        self.t += self.sync_s
        if len(self.costs) > 1:
            self.costs.pop(0)


def test_best_per_call_is_the_fastest_of_five_loops_of_2000_after_200_warm_up_calls():
    dev = FakeDevice([9e-6, 3e-6, 1e-6, 2e-6, 5e-6, 4e-6])  # warm-up, then the five repetitions
    us = oh.best_per_call(dev.call, dev.sync, clock=dev.clock)
    assert us == pytest.approx(1.0)
    assert dev.calls == 200 + 5 * 2000
    assert dev.syncs == 1 + 5  # after the warm-up, then one per repetition


def test_best_per_call_counts_the_device_sync_inside_the_timed_loop():
    dev = FakeDevice([2e-6], sync_s=2000 * 1e-6)  # the sync drains 1 µs of work per call
    assert oh.best_per_call(dev.call, dev.sync, clock=dev.clock) == pytest.approx(3.0)


def test_median_step_drops_three_warm_up_steps_and_takes_the_median_of_ten_in_ms():
    dev = FakeDevice([100.0] * 3 + [float(s) for s in range(1, 11)])
    step_syncs = []

    def sync():  # two syncs per step: before it starts and after its last call
        step_syncs.append(dev.t)
        if len(step_syncs) % 2 == 0:
            dev.sync()
    ms = oh.median_step([dev.call, lambda: None], sync, clock=dev.clock)
    assert ms == pytest.approx(5.5e3)
    assert dev.calls == 13 and len(step_syncs) == 26


class NumpyLib:
    name, fp8_kwargs, out8 = "cupy", {}, "float16"

    @staticmethod
    def sync():
        pass


def numpy_operands(n=2, m=3, k=4):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    return oh.Operands(n, x, w, w.T, np.empty((n, m)), None, None, {"16": x @ w.T})


def _timer(fn, sync):
    return 1.5


def test_measure_returns_time_and_error_of_a_right_result():
    ops = numpy_operands()
    r = oh.measure(NumpyLib, ops, "16", lambda: partial(np.matmul, ops.x, ops.wt), timer=_timer)
    assert r["us"] == 1.5 and r["rel_err"] < 1e-12 and "error" not in r


def test_measure_puts_the_exception_in_the_cell_and_goes_on():
    def unsupported():
        raise ValueError("no fp8 on this device")
    r = oh.measure(NumpyLib, numpy_operands(), "16", unsupported, timer=_timer)
    assert r == {"error": "ValueError: no fp8 on this device"}
    assert oh.cell(r, "us") == "error: ValueError: no fp8 on this device"


def test_measure_refuses_a_wrong_result():
    ops = numpy_operands()
    r = oh.measure(NumpyLib, ops, "16", lambda: partial(np.matmul, ops.x, 2 * ops.wt), timer=_timer)
    assert r["error"].startswith("AssertionError: wrong result: relative error")


def test_measure_checks_a_launch_by_its_out_and_not_by_an_earlier_rows_result():
    ops = numpy_operands()
    ops.o[...] = ops.ref["16"]  # what an earlier row left there

    def launch(writes: bool):
        if writes:
            np.matmul(ops.x, ops.wt, out=ops.o)
    assert "us" in oh.measure(NumpyLib, ops, "16", lambda: partial(launch, True), timer=_timer)
    assert "wrong result" in oh.measure(NumpyLib, ops, "16", lambda: partial(launch, False), timer=_timer)["error"]


def test_host_reads_numpy_and_jitgemms_own_arrays():
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    own = types.SimpleNamespace(to_numpy=lambda: a)
    for v in (a, own):
        got = oh.host(v)
        assert got.dtype == np.float64 and (got == a).all()


def test_the_rows_are_every_public_entry_the_rules_name():
    rows = [call for call, _, _ in oh.jitgemm_rows(NumpyLib, numpy_operands())]
    assert rows == ["gemm(x, w, out=o)", "gemm(x, w)", "Linear(w)(x)", "Linear(w)(x, out=o)",
                    "linear(x, w) (F.linear semantics)", "matmul(x, w.T)",
                    "matmul(x, w.T, out=o)", "scaled_gemm W8A8 (x8, w8, 0.5, 0.25)", "scaled_gemm W8A8, out=o",
                    "scaled_gemm W8A16 (x, w8, None, 0.25)", "scaled_gemm W8A16, out=o",
                    "prepare(x, w, out=o).launch(s)"]


def fake_records():
    recs = []
    for lib, base_us in (("cupy", 20.0), ("torch", 15.0)):
        for call, us in ((oh.GEMM_OUT, 30.0), (oh.BASELINE[lib], base_us), ("scaled_gemm W8A8, out=o", None)):
            r = {"lib": lib, "m": 1024, "k": 1024, "n": 1, "call": call}
            r.update({"us": us, "rel_err": 1e-3} if us else {"error": "TypeError: a | b\nsecond line"})
            recs.append(r)
    return recs


def fake_decode():
    return [{"variant": oh.GEMM_OUT, "n": 1, "ms": 8.0, "x_f_linear": 2.0},
            {"variant": oh.BASELINE["torch"], "n": 1, "ms": 4.0, "x_f_linear": 1.0},
            {"variant": "Linear(w)(x)", "n": 8, "error": "RuntimeError: boom"}]


def test_ratio_of_gemm_out_to_each_columns_baseline():
    assert oh.ratios(fake_records()) == {"cupy 1024x1024 N=1": 1.5, "torch 1024x1024 N=1": 2.0}


def test_per_call_table_has_a_column_per_library_size_and_n_and_a_ratio_row():
    header, rows = oh.per_call_table(fake_records(), oh.ratios(fake_records()))
    assert header == ["call (µs per call)", "cupy 1024x1024 N=1", "torch 1024x1024 N=1"]
    by = {r[0]: r[1:] for r in rows}
    assert by[oh.GEMM_OUT] == ["30.0", "30.0"]
    assert by["torch F.linear(x, w)"] == ["", "15.0"]  # a torch baseline has no CuPy cell
    assert by["scaled_gemm W8A8, out=o"] == ["error: TypeError: a | b"] * 2
    assert by[f"{oh.GEMM_OUT} / baseline"] == ["1.50x", "2.00x"]


def test_decode_table_gives_ms_per_step_and_the_ratio_to_f_linear():
    header, rows = oh.decode_table(fake_decode())
    assert header == ["variant (ms per step)", "N=1", "N=8"]
    by = {r[0]: r[1:] for r in rows}
    assert by[oh.GEMM_OUT] == ["8.00 (2.00x F.linear)", ""]
    assert by["Linear(w)(x)"] == ["", "error: RuntimeError: boom"]


def result(label, scale=1.0):
    recs = [dict(r, us=r["us"] * scale) if "us" in r else r for r in fake_records()]
    dec = [dict(r, ms=r["ms"] * scale) if "ms" in r else r for r in fake_decode()]
    return {"meta": {"label": label, "device": "NVIDIA H200"}, "per_call": recs, "ratios": oh.ratios(recs),
            "decode_step": dec}


def test_compare_table_gives_before_and_after_of_cells_measured_in_both_runs():
    header, rows = oh.compare_table(result("new", 0.5), result("old"))
    assert header[0] == "call: old → new"
    by = {r[0]: dict(zip(header[1:], r[1:])) for r in rows}
    assert by[oh.GEMM_OUT]["torch 1024x1024 N=1"] == "30.00 → 15.00 (0.50x)"
    assert by[oh.GEMM_OUT]["decode N=1"] == "8.00 → 4.00 (0.50x)"
    assert "scaled_gemm W8A8, out=o" not in by  # an error in both runs: nothing to compare


def test_write_gives_json_with_every_number_and_the_label_and_markdown_tables(tmp_path):
    res = result("new")
    tables = oh.tables_of(res, result("old", 2.0))
    oh.write(tmp_path / "o", "overhead", res, tables)
    got = json.loads((tmp_path / "o" / "overhead.json").read_text())
    assert got["meta"]["label"] == "new" and got["per_call"] == res["per_call"]
    assert got["decode_step"] == res["decode_step"] and got["ratios"] == res["ratios"]
    md = (tmp_path / "o" / "overhead.md").read_text()
    assert md.startswith("Label `new` · NVIDIA H200")
    assert md.count("### ") == 3
    assert "| call (µs per call) | cupy 1024x1024 N=1 | torch 1024x1024 N=1 |" in md
    assert "| scaled_gemm W8A8, out=o | error: TypeError: a \\| b | error: TypeError: a \\| b |" in md


def test_print_rich_prints_every_cell(capsys):
    oh.print_rich("t", *oh.per_call_table(fake_records(), oh.ratios(fake_records())))
    out = capsys.readouterr().out
    assert "torch 1024x1024 N=1" in out and "2.00x" in out and "error: TypeError" in out


def test_help_of_bench_names_the_overhead_group_and_label():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "jitgemm", "bench", "--group", "overhead", "--help"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--label" in p.stdout and "overhead" in p.stdout


@pytest.mark.parametrize("flags", [["--group", "overhead"], ["--overhead"]])
def test_overhead_without_cupy_says_so_and_returns_2(monkeypatch, capsys, flags):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError, GPU or not
    monkeypatch.setattr(oh, "run", lambda *a: pytest.fail("ran without CuPy"))
    args = build_parser().parse_args(["bench", *flags])
    assert args.fn(args) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "needs" in out[0] and "CuPy" in out[0]


@pytest.mark.parametrize("flags", [["--group", "overhead"], ["--overhead"]])
def test_overhead_runs_before_the_suite_is_loaded(monkeypatch, flags):
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setattr(bench_main, "missing", lambda: None)  # a GPU and CuPy, as far as main can tell
    monkeypatch.setattr(bench_main.suite, "load", lambda *a: pytest.fail("the suite has no overhead group"))
    calls = []
    monkeypatch.setattr(oh, "run", lambda *a: calls.append(a))
    args = build_parser().parse_args(["bench", *flags, "--out", "d", "--label", "new", "--compare", "old.json"])
    assert bench_main.main(args) == 0
    assert calls == [("d", "new", "old.json", "overhead")]


class FakeCupyArray:
    """What Wrapped reads of a CuPy array: shape, dtype, device (with an id), the interface, get()."""

    def __init__(self, ptr, shape):
        self.shape, self.dtype, self.device = shape, np.dtype(np.float16), types.SimpleNamespace(id=0)
        self.__cuda_array_interface__ = {"shape": shape, "strides": None, "typestr": "<f2", "data": (ptr, False),
                                         "version": 3}

    def get(self):
        return np.zeros(self.shape, np.float16)


def test_the_cupy_wrapper_row_times_the_interface_objects_hot_path():
    """CuPy users pass bf16 bits in a wrapper (CuPy has no bfloat16): the row wraps the fp16 operands the
    same way, and after its first call each call is one launch from the cache, no planning."""
    from jitgemm.runtime.backend import installed
    from jitgemm.runtime.null import NullBackend
    from jitgemm import pipeline
    n, m, k = 2, 64, 128
    ops = oh.Operands(n, FakeCupyArray(0x10000, (n, k)), FakeCupyArray(0x40000, (m, k)), None,
                      FakeCupyArray(0x80000, (n, m)), None, None, {})
    (call, ref, make), (call_new, ref_new, make_new), *bf16_rows = oh.CupyLib.extra_rows(None, ops)
    assert [c for c, _, _ in bf16_rows] == ["gemm(x, w, out=o), jitgemm.CupyBf16 (bf16)",
                                            "gemm(x, w), jitgemm.CupyBf16 (bf16)"]
    assert "__cuda_array_interface__" in call and "out=o" in call and ref == ref_new == "16"
    assert "__cuda_array_interface__" in call_new and "out=" not in call_new
    pipeline.clear()
    with installed(NullBackend()) as be:
        fn = make()
        got = fn()
        planned = be.calls["device_info"]
        assert isinstance(got, oh.Wrapped) and got.a is ops.o and oh.host(got).shape == (n, m)
        for _ in range(3):
            fn()
        assert be.calls["device_info"] == planned and len(be.launches) == 4
        # without out=: a DeviceArray on the stream, its block reused once the previous result is dropped
        fn = make_new()
        got = fn()
        assert oh.host(got).shape == (n, m) and got.stream == 0
        first, allocs = got.ptr, be.calls["alloc"]
        del got
        for _ in range(3):
            assert fn().ptr == first
        assert be.calls["alloc"] == allocs


def test_an_interrupted_run_writes_the_rows_measured_so_far_and_says_it_is_partial(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or the SIGINT of a call's timeout) during the per-call part: the rows measured before it are
    in overhead.json/.md, marked partial, and the interrupt still ends the run."""
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setattr(oh, "_torch", lambda: None)
    monkeypatch.setattr(oh, "meta", lambda cp, torch, label: {"label": label, "device": "NVIDIA H200"})
    monkeypatch.setattr(oh, "CupyLib", lambda cp: object())
    monkeypatch.setattr(oh, "decode_step", lambda torch: pytest.fail("the decode step ran after the interrupt"))

    def per_call(libs, records):
        records += fake_records()[:2]
        raise KeyboardInterrupt
    monkeypatch.setattr(oh, "per_call", per_call)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(result("old", 2.0)))
    with pytest.raises(KeyboardInterrupt):
        oh.run(str(tmp_path / "o"), "new", str(old))
    got = json.loads((tmp_path / "o" / "overhead.json").read_text())
    assert got["per_call"] == fake_records()[:2]
    assert got["meta"]["interrupted"] == "after 2 per-call rows (Ctrl-C)"
    md = (tmp_path / "o" / "overhead.md").read_text()
    assert "**Partial: interrupted after 2 per-call rows (Ctrl-C).**" in md and "before → after" in md
    assert "rows measured so far are in" in capsys.readouterr().out


def test_a_missing_compare_file_fails_before_any_measurement(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setattr(oh, "_torch", lambda: None)
    monkeypatch.setattr(oh, "meta", lambda cp, torch, label: {"label": label})
    monkeypatch.setattr(oh, "CupyLib", lambda cp: object())
    monkeypatch.setattr(oh, "per_call", lambda *a: pytest.fail("measured before reading --compare"))
    with pytest.raises(FileNotFoundError):
        oh.run(str(tmp_path / "o"), "new", str(tmp_path / "nope.json"))
