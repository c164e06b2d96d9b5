"""The code-object cache with fake builds: memory/disk hits, keys, cross-process locking, damaged
entries, unusable directories, LRU eviction. No compiler needed except in the cache_key tests."""
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from jitgemm import config
from jitgemm.runtime import cache as cache_mod
from jitgemm.runtime import compiler
from jitgemm.runtime.compiler import Compiler
from jitgemm.runtime import jit, source
from jitgemm.runtime.types import CompileOptions, CompileResult
from jitgemm.runtime.cache import CacheWarning, CodeCache, decode_entry, encode_entry, make_key
from jitgemm.runtime.jit import KernelInstance, cache_key

REPO = Path(__file__).resolve().parent.parent
ARCH = "sm_90a"


def fake_result(tag: str, size: int = 64) -> CompileResult:
    body = (tag.encode() * (size // max(len(tag), 1) + 1))[:size]
    return CompileResult(code=b"\x7fELF" + body, lowered={"k": "_Z1kv"}, log=f"log {tag}",
                         compiler="fake-1.0", resources={"_Z1kv": {"registers": 32}})


class Builder:
    """A build callable that counts its calls."""

    def __init__(self, tag="x", size=64, sleep=0.0):
        self.tag, self.size, self.sleep, self.calls = tag, size, sleep, 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        return fake_result(self.tag, self.size)


def key(i) -> str:
    return make_key({"test": i})


def cache_warnings(record):
    return [w for w in record if issubclass(w.category, CacheWarning)]


# ---- hits -----------------------------------------------------------------------------------------------
def test_miss_then_memory_hit_then_disk_hit(tmp_path):
    c = CodeCache(tmp_path)
    b = Builder("a")
    r1 = c.get_or_build(key(1), ARCH, b)
    assert b.calls == 1 and c.stats == {"memory_hits": 0, "disk_hits": 0, "compiles": 1, "bad_entries": 0}
    r2 = c.get_or_build(key(1), ARCH, b)
    assert r2 is r1 and b.calls == 1 and c.stats["memory_hits"] == 1
    p = c.path(key(1), ARCH)
    assert p == tmp_path / ARCH / (key(1) + ".jgc") and p.is_file()

    c2 = CodeCache(tmp_path)  # a new process, in effect
    b2 = Builder("other")
    r3 = c2.get_or_build(key(1), ARCH, b2)
    assert b2.calls == 0
    assert c2.stats == {"memory_hits": 0, "disk_hits": 1, "compiles": 0, "bad_entries": 0}
    assert r3 == r1  # every field round-trips: code, lowered, log, compiler, resources
    c2.get_or_build(key(1), ARCH, b2)
    assert c2.stats["memory_hits"] == 1 and c2.stats["disk_hits"] == 1


def test_arch_with_features_gets_its_own_directory(tmp_path):
    c = CodeCache(tmp_path)
    c.get_or_build(key(1), "gfx942:sramecc+:xnack-", Builder())
    assert (tmp_path / "gfx942_sramecc+_xnack-" / (key(1) + ".jgc")).is_file()
    assert [p.parent.name for p, _, _ in c.entries("gfx942:sramecc+:xnack-")] == ["gfx942_sramecc+_xnack-"]
    assert c.entries("gfx90a") == []


def test_threads_build_a_key_once(tmp_path):
    c = CodeCache(tmp_path)
    b = Builder(sleep=0.2)
    results = []
    ts = [threading.Thread(target=lambda: results.append(c.get_or_build(key(1), ARCH, b))) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert b.calls == 1 and len(results) == 8
    assert all(r is results[0] for r in results)


def test_encode_decode_round_trip_and_rejections():
    r = fake_result("rt")
    blob = encode_entry(r, ARCH)
    assert blob[:4] == b"JGC1"
    assert decode_entry(blob, ARCH) == r
    assert decode_entry(blob, "sm_80") is None          # another arch
    assert decode_entry(blob[:-1], ARCH) is None        # truncated
    assert decode_entry(blob[:20], ARCH) is None        # shorter than the header
    flipped = bytearray(blob)
    flipped[-3] ^= 0x01
    assert decode_entry(bytes(flipped), ARCH) is None   # checksum catches a single bit
    assert decode_entry(b"XXXX" + blob[4:], ARCH) is None


# ---- keys ------------------------------------------------------------------------------------------------
def test_make_key_is_canonical_and_sensitive():
    base = {"source": "d" * 64, "name": "k<1>", "flags": ["-DA=1"], "arch": "sm_90a", "compiler": "nvrtc-13.0"}
    k = make_key(base)
    assert len(k) == 64 and int(k, 16) >= 0
    assert make_key(dict(reversed(list(base.items())))) == k  # order of the dict does not matter
    for field, value in [("flags", ["-DA=2"]), ("flags", ["-DA=1", "-DB=1"]), ("arch", "sm_80"),
                         ("compiler", "nvrtc-13.1"), ("name", "k<2>"), ("source", "e" * 64)]:
        assert make_key({**base, field: value}) != k, field
    # the ABI version is part of the key
    assert make_key(base) != make_key({**base, "abi": cache_mod.CACHE_ABI + 1})


@pytest.fixture
def kdir(tmp_path):
    d = tmp_path / "kernels"
    d.mkdir()
    (d / "a.hip").write_text('#include "b.h"\n#include <cstdint>\n#include "missing.h"\n__global__ void k() {}\n')
    (d / "b.h").write_text('#pragma once\n#include "c.h"\n#include "a.hip"\n')  # a cycle must not recurse forever
    (d / "c.h").write_text("#define C_VALUE 1\n")
    (d / "unrelated.h").write_text("#define U 1\n")
    return d


def _bump(path: Path, text: str):
    """Rewrite a file and make sure its mtime moves, whatever the filesystem's clock granularity."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_load_source_closure_and_header_digest(kdir):
    s1 = source.load_source("a.hip", root=kdir)
    assert s1.closure == ("a.hip", "b.h", "c.h")
    assert s1.text == (kdir / "a.hip").read_text() and s1.filename == "a.hip"
    assert source.load_source("a.hip", root=kdir).digest == s1.digest

    _bump(kdir / "unrelated.h", "#define U 2\n")
    assert source.load_source("a.hip", root=kdir).digest == s1.digest

    _bump(kdir / "c.h", "#define C_VALUE 2\n")  # same size, different content
    s2 = source.load_source("a.hip", root=kdir)
    assert s2.digest != s1.digest and s2.text == s1.text

    _bump(kdir / "c.h", "#define C_VALUE 1\n")  # content-addressed: back to the old digest
    assert source.load_source("a.hip", root=kdir).digest == s1.digest

    with pytest.raises(FileNotFoundError, match="nope.hip"):
        source.load_source("nope.hip", root=kdir)


def test_load_source_digest_covers_nested_relative_includes(tmp_path):
    d = tmp_path / "k"
    (d / "sub").mkdir(parents=True)
    (d / "a.hip").write_text('#include "sub/x.h"\n')
    (d / "sub" / "x.h").write_text('#include "y.h"\n')   # the preprocessor finds sub/y.h first
    (d / "sub" / "y.h").write_text("#define Y 1\n")
    before = source.load_source("a.hip", root=d)
    _bump(d / "sub" / "y.h", "#define Y 2\n")
    after = source.load_source("a.hip", root=d)
    assert "sub/y.h" in after.closure or after.digest != before.digest


def test_each_vendor_closure_holds_only_what_that_vendor_compiles():
    text = """#include "both.h"
#if defined(JG_NV)
#include "nv.h"
#if __CUDA_ARCH__ >= 900
#include "nv90.h"
#endif
#else  // JG_AMD
#include "amd.h"
#endif
#ifdef JG_AMD
#include "amd2.h"
#endif
#if defined(JG_AMD) && defined(__gfx942__)
#include "gfx942.h"
#else
#include "either.h"
#endif
#if defined(JG_NV) || defined(JG_AMD)
#include "any.h"
#endif
#if SOMETHING
#include "unknown.h"
#elif defined(JG_NV)
#include "nv_elif.h"
#endif
"""
    assert source._includes(text, "cuda") == ["both.h", "nv.h", "nv90.h", "either.h", "any.h", "unknown.h", "nv_elif.h"]
    assert source._includes(text, "hip") == ["both.h", "amd.h", "amd2.h", "gfx942.h", "either.h", "any.h", "unknown.h"]
    assert len(source._includes(text, None)) == 10  # every include, for a caller that names no vendor


def test_an_edit_on_one_vendors_side_leaves_the_others_keys(tmp_path):
    """kernels_src by vendor: touching an AMD-only header changes no NVIDIA digest (so no NVIDIA cache key),
    and the reverse; the shared platform header changes both."""
    import shutil
    root = tmp_path / "k"
    shutil.copytree(source.kernels_dir(), root)
    entries = sorted(p.name for p in root.glob("*.hip"))
    def digests():
        return {(f, v): source.load_source(f, root=root, vendor=v).digest for f in entries for v in ("cuda", "hip")}
    base = digests()
    for header, changed_vendor in (("amd/skinny.h", "hip"), ("amd/common.h", "hip"), ("nv/core.h", "cuda"),
                                   ("nv/wgmma.h", "cuda")):
        _bump(root / header, (root / header).read_text() + "// touched\n")
        now = digests()
        moved = {k for k in base if now[k] != base[k]}
        assert moved and all(v == changed_vendor for _, v in moved), (header, moved)
        base = now
    _bump(root / "jg_platform.h", (root / "jg_platform.h").read_text() + "// touched\n")
    now = digests()
    assert all(now[k] != base[k] for k in base), "the shared header is in every closure"


class FakeCompiler(Compiler):
    vendor = "cuda"

    def __init__(self, ident="fakecc-1"):
        self.ident = ident

    def identity(self):
        return self.ident

    def flags(self, options: CompileOptions):
        return [f"--arch={options.arch}", *options.define_flags(), *(f"-I{d}" for d in options.include_dirs)]


class FakeBackend:
    name = "fake"

    def __init__(self, ident="fakecc-1"):
        self.compiler = FakeCompiler(ident)


def test_cache_key_follows_headers_defines_arch_compiler(kdir, monkeypatch):
    monkeypatch.setattr(compiler, "load_source", functools.partial(source.load_source, root=kdir))
    be = FakeBackend()
    inst = KernelInstance("a.hip", "k")
    k1 = cache_key(inst, ARCH, be)
    assert cache_key(inst, ARCH, be) == k1

    _bump(kdir / "c.h", "#define C_VALUE 7\n")
    k2 = cache_key(inst, ARCH, be)
    assert k2 != k1

    assert cache_key(KernelInstance("a.hip", "k", (("X", "1"),)), ARCH, be) != k2
    assert cache_key(KernelInstance("a.hip", "k", (("X", "2"),)), ARCH, be) != \
        cache_key(KernelInstance("a.hip", "k", (("X", "1"),)), ARCH, be)
    assert cache_key(KernelInstance("a.hip", "k2"), ARCH, be) != k2
    assert cache_key(inst, "sm_80", be) != k2
    assert cache_key(inst, ARCH, FakeBackend("fakecc-2")) != k2


def test_cache_key_ignores_where_the_kernels_live(monkeypatch):
    """-I paths are machine paths; the key must be the same on every machine (real NVRTC backend)."""
    from jitgemm.runtime.backend import get_backend
    be = get_backend("cuda")
    if not be.compiler.available()[0]:
        pytest.skip("NVRTC unavailable")
    inst = KernelInstance("scale.hip", "jg_scale_f32")
    k1 = cache_key(inst, ARCH, be)
    monkeypatch.setattr(jit, "kernels_dir", lambda: Path("/somewhere/else/kernels_src"))
    assert "-I/somewhere/else/kernels_src" in be.compiler.flags(inst.options(ARCH))
    assert cache_key(inst, ARCH, be) == k1


# ---- several processes, one build ---------------------------------------------------------------------
WORKER = r'''
import json, os, sys, time
from jitgemm.runtime.types import CompileResult
from jitgemm.runtime.cache import CodeCache
root, counter, start, key = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def build():
    with open(counter, "a") as f:
        f.write(f"start {os.getpid()} {time.time()}\n")
    time.sleep(0.5)
    with open(counter, "a") as f:
        f.write(f"end {os.getpid()} {time.time()}\n")
    return CompileResult(code=b"\x7fELF" + str(os.getpid()).encode() * 50, lowered={"k": "_Z1kv"}, log="",
                         compiler="fake")
while time.time() < start:
    time.sleep(0.002)
c = CodeCache(root)
t0 = time.time()
r = c.get_or_build(key, "sm_90a", build)
print(json.dumps({"pid": os.getpid(), "t0": t0, "code": r.code.hex(), "stats": c.stats}))
'''


def test_processes_cold_building_one_key_build_once(tmp_path):
    root, counter, script = tmp_path / "cache", tmp_path / "counter.txt", tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.time() + 2.0  # all four are imported and waiting before the race begins
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(counter), str(start), key(42)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))

    lines = counter.read_text().splitlines()
    starts = [l for l in lines if l.startswith("start")]
    assert len(starts) == 1, lines
    builder_pid = int(starts[0].split()[1])
    build_end = float(next(l for l in lines if l.startswith("end")).split()[2])
    # identical bytes everywhere, and they are the builder's bytes
    assert len({o["code"] for o in outs}) == 1
    assert bytes.fromhex(outs[0]["code"]) == b"\x7fELF" + str(builder_pid).encode() * 50
    assert sum(o["stats"]["compiles"] for o in outs) == 1
    assert sum(o["stats"]["disk_hits"] for o in outs) == 3
    # the race really happened: at least two of the others asked while the build was running
    assert sum(o["t0"] < build_end for o in outs if o["pid"] != builder_pid) >= 2, outs
    assert len(CodeCache(root).entries()) == 1
    assert not list((root / ARCH).glob(".tmp-*"))


# ---- damaged entries ----------------------------------------------------------------------------------------
def _truncate_half(b):
    return b[: len(b) // 2]


def _flip_payload_bit(b):
    a = bytearray(b)
    a[len(a) - 10] ^= 0x10
    return bytes(a)


def _flip_checksum_bit(b):
    a = bytearray(b)
    a[10] ^= 0x01
    return bytes(a)


@pytest.mark.parametrize("damage", [_truncate_half, _flip_payload_bit, _flip_checksum_bit, lambda b: b[:30],
                                    lambda b: b"", lambda b: b"garbage" * 20],
                         ids=["truncated", "payload-bit", "checksum-bit", "header-only", "empty", "garbage"])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage):
    CodeCache(tmp_path).get_or_build(key(1), ARCH, Builder("good"))
    p = CodeCache(tmp_path).path(key(1), ARCH)
    p.write_bytes(damage(p.read_bytes()))

    c = CodeCache(tmp_path)
    b = Builder("good")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = c.get_or_build(key(1), ARCH, b)
        c.get_or_build(key(1), ARCH, b)
    assert r == fake_result("good")
    assert b.calls == 1
    assert c.stats["bad_entries"] == 1 and c.stats["compiles"] == 1 and c.stats["disk_hits"] == 0
    ws = cache_warnings(rec)
    assert len(ws) == 1 and str(p) in str(ws[0].message)
    # the rebuilt entry is whole again and serves the next process
    assert decode_entry(p.read_bytes(), ARCH) == r
    c3 = CodeCache(tmp_path)
    c3.get_or_build(key(1), ARCH, Builder())
    assert c3.stats["disk_hits"] == 1 and c3.stats["compiles"] == 0


def test_entry_of_another_arch_renamed_into_place_is_rebuilt(tmp_path):
    c = CodeCache(tmp_path)
    c.get_or_build(key(1), "sm_80", Builder("for-sm80"))
    wrong = c.path(key(1), "sm_80")
    right = c.path(key(1), ARCH)
    right.parent.mkdir(parents=True, exist_ok=True)
    os.replace(wrong, right)

    c2 = CodeCache(tmp_path)
    b = Builder("for-sm90")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = c2.get_or_build(key(1), ARCH, b)
    assert b.calls == 1 and r == fake_result("for-sm90")
    assert c2.stats["bad_entries"] == 1
    assert len(cache_warnings(rec)) == 1
    assert decode_entry(right.read_bytes(), ARCH) == r


def test_many_bad_entries_warn_once_per_cache(tmp_path):
    c0 = CodeCache(tmp_path)
    for i in range(3):
        c0.get_or_build(key(i), ARCH, Builder(str(i)))
        c0.path(key(i), ARCH).write_bytes(b"JGC1 broken")
    c = CodeCache(tmp_path)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for i in range(3):
            c.get_or_build(key(i), ARCH, Builder(str(i)))
    assert c.stats["bad_entries"] == 3 and c.stats["compiles"] == 3
    assert len(cache_warnings(rec)) == 1


# ---- unusable directories ------------------------------------------------------------------------------------
def test_unwritable_root_degrades_to_memory_with_one_warning(tmp_path):
    (tmp_path / "afile").write_text("a regular file, so nothing can be created below it")
    root = tmp_path / "afile" / "cache"
    c = CodeCache(root)
    b = Builder()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r1 = c.get_or_build(key(1), ARCH, b)
        r2 = c.get_or_build(key(2), "gfx90a", b)
        r1b = c.get_or_build(key(1), ARCH, b)
    ws = cache_warnings(rec)
    assert len(ws) == 1, [str(w.message) for w in rec]
    assert "memory only" in str(ws[0].message) and str(root) in str(ws[0].message)
    assert r1b is r1 and r2 == fake_result("x")
    assert b.calls == 2 and c.stats["compiles"] == 2 and c.stats["memory_hits"] == 1
    assert c.entries() == [] and c.size() == 0
    assert c.clear() == 0
    assert (tmp_path / "afile").is_file()


def test_unwritable_root_warning_is_a_usable_pytest_warning(tmp_path):
    (tmp_path / "afile").write_text("x")
    c = CodeCache(tmp_path / "afile" / "cache")
    with pytest.warns(CacheWarning, match="not usable"):
        c.get_or_build(key(1), ARCH, Builder())


def test_cache_dir_deleted_while_running_is_recreated(tmp_path):
    root = tmp_path / "cache"
    c = CodeCache(root)
    b = Builder()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c.get_or_build(key(1), ARCH, b)
        shutil.rmtree(root)
        c.get_or_build(key(2), ARCH, b)
        c.get_or_build(key(1), ARCH, b)  # still in memory
    assert not cache_warnings(rec)
    assert b.calls == 2 and c.stats["memory_hits"] == 1
    assert c.path(key(2), ARCH).is_file()
    assert decode_entry(c.path(key(2), ARCH).read_bytes(), ARCH) == fake_result("x")
    assert [p.stem for p, _, _ in c.entries()] == [key(2)]


def test_stale_lock_file_does_not_block(tmp_path):
    c = CodeCache(tmp_path)
    lock = Path(str(c.path(key(1), ARCH)) + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text("12345 left behind by a process that died")
    b = Builder()
    t0 = time.time()
    c.get_or_build(key(1), ARCH, b)
    assert time.time() - t0 < 5
    assert b.calls == 1 and c.path(key(1), ARCH).is_file()


def test_leftover_temp_files_are_not_entries(tmp_path):
    c = CodeCache(tmp_path)
    c.get_or_build(key(1), ARCH, Builder())
    (tmp_path / ARCH / ".tmp-abc.jgc").write_bytes(b"partial")
    assert [p.stem for p, _, _ in c.entries()] == [key(1)]


# ---- size cap and clearing ---------------------------------------------------------------------------------------
def test_lru_eviction_removes_oldest_used(tmp_path):
    c = CodeCache(tmp_path, max_bytes=10**9)
    for i in range(5):
        c.get_or_build(key(i), ARCH, Builder(f"e{i}", size=1000))
    sizes = {s for _, s, _ in c.entries()}
    assert len(sizes) == 1
    size = sizes.pop()
    now = time.time()
    for i in range(5):  # e0 is the oldest ... e4 the youngest
        os.utime(c.path(key(i), ARCH), (now - 1000 + 10 * i, now - 1000 + 10 * i))
    assert [p.stem for p, _, _ in c.entries()] == [key(i) for i in range(5)]

    # a disk hit makes e1 young again
    c_hit = CodeCache(tmp_path, max_bytes=10**9)
    c_hit.get_or_build(key(1), ARCH, Builder())
    assert c_hit.stats["disk_hits"] == 1
    assert c.path(key(1), ARCH).stat().st_mtime > now - 100

    # room for three: publishing e5 evicts e0, e2, e3 (the least recently used)
    c3 = CodeCache(tmp_path, max_bytes=3 * size)
    c3.get_or_build(key(5), ARCH, Builder("e5", size=1000))
    left = {p.stem for p, _, _ in c3.entries()}
    assert left == {key(4), key(1), key(5)}
    assert c3.size() == 3 * size
    for i in (0, 2, 3):
        assert not c.path(key(i), ARCH).exists()
        assert not Path(str(c.path(key(i), ARCH)) + ".lock").exists()


def test_evict_keeps_the_entry_just_written_even_over_the_cap(tmp_path):
    c = CodeCache(tmp_path, max_bytes=10)  # smaller than any entry
    c.get_or_build(key(1), ARCH, Builder("a"))
    c.get_or_build(key(2), ARCH, Builder("b"))
    assert [p.stem for p, _, _ in c.entries()] == [key(2)]
    c.max_bytes = 0
    assert c.evict() == 1 and c.entries() == []


def test_clear(tmp_path):
    c = CodeCache(tmp_path)
    b = Builder()
    for i in range(3):
        c.get_or_build(key(i), ARCH, b)
    c.get_or_build(key(9), "gfx90a", b)
    assert len(c.entries()) == 4 and c.size() > 0
    assert c.clear("gfx90a") == 1
    assert {p.parent.name for p, _, _ in c.entries()} == {ARCH}
    assert c.clear() == 3
    assert c.entries() == [] and c.size() == 0
    assert not list(tmp_path.rglob("*.lock"))
    c.get_or_build(key(0), ARCH, b)  # memory was cleared too: this builds again
    assert b.calls == 5


def test_invalidate_forgets_memory_and_disk(tmp_path):
    c = CodeCache(tmp_path)
    b = Builder()
    c.get_or_build(key(1), ARCH, b)
    c.invalidate(key(1), ARCH)
    assert not c.path(key(1), ARCH).exists()
    c.get_or_build(key(1), ARCH, b)
    assert b.calls == 2


# ---- configuration ------------------------------------------------------------------------------------------------
def test_max_bytes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGEMM_CACHE_MAX_BYTES", "12345")
    assert CodeCache(tmp_path).max_bytes == 12345
    monkeypatch.setenv("JITGEMM_CACHE_MAX_BYTES", "")
    assert CodeCache(tmp_path).max_bytes == config.DEFAULT_CACHE_MAX_BYTES
    for bad in ("lots", "-1", "1.5"):
        monkeypatch.setenv("JITGEMM_CACHE_MAX_BYTES", bad)
        with pytest.raises(ValueError, match="JITGEMM_CACHE_MAX_BYTES"):
            CodeCache(tmp_path)


def test_default_cache_follows_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGEMM_CACHE_DIR", str(tmp_path / "one"))
    a = cache_mod.default_cache()
    assert a.root == tmp_path / "one" and cache_mod.default_cache() is a
    monkeypatch.setenv("JITGEMM_CACHE_DIR", str(tmp_path / "two"))
    b = cache_mod.default_cache()
    assert b is not a and b.root == tmp_path / "two"
