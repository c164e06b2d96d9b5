"""The code-object cache: one in-memory dict and one disk directory laid out by arch.

Disk entries are published atomically (temp file + rename), guarded per key by a file lock so
concurrent processes compile a key once, carry a checksum (a bad entry is deleted and rebuilt),
and are evicted least-recently-used above a size cap. An unwritable directory degrades to
memory-only with a single warning."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

from .. import config
from .types import CompileResult

CACHE_ABI = 1          # bump when the entry format or anything that shapes code changes meaning
_MAGIC = b"JGC1"
_SUFFIX = ".jgc"


class CacheWarning(UserWarning):
    """The disk cache could not be used as asked; jitgemm carries on without it."""


def make_key(parts: dict) -> str:
    blob = json.dumps({"abi": CACHE_ABI, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _arch_dir(arch: str) -> str:
    return arch.replace(":", "_").replace("/", "_")


def encode_entry(result: CompileResult, arch: str) -> bytes:
    import msgpack
    payload = msgpack.packb({"code": result.code, "lowered": result.lowered, "log": result.log,
                             "compiler": result.compiler, "resources": result.resources, "arch": arch},
                            use_bin_type=True)
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _payload(blob: bytes) -> dict | None:
    """An entry's fields; None when it is truncated or corrupted."""
    import msgpack
    if len(blob) < 36 or blob[:4] != _MAGIC:
        return None
    payload = blob[36:]
    if hashlib.sha256(payload).digest() != blob[4:36]:
        return None
    try:
        d = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    return d if isinstance(d, dict) else None


def decode_entry(blob: bytes, arch: str) -> CompileResult | None:
    """None when the entry is truncated, corrupted, or built for another arch."""
    d = _payload(blob)
    if d is None or d.get("arch") != arch:
        return None
    return CompileResult(code=d["code"], lowered=d["lowered"], log=d["log"], compiler=d["compiler"],
                         resources=d.get("resources", {}))


