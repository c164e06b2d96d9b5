"""The vendor BLAS the dispatcher sends a shape to where it measured it faster than jitgemm's kernel:
cuBLAS (`cublasGemmEx`, fp32 accumulation), loaded with ctypes, so neither CuPy nor torch is needed
and the call can be captured in a CUDA graph (CuPy refuses cuBLAS calls during capture).

out[N, M] = x[N, K] . w[M, K]^T in cuBLAS's column-major terms is outT[M, N] = op_T(w) . x^T: the
row-major weight is a column-major K x M matrix (lda = its row pitch), the tokens a K x N one.

Each (device, stream) gets its own 32 MiB workspace (`cublasSetWorkspace`): cuBLAS then allocates
nothing during a call (graph capture allows no allocation) and two streams never share scratch
memory. With a fixed workspace and stream, cuBLAS's results are bit-identical run to run (its
documented reproducibility rule: same toolkit, same GPU). Linux only; JITGEMM_CUBLAS=path picks the
library file."""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import threading

from ..errors import BackendUnavailable, VendorError
from .types import capture_guard

WORKSPACE_BYTES = 32 << 20  # what torch gives cuBLAS on Hopper (CUBLAS_WORKSPACE_CONFIG :4096:8)
_OP_N, _OP_T = 0, 1
_DATA_TYPE = {"float16": 2, "bfloat16": 14}  # CUDA_R_16F, CUDA_R_16BF
_COMPUTE_32F = 68                            # CUBLAS_COMPUTE_32F
_GEMM_DEFAULT = -1                           # CUBLAS_GEMM_DEFAULT: cuBLAS's own heuristic
_STATUS = {1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
           8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
           14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}


def status_name(status: int) -> str:
    """cublasStatus_t's name (cuBLAS and cuBLASLt share the codes)."""
    return _STATUS.get(status, f"cublasStatus {status}")


def library_paths(name: str = "cublas", env: str = "JITGEMM_CUBLAS") -> list[str]:
    """Where lib{name} may be, in the order tried: the env variable, the loader's search path (and a
    library already in the process, e.g. CuPy's or torch's), the NVIDIA pip wheels, the toolkit."""
    paths = [os.environ.get(env, "")] + [f"lib{name}.so.{v}" for v in (13, 12)]
    paths.append(ctypes.util.find_library(name) or "")
    try:
        import nvidia  # namespace package of the nvidia-cublas(-cu12/-cu13) wheels
        for root in nvidia.__path__:
            paths += sorted(glob.glob(os.path.join(root, "*", "lib", f"lib{name}.so.*")), reverse=True)
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            paths += sorted(glob.glob(os.path.join(home, "lib64", f"lib{name}.so.*")), reverse=True)
    return [p for p in paths if p]


def open_library(name: str, env: str) -> tuple[ctypes.CDLL, str]:
    """(the first lib{name} that loads, its path); BackendUnavailable naming what was tried."""
    errors = []
    for path in library_paths(name, env):
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise BackendUnavailable(f"lib{name} not found (tried " + "; ".join(errors[:6]) + f"); set {env}")


class Loaded:
    """A library wrapper made on first use, once, whichever thread asks first."""

    def __init__(self, make):
        self.make, self.obj, self.lock = make, None, threading.Lock()

    def get(self):
        """The wrapper (raises BackendUnavailable when the library does not load)."""
        if self.obj is None:
            with self.lock:
                if self.obj is None:
                    self.obj = self.make()
        return self.obj

    def available(self) -> tuple[bool, str]:
        """(True, library path) or (False, why)."""
        try:
            return True, self.get().path
        except BackendUnavailable as e:
            return False, str(e)


