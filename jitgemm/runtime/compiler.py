"""Compiler objects: kernel instances to code objects for an arch, with no device present.

The runtime is split in two kinds of object: a compiler (this module's Compiler: NVRTC in runtime.cuda,
hiprtc or offline clang in runtime.hip, runtime.null's for tests) and a device backend (runtime.backend:
devices, modules, launches, memory) that owns one (`backend.compiler`). A vendor's compiler says whether
its tool is here, who it is, its flags and how it compiles; keying and caching every compile is done once,
here, for all of them."""
from __future__ import annotations

import sys
from typing import Sequence

from .. import config
from .cache import CodeCache, make_key
from .source import load_source
from .types import CompileOptions, CompileResult


class Compiler:
    vendor: str = ""           # "cuda" | "hip": the sources' vendor macro and include closure
    portable_code: bool = False  # whether a code object serves whichever of the vendor's compilers built it

    # ---- what a vendor's compiler provides
    def available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def identity(self) -> str:
        """Names the tool and version: part of every cache key."""
        raise NotImplementedError

    def flags(self, options: CompileOptions) -> list[str]:
        """The command line for `options` (cache-key material too)."""
        raise NotImplementedError

    def compile(self, source: str, filename: str, names: Sequence[str], options: CompileOptions) -> CompileResult:
        raise NotImplementedError

    # ---- keying and caching, the same for every compiler
    def key(self, inst, arch: str, portable: bool = False) -> str:
        """An instance's cache key for `arch`. `portable` leaves the compiler out: an AMD code object for an
        arch is the same ISA whichever compiler built it, so an AOT pack built off-node (clang) serves a node
        whose hiprtc differs. The builder stays recorded in the entry (CompileResult.compiler)."""
        src = load_source(inst.source, vendor=self.vendor)
        if portable:
            # only what every AMD route compiles the same: the source closure, the instance, its defines
            return make_key({"source": src.digest, "name": inst.name, "arch": arch, "portable": 1,
                             "defines": list(inst.defines)})
        # include dirs are machine paths; the closure digest already covers what they contribute
        flags = [f for f in self.flags(inst.options(arch)) if not f.startswith("-I")]
        return make_key({"source": src.digest, "name": inst.name, "flags": flags, "arch": arch,
                         "compiler": self.identity()})

    def compile_cached(self, inst, arch: str, cache: CodeCache) -> CompileResult:
        """Compile (or fetch) one instance for `arch`."""
        key = self.key(inst, arch)
        share = self.portable_code and not config.aot_strict()
        pkey = self.key(inst, arch, portable=True) if share else None

        def build() -> CompileResult:
            if share:
                hit = cache.peek(pkey, arch)  # an AOT pack's entry, built by another AMD compiler
                if hit is not None:
                    if config.debug():
                        print(f"[jitgemm] {inst.name} for {arch}: using the entry built by {hit.compiler}",
                              file=sys.stderr)
                    return hit
            src = load_source(inst.source, vendor=self.vendor)
            opts = inst.options(arch)
            if config.debug():
                print(f"[jitgemm] compile {inst.name} for {arch} with {self.flags(opts)}\n"
                      f"[jitgemm] source closure {src.closure} digest {src.digest[:16]}", file=sys.stderr)
            result = self.compile(src.text, src.filename, [inst.name], opts)
            if config.debug():
                print(f"[jitgemm] -> {cache.path(key, arch)} ({len(result.code)} bytes)", file=sys.stderr)
            if share:
                cache.put(pkey, arch, result)
            return result

        return cache.get_or_build(key, arch, build)
