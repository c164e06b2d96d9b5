"""The user's own tuning: what `jitgemm tune` measured for exact shapes on this machine's GPU.

One tables file (jitgemm.tables schema) per device in the cache directory:
<cache dir>/tuned/<device name slug>.json. Its "key" names what the measurement depends on: the
device, the driver, the compiler and the jitgemm version. The dispatcher reads it before the shipped
tables, for the exact (M, K) it holds. A file that does not parse, or whose key does not match this
machine (a new driver, another jitgemm), is ignored with one warning that says what to do, and never
used. JITGEMM_TUNED=0 ignores every file (to compare with the shipped tables alone)."""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from . import config, tables

KEY_FIELDS = ("device", "driver", "compiler", "jitgemm")


class TunedWarning(UserWarning):
    """A tuning file that is ignored (corrupt, or measured on another machine or version)."""


_cache: dict[tuple, "tables.Tables | None"] = {}
_warned: set[str] = set()
_lock = threading.Lock()


def path(device: str) -> Path:
    """Where the tuning of a device (its name, as the driver reports it) is stored."""
    return config.cache_dir() / "tuned" / f"{tables.slug(device)}.json"


def machine_key(device: str) -> dict:
    """This machine's key for a device: what a tuning measured on it depends on."""
    from .version import __version__
    from .runtime.backend import get_backend
    v = get_backend("cuda").versions()
    return {"device": device, "driver": v.get("driver"), "compiler": v.get("nvrtc"), "jitgemm": __version__}


def current(device: str) -> "tables.Tables | None":
    """The validated tuning of `device` on this machine, or None (no file, JITGEMM_TUNED=0, or a file
    that is ignored: then one TunedWarning says why)."""
    s = config.settings()
    if not device or not s.tuned:
        return None
    ck = (s.generation, device)
    if ck in _cache:
        return _cache[ck]
    with _lock:
        if ck not in _cache:
            _cache[ck] = _read(device)
    return _cache[ck]


def _read(device: str):
    p = path(device)
    if not p.is_file():
        return None
    try:
        t = tables.load(p)
    except tables.TableError as e:
        _warn(p, f"jitgemm ignores the tuning file {p}: {e}. Run `python -m jitgemm tune` again, or delete it")
        return None
    mine = machine_key(device)
    diff = [f"{f} {t.key.get(f)!r} (this machine: {mine[f]!r})" for f in KEY_FIELDS if t.key.get(f) != mine[f]]
    if diff:
        _warn(p, f"jitgemm ignores the tuning file {p}: it was measured with another {'; '.join(diff)}. "
                 f"Run `python -m jitgemm tune` again for this machine")
        return None
    return t


def _warn(p: Path, msg: str) -> None:
    if str(p) not in _warned:
        _warned.add(str(p))
        warnings.warn(msg, TunedWarning, stacklevel=2)


def exact(device: str, family: str, m: int, k: int):
    """The tuned row of this exact (M, K) in a family, or None."""
    t = current(device)
    if t is None:
        return None
    for row in t.family(family):
        if row[0] == m and row[1] == k:
            return row
    return None


def describe(device: str) -> str:
    t = current(device)
    return f"jitgemm tune, {t.source}" if t else "no tuning"


def save(device: str, doc: dict) -> Path:
    """Write a tuning document for `device` atomically (a reader never sees half a file); plans made
    before it are retired (a new settings generation)."""
    p = path(device)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(tables.dumps(doc))
    os.replace(tmp, p)
    _warned.discard(str(p))
    config.reload()
    return p
