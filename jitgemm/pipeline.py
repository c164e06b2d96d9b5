"""The call pipeline every device call runs through: gemm, matmul, Linear, scaled_gemm, Fp8Linear
(and, through them, jitgemm.torch and jitgemm.parallel).

A call is: adapt each operand once (by type: CuPy, torch, DeviceArray, View, and other
__cuda_array_interface__ objects that name their device), build the call's
signature (entry, settings generation, and each operand's type, shape, strides, dtype and device),
look it up in a cache of entries, check what the signature does not fix (pointer alignment, scale
values), write the pointers into the entry's packed arguments and launch.

Anything else takes the entry's cold path: full validation (the errors that name the argument, the
rule and the values), placement, planning, compiling, and a new entry under the signature. So the
cache never lets an invalid call through: every rule looks only at what the key holds, at what is
checked on every call, or is run again on the cold path. Host (numpy) operands always take the cold
path: they are copied per call anyway."""
from __future__ import annotations

import collections
import functools
import math
import sys
from typing import Any, Callable

from . import config, validate
from .validate import stream_handle
from .arrays import View, cai_signature, signature_fn
from .device_array import DeviceArray
from .runtime import backend as backend_registry
from .runtime.backend import default_backend, get_backend

_SIGNATURES: dict[type, Callable] = {}   # type -> its hot-path adapter
_ENTRIES: dict[tuple, "Entry"] = {}
MAX_ENTRIES = 4096                  # a model has a few hundred signatures; past this, start over
#: calls that took the cold path, by why (counted there only, so the hot path pays nothing): a model whose
#: "new signature" count keeps growing step after step plans every call (see jitgemm.torch.routing)
COLD_CALLS: collections.Counter = collections.Counter()
_CHECK_FAILED = "a per-call check failed (alignment, scale value, out over an input)"


class Entry:
    """What a cached signature runs. checks[i] for value i: > 0, the pointer's required alignment in
    bytes; -1, a scale passed by value (finite and >= 0); 0, nothing (the signature fixes the rest).
    extents[i]: value i's bytes [lo, hi) relative to its pointer (validate.byte_extent; None: not memory),
    so each call's out (the last value) is checked apart from the inputs; the check is by extent only, so
    a call whose out interleaves with an input (column blocks of one buffer) takes the cold path, whose
    rule (validate.require_out_apart) tells them apart."""

    __slots__ = ("launch", "stream_of", "new_out", "out_extent", "input_extents", "named", "masks", "scales")

    def __init__(self, launch, checks: tuple, stream_of: Callable[[], int], new_out: Callable | None,
                 extents: list | None = None):
        # x's own interface stream is read from each call's x (None here), not from the first call's
        self.stream_of = None if isinstance(stream_of, InterfaceStream) else stream_of
        self.launch, self.new_out = launch, new_out
        self.out_extent = extents[-1] if extents else None
        self.input_extents = tuple((i, *e) for i, e in enumerate(extents[:-1]) if e) \
            if extents and extents[-1] else ()
        self.named = None  # the streams the operands' interfaces name: read at the first run (the key fixes them)
        # the checks as (value index, alignment - 1) of each pointer that must be aligned (alignments are powers of
        # two) and the indices of scale values: accepts() looks at nothing else
        if any(c > 0 and c & (c - 1) for c in checks):
            raise ValueError(f"pointer alignments must be powers of two, got {checks}")
        self.masks = tuple((i, c - 1) for i, c in enumerate(checks) if c > 1)
        self.scales = tuple(i for i, c in enumerate(checks) if c < 0)

    def accepts(self, values) -> bool:
        for i, m in self.masks:
            if values[i] & m:
                return False
        for i in self.scales:
            if not 0.0 <= values[i] < math.inf:
                return False
        out = values[-1]
        if out and self.input_extents:
            olo, ohi = self.out_extent
            olo += out
            ohi += out
            for i, lo, hi in self.input_extents:
                v = values[i]
                if v + lo < ohi and olo < v + hi:
                    return False
        return True

    def run(self, operands: tuple, values: list, stream: Any):
        """Launch on the stream (None: the operands' library's current one); returns the output."""
        if stream is None:
            s = self.stream_of() if self.stream_of is not None else interface_stream(operands[0])
        elif type(stream) is int:
            s = stream
        else:
            s = stream_handle(stream)
        named = self.named
        if named is None:
            named = self.named = named_streams(operands)
        if named:
            self._order_after(named, s)
        out = operands[-1]
        if out is None:
            out, values[-1] = self.new_out(operands[0], s)
        self.launch.run(s, values)
        return out

    def _order_after(self, named: tuple, s: int) -> None:
        """The launch stream waits for each other stream an operand's interface names (the interface's rule
        for its consumers: the data is ready in that stream's order, not in ours); the host does not wait."""
        launch = self.launch
        for st in named:
            if st == s or (st == 1 and s == 0):  # the same stream (1: the legacy one, which jitgemm calls 0)
                continue
            if launch.backend.stream_capturing(s, launch.device):
                raise ValueError(f"an operand's __cuda_array_interface__ names stream {st:#x}, and the call is "
                                 f"captured on stream {s:#x}: jitgemm orders the two with an event, which a "
                                 f"graph capture cannot take from outside it; make {s:#x} wait for {st:#x} "
                                 f"before the capture, or give the operands the capturing stream")
            launch.backend.stream_wait(s, st, launch.device)


