"""`python -m jitgemm ...` as a user runs it, in subprocesses with their own cache directory."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jitgemm import dispatch
from jitgemm.kernels import scale
from jitgemm.runtime.backend import get_backend

from conftest import GPU

REPO = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback (most recent call last)"


def run(args, cache_dir, extra_env=None, timeout=300, code=None):
    env = dict(os.environ)  # keeps LD_LIBRARY_PATH (hiprtc) and the rest
    env["JITGEMM_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("JITGEMM_BACKEND", None)
    env.update(extra_env or {})
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "jitgemm", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(cache_dir.parent))
    return p


def _compiles(name):
    return get_backend(name).compiler.available()[0]


def test_info_names_backends_and_cache(tmp_path):
    cache = tmp_path / "cache"
    p = run(["info"], cache)
    assert p.returncode == 0, p.stderr
    assert TRACEBACK not in p.stderr
    out = p.stdout
    assert re.search(r"^jitgemm \d+\.\d+\.\d+$", out, re.M)
    assert re.search(r"^backend cuda: compiler ", out, re.M)
    assert re.search(r"^backend hip: compiler ", out, re.M)
    if _compiles("cuda"):
        assert re.search(r"^backend cuda: compiler nvrtc-\d+\.\d+$", out, re.M), out
    if _compiles("hip"):
        assert re.search(r"^backend hip: compiler hiprtc-\d+\.\d+/hip-\d+$", out, re.M), out
    from jitgemm.runtime import amd_offline
    route = re.search(r"^  offline clang route (.*)$", out, re.M)
    assert route, out
    if amd_offline.available()[0]:
        assert re.search(r"gfx942, gfx950 where hiprtc cannot: clang 22\.\d+\.\d+ at /", route.group(1)), route.group(1)
    else:
        assert "unavailable" in route.group(1)
    if not GPU:
        # the line after "backend cuda" says why the CUDA runtime cannot be used here
        lines = out.splitlines()
        i = next(i for i, l in enumerate(lines) if l.startswith("backend cuda"))
        assert lines[i + 1].startswith("  runtime: unavailable: "), out
    assert re.search(r"^  vendor BLAS \(for shapes measured faster there\): (cuBLAS \d+ \(|none: )", out, re.M), out
    m = re.search(r"^cache: (\S+)\s+(\d+) entries\s+([\d.]+) MiB\s+\(cap (\d+) MiB\)$", out, re.M)
    assert m, out
    assert m.group(1) == str(cache) and m.group(2) == "0" and m.group(4) == "512"


def test_info_reports_cache_cap_from_environment(tmp_path):
    p = run(["info"], tmp_path / "c", {"JITGEMM_CACHE_MAX_BYTES": str(3 * 2**20)})
    assert p.returncode == 0 and "(cap 3 MiB)" in p.stdout


def test_cache_commands_on_empty_dir(tmp_path):
    cache = tmp_path / "cache"
    p = run(["cache", "size"], cache)
    assert p.returncode == 0 and p.stdout.strip() == f"0 entries, 0.00 MiB (0 bytes) in {cache} (cap 512 MiB)"
    p = run(["cache", "list"], cache)
    assert p.returncode == 0 and p.stdout.strip() == f"no entries in {cache}"
    p = run(["cache", "clear"], cache)
    assert p.returncode == 0 and p.stdout.strip() == f"removed 0 entries from {cache}"
    p = run(["cache", "frobnicate"], cache)
    assert p.returncode == 2 and "invalid choice" in p.stderr


@pytest.mark.skipif(not _compiles("cuda"), reason="NVRTC unavailable")
def test_aot_then_cache_size_list_clear(tmp_path):
    """aot for sm_90a (~9 s): every instance reported with its registers, one cache entry each."""
    cache = tmp_path / "cache"
    from jitgemm.precompile import instances_for
    insts = instances_for("sm_90a")  # the scale kernel, the 16-bit and the fp8 families
    assert len(insts) > len(scale.instances() + dispatch.all_instances("cuda"))
    p = run(["aot", "--arch", "sm_90a", "--out", str(cache)], cache)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "FAILED" not in p.stderr and TRACEBACK not in p.stderr
    out = p.stdout
    assert f"sm_90a: {len(insts)} instances into {cache}" in out
    # stdout is a pipe here, as in a CI log: progress lines, about one per tenth, ending at the total
    progress = re.findall(rf"^aot sm_90a: (\d+)/{len(insts)} instances done$", out, re.M)
    assert 8 <= len(progress) <= 11 and progress[-1] == str(len(insts)), out[:2000]
    # spilling instances are flagged without --report, one line each: exactly the rows whose spill isn't 0/0
    spills = [l for l in out.splitlines() if l.startswith("warning: sm_90a ")]
    assert all(" spills (regs " in l for l in spills)
    rows = [l for l in out.splitlines() if l.startswith("sm_90a ")]
    spilling = {re.match(r"sm_90a\s+(jg_\w+<.*?>)\s+regs", l).group(1) for l in rows
                if not re.search(r"spill st/ld 0/0", l)}
    assert {re.search(r"sm_90a (jg_\w+<.*>) spills", l).group(1) for l in spills} == spilling, spills
    for inst in insts:
        mine = [l for l in rows if re.match(rf"sm_90a\s+{re.escape(inst.name)}\s+regs\s+\d+\s+spill st/ld \d+/\d+", l)]
        assert mine, f"no register line for {inst.name}"
    regs = [int(re.search(r"regs\s+(\d+)", l).group(1)) for l in rows]
    assert all(0 < r <= 255 for r in regs)

    p = run(["cache", "size"], cache)
    m = re.fullmatch(rf"(\d+) entries, ([\d.]+) MiB \((\d+) bytes\) in {re.escape(str(cache))} \(cap 512 MiB\)\n", p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) == len(insts) and int(m.group(3)) > 0
    assert abs(float(m.group(2)) - int(m.group(3)) / 2**20) < 0.01
    assert len(list((cache / "sm_90a").glob("*.jgc"))) == len(insts)

    p = run(["cache", "list"], cache)
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"arch\s+kernel\s+size\s+age\s+compiler", lines[0]) and len(lines) == len(insts) + 2
    listed = {re.fullmatch(r"sm_90a\s+(jg_\S.*?)\s+[\d.]+ KiB\s+\d+ (s|min)\s+nvrtc-\d+\.\d+", l).group(1) for l in lines[1:-1]}
    assert listed == {i.name for i in insts}
    assert lines[-1].startswith(f"{len(insts)} entries, ")
    assert run(["cache", "list", "--arch", "gfx90a"], cache).stdout.strip() == f"no entries in {cache}"

    # a second aot finds everything in the cache (no new entries, same count)
    p = run(["aot", "--arch", "sm_90a", "--out", str(cache)], cache)
    assert p.returncode == 0
    assert run(["cache", "size"], cache).stdout.startswith(f"{len(insts)} entries")

    p = run(["cache", "clear", "--arch", "gfx90a"], cache)
    assert p.stdout.strip() == f"removed 0 entries from {cache}"
    p = run(["cache", "clear"], cache)
    assert p.returncode == 0 and p.stdout.strip() == f"removed {len(insts)} entries from {cache}"
    assert run(["cache", "size"], cache).stdout.startswith("0 entries, 0.00 MiB (0 bytes)")
    assert not list(cache.rglob("*.jgc")) and not list(cache.rglob("*.lock"))


def test_aot_report_has_one_row_per_instance():
    import contextlib
    import io
    from jitgemm import registers
    rows = [("sm_90a", "jg_scale<jg_f16>", "_Z8jg_scaleI6jg_f16EvPtPKtfx", {"registers": 8}),
            ("sm_90a", "jg_scale<jg_f16>", "_Z12jg_scale_f32PfPKffx", {"registers": 10})]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        registers.print_resources(rows)
    assert len([l for l in buf.getvalue().splitlines() if "jg_scale<jg_f16>" in l]) == 1, buf.getvalue()


@pytest.mark.skipif(GPU, reason="checks the no-GPU path of the demo")
def test_demo_on_a_machine_without_a_device(tmp_path):
    cache = tmp_path / "cache"
    p = run(["demo"], cache)
    assert p.returncode == 0, p.stderr[-3000:]
    assert TRACEBACK not in p.stderr and TRACEBACK not in p.stdout
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines[0] == "no GPU found: compiling a few kernels for sm_90a, gfx90a instead (no GPU needed for that)"
    assert lines[1].startswith("  why no GPU: cuda: ") and "; hip: " in lines[1] and "((" not in lines[1]
    assert sum("no GPU" in l for l in lines) == 2
    if _compiles("cuda"):
        assert any(re.match(r"sm_90a\s+jg_\w+<.*>\s+regs\s+\d+", l) for l in lines), p.stdout
    if _compiles("hip"):
        assert any(re.match(r"gfx90a\s+jg_\w+.*\s+vgpr\s+\d+", l) for l in lines), p.stdout
    from jitgemm.runtime import amd_offline
    if amd_offline.available()[0]:  # gfx942 is suggested only where its toolchain is found
        assert lines[-1].endswith("python -m jitgemm aot --arch sm_90a (or gfx90a, gfx942, gfx950)"), lines[-1]
    else:
        assert "aot --arch gfx942" not in p.stdout and ".ci/amd-toolchain.sh PREFIX" in lines[-1]
    # what it compiled went to the configured cache
    assert list(cache.rglob("*.jgc"))


FAKE_TORCH = "import os\nopen(os.environ['TORCH_MARKER'], 'w').write('imported')\n"

NO_TORCH_SCRIPT = r'''
import sys
import numpy as np, ml_dtypes
import jitgemm
bf = ml_dtypes.bfloat16
x, w = np.ones((2, 64), bf), np.ones((32, 64), bf)
for call in (lambda: jitgemm.gemm(x.astype(np.float32), w), lambda: jitgemm.gemm(x[:, :60], w[:, :60]),
             lambda: jitgemm.gemm(x, w), lambda: jitgemm.explain(np.ones((17, 64), bf), w),
             lambda: jitgemm.matmul(np.ones((17, 64), bf), w.T)):
    try:
        call()
    except (TypeError, ValueError, jitgemm.BackendUnavailable) as e:
        print("raised", type(e).__name__)
print("TORCH", "torch" in sys.modules)
'''


def test_import_and_validation_do_not_import_torch(tmp_path):
    fake = tmp_path / "fakesite"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_TORCH)
    marker = tmp_path / "torch-was-imported"
    env = {"TORCH_MARKER": str(marker), "PYTHONPATH": os.pathsep.join([str(REPO), str(fake)])}

    # control: the fake torch is importable in that environment, so an import would be seen
    ctl = run([], tmp_path / "cache", env, code="import torch, sys; print('torch' in sys.modules)")
    assert ctl.returncode == 0 and ctl.stdout.strip() == "True" and marker.exists(), ctl.stderr
    marker.unlink()

    p = run([], tmp_path / "cache", env, code=NO_TORCH_SCRIPT)
    assert p.returncode == 0, p.stderr
    assert "raised TypeError" in p.stdout and "raised ValueError" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "TORCH False", p.stdout
    assert not marker.exists()


def test_aot_for_pre_hopper_skips_what_needs_clusters_and_fp8_mma():
    """sm_80 has no thread-block clusters and no e4m3 mma: aot must not list (and fail on) them."""
    from jitgemm import precompile
    names = [i.name for i in precompile.instances_for("sm_80")]
    assert names and not any("clusters" in i.requires for i in precompile.instances_for("sm_80"))
    assert not any(n.startswith("jg_fp8_nv<") for n in names)
    assert any(n.startswith("jg_moderate_nv<") and n.endswith(", 2, 1>") for n in names)  # workspace variant
    assert any("clusters" in i.requires for i in precompile.instances_for("sm_90a"))


def test_aot_lists_wgmma_tiles_only_for_sm90a(nv_tables):
    from jitgemm import precompile
    from jitgemm.kernels import moderate
    wg = moderate.ModerateConfig(moderate.NvTile(64, 64, 1, moderate.WGMMA), 4, moderate.RED_CLUSTER)
    nv_tables(moderate=[(640, 2880, {64: moderate.to_entry(wg, 1.2)})])
    assert any("wgmma" in i.requires for i in precompile.instances_for("sm_90a"))
    for arch in ("sm_90", "sm_100a", "sm_80"):
        insts = precompile.instances_for(arch)
        assert not any("wgmma" in i.requires for i in insts)
        assert any(i.name.startswith("jg_moderate_nv<") for i in insts)  # the stand-in mma.sync tiles


def test_ctrl_c_ends_a_command_with_130_and_one_line(monkeypatch, capsys):
    """No traceback for an interrupt (tune says what it kept before this); the shell's code for SIGINT."""
    from jitgemm import cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert cli.main(["info"]) == 130
    assert capsys.readouterr().err == "jitgemm info: interrupted\n"