class CodeCache:
    def __init__(self, root: Path | str | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else config.cache_dir()
        self.max_bytes = config.cache_max_bytes() if max_bytes is None else max_bytes
        self._mem: dict[str, CompileResult] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._disk_ok = True
        self._warned = False
        self.stats = {"memory_hits": 0, "disk_hits": 0, "compiles": 0, "bad_entries": 0}

    # ---- paths and warnings ----------------------------------------------------------------------
    def path(self, key: str, arch: str) -> Path:
        return self.root / _arch_dir(arch) / (key + _SUFFIX)

    def _warn_once(self, msg: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(msg, CacheWarning, stacklevel=4)

    # ---- lookups -------------------------------------------------------------------------------------
    def get_or_build(self, key: str, arch: str, build: Callable[[], CompileResult]) -> CompileResult:
        hit = self._mem.get(key)
        if hit is not None:
            self.stats["memory_hits"] += 1
            return hit
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:  # threads of this process: one compile per key
            hit = self._mem.get(key)
            if hit is not None:
                self.stats["memory_hits"] += 1
                return hit
            result = self._read(key, arch)
            if result is None:
                result = self._build_locked(key, arch, build)
            self._mem[key] = result
            return result

    def _read(self, key: str, arch: str) -> CompileResult | None:
        if not self._disk_ok:
            return None
        path = self.path(key, arch)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        result = decode_entry(blob, arch)
        if result is None:
            self.stats["bad_entries"] += 1
            self._warn_once(f"jitgemm cache entry {path} was corrupt or for another arch; rebuilding it")
            self._remove(path)
            return None
        self.stats["disk_hits"] += 1
        try:
            os.utime(path)  # LRU: a hit makes the entry young again
        except OSError:
            pass
        return result

    def _build_locked(self, key: str, arch: str, build: Callable[[], CompileResult]) -> CompileResult:
        lock = self._file_lock(key, arch)
        if lock is None:
            self.stats["compiles"] += 1
            result = build()
            self._publish(key, arch, result)
            return result
        with lock:  # processes: the first compiles, the rest find its entry
            result = self._read(key, arch)
            if result is not None:
                return result
            self.stats["compiles"] += 1
            result = build()
            self._publish(key, arch, result)
            return result

    def _file_lock(self, key: str, arch: str):
        if not self._disk_ok:
            return None
        import filelock
        path = self.path(key, arch)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(path) + ".lock", timeout=600)
            lock.acquire()
            lock.release()
            return lock
        except (OSError, filelock.Timeout) as e:
            self._disk_ok = False
            self._warn_once(f"jitgemm cache directory {self.root} is not usable ({e}); caching in memory only")
            return None

    def _publish(self, key: str, arch: str, result: CompileResult) -> None:
        if not self._disk_ok:
            return
        path = self.path(key, arch)
        blob = encode_entry(result, arch)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=_SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            self._warn_once(f"jitgemm could not write cache entry {path} ({e}); it stays in memory only")
            if tmp is not None:
                self._remove(Path(tmp))
            return
        self.evict(keep=path)

    def peek(self, key: str, arch: str) -> CompileResult | None:
        """A disk entry if there is a valid one (no build, no lock)."""
        return self._read(key, arch)

    def put(self, key: str, arch: str, result: CompileResult) -> None:
        """Publish a result under an extra key (atomic, like any entry)."""
        self._publish(key, arch, result)

    def invalidate(self, key: str, arch: str) -> None:
        """Forget an entry that failed to load, so the next lookup rebuilds it."""
        self._mem.pop(key, None)
        self._remove(self.path(key, arch))

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    # ---- listing and eviction --------------------------------------------------------------------------
    def entries(self, arch: str | None = None) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of every entry on disk, oldest first."""
        base = self.root / _arch_dir(arch) if arch else self.root
        out = []
        if base.is_dir():
            for p in base.rglob("*" + _SUFFIX):
                if p.name.startswith(".tmp-"):
                    continue
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((p, st.st_size, st.st_mtime))
        out.sort(key=lambda e: e[2])
        return out

    @staticmethod
    def describe(path: Path) -> dict | None:
        """What an entry file records about itself: arch, kernels (name expressions), compiler;
        None when it cannot be read or is corrupt."""
        try:
            d = _payload(path.read_bytes())
        except OSError:
            return None
        if d is None:
            return None
        return {"arch": d.get("arch"), "kernels": list(d.get("lowered") or {}), "compiler": d.get("compiler")}

    def size(self, arch: str | None = None) -> int:
        return sum(s for _, s, _ in self.entries(arch))

    def evict(self, keep: Path | None = None) -> int:
        """Delete least-recently-used entries until the disk level fits max_bytes (and temp files
        older than an hour: no live writer takes that long)."""
        for p in self.stale_temps():
            self._remove(p)
        entries = self.entries()
        total = sum(s for _, s, _ in entries)
        removed = 0
        for p, s, _ in entries:
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            self._remove(p)
            self._remove(Path(str(p) + ".lock"))
            total -= s
            removed += 1
        return removed

    def stale_temps(self, arch: str | None = None, older_than_s: float = 3600.0) -> list[Path]:
        """Temp files a writer killed between write and rename left behind (never valid entries)."""
        import time
        base = self.root / _arch_dir(arch) if arch else self.root
        now = time.time()
        out = []
        if base.is_dir():
            for p in base.rglob(".tmp-*" + _SUFFIX):
                try:
                    if now - p.stat().st_mtime >= older_than_s:
                        out.append(p)
                except OSError:
                    continue
        return out

    def clear(self, arch: str | None = None) -> int:
        n = 0
        for p, _, _ in self.entries(arch):
            self._remove(p)
            self._remove(Path(str(p) + ".lock"))
            n += 1
        for p in self.stale_temps(arch, older_than_s=0.0):
            self._remove(p)
        self._mem.clear()
        return n


_default: CodeCache | None = None


def default_cache() -> CodeCache:
    global _default
    if _default is None or _default.root != config.cache_dir():
        _default = CodeCache()
    return _default
