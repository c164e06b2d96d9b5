"""The user's own tuning (jitgemm.tuned, written by `jitgemm tune`): it takes precedence for the exact
shapes it holds, an unseen shape keeps the default rule, a corrupt or foreign file is ignored with one
warning, and JITGEMM_AUTOTUNE never tunes during graph capture. CPU only: the files are written here."""
import types
import warnings

import pytest

from conftest import table_doc
from jitgemm import autotune, config, dispatch, tables, tuned, tuning
from jitgemm.kernels import moderate, skinny

GPU = "NVIDIA Test GPU"


def save(doc=None, key=None, **families):
    doc = doc or table_doc(device=GPU, **families)
    doc["key"] = key or tuned.machine_key(GPU)
    tables.parse(doc, "test")
    return tuned.save(GPU, doc)


def plan(n, m, k, device=GPU, bias=False):
    return dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", n, m, k, 50 << 20, 0, bias, True, device=device)


def test_tuned_rows_take_precedence_for_their_exact_shape():
    before = plan(4, 4096, 4096)
    save(skinny=[(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})])
    p = plan(4, 4096, 4096)
    assert p.config == skinny.NvConfig(2, 4, 4, 1) and "tuned on this GPU" in p.reason
    assert plan(1, 4096, 4096).config == skinny.NvConfig(1, 4, 4, 1)
    # the same shape on another device, and an unseen shape here: the shipped table's rule, as before
    assert plan(4, 4096, 4096, device="NVIDIA Other").config == before.config
    assert plan(4, 4096, 4104).config == plan(4, 4096, 4104, device="").config
    assert "measured table: nearest tuned shape" in plan(4, 4096, 4104).reason
    # JITGEMM_TUNED=0: the shipped tables alone
    import os
    os.environ["JITGEMM_TUNED"] = "0"
    try:
        config.reload()
        assert plan(4, 4096, 4096).config == before.config
    finally:
        del os.environ["JITGEMM_TUNED"]
        config.reload()


def test_a_tuned_verdict_for_n_up_to_16_overrides_the_tables_adoption(small_n_tables):
    m, k = small_n_tables[0]
    assert plan(4, m, k).family == "moderate"
    save(skinny=[(m, k, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1})])  # tuned here: the skinny family won
    assert plan(4, m, k).family == "skinny" and "tuned on this GPU" in plan(4, m, k).reason
    tile = moderate.ModerateConfig(moderate.NvTile(64, 16, 1, moderate.WGMMA, 4, 2), 2, moderate.RED_CLUSTER)
    save(skinny=[(m, k, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1})], moderate=[(m, k, {16: moderate.to_entry(tile, None)})])
    p = plan(4, m, k)
    assert p.family == "moderate" and p.config.tile == tile.tile and "tuned on this GPU" in p.reason
    # a tuning of N > 16 only leaves N <= 16 to the shipped table
    save(moderate=[(m, k, {64: moderate.to_entry(tile, 2.0)})])
    assert plan(4, m, k).family == "moderate" and "tuned on this GPU" not in plan(4, m, k).reason


def test_a_tuned_cublas_verdict_routes_n_over_16_there():
    entry = moderate.to_entry(moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2), 2, moderate.RED_CLUSTER), 0.8)
    save(moderate=[(3000, 3000, {64: entry})])
    assert plan(64, 3000, 3000).family == "blas"
    assert plan(64, 3000, 3000, bias=True).family == "moderate"    # only the kernel fuses a bias
    assert plan(128, 3000, 3000).family == "blas"                  # the nearest bucket of the row


@pytest.mark.parametrize("spoil,why", [
    (lambda p: p.write_text("{broken"), "not JSON"),
    (lambda p: p.write_text(p.read_text().replace('"skinny"', '"skinnny"')), "unknown field 'skinnny'"),
])
def test_a_corrupt_file_is_ignored_with_one_warning(spoil, why):
    path = save(skinny=[(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})])
    spoil(path)
    config.reload()
    with pytest.warns(tuned.TunedWarning, match=why) as rec:
        assert "tuned on this GPU" not in plan(4, 4096, 4096).reason
        plan(1, 4096, 4096)
        config.reload()
        plan(4, 4096, 4096)
    assert len(rec) == 1, "one warning, however many plans"
    assert "jitgemm tune" in str(rec[0].message)


