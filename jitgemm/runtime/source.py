"""Kernel sources: find kernels_src, read a file with its #include closure, hash the closure.

Editing any header a kernel includes changes its digest, and so its cache key."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def kernels_dir() -> Path:
    """The installed copy (jitgemm/kernels_src) or, in a source checkout, <repo>/kernels_src."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "kernels_src", here.parent / "kernels_src"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kernels_src not found next to {here}")


@dataclass(frozen=True)
class Source:
    filename: str
    text: str
    closure: tuple[str, ...]  # the file and every header it includes, in first-seen order
    digest: str               # sha256 over (name, content) of the whole closure


def _closure(root: Path, name: str, seen: list[str]) -> None:
    """`name` is relative to root; a quoted include is looked up next to the including file first,
    then in root (what the compilers do with -I root)."""
    if name in seen:
        return
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"kernel source {name!r} not found in {root}")
    seen.append(name)
    here = Path(name).parent
    for inc in _INCLUDE.findall(path.read_text()):
        for cand in (here / inc, Path(inc)):
            if (root / cand).is_file():
                _closure(root, str(cand), seen)
                break


def load_source(filename: str, root: Path | None = None) -> Source:
    root = root or kernels_dir()
    return _load_cached(str(root), filename, _mtimes(root, filename))


def _mtimes(root: Path, filename: str) -> tuple:
    # cheap staleness check: a changed file (mtime or size) re-reads the closure
    names: list[str] = []
    _closure(root, filename, names)
    return tuple((n, (root / n).stat().st_mtime_ns, (root / n).stat().st_size) for n in names)


@lru_cache(maxsize=64)
def _load_cached(root: str, filename: str, _stamp: tuple) -> Source:
    base = Path(root)
    names: list[str] = []
    _closure(base, filename, names)
    h = hashlib.sha256()
    for n in names:
        data = (base / n).read_bytes()
        h.update(n.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return Source(filename, (base / filename).read_text(), tuple(names), h.hexdigest())
