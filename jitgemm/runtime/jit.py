"""From a kernel instance (a value) to a launchable function: compile through the cache,
load once per device, look the symbol up."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

from ..errors import VendorError
from .backend import Backend, backend_for_arch
from .types import ArgPack, CompileOptions, CompileResult
from .cache import CodeCache, default_cache
from .source import kernels_dir


@dataclass(frozen=True)
class KernelInstance:
    """One template instance: the source file, its name expression, the defines it needs, and the arch
    capabilities it requires to compile and run (jitgemm.arch: "clusters", "wgmma", "fp8_mma", ...)."""
    source: str
    name: str
    defines: tuple[tuple[str, str], ...] = ()
    requires: frozenset = frozenset()

    def options(self, arch: str) -> CompileOptions:
        return CompileOptions(arch=arch, defines=self.defines, include_dirs=(str(kernels_dir()),))


def cache_key(inst: KernelInstance, arch: str, backend: Backend, portable: bool = False) -> str:
    """The entry's key (Compiler.key of the backend's compiler)."""
    return backend.compiler.key(inst, arch, portable)


def compile_instance(inst: KernelInstance, arch: str, cache: CodeCache | None = None) -> CompileResult:
    """Compile (or fetch) one instance for `arch` with its vendor's compiler; needs no GPU."""
    return backend_for_arch(arch).compiler.compile_cached(inst, arch, cache or default_cache())


class LoadedKernel:
    """A function loaded on one device, with its own argument block (not thread-safe to share
    across threads mid-launch; each (kernel, device, thread) gets its own via `args()`)."""

    __slots__ = ("backend", "device", "func", "symbol", "resources", "arg_kinds", "_tls", "_shared_set")

    def __init__(self, backend, device, func, symbol, resources, arg_kinds):
        self.backend, self.device, self.func, self.symbol = backend, device, func, symbol
        self.resources, self.arg_kinds = resources, tuple(arg_kinds)
        self._tls = threading.local()
        # dynamic shared bytes a launch may ask for without opting in: 48 KiB less the static ones
        self._shared_set = 48 * 1024 - int(self.resources.get("smem", 0) or 0)

    def args(self) -> ArgPack:
        pack = getattr(self._tls, "pack", None)
        if pack is None:
            pack = self._tls.pack = ArgPack(self.arg_kinds)
        return pack

    def ensure_shared(self, shared: int) -> None:
        """Opt the function in to `shared` dynamic bytes when the default does not cover them."""
        if shared > self._shared_set:
            self.backend.set_max_dynamic_shared(self.func, shared)
            self._shared_set = shared

    def launch(self, grid, block, shared: int, stream: int, *values, pdl: bool = False) -> None:
        self.ensure_shared(shared)
        self.backend.launch(self.func, grid, block, shared, stream, self.args().set(*values), self.device, pdl)


_loaded: dict[tuple, LoadedKernel] = {}
_load_lock = threading.Lock()
load_count = {"modules": 0}


def get_kernel(inst: KernelInstance, backend: Backend, device: int, arg_kinds: Sequence[str]) -> LoadedKernel:
    """The instance compiled for the device's arch and loaded on it (memoised per device)."""
    ident = (inst, id(backend), device)  # per backend object: a test's stand-in never serves the real one
    k = _loaded.get(ident)
    if k is not None:
        return k
    with _load_lock:
        k = _loaded.get(ident)
        if k is not None:
            return k
        arch = backend.device_info(device).arch
        cache = default_cache()
        result = compile_instance(inst, arch, cache)
        try:
            module = backend.load(result.code, device)
        except VendorError:
            # an entry that compiles but does not load (another driver's cubin, damage the checksum
            # missed): drop it and build once more from source
            cache.invalidate(cache_key(inst, arch, backend), arch)
            result = compile_instance(inst, arch, cache)
            module = backend.load(result.code, device)
        load_count["modules"] += 1
        symbol = result.lowered[inst.name]
        k = LoadedKernel(backend, device, backend.function(module, symbol), symbol,
                         result.resources.get(symbol, {}), arg_kinds)
        _loaded[ident] = k
        return k
