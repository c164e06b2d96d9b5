"""Environment settings, read in one place so every module agrees on them."""
from __future__ import annotations

import os
from dataclasses import dataclass
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
        raise ValueError(f"JITGEMM_BACKEND must be 'cuda', 'hip', 'auto' or unset, got {raw!r}")
    return raw


def debug() -> bool:
    return _flag("JITGEMM_DEBUG", False)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw not in ("0", "false", "no", "off")


def _auto_flag(name: str) -> bool | None:
    """A switch whose unset (or "auto") value leaves the choice to the dispatcher's measured default."""
    return None if os.environ.get(name) in (None, "", "auto") else _flag(name, False)


def aot_strict() -> bool:
    """JITGEMM_AOT_STRICT=1: use only cache entries built by this very compiler (no AOT-pack reuse)."""
    return _flag("JITGEMM_AOT_STRICT", False)


@dataclass(frozen=True)
class Settings:
    """The settings that shape a call's plan, read from the environment once (a call must not pay for
    reading it: `reload()` after changing the environment at run time). `generation` is part of every
    cached plan's key, so a reload retires every plan made under the old settings."""
    generation: int
    nv_tuning: str | None
    pdl: bool | None
    prefetch: bool
    blas: bool
    tuned: bool
    autotune: bool


_settings: Settings | None = None
_generation = 0


def settings() -> Settings:
    """The current snapshot (read from the environment on first use and after `reload()`)."""
    s = _settings
    return s if s is not None else reload()


def reload() -> Settings:
    """Read the environment again; plans cached under earlier settings are never used again."""
    global _settings, _generation
    _generation += 1
    _settings = Settings(
        generation=_generation,
        nv_tuning=os.environ.get("JITGEMM_NV_TUNING") or None,
        # JITGEMM_PDL: programmatic dependent launch on sm_90+ (1 everywhere, 0 nowhere; unset or "auto": where
        # measured faster, dispatch.use_pdl: the skinny, fp8 and 4-bit kernels).
        pdl=_auto_flag("JITGEMM_PDL"),
        # JITGEMM_PREFETCH (default off): L2-prefetch the head of each block's weight rows on sm_90+
        # (measured slower on an H100, e.g. 15.7 vs 11.4 us on llama70b-tp8.qkv).
        prefetch=_flag("JITGEMM_PREFETCH", False),
        # JITGEMM_BLAS (default on): on NVIDIA, gemm sends a moderate-N shape (N > 16, no bias) to cuBLAS
        # where the measured table says cuBLAS is faster than jitgemm's best kernel there. 0: always the kernel.
        blas=_flag("JITGEMM_BLAS", True),
        # JITGEMM_TUNED (default on): the dispatcher reads `jitgemm tune`'s results for this GPU (in the
        # cache directory) before the shipped tables. 0: the shipped tables alone.
        tuned=_flag("JITGEMM_TUNED", True),
        # JITGEMM_AUTOTUNE (default off): the first call of an untuned 16-bit shape tunes it on the spot
        # (a few seconds; never during graph capture) and stores the result like `jitgemm tune`.
        autotune=_flag("JITGEMM_AUTOTUNE", False),
    )
    return _settings


def pdl() -> bool | None:
    """JITGEMM_PDL: True / False as set, None for the dispatcher's measured default."""
    return settings().pdl


def prefetch() -> bool:
    return settings().prefetch


def blas() -> bool:
    return settings().blas
