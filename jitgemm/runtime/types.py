"""The values the runtime passes around, shared by every backend: what a device is (DeviceInfo), what
shapes a compile (CompileOptions) and what it yields (CompileResult), a kernel's packed arguments
(ArgPack), and the two helpers that turn vendor status codes into jitgemm's errors. No vendor import."""
from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import JitgemmError, VendorError


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    arch: str            # with features: "sm_90a", "gfx942:sramecc+:xnack-"
    multiprocessors: int  # SMs / CUs
    warp_size: int
    shared_per_block: int  # bytes a block may use (opt-in maximum on NVIDIA)
    l2_bytes: int
    memory_bytes: int


class DeviceInfos:
    """Each device's DeviceInfo, read from the vendor once: an index is checked against the device count on
    its first use, then answered from memory (the dispatcher asks for it on every planned call)."""

    def __init__(self, vendor: str, count, read):
        self._vendor, self._count, self._read = vendor, count, read  # count() -> int, read(index) -> DeviceInfo
        self._known: dict[int, DeviceInfo] = {}

    def __call__(self, index: int) -> DeviceInfo:
        info = self._known.get(index)
        if info is None:
            n = self._count()
            if not 0 <= index < n:
                raise ValueError(f"device index {index} out of range: {n} {self._vendor} device(s)")
            info = self._known[index] = self._read(index)
        return info


@dataclass(frozen=True)
class CompileOptions:
    """Everything that shapes a code object besides the source text."""
    arch: str
    defines: tuple[tuple[str, str], ...] = ()
    include_dirs: tuple[str, ...] = ()
    std: str = "c++17"
    extra: tuple[str, ...] = ()

    def define_flags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in self.defines]


@dataclass(frozen=True)
class CompileResult:
    code: bytes                      # cubin / AMDGPU code object (ELF)
    lowered: dict[str, str]          # name expression -> mangled symbol
    log: str
    compiler: str                    # identity + version, part of the cache key
    resources: dict[str, dict] = field(default_factory=dict)  # symbol -> registers/spills/...


def checked(call: str, result):
    """cuda-python and hip-python calls return (status, *values): raise VendorError (with the
    vendor's error name) on any non-success status, else return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise VendorError(call, getattr(err, "name", str(err)))
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


@contextlib.contextmanager
def capture_guard(what: str, stream: int):
    """Memory a stream needs the first time jitgemm runs on it cannot be allocated while that stream
    captures a graph (the driver refuses): say so, and what to do, instead of the driver's error name."""
    try:
        yield
    except VendorError as e:
        if "CAPTURE" not in e.name:
            raise
        raise JitgemmError(f"{what} of stream {stream:#x} cannot be allocated during graph capture ({e.name}): "
                           f"make the same call once on that stream before capturing (torch: inside "
                           f"torch.cuda.stream(s) with the stream you pass to torch.cuda.graph)") from None


class ArgPack:
    """A fixed block of 8-byte parameter slots plus the void* array the driver reads.

    Kernel arguments are pointers, 64-bit ints, 32-bit ints and floats; each gets one 8-byte
    slot (the driver copies only the parameter's own size, little end first), so a launch only
    rewrites the slots that change: no per-call marshalling.
    """

    __slots__ = ("_slots", "_ptrs", "address", "_kinds")

    def __init__(self, kinds: Sequence[str]):
        n = max(len(kinds), 1)
        self._kinds = tuple(kinds)
        self._slots = (ctypes.c_uint64 * n)()
        self._ptrs = (ctypes.c_void_p * n)()
        base = ctypes.addressof(self._slots)
        for i in range(n):
            self._ptrs[i] = base + 8 * i
        self.address = ctypes.addressof(self._ptrs)

    def words(self):
        """The 8-byte slots themselves (a ctypes array), for writers that set single slots."""
        return self._slots

    def set(self, *values) -> "ArgPack":
        slots, kinds = self._slots, self._kinds
        for i, (kind, v) in enumerate(zip(kinds, values)):
            if kind == "f32":
                slots[i] = ctypes.c_uint32.from_buffer(ctypes.c_float(v)).value
            elif kind == "i32":
                slots[i] = int(v) & 0xFFFFFFFF
            else:  # ptr / i64
                slots[i] = int(v) & 0xFFFFFFFFFFFFFFFF
        return self
