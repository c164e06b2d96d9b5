"""Split-K workspaces: fp32 partial tiles and per-tile arrival counters, owned by jitgemm.

One workspace per (backend, device, stream): kernels on one stream run one after another, so they
can share it; kernels on two streams may overlap, so they never do. A workspace only grows (to the
next power of two); the counters are zeroed once, when it is allocated, on the stream that will use
it, and every kernel leaves them at zero (the last block of a tile resets its counter), so no call
pays for a zeroing launch. A buffer that is outgrown is kept, not freed: a kernel still queued on the
stream may be reading it, and freeing would have to wait for the stream (and cannot happen at all
during graph capture). Growth doubles, so what is kept is less than what is in use."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from .device_array import DeviceArray
from .runtime.types import capture_guard


@dataclass
class Workspace:
    partials: DeviceArray   # float32
    counters: DeviceArray   # uint32 counters (allocated as float32: 4 bytes each), all zero between kernels
    floats: int
    tiles: int

    @property
    def backend(self):
        return self.partials.backend


_spaces: dict[tuple, Workspace] = {}
_retired: list[Workspace] = []
_lock = threading.Lock()


def _pow2(v: int) -> int:
    return 1 << max(int(v) - 1, 0).bit_length()


def get(backend, device: int, stream: int, floats: int, tiles: int) -> Workspace:
    """A workspace with room for `floats` partial values and `tiles` counters on this stream."""
    key = (id(backend), device, int(stream))  # per backend object (a test's stand-in has its own)
    ws = _spaces.get(key)
    if ws is not None and ws.floats >= floats and ws.tiles >= tiles:
        return ws
    with _lock:
        ws = _spaces.get(key)
        if ws is not None and ws.floats >= floats and ws.tiles >= tiles:
            return ws
        nf = _pow2(max(floats, ws.floats if ws else 0, 1024))
        nt = _pow2(max(tiles, ws.tiles if ws else 0, 256))
        with capture_guard("the split-K workspace", stream):
            new = Workspace(DeviceArray(backend, device, (nf,), "float32"),
                            DeviceArray(backend, device, (nt,), "float32"), nf, nt)
        backend.memset(new.counters.ptr, 0, nt * 4, int(stream), device)  # ordered before this stream's next kernel
        if ws is not None:
            _retired.append(ws)
        _spaces[key] = new
        return new


def held_bytes(backend=None) -> int:
    """Device bytes the workspaces hold (current and outgrown), of one backend or of all."""
    return sum(w.floats * 4 + w.tiles * 4 for w in list(_spaces.values()) + _retired
               if backend is None or w.backend is backend)
