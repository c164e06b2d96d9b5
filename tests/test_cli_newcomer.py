"""The CLI as a new user meets it on a machine without a GPU (issue 16, items 1-4 and 6): one clear
line and exit status 2 for what cannot be done, help for every option, readable cache listings."""
import json
import re
import sys
import types

import pytest

from jitgemm import cli, precompile, registers
from jitgemm.runtime.backend import get_backend
from jitgemm.runtime.types import CompileResult
from jitgemm.runtime.cache import CodeCache

from conftest import GPU
from test_cli import REPO, TRACEBACK, _compiles, run

SUPPORTED = "supported: sm_80, sm_86, sm_89, sm_90, sm_90a, sm_100a, gfx90a, gfx942, gfx950"
no_gpu_only = pytest.mark.skipif(GPU, reason="checks what a machine without a GPU shows")


def one_line_refusal(p, *fragments):
    """Exit status 2, one line on stderr holding every fragment, nothing on stdout, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert TRACEBACK not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and p.stdout == "", (p.stdout, p.stderr)
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ---- 1. bench without a GPU -------------------------------------------------------------------------

FAKE_CUPY = "def __getattr__(name):\n    raise RuntimeError('cudaErrorInsufficientDriver')\n"


@no_gpu_only
@pytest.mark.parametrize("with_cupy", [False, True])
def test_bench_without_a_gpu_says_so_in_one_line(tmp_path, with_cupy):
    env = {}
    if with_cupy:  # CuPy installed but no device: the GPU check comes before any CuPy call
        (tmp_path / "site" / "cupy").mkdir(parents=True)
        (tmp_path / "site" / "cupy" / "__init__.py").write_text(FAKE_CUPY)
        env["PYTHONPATH"] = f"{REPO}:{tmp_path / 'site'}"
    p = run(["bench"], tmp_path / "cache", env)
    assert p.returncode == 2 and TRACEBACK not in p.stdout + p.stderr, p.stderr[-2000:]
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jitgemm bench: no NVIDIA GPU found ("), lines
    assert "CuPy" in lines[0]


def test_bench_with_a_gpu_but_without_cupy_names_the_extra(monkeypatch):
    from jitgemm.bench import main as bench_main
    gpu = types.SimpleNamespace(available=lambda: (True, "ok"), device_count=lambda: 1)
    monkeypatch.setattr(bench_main, "get_backend", lambda name: gpu)
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert bench_main.missing() == "needs a GPU and CuPy (pip install 'jitgemm[cupy,bench]')"


# ---- 2. aot checks every --arch before compiling ------------------------------------------------------

@pytest.mark.parametrize("arch, why", [("sm90a", "(did you mean sm_90a?)"), ("SM_90A", "(did you mean sm_90a?)"),
                                       ("gfx1100", ""), ("sm_75", "need sm_80 or newer"),
                                       ("gfx906", "mai-insts"), ("nonsense", "")])
def test_aot_refuses_an_unsupported_arch_before_compiling_anything(tmp_path, arch, why):
    out = tmp_path / "out"
    p = run(["aot", "--arch", "sm_90a", "--arch", arch, "--out", str(out)], tmp_path / "cache")
    one_line_refusal(p, f"jitgemm aot: unsupported arch {arch!r}", why, SUPPORTED)
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing compiled, nothing cached


@pytest.mark.parametrize("arch", cli.NV_ARCHS + cli.AMD_ARCHS + ("gfx942:sramecc+:xnack-", "gfx90a:xnack+"))
def test_supported_archs_pass_the_check(arch):
    assert cli.arch_problem(arch) is None


@pytest.mark.parametrize("arch", ["sm_90a:xnack-", "gfx942:fast+", "gfx942:", "sm_103a", "gfx908", ""])
def test_other_spellings_are_refused(arch):
    assert cli.arch_problem(arch).endswith(SUPPORTED)


@pytest.mark.skipif(_compiles("hip") and get_backend("hip").runtime_version() >= 60000000,
                    reason="ROCm >= 6's hiprtc compiles gfx942 without the offline route")
def test_aot_for_gfx942_without_its_toolchain_says_how_to_get_it(tmp_path):
    p = run(["aot", "--arch", "gfx942"], tmp_path / "cache", {"JITGEMM_AMD_TOOLCHAIN": str(tmp_path / "none")})
    one_line_refusal(p, "jitgemm aot: cannot compile for gfx942 here: ", ".ci/amd-toolchain.sh PREFIX")
    assert not list(tmp_path.rglob("*.jgc"))


# ---- 3. aot progress and spills in a log ---------------------------------------------------------------

def fake_aot(monkeypatch, total, spilling):
    """aot's instance list and compile step replaced: `total` instances, those in `spilling` spill."""
    names = [f"jg_fake<jg_f16, {i}>" for i in range(total)]
    monkeypatch.setattr(precompile, "instances_for", lambda arch: [types.SimpleNamespace(name=n) for n in names])
    monkeypatch.setattr(precompile, "compiler_problem", lambda arch: None)

    def results(arch, root, insts, jobs):
        for i, inst in enumerate(insts):
            res = {"registers": 40, "spill_stores": 8 * (i in spilling), "spill_loads": 8 * (i in spilling),
                   "stack_frame": 8 * (i in spilling), "smem": 0}
            yield inst.name, "jg_fake", res, True, None
    monkeypatch.setattr(precompile, "results", results)
    return names