def test_a_file_from_another_machine_or_version_is_ignored_with_one_warning():
    key = dict(tuned.machine_key(GPU), driver=1, jitgemm="0.0.1")
    save(key=key, skinny=[(4096, 4096, (4, 4, 1), {1: 1, 4: 2, 8: 2, 16: 1})])
    with pytest.warns(tuned.TunedWarning, match=r"another driver 1 .*jitgemm '0.0.1'") as rec:
        assert "tuned on this GPU" not in plan(4, 4096, 4096).reason
        plan(8, 4096, 4096)
    assert len(rec) == 1


def test_merges_keep_what_this_run_did_not_tune():
    def row(m, k, buckets):
        return {"name": "r", "m": m, "k": k, "buckets": {str(b): tables.moderate_entry_doc(e) for b, e in buckets.items()}}
    e = moderate.to_entry(moderate.ModerateConfig(moderate.NvTile(64, 64, 2, 2), 2, 1), 1.1)
    old = tables.parse(table_doc(skinny=[(1, 8, (4, 2, 1), {1: 1}), (2, 8, (4, 2, 1), {1: 1})],
                                 moderate=[(1, 8, {16: e, 32: e, 64: e})]), "old")
    new_s = [tables.skinny_row_doc("x", 1, 8, (8, 2, 1), {1: 2})]
    assert [(r["m"], r["k_order"]) for r in tuning._merge_skinny(old, new_s)] == [(2, [4, 2, 1]), (1, [8, 2, 1])]
    # N <= 16 and 64 tuned again, 16 not adopted this time: bucket 16 goes, 32 stays, 64 is the new one
    merged = tuning._merge_moderate(old, [row(1, 8, {64: e})], {(1, 8)}, [16, 64])
    assert sorted(merged[0]["buckets"]) == ["32", "64"]
    assert tuning._merge_moderate(None, [], {(1, 8)}, [16]) == []


@pytest.mark.parametrize("spec,message", [
    ([], "non-empty list"),
    ([(4096,)], r"shapes\[0\] must be"),
    ([(4096, 4100)], "K must be a multiple of 8"),
    ([(0, 4096)], "m must be an int in 1..2"),
    ([{"m": 8, "k": 8, "n": 1}], "unknown fields"),
    ("no-such-model", "neither a model"),
])
def test_the_tune_request_is_checked_before_any_gpu_work(spec, message):
    with pytest.raises(ValueError, match=message):
        tuning.check_request(spec, "bf16", (1,))


def test_the_tune_request_forms():
    shapes, dtype, buckets = tuning.check_request([(4096, 4096), ("down", 4096, 14336), {"m": 8, "k": 16}], "fp16",
                                                  (1, 3, 9, 17, 100))
    assert [(s.name, s.m, s.k) for s in shapes] == [("m4096.k4096", 4096, 4096), ("down", 4096, 14336), ("m8.k16", 8, 16)]
    assert dtype == "float16" and buckets == (1, 4, 16, 32, 128)
    with pytest.raises(ValueError, match="dtype must be"):
        tuning.check_request([(8, 8)], "fp32", (1,))
    with pytest.raises(ValueError, match="n must be token counts"):
        tuning.check_request([(8, 8)], "bf16", (0, 129))
    assert [s.name for s in tuning.shapes_from("llama-3.1-8b")] == [
        "llama-3.1-8b.qkv", "llama-3.1-8b.o", "llama-3.1-8b.gate_up", "llama-3.1-8b.down"]


def _fake_backend(capturing: bool):
    return types.SimpleNamespace(name="cuda", device_info=lambda d: types.SimpleNamespace(name=GPU),
                                 stream_capturing=lambda stream, device: capturing)


def test_autotune_never_tunes_during_graph_capture(monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "tune", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setenv("JITGEMM_AUTOTUNE", "1")
    config.reload()
    assert autotune.maybe_tune(_fake_backend(True), 0, "bfloat16", 4, 4608, 3584, 0x10) == "capture"
    assert calls == []
    assert "never tuned" in autotune.status(GPU, 4, 4608, 3584)
    # outside the capture: tuned once (the N <= 16 buckets together), never again for the same shape
    assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 4, 4608, 3584, 0x10) == "tuned"
    assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 8, 4608, 3584, 0x10) == ""
    assert len(calls) == 1
    (shapes,), kw = calls[0]
    assert shapes == [("m4608.k3584", 4608, 3584)] and kw["n"] == tuning.SMALL_BUCKETS and kw["progress"] is False
    # N > 16: its own bucket
    assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 40, 4608, 3584, 0) == "tuned"
    assert calls[1][1]["n"] == (64,)


