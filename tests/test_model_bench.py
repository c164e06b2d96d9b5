"""The model-step benchmark's CPU side: model geometries from the published configs, the broad shape
suite, the step's byte count, the summary against issue #17's targets, and requests refused up front."""
import argparse
import math

import pytest

from jitgemm import cli, models
from jitgemm.bench import model, suite
from jitgemm.bench.main import model_request


def test_geometries_match_the_decode_suite_where_they_overlap():
    tuned = {s.name: (s.m, s.k) for s in suite.load()[0]}
    llama = {layer.name: (layer.m, layer.k) for layer in models.step("llama-3.1-8b", 1)}
    assert llama == {name.split(".")[1]: mk for name, mk in tuned.items() if name.startswith("llama8b.")}
    tp8 = {layer.name: (layer.m, layer.k) for layer in models.step("llama-3.1-70b-tp8", 1)}
    assert tp8 == {name.split(".")[1]: mk for name, mk in tuned.items() if name.startswith("llama70b-tp8.")}
    assert sum(layer.count for layer in models.step("llama-3.1-8b", 1)) == 128   # the step issue #17 timed


def test_moe_experts_follow_balanced_routing():
    by = lambda n: {layer.name: layer for layer in models.step("qwen3-30b-a3b", n)}   # 128 experts, top-8, 48 layers
    one, many = by(1), by(64)
    assert (one["expert.gate_up"].count, one["expert.gate_up"].n) == (48 * 8, 1)
    assert (many["expert.down"].count, many["expert.down"].n) == (48 * 128, 4)        # 64 x 8 = 512 over 128 experts
    assert one["router"].m == 128 and one["router"].n == 1 and many["qkv"].n == 64
    assert one["expert.gate_up"].m == 2 * 768 and one["expert.down"].k == 768


def test_moe_experts_stacked_read_the_same_weights_in_one_launch_a_layer():
    """NAME+experts-stacked: each layer's routed experts as one GEMM (gate_up stacked along M, down along K) on the
    tokens each expert gets: the same weight bytes as the per-expert step, one call a layer kind instead of one an
    expert; every other layer as it was."""
    for name in ("qwen3-30b-a3b", "gpt-oss-20b"):
        for n in (1, 4, 16, 64):
            each = {layer.name: layer for layer in models.step(name, n)}
            one = {layer.name: layer for layer in models.step(name + models.STACKED, n)}
            used = each["expert.gate_up"].count // models.config(name)["layers"]
            assert sum(x.weight_bytes for x in one.values()) == sum(x.weight_bytes for x in each.values())
            up, down = one["expert.gate_up"], one["expert.down"]
            assert (up.m, up.k, up.n) == (used * each["expert.gate_up"].m, each["expert.gate_up"].k, each["expert.gate_up"].n)
            assert (down.m, down.k, down.n) == (each["expert.down"].m, used * each["expert.down"].k, each["expert.down"].n)
            assert up.count == down.count == models.config(name)["layers"]
            assert {k: v for k, v in one.items() if not k.startswith("expert")} == \
                   {k: v for k, v in each.items() if not k.startswith("expert")}
    assert len(models.order("qwen3-30b-a3b" + models.STACKED, 1)) == 48 * 5  # qkv, o, router, gate_up, down
    assert not any(v in name for name in models.names() for v in models.VARIANTS)  # no default run takes them
    # grouped: the per-expert layers, one call a layer kind of `groups` experts; the same bytes either way
    for n in (1, 4, 16):
        each = {layer.name: layer for layer in models.step("gpt-oss-20b", n)}
        grouped = {layer.name: layer for layer in models.step("gpt-oss-20b" + models.GROUPED, n)}
        for kind in ("expert.gate_up", "expert.down"):
            a, b = each[kind], grouped[kind]
            assert (b.m, b.k, b.n, b.count * b.groups) == (a.m, a.k, a.n, a.count) and b.count == 24
        assert model.step_bytes("gpt-oss-20b" + models.GROUPED, n, "w4-mxfp4") == \
            model.step_bytes("gpt-oss-20b", n, "w4-mxfp4")
    assert models.base_name("gpt-oss-20b" + models.GROUPED) == "gpt-oss-20b"
    with pytest.raises(ValueError, match=r"\+experts-grouped needs a mixture-of-experts model; 'llama-3.1-8b' is dense"):
        models.step("llama-3.1-8b" + models.GROUPED, 1)


