"""Kernel sources: find kernels_src, read a file with its #include closure, hash the closure.

Editing any header a kernel includes changes its digest, and so its cache key. The closure is the
vendor's: an #include under `#if defined(JG_NV)` belongs to NVIDIA's closure only, one under its
`#else` (or under `#if defined(JG_AMD)`) to AMD's only, so an edit to kernels_src/amd/ leaves every
NVIDIA cache entry valid, and the reverse. Other conditions are not evaluated: their includes count
for both vendors (an over-wide closure only costs a recompile, never a stale entry)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
_DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
VENDOR_MACROS = {"cuda": "JG_NV", "hip": "JG_AMD"}   # what each backend defines (-D...=1)


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


def _vendor_test(kind: str, cond: str) -> tuple[str | None, bool]:
    """(the vendor macro a condition requires, whether that is all it says): `defined(JG_NV)` or
    `ifdef JG_NV` -> ("JG_NV", True); `defined(JG_AMD) && X` -> ("JG_AMD", False); else (None, False)."""
    c = re.sub(r"\s+", "", cond.split("//", 1)[0])
    if kind == "ifdef" and c in VENDOR_MACROS.values():
        return c, True
    if kind not in ("if", "elif"):
        return None, False
    for macro in VENDOR_MACROS.values():
        for form in (f"defined({macro})", f"defined{macro}"):
            if c == form:
                return macro, True
            if c.startswith(form + "&&") and "||" not in c:
                return macro, False
    return None, False


def _includes(text: str, vendor: str | None) -> list[str]:
    """The quoted includes of a file that `vendor` ('cuda' or 'hip'; None: both) compiles."""
    mine = VENDOR_MACROS.get(vendor) if vendor else None
    stack: list[list] = []   # per open #if: [vendor macro it requires, exact?, this branch counts?]
    out = []
    for line in text.splitlines():
        d = _DIRECTIVE.match(line)
        if d:
            kind, cond = d.group(1), d.group(2)
            if kind in ("if", "ifdef", "ifndef"):
                macro, exact = _vendor_test(kind, cond)
                stack.append([macro, exact, mine is None or macro is None or macro == mine])
            elif kind == "elif" and stack:
                macro, _ = _vendor_test(kind, cond)
                stack[-1] = [macro, False, mine is None or macro is None or macro == mine]
            elif kind == "else" and stack:
                macro, exact, _ = stack[-1]
                # the #else of an exact vendor test is the other vendor's branch; of anything else, anyone's
                stack[-1][2] = mine is None or not exact or macro != mine
            elif kind == "endif" and stack:
                stack.pop()
            continue
        inc = _INCLUDE.match(line)
        if inc and all(frame[2] for frame in stack):
            out.append(inc.group(1))
    return out


def _closure(root: Path, name: str, seen: list[str], vendor: str | None = None) -> None:
    """`name` is relative to root; a quoted include is looked up next to the including file first,
    then in root (what the compilers do with -I root)."""
    if name in seen:
        return
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"kernel source {name!r} not found in {root}")
    seen.append(name)
    here = Path(name).parent
    for inc in _includes(path.read_text(), vendor):
        for cand in (here / inc, Path(inc)):
            if (root / cand).is_file():
                _closure(root, str(cand), seen, vendor)
                break


def load_source(filename: str, root: Path | None = None, vendor: str | None = None) -> Source:
    """A kernel file with the closure `vendor` ('cuda' / 'hip'; None: every include) compiles."""
    root = root or kernels_dir()
    return _load_cached(str(root), filename, vendor, _mtimes(root, filename, vendor))


def _mtimes(root: Path, filename: str, vendor: str | None) -> tuple:
    # cheap staleness check: a changed file (mtime or size) re-reads the closure
    names: list[str] = []
    _closure(root, filename, names, vendor)
    return tuple((n, (root / n).stat().st_mtime_ns, (root / n).stat().st_size) for n in names)


@lru_cache(maxsize=128)
def _load_cached(root: str, filename: str, vendor: str | None, _stamp: tuple) -> Source:
    base = Path(root)
    names: list[str] = []
    _closure(base, filename, names, vendor)
    h = hashlib.sha256()
    for n in names:
        data = (base / n).read_bytes()
        h.update(n.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return Source(filename, (base / filename).read_text(), tuple(names), h.hexdigest())