@pytest.mark.parametrize("argv,hint", [(["--model", "llama-3.1-8b", "--dtype", "w4-q4_sym"], True),
                                       (["--shape", "4096x4096"], False)])
def test_tune_of_a_model_says_how_to_check_the_whole_step(monkeypatch, capsys, argv, hint):
    """After tuning a model's weights (the tuning itself stood in for: it needs a GPU), the command says how to
    compare the whole step with and without it, because each kernel was timed alone; a shape list has no step."""
    from jitgemm import cli, tuning
    from jitgemm.bench import main as bench_main
    monkeypatch.setattr(bench_main, "missing", lambda: None)
    monkeypatch.setattr(tuning, "tune", lambda spec, **kw: f"tuned {spec} {kw['dtype']}")
    assert cli.main(["tune", *argv]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tuned ")
    line = ("bench --group model --models llama-3.1-8b --dtype w4-q4_sym, then the same with JITGEMM_TUNED=0")
    assert (line in out) == hint


def test_an_interrupted_parallel_compile_drops_the_compiles_not_started():
    """precompile.as_finished (what `jitgemm aot --jobs` runs its compiles through): when the consumer stops after the
    first result (Ctrl-C lands in the loop as an exception at the yield), the calls not yet started are cancelled,
    not all run before the loop returns as a `with` block's shutdown did (session 24: aot went on after SIGINT)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from jitgemm import precompile

    started, release = [], threading.Event()

    def work(i):
        started.append(i)
        if i:  # the first returns at once; the others hold their worker until released
            release.wait(10)
        return i

    gen = precompile.as_finished(ThreadPoolExecutor(2), work, [(i,) for i in range(12)])
    assert next(gen) == 0
    gen.close()  # the consumer stops: GeneratorExit at the yield, as KeyboardInterrupt would raise there
    release.set()
    assert 1 <= len(started) <= 3, started  # the one that finished and those already running; 12 without the fix
    done = list(precompile.as_finished(ThreadPoolExecutor(3), work, [(i,) for i in range(5)]))
    assert sorted(done) == [0, 1, 2, 3, 4]  # run to the end, every result comes back


def test_a_finished_parallel_compile_waits_for_its_workers():
    """as_finished joins its pool when every call finished (left to the interpreter's exit, the process pool's exit
    handler raced its workers' teardown: a "Bad file descriptor" traceback after a successful aot), and still
    cancels without waiting when the consumer stops first."""
    from concurrent.futures import ThreadPoolExecutor
    from jitgemm import precompile

    class Pool(ThreadPoolExecutor):
        def shutdown(self, wait=True, *, cancel_futures=False):
            self.asked = (wait, cancel_futures)
            super().shutdown(wait=wait, cancel_futures=cancel_futures)

    whole = Pool(2)
    assert sorted(precompile.as_finished(whole, abs, [(-i,) for i in range(4)])) == [0, 1, 2, 3]
    assert whole.asked == (True, False)
    stopped = Pool(2)
    gen = precompile.as_finished(stopped, abs, [(-i,) for i in range(4)])
    next(gen)
    gen.close()
    assert stopped.asked == (False, True)