def test_every_model_reads_cleanly_and_bad_requests_are_refused():
    for name in models.names():
        for n in (1, 4, 16, 64):
            layers = models.step(name, n)
            assert all(layer.m >= 1 and layer.k % 8 == 0 and 1 <= layer.n <= 128 for layer in layers), name
    with pytest.raises(ValueError, match="unknown model 'gpt-5'; known: llama-3.1-8b"):
        models.step("gpt-5", 1)
    with pytest.raises(ValueError, match="n .tokens. must be an int >= 1"):
        models.step("llama-3.1-8b", 0)


def test_the_broad_suite_is_unseen_wide_and_has_odd_tails():
    broad, ns = suite.load(group="broad")
    tuned = {(s.m, s.k) for g in ("decode", "moderate-n") for s in suite.load(group=g)[0]}
    assert len(broad) >= 60 and ns == [1, 4, 16, 64]
    assert not tuned & {(s.m, s.k) for s in broad}, "the broad suite is what the tables never saw"
    assert len({(s.m, s.k) for s in broad}) == len(broad) and len({s.name for s in broad}) == len(broad)
    assert any(s.m % 16 for s in broad) and any(s.k % 16 == 8 for s in broad) and any(s.m == 1 for s in broad)
    assert all(s.k % 8 == 0 for s in broad)


def test_step_bytes_and_summary_against_the_targets():
    assert model.step_bytes("llama-3.1-8b", 1) == sum(32 * (2 * m * k + 2 * (k + m)) for m, k in
                                                      [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)])
    rows = [{"model": "llama-3.1-8b", "N": 1, "x_torch": 1.2, "pct_ceiling": 95.0},
            {"model": "qwen2.5-7b", "N": 1, "x_torch": 1.05, "pct_ceiling": 90.0},
            {"model": "llama-3.1-8b", "N": 4, "x_torch": 1.15, "pct_ceiling": 92.0},
            {"model": "llama-3.1-8b", "N": 64, "x_torch": 1.01, "pct_ceiling": 60.0}]
    s = model.summary(rows)
    assert s["N=1"]["worst_model"] == "qwen2.5-7b" and not s["N=1"]["met"]
    assert math.isclose(s["N=1"]["geomean"], math.sqrt(1.2 * 1.05))
    assert s["N=4"]["met"] and s["N=64"]["met"]
    assert s["llama-3.1-8b N<=4 % of ceiling"] == {"min": 92.0, "target": 93.0, "met": False}
    text = model.markdown([dict(r, calls=128, jitgemm_ms=1.0, torch_ms=r["x_torch"], tbs=4.0, step_gb=14.0)
                           for r in rows], 4.2, {"device": "GPU"})
    assert "| qwen2.5-7b | 1 | 128 | 14.00 | 1.000 | 1.050 | 1.050 |" in text and "| 1 | " in text and "NO" in text