class VendorLibrary:
    """What cuBLAS and cuBLASLt share through ctypes: the library and its path, typed entry points, status
    checks, and one handle per device, made by the CREATE entry point with that device's context current."""

    CREATE = ""

    def __init__(self, name: str, env: str):
        self.lib, self.path = open_library(name, env)
        self.handles: dict[int, ctypes.c_void_p] = {}
        self.lock = threading.Lock()

    def _fn(self, name: str, argtypes: list, restype=ctypes.c_int) -> None:
        f = getattr(self.lib, name)
        f.argtypes, f.restype = argtypes, restype

    def check(self, call: str, status: int) -> None:
        if status != 0:
            raise VendorError(call, status_name(status))

    def handle(self, device: int) -> ctypes.c_void_p:
        h = self.handles.get(device)
        if h is None:  # created with the device's context current (the callers make it so)
            h = ctypes.c_void_p()
            self.check(self.CREATE, getattr(self.lib, self.CREATE)(ctypes.byref(h)))
            self.handles[device] = h
        return h


class _Cublas(VendorLibrary):
    CREATE = "cublasCreate_v2"

    def __init__(self):
        super().__init__("cublas", "JITGEMM_CUBLAS")
        vp, i32, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        self._fn("cublasCreate_v2", [ctypes.POINTER(vp)])
        self._fn("cublasSetStream_v2", [vp, vp])
        self._fn("cublasSetWorkspace_v2", [vp, vp, u64])
        self._fn("cublasGetVersion_v2", [vp, ctypes.POINTER(i32)])
        self._fn("cublasGemmEx", [vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, vp, i32, i32, vp, vp, i32, i32, i32, i32])
        self.alpha, self.beta = ctypes.c_float(1.0), ctypes.c_float(0.0)


_workspaces: dict[tuple[int, int], int] = {}
_workspace_lock = threading.Lock()


def workspace(backend, device: int, stream: int) -> int:
    """The (device, stream)'s WORKSPACE_BYTES of scratch for cuBLAS and cuBLASLt, held for the life of the
    process like the split-K workspaces. Both libraries run stream-ordered on the stream they are given, so
    they can share it: two calls on one stream never overlap, two streams never share it."""
    key = (device, int(stream))
    ws = _workspaces.get(key)
    if ws is None:
        with _workspace_lock:
            ws = _workspaces.get(key)
            if ws is None:
                with capture_guard("cuBLAS's workspace", stream):
                    ws = _workspaces[key] = backend.alloc(WORKSPACE_BYTES, device)
    return ws


_cublas = Loaded(_Cublas)


def cublas() -> _Cublas:
    """The loaded library (raises BackendUnavailable when there is none)."""
    return _cublas.get()


def available() -> tuple[bool, str]:
    """(True, library path) or (False, why): the dispatcher routes to BLAS only when True."""
    return _cublas.available()


def version() -> int:
    v = ctypes.c_int()
    c = cublas()
    c.check("cublasGetVersion_v2", c.lib.cublasGetVersion_v2(None, ctypes.byref(v)))
    return v.value


def gemm(backend, device: int, stream: int, dtype: str, n: int, m: int, k: int, x: int, ldx: int, w: int,
         ldw: int, out: int, ldo: int) -> None:
    """out[N, M] (row pitch ldo) = x[N, K] (ldx) . w[M, K]^T (ldw), pointers to device memory; pitches
    in elements. Enqueued on `stream`; no synchronisation."""
    c = cublas()
    t = _DATA_TYPE[dtype]
    with c.lock:  # one handle per device: its stream and workspace are set and used as one step
        backend.make_current(device)  # a handle is bound to its device's context: use it there only
        h = c.handle(device)
        ws = workspace(backend, device, stream)
        c.check("cublasSetStream_v2", c.lib.cublasSetStream_v2(h, ctypes.c_void_p(stream)))
        c.check("cublasSetWorkspace_v2", c.lib.cublasSetWorkspace_v2(h, ctypes.c_void_p(ws), WORKSPACE_BYTES))
        c.check("cublasGemmEx", c.lib.cublasGemmEx(
            h, _OP_T, _OP_N, m, n, k, ctypes.byref(c.alpha), ctypes.c_void_p(w), t, ldw, ctypes.c_void_p(x), t, ldx,
            ctypes.byref(c.beta), ctypes.c_void_p(out), t, ldo, _COMPUTE_32F, _GEMM_DEFAULT))