def call(tag: tuple, operands: tuple, stream: Any, cold: Callable):
    """Run a call: its cached entry when the signature is known and the per-call checks pass, else
    `cold(key, *operands, stream)` (key None: this call cannot be cached). `operands` ends with out."""
    key = [tag, config.settings().generation]
    values = []
    adapter = _SIGNATURES.get
    for o in operands:
        if o is None:
            key.append(None)
            values.append(0)
            continue
        f = adapter(type(o))
        r = f(o) if f is not None else _learn(type(o))(o)
        if r is None:
            COLD_CALLS["no fast-path signature (host arrays, other types)"] += 1
            return cold(None, *operands, stream)
        values.append(r[0])
        key.append(r[1])
    key = tuple(key)
    e = _ENTRIES.get(key)
    if e is None or not e.accepts(values):
        COLD_CALLS["new signature" if e is None else _CHECK_FAILED] += 1
        return cold(key, *operands, stream)
    return e.run(operands, values, stream)


def torch_pair(tag: tuple, x: Any, w: Any):
    """call(tag, (x, w, None, None), None, ...) for two CUDA torch tensors in one frame, for jitgemm.torch's routed
    layers: the key call() makes (arrays._torch_signature's form: type, shape, strides, dtype, device), the entry's
    per-call checks, its output and launch on torch's current stream; None where call() must run instead (no entry
    under the key, a check that fails, an entry that has not run once). Why a second door: with a model's own Python
    between its linears (a walk over other objects), a routed nn.Linear cost ~4 us more than torch's in hf_decode's
    113-linear step, against 1 us less in a tight loop (session 26, tools/torch_call_probe.py model_step): each of
    the call's Python frames finds the host's caches cold. This door skips four of linear -> call -> adapters'
    frames (tools/hotpath_cpu.py: 3.7 against 4.4 us a call on the CPU stand-in)."""
    key = (tag, config.settings().generation,
           (type(x), x.shape, x.stride(), x.dtype, x.get_device()),
           (type(w), w.shape, w.stride(), w.dtype, w.get_device()), None, None)
    e = _ENTRIES.get(key)
    # named == (): run once and no operand names a stream (torch tensors never do); stream_of None: an interface's
    if e is None or e.named != () or e.stream_of is None:
        return None
    values = [x.data_ptr(), w.data_ptr(), 0, 0]
    if not e.accepts(values):
        return None
    s = e.stream_of()
    out, values[3] = e.new_out(x, s)
    e.launch.run(s, values)
    return out


def _learn(tp: type) -> Callable:
    """The hot-path adapter of a type met for the first time (types without one: always the cold path)."""
    f = _SIGNATURES[tp] = signature_fn(tp) or _no_signature
    return f