def test_a_grouped_steps_bf16_rows_show_the_torch_grouped_baseline_or_why_it_is_missing():
    from jitgemm.bench import moe_baseline
    name = "qwen3-30b-a3b" + models.GROUPED
    rows = [{"model": name, "N": 1, "x_torch": 1.5, "pct_ceiling": 40.0, "grouped_ms": 2.25,
             "grouped_note": "torch._grouped_mm (torch 2.11), 240 calls"},
            {"model": name, "N": 4, "x_torch": 1.6, "pct_ceiling": 35.0, "grouped_ms": None,
             "grouped_note": "torch 2.3 has no _grouped_mm"}]
    text = model.markdown([dict(r, calls=912, jitgemm_ms=3.0, torch_ms=4.5, tbs=1.5, step_gb=5.0) for r in rows],
                          4.2, {"device": "GPU"})
    assert f"| {name} | 1 | 2.250 | 4.500 | torch._grouped_mm (torch 2.11), 240 calls |" in text
    assert f"| {name} | 4 | - | 4.500 | torch 2.3 has no _grouped_mm |" in text
    plain = {k: v for k, v in rows[0].items() if not k.startswith("grouped")}
    assert "_grouped_mm" not in model.markdown([dict(plain, calls=1, jitgemm_ms=1.0, torch_ms=1.0, tbs=1.0, step_gb=1.0)],
                                               4.2, {})
    with pytest.raises(ValueError, match=r"'qwen3-30b-a3b' is not a \+experts-grouped step"):  # before torch or a GPU
        moe_baseline.grouped_step_ms(None, "qwen3-30b-a3b", 1)


def _args(**kw):
    base = dict(models=None, n=None, group="model")
    base.update(kw)
    return argparse.Namespace(**base)