def test_autotune_off_or_tuned_does_nothing(monkeypatch):
    monkeypatch.setattr(tuning, "tune", lambda *a, **kw: pytest.fail("must not tune"))
    assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 4, 4000, 3584, 0) == ""   # off by default
    monkeypatch.setenv("JITGEMM_AUTOTUNE", "1")
    config.reload()
    save(skinny=[(4000, 3584, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1})])
    assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 4, 4000, 3584, 0) == ""
    assert autotune.status(GPU, 4, 4000, 3584) == ""
    assert autotune.maybe_tune(types.SimpleNamespace(name="hip"), 0, "bfloat16", 4, 4000, 3584, 0) == ""


def test_a_failed_autotune_warns_and_leaves_the_default_rule(monkeypatch):
    def boom(*a, **kw):
        raise ImportError("no CuPy")
    monkeypatch.setattr(tuning, "tune", boom)
    monkeypatch.setenv("JITGEMM_AUTOTUNE", "1")
    config.reload()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert autotune.maybe_tune(_fake_backend(False), 0, "bfloat16", 4, 4400, 3584, 0) == "failed"
    assert any(issubclass(w.category, autotune.AutotuneWarning) and "no CuPy" in str(w.message) for w in rec)


def test_fp8_tuning_requests_rows_and_merges():
    """`jitgemm tune --dtype fp8`: the request (N > 16 tunes bucket 16's row, K % 16), the dispatcher
    reading a tuned fp8 row for every mode and N, and a run of one family keeping the other's rows."""
    from jitgemm.kernels import fp8
    shapes, dtype, buckets = tuning.check_request([(4096, 4096)], "fp8", tuning.DEFAULT_NS)
    assert dtype == "fp8" and buckets == (1, 4, 8, 16)
    assert tuning.check_request([(4096, 4096)], "fp8", [64, 128])[2] == (16,)
    with pytest.raises(ValueError, match="fp8 weights need K a multiple of 16.*K=4104"):
        tuning.check_request([(4096, 4104)], "fp8", [1])
    save(fp8=[(4096, 4096, (8, 4, 1), {1: 1, 4: 2, 8: 2, 16: 2})])
    for mode in (fp8.W8A8, fp8.W8A16, fp8.W8Q):
        for n, mt in ((1, 1), (4, 2), (64, 2)):
            p = dispatch.plan_fp8("cuda", "sm_90a", 132, "bfloat16", mode, "float8_e4m3fn", n, 4096, 4096, GPU)
            assert p.config == skinny.NvConfig(mt, 8, 4, 1) and "tuned on this GPU" in p.reason
    old = tuned.current(GPU)
    row = tables.skinny_row_doc("x", 4096, 4096, (16, 2, 1), {1: 1})
    assert tuning._merge_skinny(old, [], "fp8") == old.doc["fp8"]
    assert tuning._merge_skinny(old, [row], "fp8") == [row]
    assert tuning._merge_skinny(old, []) == old.doc.get("skinny", [])


def test_an_interrupted_tune_keeps_the_shapes_timed_so_far(monkeypatch, capsys):
    """Ctrl-C during the timing (minutes of work) stores the rows of the shapes already timed, says where,
    and still stops; the shape it was timing is not written."""
    from jitgemm import precompile
    from jitgemm.runtime.types import DeviceInfo

    class Sweep:  # tuning._Sweep's interface: one skinny row per shape, Ctrl-C on the third
        def __init__(self, *args):
            self.timed = 0

        def instances(self, shapes):
            return []

        def count(self, shapes):
            return len(shapes)

        def shape(self, sh, advance):
            if self.timed == 2:
                raise KeyboardInterrupt
            self.timed += 1
            advance()
            return tables.skinny_row_doc(sh.name, sh.m, sh.k, (4, 2, 1), {1: 1}), None, ["skinny (4, 2, 1)"]

    monkeypatch.setattr(tuning, "_Sweep", Sweep)
    monkeypatch.setattr(precompile, "results", lambda *a: iter(()))
    cp = types.SimpleNamespace(get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None))
    info = DeviceInfo(0, GPU, "sm_90a", 132, 32, 227 << 10, 50 << 20, 80 << 30)
    shapes, dtype, buckets = tuning.check_request([(1024, 512), (2048, 512), (4096, 512)], "bfloat16", [1])
    with pytest.raises(KeyboardInterrupt):
        tuning._run(cp, info, shapes, dtype, buckets, False, 1, 0.0)
    assert "the 2 of 3 shape(s) timed so far are stored in" in capsys.readouterr().out
    kept = tuned.current(GPU)
    assert sorted((r["m"], r["k"]) for r in kept.doc["skinny"]) == [(1024, 512), (2048, 512)]
    assert "interrupted after 2 of 3" in kept.doc["measured"]["how"]


