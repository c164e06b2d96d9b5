"""The offline AMDGPU route: Debian's clang-22 compiling kernels_src for gfx942/gfx950 on a machine
whose hiprtc cannot target them (HIP 5.x aborts the process on gfx94x), so CI and `aot` can build
and register-check every instance with no AMD GPU and no ROCm install.

The toolchain is what `.ci/amd-toolchain.sh PREFIX` sets up: `clang-22` on PATH, HIP 5.7 headers
in PREFIX/usr/include and ROCm 6.0 device bitcode (plus a generated gfx950 ISA-version library) in
PREFIX/devlibs. PREFIX is JITGEMM_AMD_TOOLCHAIN, else <jitgemm cache dir>/amd-toolchain, else
/opt/jitgemm-amd.

clang sees the source and the flags hiprtc sees (`amd_flags.hip_flags`), plus only what a driver needs
that hiprtc supplies by itself (see `_driver_flags`), and a block appended to the source that does
hiprtcAddNameExpression's job (see `instantiation_block`)."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .. import config
from ..errors import BackendUnavailable, CompileError
from .types import CompileOptions, CompileResult
from .resources import amdgpu_kernel_resources

TOOLCHAIN_ENV = "JITGEMM_AMD_TOOLCHAIN"
CLANG = "clang-22"
STAMP = "jitgemm-toolchain.txt"  # written last by .ci/amd-toolchain.sh: "<package> <version>" lines
INSTALL_HINT = f"run `.ci/amd-toolchain.sh PREFIX` and set {TOOLCHAIN_ENV}=PREFIX"


def default_prefixes() -> list[Path]:
    """Where a toolchain is looked for, first match wins."""
    env = os.environ.get(TOOLCHAIN_ENV)
    if env:
        return [Path(env).expanduser()]
    return [config.cache_dir() / "amd-toolchain", Path("/opt/jitgemm-amd")]


@dataclass(frozen=True)
class Toolchain:
    prefix: Path
    clang: str                           # absolute path of clang-22
    clang_version: str                   # "22.1.8"
    packages: tuple[tuple[str, str], ...]  # (Debian package, version) of headers and bitcode

    @property
    def devlibs(self) -> Path:
        return self.prefix / "devlibs"

    @property
    def identity(self) -> str:
        """Compiler + headers + bitcode: all three shape the code object, so all three key the cache."""
        pkgs = "/".join(f"{name}-{ver}" for name, ver in self.packages)
        return f"clang-{self.clang_version}/{pkgs}"


def _clang_version(clang: str) -> str:
    out = subprocess.run([clang, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"clang version (\d+\.\d+\.\d+)", out)
    if not m:
        raise BackendUnavailable(f"cannot read the version of {clang}: {out[:200]!r}")
    return m.group(1)


def _stamp_packages(prefix: Path) -> tuple[tuple[str, str], ...]:
    lines = (prefix / STAMP).read_text().splitlines()
    pairs = (l.split(None, 1) for l in lines if l.strip() and not l.startswith("clang "))
    return tuple((p[0], p[1].strip()) for p in pairs if len(p) == 2)


def _problem(prefix: Path) -> str | None:
    """Why PREFIX is not a complete toolchain, or None."""
    for need in (STAMP, "devlibs/ocml.bc", "usr/include/hip/hip_runtime.h"):
        if not (prefix / need).exists():
            return f"{prefix / need} is missing"
    return None


@lru_cache(maxsize=8)
def _find(prefixes: tuple[str, ...], path_env: str) -> Toolchain:
    clang = shutil.which(CLANG, path=path_env)
    if clang is None:
        raise BackendUnavailable(f"offline AMD compiler: {CLANG} is not on PATH; {INSTALL_HINT}")
    problems = []
    for p in map(Path, prefixes):
        why = _problem(p)
        if why is None:
            return Toolchain(p, clang, _clang_version(clang), _stamp_packages(p))
        problems.append(why)
    raise BackendUnavailable(f"offline AMD compiler: no toolchain ({'; '.join(problems)}); {INSTALL_HINT}")


def find_toolchain() -> Toolchain:
    """The toolchain for the current environment (memoised per prefix list and PATH)."""
    return _find(tuple(map(str, default_prefixes())), os.environ.get("PATH", ""))


def available() -> tuple[bool, str]:
    try:
        find_toolchain()
        return True, "ok"
    except BackendUnavailable as e:
        return False, str(e)


# ---- flags -----------------------------------------------------------------------------------------
def _wave(hip_flag_list: list[str]) -> str:
    return next(f.split("=", 1)[1] for f in hip_flag_list if f.startswith("-DJG_WAVE="))


def _driver_flags(wave: str) -> list[str]:
    """What clang needs beyond hiprtc's flags; machine-independent, so it can be part of a cache key.
    - -x hip --cuda-device-only --no-gpu-bundle-output: one linked device code object, no host side
      and no offload bundle (hiprtc's output is exactly that);
    - -mcode-object-version=5: ROCm 6's default, so what hiprtc on an MI300 node would emit;
    - -include hip/hip_runtime.h: hiprtc pre-includes its runtime header (threadIdx, __shfl_xor, ...);
    - -D__AMDGCN_WAVEFRONT_SIZE: clang 22 no longer defines it, HIP 5.7's headers still read it.
    Not passed: __HIPCC_RTC__ (hiprtc defines it; it switches HIP's headers to their RTC subset and
    none of our kernels test it)."""
    return ["-x", "hip", "--cuda-device-only", "--no-gpu-bundle-output", "-mcode-object-version=5",
            "-include", "hip/hip_runtime.h", f"-D__AMDGCN_WAVEFRONT_SIZE={wave}"]


def _path_flags(tc: Toolchain) -> list[str]:
    """Machine paths of the headers and bitcode. clang 22 links the oclc_* control libraries of
    ROCm 6.0's bitcode itself except oclc_daz_opt, which is given explicitly; "off" keeps fp32
    denormals, HIP's default (what hiprtc compiles with)."""
    inc = tc.prefix / "usr" / "include"
    return [f"--rocm-path={tc.prefix / 'usr'}", "-isystem", str(inc), f"--rocm-device-lib-path={tc.devlibs}",
            "-Xclang", "-mlink-builtin-bitcode", "-Xclang", str(tc.devlibs / "oclc_daz_opt_off.bc")]


def key_flags(options: CompileOptions) -> list[str]:
    """Everything that shapes the code object besides source and compiler identity, without machine
    paths: hiprtc's flags, then the driver flags."""
    from .amd_flags import hip_flags
    hf = hip_flags(options)
    return [*hf, *_driver_flags(_wave(hf))]


def clang_argv(tc: Toolchain, options: CompileOptions, src: Path, out: Path) -> list[str]:
    return [tc.clang, *key_flags(options), *_path_flags(tc), str(src), "-o", str(out)]


# ---- name expressions -------------------------------------------------------------------------------
_NAME_VAR = "jg_name_expr_{}"


def instantiation_block(names: Sequence[str]) -> str:
    """Source appended after the program: one device pointer per name expression. Taking the address
    instantiates the template (as hiprtcAddNameExpression does), and the pointer's relocation in the
    linked code object names the instance's mangled symbol, so no demangler is needed. Costs 8 bytes
    of data and one load-time relocation per name."""
    lines = ["", "// ---- jitgemm offline AMD compile: name expressions (hiprtcAddNameExpression) ----"]
    lines += [f'extern "C" __device__ const void* const {_NAME_VAR.format(i)} = (const void*)&{n};'
              for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def _sections(code: bytes) -> list[dict]:
    shoff, = struct.unpack_from("<Q", code, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", code, 0x3A)
    out = []
    for i in range(shnum):
        base = shoff + i * shentsize
        _, sh_type, _, addr, off, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", code, base)
        out.append({"type": sh_type, "addr": addr, "off": off, "size": size, "link": link, "entsize": entsize})
    return out


def _dynamic_symbols(code: bytes, secs: list[dict]) -> list[tuple[str, int, int]]:
    """(name, value, type) of every .dynsym entry (SHT_DYNSYM = 11)."""
    sym = next(s for s in secs if s["type"] == 11)
    strtab = secs[sym["link"]]
    out = []
    for pos in range(sym["off"], sym["off"] + sym["size"], sym["entsize"] or 24):
        st_name, st_info, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", code, pos)
        start = strtab["off"] + st_name
        name = code[start:code.index(b"\0", start)].decode()
        out.append((name, st_value, st_info & 0xF))
    return out


def _relocations(code: bytes, secs: list[dict]) -> dict[int, tuple[int, int, int]]:
    """r_offset -> (type, symbol index, addend) over every SHT_RELA (4) section."""
    out = {}
    for s in (s for s in secs if s["type"] == 4):
        for pos in range(s["off"], s["off"] + s["size"], s["entsize"] or 24):
            r_offset, r_info, r_addend = struct.unpack_from("<QQq", code, pos)
            out[r_offset] = (r_info & 0xFFFFFFFF, r_info >> 32, r_addend)
    return out


_R_AMDGPU_ABS64, _R_AMDGPU_RELATIVE64 = 1, 13
_STT_OBJECT, _STT_FUNC = 1, 2


def lowered_names(code: bytes, names: Sequence[str]) -> dict[str, str]:
    """name expression -> mangled symbol, read from the relocations of `instantiation_block`'s pointers."""
    secs = _sections(code)
    syms = _dynamic_symbols(code, secs)
    relocs = _relocations(code, secs)
    by_addr = {v: n for n, v, t in syms if t in (_STT_FUNC, _STT_OBJECT) and not n.endswith(".kd")}
    var_addr = {n: v for n, v, _ in syms}
    out = {}
    for i, expr in enumerate(names):
        var = _NAME_VAR.format(i)
        rtype, sym_index, addend = relocs.get(var_addr.get(var, -1), (None, 0, 0))
        if rtype == _R_AMDGPU_RELATIVE64 and addend in by_addr:
            out[expr] = by_addr[addend]
        elif rtype == _R_AMDGPU_ABS64 and sym_index:
            out[expr] = syms[sym_index][0]
        else:
            raise CompileError(f"name expression {expr!r}", "LOWERING_FAILED",
                               f"no relocation for {var} in the code object (type {rtype})")
    return out


# ---- the compiler -------------------------------------------------------------------------------------
def compile(source: str, filename: str, names: Sequence[str], options: CompileOptions) -> CompileResult:
    """hiprtc's contract with clang-22: code object, lowered names, log, identity, resources."""
    tc = find_toolchain()
    with tempfile.TemporaryDirectory(prefix="jitgemm-amd-") as tmp:
        src, out = Path(tmp) / Path(filename).name, Path(tmp) / "kernel.co"
        src.write_text(source + instantiation_block(names))
        p = subprocess.run(clang_argv(tc, options, src, out), capture_output=True, text=True, timeout=600)
        log = p.stderr.replace(tmp + os.sep, "")  # diagnostics name the file as hiprtc's do
        if p.returncode != 0:
            raise CompileError(f"{filename} [{', '.join(names)}] for {options.arch} with {CLANG}",
                               f"CLANG_EXIT_{p.returncode}", log)
        code = out.read_bytes()
    return CompileResult(code=code, lowered=lowered_names(code, names), log=log, compiler=tc.identity,
                         resources=amdgpu_kernel_resources(code))
