"""The Backend protocol (the only interface through which vendor APIs are reached) and the registry
that hands out one backend per vendor. The values they exchange live in runtime.types.

A backend owns its vendor's compiler (runtime.compiler: compiles with no GPU present), loads code per
device, launches with pre-packed arguments and offers the little memory/stream/event service the numpy
path and benchmarks need.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Protocol

from .. import config
from ..errors import BackendUnavailable
from .compiler import Compiler
from .types import ArgPack, DeviceInfo


class Backend(Protocol):
    """Every method jitgemm calls on a device backend (CudaBackend, HipBackend, and runtime.null.NullBackend
    for tests). Compiling is its compiler's (runtime.compiler.Compiler: needs no device); everything here
    from `load` down needs one."""
    name: str  # "cuda" | "hip": the vendor the dispatcher plans for
    compiler: "Compiler"  # the vendor's compiler (NVRTC; hiprtc or offline clang; the null one)

    # ---- what is here
    def available(self) -> tuple[bool, str]: ...
    def versions(self) -> dict: ...              # driver / runtime / compiler versions, for reports and keys
    def device_count(self) -> int: ...
    def device_info(self, index: int) -> DeviceInfo: ...
    def current_device(self) -> int: ...
    def device_of_pointer(self, ptr: int) -> int: ...
    def make_current(self, device: int) -> None: ...   # the device's primary context on this thread

    # ---- code on a device
    def load(self, code: bytes, device: int): ...
    def function(self, module, symbol: str): ...
    def set_max_dynamic_shared(self, func, nbytes: int) -> None: ...
    def launch(self, func, grid, block, shared: int, stream: int, args: ArgPack, device: int,
               pdl: bool = False) -> None: ...
    def launcher(self, func, grid, block, shared: int, args: ArgPack, device: int,
                 pdl: bool = False): ...  # -> fire(stream): the launch above with all but the stream bound

    # ---- memory and streams
    def alloc(self, nbytes: int, device: int) -> int: ...
    def free(self, ptr: int, device: int) -> None: ...
    def copy_htod(self, dst: int, src_host_ptr: int, nbytes: int, device: int) -> None: ...
    def copy_dtoh(self, dst_host_ptr: int, src: int, nbytes: int, device: int) -> None: ...
    def memset(self, ptr: int, byte: int, nbytes: int, stream: int, device: int) -> None: ...
    def synchronize(self, device: int) -> None: ...
    def stream_synchronize(self, stream: int, device: int) -> None: ...
    def stream_capturing(self, stream: int, device: int) -> bool: ...
    def stream_wait(self, stream: int, on: int, device: int) -> None: ...  # stream after on's work (an event)


_BACKENDS: dict[str, Backend] = {}
_installed: Backend | None = None
#: called whenever installed() swaps a backend in or out: whatever holds objects bound to a backend
#: (the pipeline's cached launches) forgets them
on_swap: list[Callable[[], None]] = []


def get_backend(name: str) -> Backend:
    """The backend object for 'cuda' or 'hip' (created once; importing a vendor package
    happens on first use so a missing one only matters to whoever needs it)."""
    if name not in ("cuda", "hip"):
        raise ValueError(f"backend must be 'cuda' or 'hip', got {name!r}")
    if name not in _BACKENDS:
        if name == "cuda":
            from .cuda import CudaBackend
            _BACKENDS[name] = CudaBackend()
        else:
            from .hip import HipBackend
            _BACKENDS[name] = HipBackend()
    return _BACKENDS[name]


@contextlib.contextmanager
def installed(backend: Backend):
    """Inside, `backend` (a runtime.null.NullBackend in tests) is the registry's backend for its vendor
    and the default one: every jitgemm call goes through it, and nothing bound to it outlives the block."""
    global _installed
    saved = _BACKENDS.get(backend.name), _installed
    _BACKENDS[backend.name], _installed = backend, backend
    for forget in on_swap:
        forget()
    try:
        yield backend
    finally:
        if saved[0] is None:
            _BACKENDS.pop(backend.name, None)
        else:
            _BACKENDS[backend.name] = saved[0]
        _installed = saved[1]
        for forget in on_swap:
            forget()


def backend_for_arch(arch: str) -> Backend:
    """The vendor's backend for an arch (sm_* -> cuda, gfx* -> hip); its `.compiler` does compile-only work."""
    from ..arch import parse
    try:
        return get_backend(parse(arch).vendor)
    except (ValueError, TypeError):
        raise ValueError(f"arch must look like 'sm_90a' or 'gfx90a', got {arch!r}") from None


def default_backend() -> Backend:
    """The installed one (tests), JITGEMM_BACKEND if set, else the first vendor with a usable device."""
    if _installed is not None:
        return _installed
    forced = config.backend_override()
    if forced:
        return get_backend(forced)
    reasons = []
    for name in ("cuda", "hip"):
        b = get_backend(name)
        ok, why = b.available()
        if ok and b.device_count() > 0:
            return b
        reasons.append(f"{name}: {why if not ok else 'no device'}")
    raise BackendUnavailable("no GPU found (" + "; ".join(reasons) + ")")


def why_unavailable() -> str | None:
    """None when jitgemm has a GPU to run on here; otherwise why not, in one line (no driver, no device,
    the vendor's Python bindings missing, JITGEMM_BACKEND naming an unusable vendor). Asks the driver,
    allocates nothing and compiles nothing: what a script or notebook checks before its GPU part."""
    try:
        b = default_backend()
        ok, why = b.available()
        if not ok:
            return f"no GPU found ({b.name}: {why})"
        if b.device_count() < 1:
            return f"no GPU found ({b.name}: no device)"
    except (BackendUnavailable, ValueError) as e:  # ValueError: JITGEMM_BACKEND names no vendor
        return str(e).splitlines()[0]
    return None
