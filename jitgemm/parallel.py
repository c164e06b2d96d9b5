"""Tensor-parallel linear layers over the GPUs of one host, the way TP serving shards a decoder layer:
column-parallel (qkv, gate_up: each GPU holds a block of output rows) and row-parallel (o, down: each
GPU holds a block of K, partial outputs summed by an NCCL all-reduce). One process drives all GPUs;
collectives are NCCL through cupy.cuda.nccl (RCCL through cupy-rocm), never home-made. Keep NVLink
multicast off on shared machines (NCCL_NVLS_ENABLE=0, set here unless the caller set it)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .api import Linear
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
    import cupy
    devs = list(range(cupy.cuda.runtime.getDeviceCount())) if devices is None else list(devices)
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


class ColumnParallelLinear:
    """y[:, block_g] = x @ w[block_g].T (+ bias[block_g]) on GPU g. forward(x) takes the same x on
    every GPU (a list of per-device arrays, or one host array that is copied to each) and returns the
    per-device output blocks; gather() concatenates them on one device."""

    def __init__(self, w: np.ndarray, bias: np.ndarray | None = None, *, devices: Sequence[int] | None = None):
        w, self.devices = _weight_and_devices(w, devices)
        self.bounds = shard_bounds(w.shape[0], len(self.devices))
        self.layers = []
        for dev, (a, b) in zip(self.devices, self.bounds):
            wd = _upload(w[a:b], dev)
            bd = _upload(np.asarray(bias)[a:b], dev) if bias is not None else None
            self.layers.append(Linear(wd, bd))

    def forward(self, xs):
        xs = self._per_device(xs)
        return [layer(x) for layer, x in zip(self.layers, xs)]  # each runs on its weight's device

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


class RowParallelLinear:
    """y = sum_g x[:, block_g] @ w[:, block_g].T, the sum by an NCCL all-reduce, bias added once (on
    the result). forward(xs) takes each GPU's K block of x (what a column-parallel layer before it
    produced) and returns y on every GPU."""

    def __init__(self, w: np.ndarray, bias: np.ndarray | None = None, *, devices: Sequence[int] | None = None):
        w, self.devices = _weight_and_devices(w, devices)
        self.bounds = shard_bounds(w.shape[1], len(self.devices))
        for a, b in self.bounds:
            if (b - a) % 8:
                raise ValueError(f"K = {w.shape[1]} splits into a block of {b - a} columns over "
                                 f"{len(self.devices)} GPUs: each block must be a multiple of 8")
        # the bias rides on GPU 0's partial, so the all-reduce adds it exactly once
        self.layers = [Linear(_upload(w[:, a:b], dev), _upload(np.asarray(bias), dev) if (bias is not None and i == 0) else None)
                       for i, (dev, (a, b)) in enumerate(zip(self.devices, self.bounds))]
        self._comms = None

    def _communicators(self):
        if self._comms is None and len(self.devices) > 1:
            from cupy.cuda import nccl
            self._comms = nccl.NcclCommunicator.initAll(self.devices)
        return self._comms

    def split_input(self, x: np.ndarray):
        """Host x -> each GPU's K block (for tests and single-layer use)."""
        return [_upload(np.asarray(x)[:, a:b], d) for d, (a, b) in zip(self.devices, self.bounds)]

    def forward(self, xs):
        """Each GPU's partial on the default stream, then one grouped in-place all-reduce on it."""
        if len(xs) != len(self.devices):
            raise ValueError(f"forward needs one K block of x per GPU ({len(self.devices)}), got {len(xs)}")
        outs = [layer(x) for layer, x in zip(self.layers, xs)]
        comms = self._communicators()
        if comms:
            import cupy
            from cupy.cuda import nccl
            kind = {"float16": nccl.NCCL_FLOAT16, "bfloat16": getattr(nccl, "NCCL_BFLOAT16", None)}[self.layers[0].dtype]
            if kind is None:
                raise TypeError("this cupy's NCCL binding has no bfloat16: use float16 for row-parallel layers")
            nccl.groupStart()
            for dev, comm, o in zip(self.devices, comms, outs):
                with cupy.cuda.Device(dev):
                    n = int(np.prod(o.shape))
                    comm.allReduce(o.ptr, o.ptr, n, kind, nccl.NCCL_SUM, 0)
            nccl.groupEnd()
        return outs
