"""Cache faults (issue 8, part 3) beyond tests/test_cache.py: a full disk (write failures at every
step of publishing), an entry of another arch renamed into place through the real compile path, an
entry that checks out but does not load, the cache directory deleted (or replaced) in the middle of
a build, and a lock left by a process killed with SIGKILL while it was publishing. Each must be
detected and survived: the caller gets the right code, at most one CacheWarning is emitted per
cache, and no half-written entry is ever served."""
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from jitgemm.runtime import cache as cache_mod
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend, NullCompiler
from jitgemm.runtime.types import CompileResult, DeviceInfo
from jitgemm.runtime.cache import CacheWarning, CodeCache, decode_entry, encode_entry, make_key

REPO = Path(__file__).resolve().parent.parent
ARCH = "sm_90a"


def fake_result(tag: str) -> CompileResult:
    return CompileResult(code=b"\x7fELF" + tag.encode() * 40, lowered={"k": "_Z1kv"}, log=f"log {tag}",
                         compiler="fake-1.0", resources={"_Z1kv": {"registers": 32}})


class Builder:
    def __init__(self, tag="x", during=None):
        self.tag, self.during, self.calls = tag, during, 0

    def __call__(self):
        self.calls += 1
        if self.during is not None:
            self.during()
        return fake_result(self.tag)


def key(i) -> str:
    return make_key({"faults": i})


class Recorder:
    """Collects CacheWarnings (every warning is recorded, none is turned into an error)."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self.all = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)

    @property
    def cache(self):
        return [w for w in self.all if issubclass(w.category, CacheWarning)]


def tmp_files(root: Path):
    return [p for p in root.rglob(".tmp-*")] if root.exists() else []


def _nvrtc_available() -> bool:
    from jitgemm.runtime.backend import get_backend
    try:
        return get_backend("cuda").compiler.available()[0]
    except Exception:
        return False


needs_nvrtc = pytest.mark.skipif(not _nvrtc_available(), reason="NVRTC not installed")


# ---- disk full -----------------------------------------------------------------------------------------------------
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullFile:
    """A file object whose writes get partway, then fail as a full disk does."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(bytes(data)[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.mark.parametrize("where", ["replace", "write", "mkstemp"])
def test_disk_full_while_publishing_keeps_working_from_memory_with_one_warning(tmp_path, monkeypatch, where):
    root = tmp_path / "cache"
    c = CodeCache(root)
    if where == "replace":
        monkeypatch.setattr(cache_mod.os, "replace", _enospc)
    elif where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(cache_mod.os, "fdopen", lambda fd, *a, **k: _FullFile(real_fdopen(fd, *a, **k)))
    else:
        monkeypatch.setattr(cache_mod.tempfile, "mkstemp", _enospc)
    b1, b2 = Builder("one"), Builder("two")
    with Recorder() as rec:
        r1 = c.get_or_build(key(1), ARCH, b1)
        r2 = c.get_or_build(key(2), ARCH, b2)     # a second failed write: no second warning
        r1b = c.get_or_build(key(1), ARCH, b1)    # served from memory
    assert r1 == fake_result("one") and r2 == fake_result("two") and r1b is r1
    assert (b1.calls, b2.calls) == (1, 1)
    assert len(rec.cache) == 1, [str(w.message) for w in rec.all]
    msg = str(rec.cache[0].message)
    assert "No space left" in msg or str(errno.ENOSPC) in msg, msg
    assert c.entries() == [] and not tmp_files(root)   # no half-written entry, no temp file left
    # the disk has room again: a new cache (a new process) compiles once more and publishes
    monkeypatch.undo()
    c2 = CodeCache(root)
    b3 = Builder("one")
    with Recorder() as rec2:
        assert c2.get_or_build(key(1), ARCH, b3) == fake_result("one")
    assert b3.calls == 1 and not rec2.cache
    assert decode_entry(c2.path(key(1), ARCH).read_bytes(), ARCH) == fake_result("one")