def test_w4_tuning_requests_and_the_stored_row_serves_the_format(monkeypatch):
    """`jitgemm tune --dtype w4-<format>` end to end on the CPU (the timings faked): the request (N > 16 tunes
    bucket 16's row; K a multiple of the timed group), every config forced and timed per bucket, a config whose
    instance for another group or token dtype spills is no candidate, the row stored under the format's family
    beside the file's other families, and the dispatcher planning 4-bit calls of that shape from it."""
    from jitgemm import precompile
    from jitgemm.bench import timing, tune_w4
    from jitgemm.kernels import w4
    from jitgemm.runtime.types import DeviceInfo
    shapes, dtype, buckets = tuning.check_request([(4096, 4096)], "w4-q4_sym", [1, 4, 64])
    assert dtype == "w4-q4_sym" and buckets == (1, 4, 16)
    with pytest.raises(ValueError, match=r"w4-q4_sym is timed with groups of 128 k: K must be a multiple of 128.*K=4160"):
        tuning.check_request([(4096, 4160)], "w4-q4_sym", [1])
    assert tuning.check_request([(4096, 4160)], "w4-mxfp4", [1])[1] == "w4-mxfp4"  # groups of 32
    save(skinny=[(512, 512, (16, 2, 1), {1: 1})], w4={"w4-mxfp4": [(512, 512, (8, 1, 1), {1: 1})]})
    fast, spills = skinny.NvConfig(2, 4, 1, 1), skinny.NvConfig(1, 4, 2, 1)  # the fastest spills at G32 in fp16

    launched = []

    class Ops:
        def __init__(self, cp, sh, mode, l2, n_max, with_bf16):
            assert not with_bf16  # the user's tuning times no baseline
            self.sh = sh

        def prepared(self, n):
            cfg = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, n, self.sh.m, self.sh.k).config
            return [types.SimpleNamespace(launch=lambda s: launched.append(cfg))]

        def check(self, n, prep):
            return 1e-3

    def timed(launch, stream):  # the forced config decides the time: the spilling one is the fastest
        launch(0)
        cfg = launched[-1]
        return 5.0 if cfg == spills else 8.0 if cfg == fast else 20.0 + cfg.WK + cfg.U
    monkeypatch.setattr(tune_w4, "W4Operands", Ops)
    monkeypatch.setattr(timing, "graph_replay", timed)
    spill_names = {w4.nv_instance(spills, "float16", "q4_sym", 32, n).name for n in (1, 4, 16)}
    monkeypatch.setattr(precompile, "results", lambda arch, root, insts, jobs: iter(
        [(i.name, "sym", {"spill_stores": 8} if i.name in spill_names else {"registers": 96}, False, None)
         for i in insts]))
    cp = types.SimpleNamespace(get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None),
                               cuda=types.SimpleNamespace(Stream=lambda non_blocking: types.SimpleNamespace(ptr=0)))
    info = DeviceInfo(0, GPU, "sm_90a", 132, 32, 227 << 10, 50 << 20, 80 << 30)
    res = tuning._run(cp, info, shapes, dtype, buckets, False, 1, 0.0)
    assert spills in launched and fast in launched  # both were timed
    t = tuned.current(GPU)
    (row,) = t.family("w4-q4_sym")
    assert row == (4096, 4096, fast.k_order, {1: 2, 4: 2, 16: 2}) and "w4-q4_sym" in res.rows[0]["summary"][0]
    assert t.family("w4-mxfp4") == [(512, 512, (8, 1, 1), {1: 1})] and t.family("skinny")  # the file's other rows
    for group in (32, 128):  # the row serves every group of the format
        p = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", group, 3, 4096, 4096, device=GPU)
        assert p.config == fast and "tuned on this GPU" in p.reason
