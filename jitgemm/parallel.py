"""Tensor-parallel linear layers over the GPUs of one host, the way TP serving shards a decoder layer:
column-parallel (qkv, gate_up: each GPU holds a block of output rows) and row-parallel (o, down: each
GPU holds a block of K, partial outputs summed by an NCCL all-reduce). One process drives all GPUs;
collectives are NCCL through cupy.cuda.nccl (RCCL through cupy-rocm), never home-made. Keep NVLink
multicast off on shared machines (NCCL_NVLS_ENABLE=0, set here unless the caller set it).

At launch speed (issue #20): each GPU's GEMM goes through the call pipeline into an output buffer the
layer owns (one per GPU and token count, reused by every forward of that N), so after the first call of
a shape a forward is a cached launch per GPU; the all-reduce is enqueued on the same stream as the GEMM
it sums. prepare(n) goes further: per-GPU input and output buffers and prepared launches, so launch() is
one driver call per GPU (and the grouped collective): what a CUDA graph per GPU captures."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from . import validate
from .api import Linear, gemm, prepare
from .arrays import as_view, dtype_name
from .device_array import DeviceArray
from .runtime.backend import default_backend

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")


def shard_bounds(total: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) blocks, as even as possible, every block a multiple of 16 elements
    except possibly the last (16 keeps fp8 and 16-bit rows 16-byte aligned)."""
    if parts < 1:
        raise ValueError(f"the number of GPUs must be >= 1, got {parts}")
    if total < parts:
        raise ValueError(f"cannot split {total} rows/columns over {parts} GPUs")
    unit = 16 if total >= 16 * parts else 1
    blocks = -(-total // unit)
    base, extra = divmod(blocks, parts)
    out, start = [], 0
    for p in range(parts):
        stop = min(total, start + (base + (1 if p < extra else 0)) * unit)
        out.append((start, stop))
        start = stop
    return out


def _devices(devices: Sequence[int] | None) -> list[int]:
    if devices is None:
        devices = range(default_backend().device_count())
    devs = list(devices)
    if not devs or len(set(devs)) != len(devs):
        raise ValueError(f"devices must be distinct GPU indices, got {devices!r}")
    return devs


def _upload(a: np.ndarray, dev: int) -> DeviceArray:
    """A host array on GPU `dev` as jitgemm's own device array (bf16 included, which CuPy lacks)."""
    a = np.ascontiguousarray(a)
    return DeviceArray.from_numpy(default_backend(), dev, a, dtype_name(a.dtype))


def _weight_and_devices(w, devices):
    """The full weight as a 2-D host array, and the GPUs to shard it over."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D [M, K], got shape {w.shape}")
    return w, _devices(devices)


def nccl_all_reduce(devices: list[int]) -> Callable:
    """An in-place sum over the GPUs of each one's buffer: NCCL communicators made once, the reduces
    grouped, each on its GPU's given stream. Returns f(buffers: [(ptr, count)], dtype, streams)."""
    import cupy
    from cupy.cuda import nccl
    comms = nccl.NcclCommunicator.initAll(devices)

    def all_reduce(buffers, dtype: str, streams) -> None:
        kind = {"float16": nccl.NCCL_FLOAT16, "bfloat16": getattr(nccl, "NCCL_BFLOAT16", None)}[dtype]
        if kind is None:
            raise TypeError("this cupy's NCCL binding has no bfloat16: use float16 for row-parallel layers")
        nccl.groupStart()
        for dev, comm, (ptr, count), s in zip(devices, comms, buffers, streams):
            with cupy.cuda.Device(dev):
                comm.allReduce(ptr, ptr, count, kind, nccl.NCCL_SUM, s)
        nccl.groupEnd()
    return all_reduce


class _Sharded:
    """What both layer kinds share: the GPUs, each GPU's Linear, its output buffers per token count,
    the streams a call runs on."""

    def __init__(self, devices: list[int], layers: list[Linear], m_local: list[int]):
        self.devices, self.layers, self._m = devices, layers, m_local
        self.dtype = layers[0].dtype
        self._outs: dict[int, list[DeviceArray]] = {}

    def _streams(self, streams) -> list[int]:
        """Each GPU's stream: None -> its default stream; else one stream (a handle or an object with
        .ptr / .cuda_stream) per GPU."""
        if streams is None:
            return [0] * len(self.devices)
        if len(streams) != len(self.devices):
            raise ValueError(f"streams must be one per GPU ({len(self.devices)}), got {len(streams)}")
        return [validate.stream_handle(s) for s in streams]

    def outputs(self, n: int) -> list[DeviceArray]:
        """The layer's own output buffers for n tokens, one per GPU (made on first use, then reused:
        a forward overwrites the previous forward's results of the same n)."""
        if n not in self._outs:
            b = default_backend()
            self._outs[n] = [DeviceArray(b, dev, (n, m), self.dtype) for dev, m in zip(self.devices, self._m)]
        return self._outs[n]

    def _run(self, xs, streams) -> tuple[list[DeviceArray], list[int]]:
        ss = self._streams(streams)
        n = as_view(xs[0], "x").shape[0]
        outs = self.outputs(n)
        for layer, x, o, s in zip(self.layers, xs, outs, ss):  # each through the pipeline: a cached launch
            gemm(x, layer.weight, layer.bias, out=o, stream=s)
        return outs, ss


class ColumnParallelLinear(_Sharded):
    """y[:, block_g] = x @ w[block_g].T (+ bias[block_g]) on GPU g. forward(x) takes the same x on
    every GPU (a list of per-device arrays, or one host array that is copied to each) and returns the
    per-device output blocks (the layer's own buffers); gather() concatenates them on the host."""

    def __init__(self, w: np.ndarray, bias: np.ndarray | None = None, *, devices: Sequence[int] | None = None):
        w, devs = _weight_and_devices(w, devices)
        self.bounds = shard_bounds(w.shape[0], len(devs))
        layers = []
        for dev, (a, b) in zip(devs, self.bounds):
            wd = _upload(w[a:b], dev)
            bd = _upload(np.asarray(bias)[a:b], dev) if bias is not None else None
            layers.append(Linear(wd, bd))
        super().__init__(devs, layers, [b - a for a, b in self.bounds])

    def forward(self, xs, *, streams=None):
        """Each GPU's block on its stream (None: the default stream of each GPU)."""
        return self._run(self._per_device(xs), streams)[0]

    def prepare(self, n: int, *, streams=None) -> "ParallelCall":
        """Input and output buffers for n tokens and one prepared launch per GPU: fill call.x, then
        call.launch() enqueues the step's GEMMs (nothing validated or planned per launch)."""
        return ParallelCall(self, n, self._streams(streams), None)

    def _per_device(self, xs):
        if isinstance(xs, np.ndarray):
            return [_upload(xs, d) for d in self.devices]
        if len(xs) != len(self.devices):
            raise ValueError(f"forward needs one x per GPU ({len(self.devices)}), got {len(xs)}")
        for dev, x in zip(self.devices, xs):
            v = as_view(x, "x")
            where = v.device if v.device not in (None, -1) else (
                default_backend().device_of_pointer(v.ptr) if v.device == -1 else None)
            if where != dev:
                raise ValueError(f"x for GPU {dev} lives on {'the host' if where is None else f'device {where}'}")
        return list(xs)

    def gather(self, outs) -> np.ndarray:
        """The per-device blocks side by side, on the host (after synchronising each device)."""
        host = []
        for dev, o in zip(self.devices, outs):
            default_backend().synchronize(dev)
            host.append(o.to_numpy() if isinstance(o, DeviceArray) else np.asarray(o))
        return np.concatenate(host, axis=1)


class RowParallelLinear(_Sharded):
    """y = sum_g x[:, block_g] @ w[:, block_g].T, the sum by an NCCL all-reduce, bias added once (on
    the result). forward(xs) takes each GPU's K block of x (what a column-parallel layer before it
    produced) and returns y on every GPU (the layer's own buffers). all_reduce: the collective
    (default: nccl_all_reduce over the layer's GPUs, made on first use)."""

    def __init__(self, w: np.ndarray, bias: np.ndarray | None = None, *, devices: Sequence[int] | None = None,
                 all_reduce: Callable | None = None):
        w, devs = _weight_and_devices(w, devices)
        self.bounds = shard_bounds(w.shape[1], len(devs))
        for a, b in self.bounds:
            if (b - a) % 8:
                raise ValueError(f"K = {w.shape[1]} splits into a block of {b - a} columns over "
                                 f"{len(devs)} GPUs: each block must be a multiple of 8")
        # the bias rides on GPU 0's partial, so the all-reduce adds it exactly once
        layers = [Linear(_upload(w[:, a:b], dev), _upload(np.asarray(bias), dev) if (bias is not None and i == 0) else None)
                  for i, (dev, (a, b)) in enumerate(zip(devs, self.bounds))]
        super().__init__(devs, layers, [w.shape[0]] * len(devs))
        self._all_reduce = all_reduce

    def collective(self) -> Callable | None:
        """The all-reduce (None on one GPU)."""
        if self._all_reduce is None and len(self.devices) > 1:
            self._all_reduce = nccl_all_reduce(self.devices)
        return self._all_reduce

    def split_input(self, x: np.ndarray):
        """Host x -> each GPU's K block (for tests and single-layer use)."""
        return [_upload(np.asarray(x)[:, a:b], d) for d, (a, b) in zip(self.devices, self.bounds)]

    def forward(self, xs, *, streams=None):
        """Each GPU's partial on its stream, then one grouped in-place all-reduce on the same streams."""
        if len(xs) != len(self.devices):
            raise ValueError(f"forward needs one K block of x per GPU ({len(self.devices)}), got {len(xs)}")
        outs, ss = self._run(xs, streams)
        reduce = self.collective()
        if reduce:
            reduce([(o.ptr, int(np.prod(o.shape))) for o in outs], self.dtype, ss)
        return outs

    def prepare(self, n: int, *, streams=None) -> "ParallelCall":
        """As ColumnParallelLinear.prepare, with the all-reduce enqueued after the GEMMs."""
        return ParallelCall(self, n, self._streams(streams), self.collective())


class ParallelCall:
    """A prepared tensor-parallel call at n tokens: x (per-GPU input buffers [n, K_g] to fill), out (the
    layer's outputs for n), launch() (each GPU's GEMM, then the all-reduce for a row-parallel layer, on
    the streams given at prepare: one CUDA graph per GPU can capture it)."""

    def __init__(self, layer: _Sharded, n: int, streams: list[int], all_reduce: Callable | None):
        b = default_backend()
        self.streams, self._reduce, self.dtype = streams, all_reduce, layer.dtype
        self.out = layer.outputs(n)
        self.x = [DeviceArray(b, dev, (n, lin.in_features), layer.dtype) for dev, lin in zip(layer.devices, layer.layers)]
        self._prepared = [prepare(x.view(), lin.weight, lin.bias, out=o.view())
                          for x, lin, o in zip(self.x, layer.layers, self.out)]
        self._buffers = [(o.ptr, int(np.prod(o.shape))) for o in self.out]

    def launch(self) -> None:
        for p, s in zip(self._prepared, self.streams):
            p.launch(s)
        if self._reduce:
            self._reduce(self._buffers, self.dtype, self.streams)