def _no_signature(_obj) -> None:
    return None


def store(key: tuple | None, entry: Entry) -> None:
    if key is None:
        return
    if len(_ENTRIES) >= MAX_ENTRIES:
        _ENTRIES.clear()
    _ENTRIES[key] = entry


def clear() -> None:
    """Forget every cached entry (the next call of each signature plans again)."""
    _ENTRIES.clear()


backend_registry.on_swap.append(clear)  # entries hold launches bound to a backend


# ---- placement: which backend/device, which stream -----------------------------------------------------
def placement(views: list[tuple[str, View]]):
    """(backend, device, host) of a call's operands: all on one device, or all on the host; a device out
    apart from the inputs."""
    validate.require_addressable(views)
    for _, v in views:
        if v.device == -1:  # __cuda_array_interface__ without a device attribute: ask the driver
            v.device = get_backend(v.vendor or "cuda").device_of_pointer(v.ptr)
    vendor, device = validate.require_same_device(views)
    validate.require_out_apart(views)
    if vendor is None:
        backend = default_backend()
        return backend, backend.current_device(), True
    return get_backend(vendor), device, False


def extents(views: list) -> list:
    """Entry's extents for a call's values in order: each View's byte_extent, None where no View."""
    return [validate.byte_extent(v) if isinstance(v, View) else None for v in views]


def current_stream_rule(views: list[View], device: int) -> Callable[[], int]:
    """What stream=None means: the current stream of the operands' library on their device (torch's
    for torch tensors, CuPy's for CuPy arrays: the first operand of either decides); else, where x
    (views[0]) is another __cuda_array_interface__ object, the stream its interface names (a CuPy
    bf16 wrapper passes on CuPy's current stream that way); else the default stream. Read through the
    library's module object: jitgemm never imports torch."""
    for v in views:
        if v.kind == "torch":
            return _torch_current_stream(sys.modules["torch"], device)
        if v.kind == "cupy":
            return _cupy_current_stream(sys.modules["cupy"], device)
    if views and views[0].kind == "cai":
        own = getattr(type(views[0].obj), "jitgemm_stream_rule", None)  # jitgemm.CupyBf16: CuPy's rule
        return own(device) if own is not None else InterfaceStream(views[0].obj)
    return _default_stream


def interface_stream(obj: Any) -> int:
    """The stream an __cuda_array_interface__ (version 3) names for its data: its handle, which the
    driver takes as it is (1: the legacy default stream, 2: the per-thread one); 0 (the default stream)
    where it names none. Work launched there is ordered after what the producer enqueued."""
    if type(obj) is DeviceArray:  # jitgemm's own (an output of an earlier call): no interface dict per call
        return obj.stream or 0
    try:
        st = obj.__cuda_array_interface__.get("stream")
    except (AttributeError, TypeError, RuntimeError):
        return 0
    return st if type(st) is int and st > 0 else 0


def named_streams(operands) -> tuple:
    """The streams other than "none" that the operands' interfaces name (jitgemm's DeviceArray outputs and
    other __cuda_array_interface__ objects: the types whose signature holds that stream), each once. CuPy,
    torch and jitgemm.CupyBf16 operands follow their library's current-stream rule instead, and name none."""
    out = []
    for o in operands:
        tp = type(o)
        if tp is DeviceArray:
            st = None if o.stream is None else o.stream or 1  # made on the legacy stream: its interface says 1
        elif o is not None and signature_fn(tp) is cai_signature:
            st = o.__cuda_array_interface__.get("stream")
        else:
            continue
        if type(st) is int and st > 0 and st not in out:
            out.append(st)
    return tuple(out)


class InterfaceStream:
    """stream=None when x is an interface object: the stream x's interface names. Called by the cold
    path for its own launch; a cached Entry reads each call's x instead (see Entry.__init__)."""
    __slots__ = ("x",)

    def __init__(self, x: Any):
        self.x = x

    def __call__(self) -> int:
        return interface_stream(self.x)