def test_model_requests_are_checked_before_the_gpu(capsys):
    assert model_request(_args()) == (models.names(), [1, 4, 16, 64])
    assert model_request(_args(models="qwen2.5-7b", n="1,8")) == (["qwen2.5-7b"], [1, 8])
    assert model_request(_args(models="gpt-oss-20b+experts-stacked", n="1")) == (["gpt-oss-20b+experts-stacked"], [1])
    for bad, message in ((dict(models="llama-2"), "unknown model 'llama-2'"), (dict(n="1,x"), "comma-separated integers"),
                         (dict(models="qwen2.5-7b+experts-stacked"), "needs a mixture-of-experts model"),
                         (dict(n="0"), "token counts in 1..128")):
        with pytest.raises(ValueError, match=message):
            model_request(_args(**bad))
    assert cli.main(["bench", "--group", "model", "--models", "llama-2"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "unknown model 'llama-2'" in out[0]


@pytest.mark.parametrize("argv,message", [
    (["tune"], "say what to tune"),
    (["tune", "--shape", "4096x4095"], "K must be a multiple of 8"),
    (["tune", "--shape", "big"], "shapes[0] must be (m, k)"),
    (["tune", "--model", "llama-3.1-8b", "--n", "1,x"], "--n must be comma-separated integers"),
    (["tune", "--model", "llama-3.1-8b", "--dtype", "fp32"], "dtype must be one of"),
])
def test_tune_refuses_a_bad_request_in_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr()
    lines = (err.out + err.err).strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_fp8_step_modes_bytes_targets_and_tables():
    """Issue #21's step: fp8 weights a byte an element (tokens too for W8A8), each mode against its own
    baseline and target, and its own table beside the bf16 cuBLAS step."""
    llama = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
    assert model.step_bytes("llama-3.1-8b", 4, "fp8") == sum(32 * (m * k + 4 * (k + 2 * m)) for m, k in llama)
    assert model.step_bytes("llama-3.1-8b", 4, "w8a16") == sum(32 * (m * k + 4 * (2 * k + 2 * m)) for m, k in llama)
    rows = [{"model": "llama-3.1-8b", "N": 1, "dtype": "bfloat16", "x_torch": 1.12, "pct_ceiling": 94.0},
            {"model": "llama-3.1-8b", "N": 1, "dtype": "fp8", "x_torch": 1.30, "pct_ceiling": 80.0},
            {"model": "llama-3.1-70b-tp8", "N": 1, "dtype": "fp8", "x_torch": 1.20, "pct_ceiling": 80.0},
            {"model": "llama-3.1-8b", "N": 16, "dtype": "w8a16", "x_torch": 1.05, "pct_ceiling": 70.0}]
    s = model.summary(rows)
    assert s["N=1"]["met"] and s["N=1"]["target"] == 1.10
    assert s["fp8 N=1"]["worst_model"] == "llama-3.1-70b-tp8" and s["fp8 N=1"]["target"] == 1.25 and not s["fp8 N=1"]["met"]
    assert math.isclose(s["fp8 N=1"]["geomean"], math.sqrt(1.30 * 1.20))
    assert s["w8a16 N=16"]["met"] and s["llama-3.1-8b N<=4 % of ceiling"]["min"] == 94.0  # fp8 rows left out
    full = [dict(r, calls=128, jitgemm_ms=1.0, torch_ms=r["x_torch"], tbs=4.0, step_gb=7.0, bf16_ms=2.0, x_bf16=2.0)
            for r in rows]
    text = model.markdown(full, 4.2, {"device": "GPU"})
    assert "fp8 mode fp8 (W8A8, per-tensor scales), against _scaled_mm" in text
    assert "| llama-3.1-70b-tp8 | 1 | 128 | 7.00 | 1.000 | 1.200 | 1.200 | 2.000 | 2.000 |" in text
    assert "| fp8 1 | 1.249 | 1.200 (llama-3.1-70b-tp8) | 1.25 | NO |" in text
    assert "against bf16 cuBLAS" in text


def test_model_modes_and_fp8_defaults():
    from jitgemm.bench.main import model_modes
    assert model_modes(_args(dtype="bf16,fp16")) == ["bfloat16"]            # the default: one 16-bit step
    assert model_modes(_args(dtype="fp8,bf16,w8a16,fp8")) == ["bfloat16", "fp8", "w8a16"]
    assert model_request(_args(dtype="fp8,fp8-channel"))[0] == list(model.FP8_MODELS)
    assert model_request(_args(dtype="bf16,fp8"))[0] == models.names()
    assert model_modes(_args(dtype="w4-q4_sym,bf16")) == ["bfloat16", "w4-q4_sym"]
    assert model_request(_args(dtype="w4-mxfp4"))[0] == list(model.FP8_MODELS)
    with pytest.raises(ValueError, match="the fp8 modes fp8, fp8-channel, w8a16 or the 4-bit modes w4-mxfp4, .*; got fp8-static"):
        model_modes(_args(dtype="fp8-static"))


def test_w4_step_bytes_targets_and_table():
    from jitgemm.bench import w4_runner
    assert w4_runner.weight_bytes("w4-q4_sym") == 0.5 + 2 / 128 and w4_runner.weight_bytes("w4-mxfp4") == 0.5 + 1 / 32
    llama = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
    assert model.step_bytes("llama-3.1-8b", 1, "w4-q4_min") == int(sum(32 * (0.625 * m * k + (2 * k + 2 * m))
                                                                       for m, k in llama))
    rows = [{"model": "llama-3.1-8b", "N": 1, "dtype": "w4-q4_sym", "x_torch": 2.7, "pct_ceiling": 80.0, "calls": 128,
             "jitgemm_ms": 1.0, "torch_ms": 2.7, "tbs": 4.0, "step_gb": 3.7, "bf16_ms": 2.7, "x_bf16": 2.7}]
    s = model.summary(rows)
    assert s["w4-q4_sym N=1"] == {"geomean": 2.7, "worst": 2.7, "worst_model": "llama-3.1-8b", "target": 2.5, "met": True}
    assert "4-bit mode w4-q4_sym (q4_sym weights, groups of 128, bf16 tokens), against bf16 cuBLAS" in \
        model.markdown(rows, 4.2, {"device": "GPU"})


def test_tp_bench_layer_request_and_table(capsys):
    """`bench --group tp` (issue #20): a Llama-3.1-70B layer's unsharded linears, its request checked
    before the GPU, its table with both modes and the targets."""
    from jitgemm.bench import tp
    from jitgemm.bench.main import tp_request
    assert tp.layer_shapes() == {"qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192),
                                 "down": (8192, 28672)}
    assert tp_request(_args(group="tp")) == [1, 4, 16] and tp_request(_args(group="tp", n="2,128")) == [2, 128]
    with pytest.raises(ValueError, match="token counts in 1..128"):
        tp_request(_args(group="tp", n="0"))
    assert cli.main(["bench", "--group", "tp", "--n", "1,y"]) == 2
    assert "comma-separated integers" in capsys.readouterr().out
    rows = [{"G": 2, "N": 1, "jitgemm_eager_us": 200.0, "torch_eager_us": 240.0, "x_eager": 1.2,
             "jitgemm_graph_us": 100.0, "torch_graph_error": "RuntimeError: no capture"}]
    text = tp.markdown(rows, {"device": "GPU"})
    assert "| 2 | 1 | 200.0 | 240.0 | 1.20 | 100.0 | - | - |" in text
    assert "torch graph not measured: RuntimeError: no capture" in text and "graph >= 1.05" in text


def test_an_interrupted_suite_writes_the_cases_it_measured(tmp_path, monkeypatch, capsys):
    """Ctrl-C during `bench` (a broad run takes minutes): the cases measured so far go to the JSON and the
    Markdown, which say the table is partial, and the interrupt still stops the run."""
    import json
    import sys
    import types

    from jitgemm.bench import main as bench_main
    from jitgemm.bench import runner

    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Stream=lambda non_blocking: object()),
                                    get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None))
    monkeypatch.setitem(sys.modules, "cupy", fake_cp)
    monkeypatch.setattr(runner, "meta", lambda cp: {"device": "stand-in", "l2_bytes": 50 << 20})
    monkeypatch.setattr(runner, "ceiling_tbs", lambda cp: 3.0)

    class Ops:
        def __init__(self, *a):
            pass

        def check(self, n, prep):
            return 0.0
    monkeypatch.setattr(runner, "Operands", Ops)
    monkeypatch.setattr(runner, "prepared_calls", lambda ops, n: [types.SimpleNamespace(
        plan=types.SimpleNamespace(family="skinny", __str__=lambda self: "skinny"))])
    timed = []

    def time_ours(preps, stream, modes=None):
        if len(timed) == 3:
            raise KeyboardInterrupt
        timed.append(1)
        return {"us_b2b": 10.0, "us_graph": 9.0}
    monkeypatch.setattr(runner, "time_ours", time_ours)
    shapes = [suite.Shape("a", 1024, 1024), suite.Shape("b", 2048, 1024)]
    with pytest.raises(KeyboardInterrupt):
        bench_main.run_suite(["bf16"], [1, 4], shapes, str(tmp_path), baselines=False, name="partial")
    assert "the 3 cases measured so far are in" in capsys.readouterr().out
    doc = json.loads((tmp_path / "partial.json").read_text())
    assert [(c["shape"], c["n"]) for c in doc["cases"]] == [("a", 1), ("a", 4), ("b", 1)]
    assert doc["meta"]["interrupted"] == "after 3 cases (Ctrl-C)"
    assert "Interrupted after 3 cases (Ctrl-C): a partial table." in (tmp_path / "partial.md").read_text()