def test_aot_off_a_terminal_prints_progress_and_flags_spills(monkeypatch, capsys, tmp_path):
    names = fake_aot(monkeypatch, 25, spilling={3, 17})
    assert cli.main(["aot", "--arch", "sm_90a", "--out", str(tmp_path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    progress = [l for l in out if l.startswith("aot sm_90a: ")]
    assert progress == [f"aot sm_90a: {i}/25 instances done" for i in (3, 6, 9, 12, 15, 18, 21, 24, 25)]
    assert [l for l in out if l.startswith("warning:")] == [
        f"warning: sm_90a {names[i]} spills (regs  40  spill st/ld 8/8  stack 8  smem 0)" for i in (3, 17)]
    assert out[out.index(progress[-1]) + 1].startswith("sm_90a: 25 instances into")


def test_aot_report_counts_the_flagged_spills(monkeypatch, capsys, tmp_path):
    fake_aot(monkeypatch, 4, spilling={1})
    assert cli.main(["aot", "--arch", "sm_90a", "--out", str(tmp_path), "--report"]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: sm_90a jg_fake<jg_f16, 1> spills") == 1
    assert re.search(r"^sm_90a: max 40 registers \(jg_fake<jg_f16, 0>\); 1 instances spill$", out, re.M), out


# ---- 4. help, cache, settings, info --json -----------------------------------------------------------------

def test_every_option_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "aot" in a.choices)
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    assert set(sub.choices) == {"info", "cache", "aot", "demo", "bench", "tune"}


def test_aot_help_lists_the_archs(tmp_path):
    p = run(["aot", "--help"], tmp_path / "cache")
    assert p.returncode == 0 and "sm_90a" in p.stdout and "gfx942" in p.stdout


def entry(cache, arch, name, compiler="nvrtc-13.0"):
    cache.put(f"{abs(hash((arch, name))):064x}", arch,
              CompileResult(code=b"\0" * 3000, lowered={name: "_Zsym"}, log="", compiler=compiler, resources={}))


def test_cache_list_shows_kernel_arch_size_age_and_compiler(tmp_path):
    root = tmp_path / "cache"
    c = CodeCache(root)
    entry(c, "sm_90a", "jg_skinny_nv<jg_bf16, 1, 1, 16, 2, 1>")
    entry(c, "gfx90a", "jg_skinny_amd<jg_f16, 1, 1, 4, 16>", "hiprtc-9.0/hip-50221153")
    (root / "gfx90a" / f"{'f' * 64}.jgc").write_bytes(b"not an entry")
    p = run(["cache", "list"], root)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"arch\s+kernel\s+size\s+age\s+compiler", lines[0]), lines
    rows = "\n".join(lines[1:])
    assert re.search(r"^sm_90a\s+jg_skinny_nv<jg_bf16, 1, 1, 16, 2, 1>\s+\d\.\d KiB\s+\d+ s\s+nvrtc-13\.0$", rows, re.M), rows
    assert re.search(r"^gfx90a\s+jg_skinny_amd<jg_f16, 1, 1, 4, 16>\s+\d\.\d KiB\s+\d+ s\s+hiprtc-9\.0/hip-50221153$", rows, re.M)
    assert re.search(r"^gfx90a\s+\(unreadable entry\)\s+0\.0 KiB", rows, re.M), rows
    assert lines[-1].startswith(f"3 entries, 0.01 MiB in {root}")
    p = run(["cache", "size", "--arch", "sm_90a"], root)
    assert re.fullmatch(rf"1 entries, 0\.00 MiB \(\d+ bytes\) in {re.escape(str(root))} \(cap 512 MiB\)\n", p.stdout), p.stdout


def test_cache_refuses_an_unknown_arch_but_clears_an_old_one(tmp_path):
    root = tmp_path / "cache"
    c = CodeCache(root)
    entry(c, "sm_90a", "jg_scale<jg_f16>")
    for action in ("clear", "list", "size"):
        p = run(["cache", action, "--arch", "nonsense"], root)
        one_line_refusal(p, "jitgemm cache: unsupported arch 'nonsense'", SUPPORTED, "nor has the cache any entries for it")
    assert len(c.entries()) == 1
    entry(c, "sm_75", "jg_scale<jg_f16>")  # left by an older jitgemm: no target now, but clearable
    p = run(["cache", "clear", "--arch", "sm_75"], root)
    assert p.returncode == 0 and p.stdout.strip() == f"removed 1 entries from {root}"
    assert [e[0].parent.name for e in c.entries()] == ["sm_90a"]


@pytest.mark.parametrize("args", [["cache", "size"], ["aot", "--arch", "sm_90a"], ["demo"], ["bench"]])
@pytest.mark.parametrize("env, rule", [({"JITGEMM_CACHE_MAX_BYTES": "abc"}, "JITGEMM_CACHE_MAX_BYTES must be an integer"),
                                       ({"JITGEMM_BACKEND": "bogus"}, "JITGEMM_BACKEND must be 'cuda', 'hip', 'auto' or unset")])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, args, env, rule):
    p = run(args, tmp_path / "cache", env)
    one_line_refusal(p, f"jitgemm {args[0]}: {rule}")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("env, line", [
    ({"JITGEMM_BACKEND": "bogus"}, "invalid setting: JITGEMM_BACKEND must be 'cuda', 'hip', 'auto' or unset, got 'bogus'"),
    ({"JITGEMM_CACHE_MAX_BYTES": "abc"}, "invalid setting: JITGEMM_CACHE_MAX_BYTES must be an integer number of bytes, got 'abc'")])
def test_info_reports_a_bad_setting_and_the_rest(tmp_path, env, line):
    p = run(["info"], tmp_path / "cache", env)
    assert p.returncode == 2 and TRACEBACK not in p.stderr, p.stderr
    assert line in p.stdout.splitlines()
    assert re.search(r"^backend cuda: compiler ", p.stdout, re.M) and re.search(r"^cache: ", p.stdout, re.M)


def test_info_json_parses_and_has_every_part(tmp_path):
    p = run(["info", "--json"], tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert {"jitgemm", "backends", "devices", "compilers", "cache", "blas", "settings_errors"} <= set(d)
    for name in ("cuda", "hip"):
        b = d["backends"][name]
        assert isinstance(b["available"], bool) and (b["available"] or b["reason"])
        assert d["compilers"][name]["available"] == _compiles(name)
        assert (d["compilers"][name]["identity"] or d["compilers"][name]["reason"])
    assert isinstance(d["compilers"]["amd_offline"]["available"], bool)
    assert all({"backend", "index", "name", "arch", "multiprocessors", "memory_bytes"} <= set(x) for x in d["devices"])
    assert d["cache"] == {"dir": str(tmp_path / "cache"), "entries": 0, "bytes": 0, "max_bytes": 512 * 2**20}
    blas = d["blas"]["cuda"]
    assert blas["path"] if blas["available"] else blas["reason"]
    assert d["settings_errors"] == []


# ---- 6. the demo without a GPU --------------------------------------------------------------------------------

def depth(line):
    """The deepest parenthesis nesting of a line."""
    deepest = level = 0
    for ch in line:
        level += (ch == "(") - (ch == ")")
        deepest = max(deepest, level)
    return deepest


@no_gpu_only
@pytest.mark.skipif(not _compiles("cuda"), reason="NVRTC unavailable")
def test_demo_options_header_summary_and_toolchain_hint(tmp_path):
    p = run(["demo", "--dtype", "bf16", "--arch", "sm_80"], tmp_path / "cache",
            {"JITGEMM_AMD_TOOLCHAIN": str(tmp_path / "none")})
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0] == "no GPU found: compiling a few kernels for sm_80 instead (no GPU needed for that)"
    assert lines[1].startswith("  why no GPU: ") and depth(lines[1]) <= 1, lines[1]
    assert lines[2] == registers.RESOURCE_HEADER
    rows = [l for l in lines if l.startswith("sm_80 ")]
    assert rows and not any("jg_f16" in l for l in rows), rows
    assert re.fullmatch(r"sm_80: max \d+ registers \(jg_\w+<.*>\); 0 instances spill", lines[-2]), lines[-2]
    # JITGEMM_AMD_TOOLCHAIN points nowhere: no gfx942 suggestion, but how to get the toolchain
    assert "gfx942" not in p.stdout.replace("gfx942 and gfx950 need", "") and ".ci/amd-toolchain.sh PREFIX" in lines[-1]


@no_gpu_only
def test_demo_without_hiprtc_names_the_extra_once(tmp_path):
    code = "import sys; sys.modules['hip'] = None\nfrom jitgemm.cli import main\nsys.exit(main(['demo', '--arch', 'gfx90a']))"
    p = run([], tmp_path / "cache", code=code)
    assert p.returncode == 0, p.stderr[-2000:]
    skipped = [l for l in p.stdout.splitlines() if l.startswith("gfx90a: skipped")]
    assert skipped == ["gfx90a: skipped, hiprtc unavailable; pip install 'jitgemm[rocm]' and a HIP runtime"], p.stdout


@pytest.mark.parametrize("args, fragment", [(["--dtype", "fp8"], "unknown --dtype 'fp8'; choose from bf16, fp16"),
                                            (["--n", "0"], "--n takes token counts 1..128"),
                                            (["--arch", "sm90a"], "unsupported arch 'sm90a' (did you mean sm_90a?)")])
def test_demo_refuses_bad_options(tmp_path, args, fragment):
    one_line_refusal(run(["demo", *args], tmp_path / "cache"), f"jitgemm demo: {fragment}")
