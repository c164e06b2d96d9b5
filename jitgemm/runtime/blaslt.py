"""cuBLASLt for the fp8 calls the dispatcher sends there (W8A8 from 16 tokens on NVIDIA: where the skinny fp8
kernel measured 0.37-0.88x torch._scaled_mm, which is this same library), loaded with ctypes
like cuBLAS (jitgemm.runtime.blas): neither CuPy nor torch needed, and the call can be captured in a graph.

out[N, M] = x[N, K] . w[M, K]^T is cuBLASLt's "TN" form, the only one its fp8 kernels take: the row-major
weight is a column-major K x M matrix used transposed (A), the tokens a K x N one (B), the output a
column-major M x N one (D, ldd = out's row pitch). Per-tensor scales are either device pointers (cuBLASLt's
A/B scale pointers, read by the kernel) or numbers (folded into alpha). One Fp8Matmul per call signature
holds the descriptors and the algorithm cuBLASLt's heuristic picked for it (made on the cold path). Scale
vectors and a bias are not cuBLASLt's here: the route then asks for fp32 sums, which jitgemm's epilogue kernel
scales and rounds (scaled._launch_for). With a fixed algorithm, workspace and stream, results are the same bits
run to run (cuBLAS's reproducibility rule). JITGEMM_CUBLASLT=path picks the library file."""
from __future__ import annotations

import ctypes
import threading

from .blas import Loaded, VendorLibrary, workspace

# values from cublasLt.h / library_types.h (CUDA 12.x and 13.x)
_R_32F, _E4M3 = 0, 28                        # CUDA_R_32F, CUDA_R_8F_E4M3
OUT_TYPES = {"bfloat16": 14, "float16": 2, "float32": _R_32F}  # CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F
_COMPUTE_32F = 68                            # CUBLAS_COMPUTE_32F
_DESC_TRANSA, _DESC_TRANSB = 3, 4            # cublasLtMatmulDescAttributes_t
_DESC_A_SCALE, _DESC_B_SCALE = 17, 18
_PREF_MAX_WORKSPACE = 1                      # cublasLtMatmulPreferenceAttributes_t
_PREF_MIN_ALIGN = (5, 6, 7, 8)               # ... MIN_ALIGNMENT_{A,B,C,D}_BYTES
_OP_N, _OP_T = 0, 1
#: the most workspace the heuristic may plan for. With 32 MiB it picked split-K algorithms (1-3.5 MiB of workspace)
#: that ran 0.84-0.91x torch._scaled_mm at N = 64, large K (H100, 2026-12-05, tools/lt_algo_probe.py); limited to
#: 1 MiB its first pick needs none and runs 0.98-1.01x, torch's own choice.
MAX_WORKSPACE_BYTES = 1 << 20
NOT_SUPPORTED = 15                           # CUBLAS_STATUS_NOT_SUPPORTED