def test_an_interrupted_model_bench_writes_the_steps_it_timed(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or a call's timeout, which sends SIGINT) during `bench --group model`: the steps timed so far
    go to the JSON and the Markdown, marked partial, and the interrupt still stops the run."""
    import json
    import sys
    import types

    from jitgemm.bench import runner

    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Stream=lambda non_blocking: object()),
                                    get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None))
    monkeypatch.setitem(sys.modules, "cupy", fake_cp)
    monkeypatch.setattr(runner, "meta", lambda cp: {"device": "stand-in"})
    monkeypatch.setattr(runner, "ceiling_tbs", lambda cp: 4.0)
    monkeypatch.setattr(model, "StepOperands", lambda cp, name, ns, mode: types.SimpleNamespace(name=name, dtype=mode))
    timed = []

    def time_step(ops, n, stream, baselines):
        if len(timed) == 2:
            raise KeyboardInterrupt
        timed.append(n)
        return {"jitgemm_ms": 2.0, "torch_ms": 2.2, "calls": 128, "routes": {}}
    monkeypatch.setattr(model, "time_step", time_step)
    with pytest.raises(KeyboardInterrupt):
        model.run(["llama-3.1-8b"], [1, 4, 16], str(tmp_path), name="partial")
    assert "the 2 steps timed so far are in" in capsys.readouterr().out
    doc = json.loads((tmp_path / "partial.json").read_text())
    assert [r["N"] for r in doc["rows"]] == [1, 4] and doc["meta"]["interrupted"] == "after 2 steps (Ctrl-C)"
    assert math.isclose(doc["summary"]["N=1"]["geomean"], 1.1)
    assert "**Partial: interrupted after 2 steps (Ctrl-C).**" in (tmp_path / "partial.md").read_text()


@pytest.mark.parametrize("mode", ["fp8", "w4-q4_sym"])
def test_an_interrupted_fp8_or_4bit_suite_writes_the_cases_it_measured(tmp_path, monkeypatch, capsys, mode):
    """The fp8 and 4-bit runners append each case to the suite's list as it is measured: an interrupt in
    their third case keeps the first two in the files (they returned their list only at the end)."""
    import json
    import sys
    import types

    from jitgemm.bench import fp8_runner, runner, timing, w4_runner
    from jitgemm.bench import main as bench_main

    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Stream=lambda non_blocking: types.SimpleNamespace(ptr=7)),
                                    get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None))
    monkeypatch.setitem(sys.modules, "cupy", fake_cp)
    monkeypatch.setattr(runner, "meta", lambda cp: {"device": "stand-in", "l2_bytes": 50 << 20})
    monkeypatch.setattr(runner, "ceiling_tbs", lambda cp: 3.0)

    class Ops:
        def __init__(self, *a, **kw):
            pass

        def prepared(self, *a):
            return [types.SimpleNamespace(plan=types.SimpleNamespace(family="fp8"), launch=lambda s: None)]

        def check(self, *a):
            return 0.0
    monkeypatch.setattr(fp8_runner, "Fp8Operands", Ops)
    monkeypatch.setattr(w4_runner, "W4Operands", Ops)
    timed = []

    def back_to_back(launch, stream):
        if len(timed) == 2:
            raise KeyboardInterrupt
        timed.append(1)
        return 10.0
    monkeypatch.setattr(timing, "back_to_back", back_to_back)
    monkeypatch.setattr(timing, "graph_replay", lambda launch, stream: 9.0)
    shapes = [suite.Shape("a", 1024, 1024), suite.Shape("b", 2048, 1024)]
    with pytest.raises(KeyboardInterrupt):
        bench_main.run_suite([mode], [1, 4], shapes, str(tmp_path), baselines=False, name="partial")
    assert "the 2 cases measured so far are in" in capsys.readouterr().out
    doc = json.loads((tmp_path / "partial.json").read_text())
    assert [(c["shape"], c["n"], c["dtype"]) for c in doc["cases"]] == [("a", 1, mode), ("a", 4, mode)]


def test_an_interrupted_tp_bench_writes_the_rows_it_measured(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or a call's timeout) during `bench --group tp`: the rows measured so far go to the JSON and
    the Markdown, marked partial, and the interrupt still stops the run."""
    import json
    import sys
    import types

    from jitgemm.bench import runner, tp

    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 2)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cp)
    monkeypatch.setattr(runner, "meta", lambda cp: {"device": "stand-in"})
    monkeypatch.setattr(tp, "layer_shapes", lambda: {k: (64, 32) for k in ("qkv", "o", "gate_up", "down")})
    monkeypatch.setattr(tp, "_ours", lambda cp, devices, n, w, rng: (lambda: None, lambda: None))
    walls = []

    def wall(step, cp, devices):
        if len(walls) == 4:  # the third N's first timing
            raise KeyboardInterrupt
        walls.append(1)
        return 100.0
    monkeypatch.setattr(tp, "_wall", wall)
    monkeypatch.setattr(tp, "_theirs", lambda devices, n, w, bounds: (None, lambda: None))
    with pytest.raises(KeyboardInterrupt):
        tp.run([1, 4, 16], str(tmp_path), baselines=False, name="partial")
    assert "the 2 rows measured so far are in" in capsys.readouterr().out
    doc = json.loads((tmp_path / "partial.json").read_text())
    assert [r["N"] for r in doc["rows"]] == [1, 4] and doc["meta"]["interrupted"] == "after 2 rows (Ctrl-C)"
    assert "**Partial: interrupted after 2 rows (Ctrl-C).**" in (tmp_path / "partial.md").read_text()