def test_disk_full_when_creating_the_lock_file_degrades_to_memory_once(tmp_path, monkeypatch):
    import filelock
    c = CodeCache(tmp_path / "cache")
    monkeypatch.setattr(filelock.FileLock, "acquire", _enospc)
    b = Builder()
    with Recorder() as rec:
        r = c.get_or_build(key(1), ARCH, b)
        c.get_or_build(key(2), ARCH, b)
        c.get_or_build(key(3), "gfx90a", b)
    assert r == fake_result("x") and b.calls == 3
    assert len(rec.cache) == 1 and "memory only" in str(rec.cache[0].message)
    assert c.entries() == []


@needs_nvrtc
def test_disk_full_during_a_real_compile_still_returns_the_code(tmp_path, monkeypatch):
    from jitgemm.kernels import scale
    from jitgemm.runtime.jit import compile_instance
    want = compile_instance(scale.instance("float16"), ARCH, CodeCache(tmp_path / "reference"))
    c = CodeCache(tmp_path / "full")
    monkeypatch.setattr(cache_mod.os, "replace", _enospc)
    with Recorder() as rec:
        got = compile_instance(scale.instance("float16"), ARCH, c)
    assert got.code == want.code and got.lowered == want.lowered
    assert len(rec.cache) == 1 and c.entries() == [] and not tmp_files(tmp_path / "full")


# ---- entries that check out but are not what they claim -------------------------------------------------------------
@needs_nvrtc
def test_real_entry_of_another_arch_renamed_into_place_is_rebuilt(tmp_path):
    """An sm_80 cubin copied over the sm_90a entry of the same kernel (a cache directory shared by hand)."""
    from jitgemm.kernels import scale
    from jitgemm.runtime.backend import backend_for_arch
    from jitgemm.runtime.jit import cache_key, compile_instance
    inst = scale.instance("bfloat16")
    root = tmp_path / "cache"
    c = CodeCache(root)
    r80 = compile_instance(inst, "sm_80", c)
    r90 = compile_instance(inst, ARCH, CodeCache(tmp_path / "reference"))
    assert r80.code != r90.code
    be = backend_for_arch(ARCH)
    p80, p90 = c.path(cache_key(inst, "sm_80", be), "sm_80"), c.path(cache_key(inst, ARCH, be), ARCH)
    p90.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(p80, p90)

    c2 = CodeCache(root)
    with Recorder() as rec:
        got = compile_instance(inst, ARCH, c2)
        again = compile_instance(inst, ARCH, c2)
    assert got.code == r90.code and again is got
    assert c2.stats["bad_entries"] == 1 and c2.stats["compiles"] == 1 and c2.stats["disk_hits"] == 0
    assert len(rec.cache) == 1 and str(p90) in str(rec.cache[0].message)
    assert decode_entry(p90.read_bytes(), ARCH).code == r90.code       # the entry is right from now on
    assert decode_entry(p80.read_bytes(), "sm_80").code == r80.code    # and the sm_80 one untouched


class _GoodCompiler(NullCompiler):
    """Builds code the _LoadOnce driver accepts, and counts the builds."""

    def __init__(self):
        super().__init__("cuda")
        self.compiles = 0

    def identity(self):
        return "fakecc-1"

    def compile(self, source, filename, names, options):
        self.compiles += 1
        return CompileResult(code=b"GOOD" + hashlib.sha256(source.encode()).digest(), lowered={n: "_Zk" for n in names},
                             log="", compiler="fakecc-1")


class _LoadOnce(NullBackend):
    """A backend whose driver refuses code it did not build (another driver's cubin, say)."""

    def __init__(self):
        super().__init__(devices=[DeviceInfo(0, "fake", ARCH, 132, 32, 232448, 50 << 20, 80 << 30)])
        self.compiler = _GoodCompiler()
        self.loads = []

    def load(self, code, device):
        from jitgemm.errors import VendorError
        self.loads.append(code[:4])
        if not code.startswith(b"GOOD"):
            raise VendorError("cuModuleLoadData", "CUDA_ERROR_INVALID_IMAGE")
        return "module"

    def function(self, module, symbol):
        return ("function", symbol)


