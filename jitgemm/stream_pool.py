"""Device memory for the outputs jitgemm allocates itself (a call without out= whose operands' library
cannot hold the result: __cuda_array_interface__ wrappers such as CuPy's bf16 bits, jitgemm's own
DeviceArray, fp8 results for CuPy), kept per stream and handed out again, as CuPy's memory pool and
torch's caching allocator keep theirs.

Why: the driver's free (cuMemFree, hipFree) waits for the whole device, so an output dropped after each
call drained the GPU's queue once per call (the host could no longer run ahead of the kernels), and
each allocation cost a driver call. Here a block goes back to the stream it was made on and is reused
only there: stream order alone puts the old output's reads before the new one's writes. An output
used on another stream follows CuPy's and torch's rule: order that stream's work before dropping it.

No block is handed out while its stream captures a graph: the graph would keep writing the address
after the array is gone and its block is someone else's."""
from __future__ import annotations

import threading
from collections import Counter

from .errors import JitgemmError
from .runtime import backend as backend_registry

GRAIN = 512             # sizes rounded up to this, so nearby shapes share blocks
IDLE_LIMIT = 256 << 20  # idle bytes kept per backend and device; past it a dropped block goes to the driver

_lock = threading.RLock()  # RLock: a DeviceArray collected while this thread holds it gives back inside
_idle: dict[tuple, list[int]] = {}   # (backend, device, stream, bytes) -> idle pointers
_idle_bytes: Counter = Counter()     # (backend, device) -> bytes idle


def rounded(nbytes: int) -> int:
    return max(-(-int(nbytes) // GRAIN), 1) * GRAIN


def take(backend, device: int, stream: int, nbytes: int) -> int:
    """A block of at least `nbytes` for work on `stream`: an idle one of that stream, else new."""
    nbytes = rounded(nbytes)
    if backend.stream_capturing(stream, device):
        raise JitgemmError(f"a call without out= allocates its output, which cannot be done while stream "
                           f"{stream:#x} captures a graph (the graph would keep writing memory that is freed "
                           f"with the array): pass out=, a buffer made before the capture")
    with _lock:
        blocks = _idle.get((backend, device, stream, nbytes))
        if blocks:
            _idle_bytes[backend, device] -= nbytes
            return blocks.pop()
    return backend.alloc(nbytes, device)


def give_back(backend, device: int, stream: int, nbytes: int, ptr: int) -> None:
    """A dropped output's block (what take gave for `nbytes`): idle for its stream's next output, or freed
    past IDLE_LIMIT."""
    nbytes = rounded(nbytes)
    with _lock:
        if _idle_bytes[backend, device] + nbytes <= IDLE_LIMIT:
            _idle.setdefault((backend, device, stream, nbytes), []).append(ptr)
            _idle_bytes[backend, device] += nbytes
            return
    backend.free(ptr, device)


def idle_bytes(backend, device: int) -> int:
    return _idle_bytes[backend, device]


def release() -> int:
    """Give every idle block back to its driver (each free waits for its device); returns the bytes freed.
    Public as jitgemm.free_idle_memory()."""
    with _lock:
        held = list(_idle.items())
        _idle.clear()
        _idle_bytes.clear()
    freed = 0
    for (backend, device, _stream, nbytes), ptrs in held:
        for ptr in ptrs:
            backend.free(ptr, device)
            freed += nbytes
    return freed


backend_registry.on_swap.append(release)  # blocks belong to the backend that made them
