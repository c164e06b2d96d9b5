"""What both AMD compile routes share, so hiprtc and the offline clang route see the same source with the
same flags: the flag list, and which archs the offline route serves. No vendor import."""
from __future__ import annotations

from ..arch import parse
from .types import CompileOptions

# What the offline clang-22 route (amd_offline) builds when hiprtc cannot: the CDNA3/CDNA4 parts,
# whose ISA-version bitcode the toolchain script provides.
OFFLINE_ARCHS = ("gfx940", "gfx941", "gfx942", "gfx950")


def hip_flags(options: CompileOptions) -> list[str]:
    """Flags shared by hiprtc and the offline clang route, so both see the same source."""
    wave = 32 if parse(options.arch).has("wave32") else 64
    return [f"--offload-arch={options.arch}", "-O3", f"-std={options.std}", "-DJG_AMD=1",
            f"-DJG_WAVE={wave}", *options.define_flags(), *(f"-I{d}" for d in options.include_dirs),
            *options.extra]
