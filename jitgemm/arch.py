"""A GPU architecture as a value, parsed once from the name the driver (or the user) gives.

    parse("sm_90a")                 -> vendor cuda, base sm_90a, sm 90, capabilities ... "wgmma"
    parse("gfx942:sramecc+:xnack-") -> vendor hip, base gfx942, features ("sramecc+", "xnack-")

Every rule that depends on the arch asks this value (`a.has("clusters")`, `a.sm >= 89`, `a.base`), so
the string is not re-parsed in each module. Capabilities are what jitgemm's kernels need, by name:
  NVIDIA: "clusters" and "pdl" (sm_90 and later), "wgmma" (sm_90a exactly: not sm_90, not sm_100a),
          "fp8_mma" (e4m3 mma.sync: sm_89 and later);
  AMD:    "fp8_mfma" (the fp8 MFMA instructions: gfx942 and gfx950), "mfma_x32" (16x16x32 16-bit MFMA:
          gfx950), "wave32" (gfx10 and later: 32-lane waves)."""
from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    text: str                     # as given
    vendor: str                   # "cuda" | "hip"
    base: str                     # without target features: "sm_90a", "gfx942"
    features: tuple[str, ...]     # AMD target features: ("sramecc+", "xnack-")
    sm: int                       # NVIDIA: the compute capability x 10 (90 for sm_90a, 100 for sm_100a); AMD: 0
    capabilities: frozenset

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def runs(self, requires) -> bool:
        """Whether every capability in `requires` (a kernel instance's) is this arch's."""
        return set(requires) <= self.capabilities

    @property
    def lds_bytes(self) -> int:
        """AMD: LDS a workgroup may use (gfx950: 160 KiB; before it: 64 KiB)."""
        return 160 * 1024 if self.base.startswith("gfx95") else 64 * 1024

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=64)
def parse(text: str) -> Arch:
    """The Arch of a name: 'sm_XY[a]' (NVIDIA) or 'gfxNNN[:feature...]' (AMD). Raises ValueError for
    anything else (targets.arch_problem says which names jitgemm builds for)."""
    if not isinstance(text, str):
        raise TypeError(f"an arch is a string like 'sm_90a' or 'gfx942', got {type(text).__name__}")
    base, _, feats = text.partition(":")
    features = tuple(f for f in feats.split(":") if f)
    if base.startswith("sm_"):
        digits = "".join(ch for ch in base[3:] if ch.isdigit())
        if not digits:
            raise ValueError(f"not an NVIDIA arch name: {text!r} (expected sm_<digits>[a])")
        sm = int(digits)
        caps = set()
        if sm >= 89:
            caps.add("fp8_mma")
        if sm >= 90:
            caps |= {"clusters", "pdl"}
        if base == "sm_90a":
            caps.add("wgmma")
        return Arch(text, "cuda", base, features, sm, frozenset(caps))
    if base.startswith("gfx"):
        caps = set()
        if base in ("gfx942", "gfx950"):
            caps.add("fp8_mfma")
        if base.startswith("gfx95"):
            caps.add("mfma_x32")
        if base.startswith("gfx1"):
            caps.add("wave32")
        return Arch(text, "hip", base, features, 0, frozenset(caps))
    raise ValueError(f"not a GPU arch name: {text!r} (expected sm_XY for NVIDIA or gfxNNN for AMD)")


def sm_version(arch: str) -> int:
    """'sm_90a' -> 90, 'sm_100a' -> 100, 'sm_89' -> 89 (numeric, so sm_100 sorts after sm_90); AMD: 0."""
    return parse(arch).sm
