"""How a plan runs: a kernel launch with its arguments packed once, or a cuBLAS call.

A launch is built once per call signature (the pipeline caches it) and then only has its pointers
(and scale values) written before each run: no per-call marshalling and no branching on the kernel
family above this module. Both kinds take the call's values in its entry's canonical order
(gemm: x, w, bias, out; scaled_gemm: x, w, scale_x, scale_w, bias, out)."""
from __future__ import annotations

import ctypes
import threading

from . import workspace
from .runtime import blas
from .runtime.types import ArgPack


class KernelLaunch:
    """One kernel with its argument block. `targets[i]` is where value i of a call goes: a slot of
    the block (pointers, by their 8 bytes; scales, as an fp32 in the slot's low 4 bytes) or a scratch
    slot for operands the signature says are absent."""

    __slots__ = ("backend", "device", "kernel", "func", "grid", "block", "shared", "pdl", "pack", "targets",
                 "ws_floats", "ws_tiles", "ws_slots", "ws_stream", "lock", "_launch")

    def __init__(self, backend, device: int, kernel, plan, args: list, value_slots: tuple, workspace_slots=None):
        self.backend, self.device, self.kernel = backend, device, kernel
        self.func, self.grid, self.block, self.shared = kernel.func, plan.grid, plan.block, plan.shared
        self.pdl = bool(plan.extra.get("pdl", False))
        kernel.ensure_shared(plan.shared)
        self.pack = ArgPack(kernel.arg_kinds).set(*args)
        self._launch = backend.launcher(self.func, self.grid, self.block, self.shared, self.pack, device, self.pdl)
        words = self.pack.words()
        floats = ctypes.cast(words, ctypes.POINTER(ctypes.c_float))
        scratch = (ctypes.c_uint64 * 1)()
        self.targets = tuple((scratch, 0) if s is None else (floats, 2 * s) if kernel.arg_kinds[s] == "f32"
                             else (words, s) for s in value_slots)
        # split-K through a workspace: each stream has its own (kernels on two streams may overlap)
        self.ws_floats = plan.extra.get("ws_floats", 0) if workspace_slots else 0
        self.ws_tiles = plan.extra.get("tiles", 0)
        self.ws_slots, self.ws_stream = workspace_slots, None
        if self.ws_floats:
            self._bind_workspace(0)  # the default stream's now: before any graph capture
        self.lock = threading.Lock()

    def run(self, stream: int, values) -> None:
        """Write this call's values, then launch (locked: the block is shared by every thread)."""
        with self.lock:
            for (arr, i), v in zip(self.targets, values):
                arr[i] = v
            self.fire(stream)

    def bind(self, values) -> None:
        """Write values once, for a launch that only ever fires with them (a Prepared call's own)."""
        for (arr, i), v in zip(self.targets, values):
            arr[i] = v

    def fire(self, stream: int) -> None:
        """Launch with the values already in the block (a Prepared call's own launch)."""
        if self.ws_floats and stream != self.ws_stream:
            self._bind_workspace(stream)
        self._launch(stream)

    def _bind_workspace(self, stream: int) -> None:
        ws = workspace.get(self.backend, self.device, stream, self.ws_floats, self.ws_tiles)
        words = self.pack.words()
        words[self.ws_slots[0]] = ws.partials.ptr
        if self.ws_slots[1] is not None:  # the counters (split-K); the fp8 epilogue has none
            words[self.ws_slots[1]] = ws.counters.ptr
        self.ws_stream = stream


class LtEpilogueLaunch(KernelLaunch):
    """cuBLASLt's fp32 sums of x . w^T into the stream's split-K workspace (jitgemm.workspace: stream-ordered, so
    the two launches of one call never meet another call's), then the epilogue kernel that scales, adds the bias
    and rounds them into out. The kernel's block holds the workspace pointer the sums go to, bound per stream
    like the moderate kernel's, so both launches of a call use one buffer even after the workspace grew.
    matmul: a blaslt.Fp8Matmul with fp32 output of row pitch plan.extra["lda"]."""

    __slots__ = ("matmul", "xw")

    def __init__(self, backend, device: int, kernel, plan, args: list, value_slots: tuple, matmul):
        super().__init__(backend, device, kernel, plan, args, value_slots, workspace_slots=(2, None))
        self.matmul = matmul
        self.xw = (ctypes.c_uint64 * 2)()  # x's and w's pointers: cuBLASLt's, not the kernel's
        self.targets = ((self.xw, 0), (self.xw, 1)) + self.targets[2:]

    def fire(self, stream: int) -> None:
        if stream != self.ws_stream:
            self._bind_workspace(stream)
        self.matmul.run(stream, self.xw[0], self.xw[1], 0, 0, 1.0, self.pack.words()[2])
        self._launch(stream)


class _LibraryCall:
    """A vendor-library launch (no kernel of ours): bind() keeps a Prepared call's values, fire() runs them."""

    __slots__ = ("values", "kernel")

    def bind(self, values) -> None:
        self.values = values

    def fire(self, stream: int) -> None:
        self.run(stream, self.values)


class BlasLaunch(_LibraryCall):
    """cuBLAS for a plan the dispatcher sent there: out = x . w^T from the x, w and out values."""

    __slots__ = ("backend", "device", "dtype", "n", "m", "k", "ldx", "ldw", "ldo")

    def __init__(self, backend, device: int, dtype: str, n: int, m: int, k: int, ldx: int, ldw: int, ldo: int):
        self.backend, self.device, self.dtype = backend, device, dtype
        self.n, self.m, self.k, self.ldx, self.ldw, self.ldo = n, m, k, ldx, ldw, ldo
        self.values, self.kernel = None, None
        blas.workspace(backend, device, 0)  # the default stream's now, before any graph capture

    def run(self, stream: int, values) -> None:
        x, w, _bias, out = values
        blas.gemm(self.backend, self.device, stream, self.dtype, self.n, self.m, self.k, x, self.ldx, w, self.ldw,
                  out, self.ldo)


class LtLaunch(_LibraryCall):
    """cuBLASLt for an fp8 plan the dispatcher sent there (jitgemm.runtime.blaslt), from scaled_gemm's values
    (x, w, scale_x, scale_w, bias, out). scale_kinds says what each scale's value is: "pointer" (a one-element
    device array: cuBLASLt's scale pointer), "value" (a number: folded into alpha) or "none"."""

    __slots__ = ("matmul", "sx_pointer", "sx_value", "sw_pointer", "sw_value")

    def __init__(self, matmul, scale_kinds: tuple[str, str]):
        self.matmul = matmul
        sx, sw = scale_kinds
        self.sx_pointer, self.sx_value = sx == "pointer", sx == "value"
        self.sw_pointer, self.sw_value = sw == "pointer", sw == "value"
        self.values, self.kernel = None, None

    def run(self, stream: int, values) -> None:
        x, w, sx, sw, _bias, out = values
        alpha = (sx if self.sx_value else 1.0) * (sw if self.sw_value else 1.0)
        self.matmul.run(stream, x, w, sx if self.sx_pointer else 0, sw if self.sw_pointer else 0, alpha, out)