def test_entry_that_checks_out_but_does_not_load_is_rebuilt_once(tmp_path, monkeypatch):
    """Right checksum, right arch field, wrong code: the load fails, the entry is dropped and rebuilt."""
    from jitgemm.kernels import scale
    from jitgemm.runtime import jit
    monkeypatch.setenv("JITGEMM_CACHE_DIR", str(tmp_path / "cache"))
    be = _LoadOnce()
    inst = scale.instance("float32")
    c = cache_mod.default_cache()
    k = jit.cache_key(inst, ARCH, be)
    bad = CompileResult(code=b"EVIL" + b"\0" * 64, lowered={inst.name: "_Zk"}, log="", compiler="fakecc-1")
    path = c.path(k, ARCH)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_entry(bad, ARCH))
    with installed(be), Recorder() as rec:   # a backend object of its own: nothing loaded for it yet
        kern = jit.get_kernel(inst, be, 0, scale.ARG_KINDS)
        again = jit.get_kernel(inst, be, 0, scale.ARG_KINDS)
    assert again is kern and kern.func == ("function", "_Zk")
    assert be.loads == [b"EVIL", b"GOOD"] and be.compiler.compiles == 1
    assert len(rec.cache) <= 1
    assert decode_entry(path.read_bytes(), ARCH).code.startswith(b"GOOD")


def test_entry_path_taken_by_a_directory_is_survived_with_one_warning(tmp_path):
    c = CodeCache(tmp_path)
    p = c.path(key(1), ARCH)
    (p / "junk").mkdir(parents=True)   # the entry's name is a non-empty directory
    b = Builder()
    with Recorder() as rec:
        r = c.get_or_build(key(1), ARCH, b)
        c.get_or_build(key(2), ARCH, b)
    assert r == fake_result("x") and b.calls == 2
    assert len(rec.cache) == 1 and str(p) in str(rec.cache[0].message)   # the failed publish, once
    assert decode_entry(c.path(key(2), ARCH).read_bytes(), ARCH) == fake_result("x")   # the rest still works
    assert not tmp_files(tmp_path)


# ---- the directory disappears while a build runs ---------------------------------------------------------------------
def test_cache_dir_deleted_during_a_build_is_recreated(tmp_path):
    root = tmp_path / "cache"
    c = CodeCache(root)
    b = Builder("mid", during=lambda: shutil.rmtree(root))
    with Recorder() as rec:
        r = c.get_or_build(key(1), ARCH, b)
    assert r == fake_result("mid") and b.calls == 1 and not rec.cache
    assert decode_entry(c.path(key(1), ARCH).read_bytes(), ARCH) == r
    c2 = CodeCache(root)
    c2.get_or_build(key(1), ARCH, Builder())
    assert c2.stats["disk_hits"] == 1 and c2.stats["compiles"] == 0


def test_cache_dir_replaced_by_a_file_during_a_build_degrades_once(tmp_path):
    root = tmp_path / "cache"

    def swap():
        shutil.rmtree(root)
        root.write_text("not a directory any more")

    c = CodeCache(root)
    with Recorder() as rec:
        r1 = c.get_or_build(key(1), ARCH, Builder("one", during=swap))
        r2 = c.get_or_build(key(2), ARCH, Builder("two"))
        r3 = c.get_or_build(key(3), "gfx90a", Builder("three"))
    assert (r1, r2, r3) == (fake_result("one"), fake_result("two"), fake_result("three"))
    assert len(rec.cache) == 1, [str(w.message) for w in rec.all]
    assert root.is_file()


