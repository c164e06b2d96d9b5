"""Environment settings, read in one place so every module agrees on them."""
from __future__ import annotations

import os
from pathlib import Path

#: default disk-cache cap; a full decode model needs a few hundred instances of ~50 KB
DEFAULT_CACHE_MAX_BYTES = 512 * 1024 * 1024


def cache_dir() -> Path:
    """JITGEMM_CACHE_DIR, else the platform's per-user cache directory."""
    env = os.environ.get("JITGEMM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("jitgemm", appauthor=False))


def cache_max_bytes() -> int:
    raw = os.environ.get("JITGEMM_CACHE_MAX_BYTES")
    if raw is None or raw == "":
        return DEFAULT_CACHE_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"JITGEMM_CACHE_MAX_BYTES must be an integer number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"JITGEMM_CACHE_MAX_BYTES must be >= 0, got {value}")
    return value


def backend_override() -> str | None:
    raw = os.environ.get("JITGEMM_BACKEND", "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw not in ("cuda", "hip"):
        raise ValueError(f"JITGEMM_BACKEND must be 'cuda', 'hip' or unset, got {raw!r}")
    return raw


def debug() -> bool:
    return _flag("JITGEMM_DEBUG", False)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw not in ("0", "false", "no", "off")


def pdl() -> bool:
    """JITGEMM_PDL (default off): programmatic dependent launch on sm_90+. Measured on an H100
    (docs/benchmarks/NOTES.md): slower on most decode shapes, so opt-in only."""
    return _flag("JITGEMM_PDL", False)


def prefetch() -> bool:
    """JITGEMM_PREFETCH (default off): L2-prefetch the head of each block's weight rows on sm_90+
    (measured slower on an H100, e.g. 15.7 vs 11.4 us on llama70b-tp8.qkv)."""
    return _flag("JITGEMM_PREFETCH", False)


def aot_strict() -> bool:
    """JITGEMM_AOT_STRICT=1: use only cache entries built by this very compiler (no AOT-pack reuse)."""
    return _flag("JITGEMM_AOT_STRICT", False)


def blas() -> bool:
    """JITGEMM_BLAS (default on): on NVIDIA, gemm sends a moderate-N shape (N > 16, no bias) to cuBLAS
    where the measured table says cuBLAS is faster than jitgemm's best kernel there. 0: always the kernel."""
    return _flag("JITGEMM_BLAS", True)
