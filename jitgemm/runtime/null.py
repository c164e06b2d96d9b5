"""A backend with no GPU behind it, for tests: install it with `runtime.backend.installed(NullBackend())`
and every call of jitgemm runs its whole path (validation, placement, planning, the real compile cache,
argument packing, launch) with nothing reaching a driver.

- It plans as the vendor it names ('cuda' by default) on the devices it is given (an H100-like sm_90a
  one by default).
- Its compiler (NullCompiler) makes no code: a code object that names the instance, so the cache, keys and
  symbols work.
- "Device" memory is host memory (ctypes buffers), so DeviceArray uploads and downloads round-trip.
- Every launch is recorded in `launches` as (grid, stream, device, the packed argument words), every
  stream_wait in `waits` as (stream, on, device), and
  every device method's use counted in `calls` (a cached call asks nothing of the device but a launch).
- `fail`: a function of the method name returning an exception; given, every device method (not the
  compile ones) raises it instead: a tripwire that proves a call was refused before any GPU work, or
  stands in for a machine without a device."""
from __future__ import annotations

import collections
import ctypes
from typing import Callable, Sequence

from .compiler import Compiler
from .types import ArgPack, CompileOptions, CompileResult, DeviceInfo

DEFAULT_DEVICE = DeviceInfo(0, "null H100", "sm_90a", 132, 32, 227 << 10, 50 << 20, 80 << 30)


class NullCompiler(Compiler):
    """No code, but a result the cache, the keys and the symbol lookup accept."""
    portable_code = False

    def __init__(self, vendor: str):
        self.vendor = vendor

    def available(self) -> tuple[bool, str]:
        return True, "ok"

    def identity(self) -> str:
        return "null"

    def flags(self, options: CompileOptions) -> list[str]:
        return [f"--arch={options.arch}", *options.define_flags()]

    def compile(self, source: str, filename: str, names: Sequence[str], options: CompileOptions) -> CompileResult:
        return CompileResult(code=f"null:{filename}:{','.join(names)}".encode(), lowered={n: n for n in names},
                             log="", compiler="null", resources={n: {} for n in names})


class NullBackend:
    def __init__(self, vendor: str = "cuda", devices: Sequence[DeviceInfo] | None = None,
                 fail: Callable[[str], Exception] | None = None):
        self.name = vendor
        self.compiler = NullCompiler(vendor)
        self.devices = list(devices if devices is not None else [DEFAULT_DEVICE])
        self.fail = fail
        self.launches: list[tuple] = []
        self.waits: list[tuple] = []  # stream_wait's (stream, on, device), in order with `launches`
        self.calls: collections.Counter = collections.Counter()   # device methods called, by name
        self._buffers: dict[int, ctypes.Array] = {}

    def _device(self, what: str, device: int | None = None) -> None:
        self.calls[what] += 1
        if self.fail is not None:
            raise self.fail(what)
        if device is not None and not 0 <= device < len(self.devices):
            raise ValueError(f"null backend: no device {device} (it has {len(self.devices)})")

    # ---- what is here
    def available(self) -> tuple[bool, str]:
        return (False, "null backend: no device") if self.fail else (True, "ok")

    def versions(self) -> dict:
        return {"driver": "null", "nvrtc": "null"}

    def device_count(self) -> int:
        self._device("device_count")
        return len(self.devices)

    def device_info(self, index: int) -> DeviceInfo:
        self._device("device_info", index)
        return self.devices[index]

    def current_device(self) -> int:
        self._device("current_device")
        return 0

    def device_of_pointer(self, ptr: int) -> int:
        self._device("device_of_pointer")
        return 0

    def make_current(self, device: int) -> None:
        self._device("make_current", device)

    # ---- code on a device
    def load(self, code: bytes, device: int):
        self._device("load", device)
        return code

    def function(self, module, symbol: str):
        return symbol

    def set_max_dynamic_shared(self, func, nbytes: int) -> None:
        self._device("set_max_dynamic_shared")

    def launch(self, func, grid, block, shared: int, stream: int, args: ArgPack, device: int, pdl: bool = False) -> None:
        self._device("launch", device)
        self.launches.append((tuple(grid), stream, device, list(args.words())))

    def launcher(self, func, grid, block, shared: int, args: ArgPack, device: int, pdl: bool = False):
        return lambda stream: self.launch(func, grid, block, shared, stream, args, device, pdl)

    # ---- memory and streams: host buffers
    def alloc(self, nbytes: int, device: int) -> int:
        self._device("alloc", device)
        buf = (ctypes.c_char * max(int(nbytes), 1))()
        ptr = ctypes.addressof(buf)
        self._buffers[ptr] = buf
        return ptr

    def free(self, ptr: int, device: int) -> None:
        self._buffers.pop(ptr, None)

    def copy_htod(self, dst: int, src_host_ptr: int, nbytes: int, device: int) -> None:
        self._device("copy_htod", device)
        ctypes.memmove(dst, src_host_ptr, nbytes)

    def copy_dtoh(self, dst_host_ptr: int, src: int, nbytes: int, device: int) -> None:
        self._device("copy_dtoh", device)
        ctypes.memmove(dst_host_ptr, src, nbytes)

    def memset(self, ptr: int, byte: int, nbytes: int, stream: int, device: int) -> None:
        self._device("memset", device)
        ctypes.memset(ptr, byte, nbytes)

    def synchronize(self, device: int) -> None:
        self._device("synchronize", device)

    def stream_synchronize(self, stream: int, device: int) -> None:
        self._device("stream_synchronize", device)

    def stream_wait(self, stream: int, on: int, device: int) -> None:
        self._device("stream_wait", device)
        self.waits.append((stream, on, device))

    def stream_capturing(self, stream: int, device: int) -> bool:
        self._device("stream_capturing", device)
        return False
