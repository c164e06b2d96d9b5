"""GPUs jitgemm can explain a plan for without having one: the usual part of each supported arch, so
`explain(..., arch="sm_90a")` on a laptop says what a server would run. The numbers are the parts'
published multiprocessor counts, L2 sizes and per-block shared memory limits; pass sms= for another
part of the same arch."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .arch import parse
from .arrays import View


@dataclass(frozen=True)
class Target:
    vendor: str
    arch: str
    part: str
    sms: int
    l2_bytes: int
    shared_per_block: int

    def explain(self, plan) -> str:
        return f"on {self.arch} ({self.part}, {self.sms} {'SMs' if self.vendor == 'cuda' else 'CUs'}): {plan}"


#: The targets jitgemm builds for (aot, cache, explain). NVIDIA: the tensor-core mma.sync kernels need
#: sm_80; sm_86 and sm_89 share its 99 KiB of shared memory a block, sm_90 adds clusters, sm_90a wgmma,
#: and the dispatcher plans sm_100a like sm_90. AMD: the MFMA targets CI compiles (gfx90a through hiprtc,
#: gfx942 and gfx950 through the offline clang route), with or without target features.
NV_ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100a")
AMD_ARCHS = ("gfx90a", "gfx942", "gfx950")

# arch -> (the usual part, SMs/CUs, L2 bytes or None where not known here (it only sizes the opt-in L2
# prefetch: the planner's default then), shared memory / LDS a block may use)
PARTS = {
    "sm_80": ("A100", 108, 40 << 20, 163 << 10),
    "sm_86": ("RTX A6000", 84, 6 << 20, 99 << 10),
    "sm_89": ("L40S", 142, 96 << 20, 99 << 10),
    "sm_90": ("H100 SXM", 132, 50 << 20, 227 << 10),
    "sm_90a": ("H100 SXM", 132, 50 << 20, 227 << 10),
    "sm_100a": ("B200", 148, None, 227 << 10),
    "gfx90a": ("MI250X, one GCD", 110, 8 << 20, 64 << 10),
    "gfx942": ("MI300X", 304, 4 << 20, 64 << 10),
    "gfx950": ("MI355X", 256, 4 << 20, 160 << 10),
}


def arch_problem(arch: str) -> str | None:
    """Why `arch` is not a target (one line naming it and the supported list), or None."""
    base, colon, features = arch.partition(":")
    if base in NV_ARCHS and not colon:
        return None
    if base in AMD_ARCHS and (not colon or re.fullmatch(r"(sramecc|xnack)[+-](:(sramecc|xnack)[+-])*", features)):
        return None
    spelled = re.sub(r"^sm_?", "sm_", base.lower())
    if spelled != base and (spelled in NV_ARCHS or spelled in AMD_ARCHS):
        why = f" (did you mean {spelled}?)"
    elif base in ("gfx900", "gfx906"):
        why = f" ({base} has no MFMA: jitgemm's AMD kernels need the target feature mai-insts)"
    elif re.fullmatch(r"sm_\d+a?", base) and int(base[3:].rstrip("a")) < 80:
        why = " (the tensor-core kernels need sm_80 or newer)"
    else:
        why = ""
    return f"unsupported arch {arch!r}{why}; supported: {', '.join(NV_ARCHS + AMD_ARCHS)}"


def profile(arch: str, sms: int | None = None) -> Target:
    """The target for an arch name ('sm_90a', 'gfx942', features after ':' allowed for AMD)."""
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string like 'sm_90a' or 'gfx942', got {type(arch).__name__}")
    problem = arch_problem(arch)
    if problem:
        raise ValueError(problem)
    if sms is not None and (not isinstance(sms, int) or isinstance(sms, bool) or sms < 1):
        raise ValueError(f"sms must be a positive int (multiprocessors / CUs), got {sms!r}")
    a = parse(arch)
    part, default_sms, l2, shared = PARTS[a.base]
    return Target(a.vendor, arch, part if sms is None else f"{sms}-unit part",
                  sms or default_sms, l2 or 50 << 20, shared)


def shape_operands(shape: tuple) -> tuple[View, View]:
    """(x, w) host Views of the given shapes, for explain: (n, m, k, dtype). No memory is allocated."""
    if len(shape) != 4:
        raise ValueError(f"shapes must be (n, m, k, dtype), got {shape!r}")
    n, m, k, dtype = shape
    for name, v in (("n", n), ("m", m), ("k", k)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    dtype = {"bf16": "bfloat16", "fp16": "float16", "fp8": "float8_e4m3fn"}.get(dtype, dtype)
    if dtype not in ("float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz"):
        raise ValueError(f"dtype must be float16, bfloat16, float8_e4m3fn or float8_e4m3fnuz, got {dtype!r}")
    def view(r, c):
        return View(0, (int(r), int(c)), (int(c), 1), dtype, dtype, None, "numpy", None)
    return view(n, k), view(m, k)