class _Heuristic(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t: the algorithm (an opaque 64-byte struct) and what it needs."""
    _fields_ = [("algo", ctypes.c_uint64 * 8), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


class Unsupported(Exception):
    """cuBLASLt has no algorithm for this call (its layout, alignment or GPU): the kernel runs instead."""


class _Lt(VendorLibrary):
    CREATE = "cublasLtCreate"

    def __init__(self):
        super().__init__("cublasLt", "JITGEMM_CUBLASLT")
        vp, i32, u64, i64, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
        pvp = ctypes.POINTER(vp)
        self._fn("cublasLtCreate", [pvp])
        self._fn("cublasLtMatmulDescCreate", [pvp, i32, i32])
        self._fn("cublasLtMatmulDescDestroy", [vp])
        self._fn("cublasLtMatmulDescSetAttribute", [vp, i32, vp, sz])
        self._fn("cublasLtMatrixLayoutCreate", [pvp, i32, u64, u64, i64])
        self._fn("cublasLtMatrixLayoutDestroy", [vp])
        self._fn("cublasLtMatmulPreferenceCreate", [pvp])
        self._fn("cublasLtMatmulPreferenceDestroy", [vp])
        self._fn("cublasLtMatmulPreferenceSetAttribute", [vp, i32, vp, sz])
        self._fn("cublasLtMatmulAlgoGetHeuristic", [vp, vp, vp, vp, vp, vp, vp, i32, ctypes.POINTER(_Heuristic),
                                                    ctypes.POINTER(i32)])
        self._fn("cublasLtMatmul", [vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, sz, vp])


_lt = Loaded(_Lt)


def cublaslt() -> _Lt:
    """The loaded library (raises BackendUnavailable when there is none)."""
    return _lt.get()


def available() -> tuple[bool, str]:
    """(True, library path) or (False, why): the dispatcher routes fp8 calls here only when True."""
    return _lt.available()


def alignment(ptr: int) -> int:
    """The largest power of two up to 256 that divides a device address (cuBLASLt's alignment classes)."""
    a = 256
    while a > 16 and ptr % a:
        a //= 2
    return a


class Fp8Matmul:
    """One call signature's fp8 matmul: out (N x M, row pitch ldo, out_dtype) = alpha * (x . w^T) * the scale
    pointers' values; out_dtype "float32": the sums for the epilogue kernel. Descriptors and algorithm are made
    once, with the device's context current; aligns (of w, x, out) are the byte alignments every later call's
    pointers keep (the pipeline's per-call checks), so the algorithm picked for them stays valid. Raises
    Unsupported where cuBLASLt has no algorithm."""

    def __init__(self, backend, device: int, out_dtype: str, n: int, m: int, k: int, ldx: int, ldw: int, ldo: int,
                 aligns: tuple[int, int, int]):
        lt = self.lt = cublaslt()
        self.backend, self.device = backend, device
        self.desc, self.layouts, self.algo = ctypes.c_void_p(), [], _Heuristic()
        self.scales = [0, 0]  # the A (weight) and B (token) scale pointers the descriptor holds now (0: none)
        self.lock = threading.Lock()
        with lt.lock:
            backend.make_current(device)
            self.handle = lt.handle(device)
            lt.check("cublasLtMatmulDescCreate", lt.lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), _COMPUTE_32F,
                                                                                 _R_32F))
            self._set(_DESC_TRANSA, ctypes.c_int32(_OP_T))
            self._set(_DESC_TRANSB, ctypes.c_int32(_OP_N))
            a = self._layout(_E4M3, k, m, ldw)                 # w: column-major K x M, used transposed
            b = self._layout(_E4M3, k, n, ldx)                 # x: column-major K x N
            d = self._layout(OUT_TYPES[out_dtype], m, n, ldo)  # out: column-major M x N (C is D: beta = 0)
            self.abd = (a, b, d)
            pref = ctypes.c_void_p()
            lt.check("cublasLtMatmulPreferenceCreate", lt.lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)))
            try:
                ws = ctypes.c_uint64(MAX_WORKSPACE_BYTES)
                lt.check("cublasLtMatmulPreferenceSetAttribute", lt.lib.cublasLtMatmulPreferenceSetAttribute(
                    pref, _PREF_MAX_WORKSPACE, ctypes.byref(ws), ctypes.sizeof(ws)))
                w_align, x_align, o_align = aligns
                for attr, al in zip(_PREF_MIN_ALIGN, (w_align, x_align, o_align, o_align)):
                    v = ctypes.c_uint32(al)
                    lt.check("cublasLtMatmulPreferenceSetAttribute", lt.lib.cublasLtMatmulPreferenceSetAttribute(
                        pref, attr, ctypes.byref(v), ctypes.sizeof(v)))
                count = ctypes.c_int(0)
                status = lt.lib.cublasLtMatmulAlgoGetHeuristic(self.handle, self.desc, a, b, d, d, pref, 1,
                                                               ctypes.byref(self.algo), ctypes.byref(count))
            finally:
                lt.lib.cublasLtMatmulPreferenceDestroy(pref)
        if status == NOT_SUPPORTED or (status == 0 and (count.value < 1 or self.algo.state != 0)):
            self.close()
            raise Unsupported(f"cuBLASLt has no fp8 algorithm for N={n}, M={m}, K={k}, pitches x {ldx} / w {ldw} / "
                              f"out {ldo}, alignments {aligns}")
        if status != 0:
            self.close()
            lt.check("cublasLtMatmulAlgoGetHeuristic", status)
        self.ws_size = self.algo.workspace_size
        self.alpha, self.beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
        # made once: a byref per call costs ~0.2 us of the hot path (alpha's value changes in place)
        self.refs = (ctypes.byref(self.alpha), ctypes.byref(self.beta), ctypes.byref(self.algo.algo))

    def _set(self, attr: int, value) -> None:
        self.lt.check("cublasLtMatmulDescSetAttribute", self.lt.lib.cublasLtMatmulDescSetAttribute(
            self.desc, attr, ctypes.byref(value), ctypes.sizeof(value)))

    def _layout(self, dtype: int, rows: int, cols: int, ld: int) -> ctypes.c_void_p:
        lay = ctypes.c_void_p()
        self.lt.check("cublasLtMatrixLayoutCreate", self.lt.lib.cublasLtMatrixLayoutCreate(
            ctypes.byref(lay), dtype, rows, cols, ld))
        self.layouts.append(lay)
        return lay

    def run(self, stream: int, x: int, w: int, x_scale: int, w_scale: int, alpha: float, out: int) -> None:
        """Enqueue out = alpha * (x . w^T) * [*w_scale] * [*x_scale] on `stream` (a scale pointer 0: none)."""
        lt = self.lt
        with self.lock:  # the descriptor's scale pointers and alpha belong to this call until it is enqueued
            if w_scale != self.scales[0]:
                self._set(_DESC_A_SCALE, ctypes.c_void_p(w_scale or None))
                self.scales[0] = w_scale
            if x_scale != self.scales[1]:
                self._set(_DESC_B_SCALE, ctypes.c_void_p(x_scale or None))
                self.scales[1] = x_scale
            self.alpha.value = alpha
            a, b, d = self.abd
            alpha, beta, algo = self.refs
            ws = workspace(self.backend, self.device, stream)
            lt.check("cublasLtMatmul", lt.lib.cublasLtMatmul(
                self.handle, self.desc, alpha, w, a, x, b, beta, out, d, out, d, algo, ws, self.ws_size, stream))

    def close(self) -> None:
        lib = getattr(self.lt, "lib", None)
        if lib is None:
            return
        for lay in self.layouts:
            lib.cublasLtMatrixLayoutDestroy(lay)
        self.layouts = []
        if self.desc:
            lib.cublasLtMatmulDescDestroy(self.desc)
            self.desc = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