def _default_stream() -> int:
    return 0


def _torch_current_stream(torch, device: int) -> Callable[[], int]:
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # one C call; the public API builds a Stream
    if raw is not None:
        return functools.partial(raw, device)
    return lambda: torch.cuda.current_stream(device).cuda_stream


def _cupy_current_stream(cupy, device: int) -> Callable[[], int]:
    get = cupy.cuda.get_current_stream
    try:
        get(device)
    except TypeError:  # an older CuPy: the current device's stream only
        return lambda: get().ptr
    return lambda: get(device).ptr


# ---- outputs of the input's kind ------------------------------------------------------------------------
def output_factory(like: View, backend, device: int, shape: tuple[int, int], dtype: str) -> Callable:
    """A function (like_obj, stream) -> (new output, its pointer): a torch tensor for torch inputs, a CuPy
    array for CuPy inputs (where CuPy has the dtype; their allocators know the current stream), what an
    interface wrapper's `jitgemm_empty` makes (CupyBf16: CuPy arrays), else a jitgemm DeviceArray whose
    memory is that stream's (stream_pool: no device-wide wait when dropped)."""
    if like.kind == "torch":
        # x's own dtype (the key fixes it): None, so new_empty has no dtype to parse
        tdtype = None if like.raw_dtype == dtype else getattr(sys.modules["torch"], dtype)
        return lambda t, _stream: _torch_empty(t, shape, tdtype)
    if like.kind == "cupy":
        cupy = sys.modules["cupy"]
        npdt = _cupy_dtype(cupy, dtype)
        if npdt is not None:
            return lambda a, _stream: cupy_empty(cupy, device, shape, npdt)
    make = getattr(type(like.obj), "jitgemm_empty", None) if like.kind == "cai" else None
    if make is not None:  # a wrapper that makes its own kind of output (jitgemm.CupyBf16)
        return lambda _like, _stream: make(shape, dtype, device)
    return lambda _, stream: _device_array(backend, device, shape, dtype, stream)


def _torch_empty(like, shape, tdtype):
    """(a new tensor like `like`'s, its pointer); tdtype None: `like`'s own dtype."""
    t = like.new_empty(shape) if tdtype is None else like.new_empty(shape, dtype=tdtype)
    return t, t.data_ptr()


def cupy_empty(cupy, device: int, shape, dtype):
    """(a new CuPy array on `device`, its pointer); no device switch when it is already current."""
    if cupy.cuda.runtime.getDevice() == device:
        a = cupy.empty(shape, dtype=dtype)
    else:
        with cupy.cuda.Device(device):
            a = cupy.empty(shape, dtype=dtype)
    return a, a.data.ptr


def _cupy_dtype(cupy, dtype: str):
    """The numpy dtype CuPy can hold for a jitgemm dtype, or None (bf16 where CuPy has none)."""
    from .arrays import numpy_dtype
    dt = numpy_dtype(dtype)
    try:
        cupy.empty((0,), dtype=dt)
    except Exception:
        return None
    return dt


def _device_array(backend, device: int, shape, dtype: str, stream: int):
    d = DeviceArray(backend, device, shape, dtype, stream)
    return d, d.ptr


def deliver(result, out: Any):
    """A result computed on the host path: written into `out` (and `out` returned) when given."""
    if out is None:
        return result
    out[...] = result
    return out


# ---- a pre-planned call ------------------------------------------------------------------------------------
class Prepared:
    """A call with everything decided up front: operands, output, plan and packed arguments, for decode
    loops, benchmarks and graph capture. launch(stream) is one driver call (gemm's and scaled_gemm's
    alike: `prepare` and `prepare_scaled` both return one)."""

    def __init__(self, plan, launch, values: list, keep: tuple):
        self.plan, self.kernel, self._keep = plan, launch.kernel, keep  # _keep: the operands stay alive
        launch.bind(values)
        self._fire = launch.fire

    def launch(self, stream: Any = 0) -> None:
        self._fire(stream if type(stream) is int else stream_handle(stream))
