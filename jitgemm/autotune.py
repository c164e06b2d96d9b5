"""JITGEMM_AUTOTUNE=1: the first call of a 16-bit shape this device has no tuning for tunes it on the
spot (jitgemm.tuning, seconds per shape), then plans from the result like any `jitgemm tune` run.

Never during graph capture (the tuner allocates, synchronizes and launches on its own streams, which a
capture forbids): a call made while its stream captures runs the default rule, is not tuned, and
`explain` says why. Each shape is tried once per process; a tuning that fails warns once and leaves
the default rule in place."""
from __future__ import annotations

import threading
import warnings

import sys

from . import api, config, tuned

_tried: set[tuple] = set()
_lock = threading.Lock()


class AutotuneWarning(UserWarning):
    """JITGEMM_AUTOTUNE could not tune a shape: the default rule runs."""


def needed(device_name: str, n: int, m: int, k: int) -> bool:
    """Whether this call's shape has no tuning here for its N range (N <= 16 as a whole, or its bucket)."""
    if n <= 16:
        return tuned.exact(device_name, "skinny", m, k) is None
    from .tuning import _bucket
    row = tuned.exact(device_name, "moderate", m, k)
    return row is None or _bucket(n) not in row[2]


def maybe_tune(backend, device: int, dtype: str, n: int, m: int, k: int, stream: int) -> str:
    """Tune this call's shape if JITGEMM_AUTOTUNE is on and it needs it; returns what happened: "" (nothing
    to do), "tuned", "capture" (not tuned: the stream captures a graph) or "failed"."""
    if not config.settings().autotune or backend.name != "cuda":
        return ""
    name = backend.device_info(device).name
    if not needed(name, n, m, k):
        return ""
    from .tuning import SMALL_BUCKETS, _bucket
    ns = SMALL_BUCKETS if n <= 16 else (_bucket(n),)
    key = (name, dtype, m, k, ns)
    if key in _tried:
        return ""
    if backend.stream_capturing(stream, device):
        return "capture"
    with _lock:
        if key in _tried:
            return ""
        _tried.add(key)
        from . import tuning
        try:
            tuning.tune([(f"m{m}.k{k}", m, k)], dtype=dtype, n=ns, progress=False, device=device)
        except Exception as e:  # the call itself must still run: the default rule does
            warnings.warn(f"JITGEMM_AUTOTUNE could not tune [{m}x{k}] {dtype} at N={n} ({type(e).__name__}: {e}); "
                          f"the default rule runs", AutotuneWarning, stacklevel=4)
            return "failed"
    return "tuned"


def status(device_name: str, n: int, m: int, k: int) -> str:
    """What explain adds about autotuning for this shape ("" when JITGEMM_AUTOTUNE is off or it is tuned)."""
    if not config.settings().autotune or not needed(device_name, n, m, k):
        return ""
    return ("; JITGEMM_AUTOTUNE=1: not tuned yet, the next call outside graph capture tunes it (a call during "
            "capture is never tuned: it runs the rule above)")


api.AUTOTUNE = sys.modules[__name__]  # the API calls maybe_tune and status through this