def test_cache_dir_deleted_between_processes_with_entries_in_memory(tmp_path):
    """Two caches on one directory (two processes): one deletes everything, the other carries on."""
    root = tmp_path / "cache"
    a, b = CodeCache(root), CodeCache(root)
    a.get_or_build(key(1), ARCH, Builder("one"))
    b.get_or_build(key(1), ARCH, Builder("unused"))
    assert b.stats["disk_hits"] == 1
    shutil.rmtree(root)
    with Recorder() as rec:
        assert b.get_or_build(key(1), ARCH, Builder("unused")) == fake_result("one")   # memory
        assert a.get_or_build(key(2), ARCH, Builder("two")) == fake_result("two")       # rebuilt dir
        assert b.get_or_build(key(2), ARCH, Builder("unused")) == fake_result("two")   # a's new entry
    assert not rec.cache
    assert b.stats["disk_hits"] == 2


# ---- a lock left by a killed process --------------------------------------------------------------------------------
KILLED_WRITER = r'''
import os, sys
from jitgemm.runtime import cache as cache_mod
from jitgemm.runtime.types import CompileResult
root, key = sys.argv[1], sys.argv[2]
def stall(src, dst):   # the entry is written to its temp file; stop just before the rename
    print("publishing", src, flush=True)
    sys.stdin.readline()
cache_mod.os.replace = stall
c = cache_mod.CodeCache(root)
c.get_or_build(key, "sm_90a", lambda: CompileResult(code=b"\x7fELF" + b"half" * 30, lowered={"k": "_Z1kv"},
                                                     log="", compiler="fake"))
'''


def _killed_mid_publish(tmp_path, root: Path, k: str) -> Path:
    """Runs a process that takes the key's lock, writes the temp file, and is SIGKILLed before the rename."""
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    p = subprocess.Popen([sys.executable, str(script), str(root), k], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline().split()
        assert line and line[0] == "publishing", (line, p.stderr.read() if p.poll() is not None else "")
        tmp = Path(line[1])
        assert tmp.is_file() and tmp.name.startswith(".tmp-")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    return tmp


def test_lock_of_a_process_killed_mid_publish_does_not_block(tmp_path):
    root = tmp_path / "cache"
    k = key("killed")
    _killed_mid_publish(tmp_path, root, k)
    c = CodeCache(root)
    lock = Path(str(c.path(k, ARCH)) + ".lock")
    assert lock.exists()                      # the lock file is still there: only the process died
    assert not c.path(k, ARCH).exists()       # and it never published

    result, rec_box = [], []

    def compile_now():
        with Recorder() as rec:
            result.append(c.get_or_build(k, ARCH, Builder("after")))
        rec_box.append(rec.cache)

    t = threading.Thread(target=compile_now, daemon=True)
    t.start()
    t.join(timeout=60)   # the package's own lock timeout is 600 s: a stale lock would show as a hang
    assert not t.is_alive(), "compile blocked on the dead process's lock"
    assert result == [fake_result("after")] and c.stats["compiles"] == 1
    assert len(rec_box[0]) <= 1
    assert decode_entry(c.path(k, ARCH).read_bytes(), ARCH) == fake_result("after")
    assert [p.stem for p, _, _ in c.entries()] == [k]   # the dead writer's temp file is never an entry
    assert c2_hit(root, k)


def c2_hit(root: Path, k: str) -> bool:
    """A further process finds the surviving entry on disk."""
    c2 = CodeCache(root)
    c2.get_or_build(k, ARCH, Builder("unused"))
    return c2.stats["disk_hits"] == 1 and c2.stats["compiles"] == 0


def test_clear_removes_temp_files_of_a_killed_writer(tmp_path):
    root = tmp_path / "cache"
    _killed_mid_publish(tmp_path, root, key("killed-clear"))
    c = CodeCache(root)
    c.get_or_build(key("other"), ARCH, Builder())
    c.clear()
    assert not tmp_files(root), tmp_files(root)