def test_the_fp8_suite_has_no_scaled_mm_baseline_where_torch_refuses_the_shape(monkeypatch):
    """torch._scaled_mm wants both matrix dimensions multiples of 16: a broad-suite tail with M = 8 raised
    inside the baseline and ended the whole fp8 run (H100, session 13). Such a case now has no torch
    baseline; W8A16's baseline (bf16 torch.mm) and every M % 16 == 0 shape still ask torch."""
    import sys
    import types

    from jitgemm.bench import fp8_runner

    class Torch(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError(f"torch.{name} used")
    monkeypatch.setitem(sys.modules, "torch", Torch("torch"))
    ops = lambda m: types.SimpleNamespace(shape=suite.Shape("s", m, 4096), w=[None], x16=[None])  # noqa: E731
    for mode in ("fp8", "fp8-static", "fp8-channel"):
        assert fp8_runner.time_torch(ops(8), mode, 1) is None
        with pytest.raises(RuntimeError, match="torch.* used"):
            fp8_runner.time_torch(ops(4096), mode, 1)
    with pytest.raises(RuntimeError, match="torch.* used"):
        fp8_runner.time_torch(ops(8), "w8a16", 1)


def test_a_step_runs_layer_by_layer_in_model_order():
    dense = models.order("llama-3.1-70b-tp8", 4)
    assert len(dense) == 320 and len({(layer.name, i) for layer, i in dense}) == 320  # every instance once
    assert [(layer.name, i) for layer, i in dense[:6]] == [("qkv", 0), ("o", 0), ("gate_up", 0), ("down", 0),
                                                          ("qkv", 1), ("o", 1)]
    moe = models.order("qwen3-30b-a3b", 1)   # 48 layers: qkv, o, router, 8 experts' gate_up, then their down
    first = [(layer.name, i) for layer, i in moe[:19]]
    assert first == ([("qkv", 0), ("o", 0), ("router", 0)] + [("expert.gate_up", e) for e in range(8)]
                     + [("expert.down", e) for e in range(8)])
    assert moe[19][0].name == "qkv" and moe[19][1] == 1 and moe[-1] == (moe[-1][0], 48 * 8 - 1)
    counts = {}
    for layer, _ in moe:
        counts[layer.name] = counts.get(layer.name, 0) + 1
    assert counts == {layer.name: layer.count for layer in models.step("qwen3-30b-a3b", 1)}


def test_gpt_oss_geometry_from_its_config():
    """openai/gpt-oss-20b (hidden 2880, 64 query heads and 8 KV heads of 64, 32 experts of 2880, top-4, 24 layers):
    its qkv is a shape whose shipped H100 row gives N <= 16 to the moderate family's 16-token tile, so its step
    measures that choice in model order; all 32 experts in bf16 fit one GPU (about 38 GB at N >= 8)."""
    step = {layer.name: (layer.m, layer.k, layer.count, layer.n) for layer in models.step("gpt-oss-20b", 16)}
    assert step == {"qkv": (5120, 2880, 24, 16), "o": (2880, 4096, 24, 16), "router": (32, 2880, 24, 16),
                    "expert.gate_up": (5760, 2880, 24 * 32, 2), "expert.down": (2880, 2880, 24 * 32, 2)}
