"""AMD: HipCompiler (hiprtc through hip-python, or the offline clang route; no device needed) and
HipBackend (hip-python's HIP runtime: devices, modules, launches, memory), which owns one."""
from __future__ import annotations

from typing import Sequence

from ..arch import parse
from ..errors import BackendUnavailable, VendorError
from .amd_flags import OFFLINE_ARCHS, hip_flags
from .compiler import Compiler
from .events import StreamWaits
from .types import ArgPack, CompileOptions, CompileResult, DeviceInfo, DeviceInfos, checked
from .resources import amdgpu_kernel_resources
from .rtc import Hiprtc

# HIP 5.x's hiprtc hands gfx94x/gfx11 to a comgr that rejects them and then aborts the whole
# process (uncatchable). Only these targets are safe to give an old hiprtc.
_OLD_HIPRTC_SAFE = ("gfx906", "gfx908", "gfx90a")


def _shim_debian_hip() -> None:
    """hip-python dlopens libamdhip64.so and libhiprtc.so by those names. Debian's HIP 5.2 has hiprtc
    inside libamdhip64.so.5 and no libhiprtc.so: point ROCM_PATH at a folder of two links so it
    works out of the box. Does nothing when ROCM_PATH is set or libhiprtc.so is loadable."""
    import ctypes
    import os
    from pathlib import Path
    if os.environ.get("ROCM_PATH"):
        return
    try:
        ctypes.CDLL("libhiprtc.so")
        return
    except OSError:
        pass
    target = next((p for p in (Path("/usr/lib/x86_64-linux-gnu/libamdhip64.so.5"), Path("/usr/lib64/libamdhip64.so.5"))
                   if p.exists()), None)
    if target is None:
        return
    from .. import config
    for base in (config.cache_dir() / "rocm-shim", Path(os.environ.get("TMPDIR", "/tmp")) / f"jitgemm-rocm-shim-{os.getuid()}"):
        try:
            lib = base / "lib"
            lib.mkdir(parents=True, exist_ok=True)
            for name in ("libamdhip64.so", "libhiprtc.so"):
                link = lib / name
                if not link.exists():
                    tmp = lib / f".{name}.{os.getpid()}"
                    tmp.unlink(missing_ok=True)
                    tmp.symlink_to(target)
                    os.replace(tmp, link)
            os.environ["ROCM_PATH"] = str(base)
            return
        except OSError:
            continue


class _HipLibrary:
    """hip-python's HIP runtime module, loaded once (the compiler and the device backend share it: Debian's
    hiprtc lives inside libamdhip64)."""

    def __init__(self):
        self._hip = None
        self._error: str | None = None

    def mod(self):
        if self._hip is not None:
            return self._hip
        if self._error:
            raise BackendUnavailable(self._error)
        _shim_debian_hip()
        try:
            from hip import hip
        except ImportError as e:
            self._error = f"hip-python is not installed ({e}); pip install 'jitgemm[rocm]'"
            raise BackendUnavailable(self._error) from None
        try:
            err, _ = hip.hipRuntimeGetVersion()
        except Exception as e:  # libamdhip64.so cannot be loaded
            self._error = f"HIP runtime library not found ({type(e).__name__}: {e})"
            raise BackendUnavailable(self._error) from None
        self._hip = hip
        return hip

    def runtime_version(self) -> int:
        return int(checked("hipRuntimeGetVersion", self.mod().hipRuntimeGetVersion()))


class HipCompiler(Compiler):
    """hiprtc where it is safe for the arch, else the offline clang route (amd_offline); no device needed."""
    vendor = "hip"
    portable_code = True  # an AMD code object is the arch's ISA whichever compiler built it: AOT packs share it

    def __init__(self, lib: _HipLibrary):
        self._lib = lib

    def available(self) -> tuple[bool, str]:
        try:
            self._lib.mod()
            from hip import hiprtc
            hiprtc.hiprtcVersion()
            return True, "ok"
        except Exception as e:
            return False, f"hiprtc unavailable ({type(e).__name__}: {e}); pip install 'jitgemm[rocm]' and a HIP runtime"

    def identity(self) -> str:
        try:
            self._lib.mod()
            from hip import hiprtc
        except (ImportError, BackendUnavailable):
            # keys an entry that hiprtc cannot build anyway; offline builds carry their own identity
            return "hiprtc-unavailable"
        major, minor = checked("hiprtcVersion", hiprtc.hiprtcVersion())
        return f"hiprtc-{major}.{minor}/hip-{self._lib.runtime_version()}"

    def _hiprtc_safe(self, arch: str) -> bool:
        """hiprtc is loadable and will not abort on `arch` (any arch from ROCm 6 on)."""
        if not self.available()[0]:
            return False
        return parse(arch).base in _OLD_HIPRTC_SAFE or self._lib.runtime_version() >= 60000000

    def _offline(self, arch: str) -> bool:
        """Compile `arch` with clang-22 (amd_offline): only where hiprtc cannot and the toolchain is there."""
        if parse(arch).base not in OFFLINE_ARCHS or self._hiprtc_safe(arch):
            return False
        from . import amd_offline
        return amd_offline.available()[0]

    def route(self, arch: str) -> tuple[str | None, str]:
        """Which tool `compile` uses for `arch`: ("hiprtc" | "clang", ""), or (None, why neither can)."""
        if self._hiprtc_safe(arch):
            return "hiprtc", ""
        if self._offline(arch):
            return "clang", ""
        ok, why = self.available()
        if not ok and parse(arch).base in _OLD_HIPRTC_SAFE:
            return None, why
        return None, self._refusal(parse(arch).base)

    def flags(self, options: CompileOptions) -> list[str]:
        """Cache-key material. Compiler.key keys on identity(), which names hiprtc, so an
        offline build adds its own compiler identity here: a clang entry never poses as a hiprtc one."""
        if self._offline(options.arch):
            from . import amd_offline
            return [*amd_offline.key_flags(options), f"--jitgemm-compiler={amd_offline.find_toolchain().identity}"]
        return hip_flags(options)

    def compile(self, source: str, filename: str, names: Sequence[str], options: CompileOptions) -> CompileResult:
        if self._offline(options.arch):
            from . import amd_offline
            return amd_offline.compile(source, filename, names, options)
        try:
            self._lib.mod()
            from hip import hiprtc
        except (ImportError, BackendUnavailable) as e:
            raise BackendUnavailable(f"hiprtc unavailable: {e}") from None
        base_arch = parse(options.arch).base
        if self._lib.runtime_version() < 60000000 and base_arch not in _OLD_HIPRTC_SAFE:
            raise BackendUnavailable(self._refusal(base_arch))
        code, lowered, log = Hiprtc(hiprtc).compile(source, filename, names, self.flags(options), options.arch)
        return CompileResult(code=code, lowered=lowered, log=log, compiler=self.identity(),
                             resources=amdgpu_kernel_resources(code))

    def _refusal(self, base_arch: str) -> str:
        from . import amd_offline
        offline = (f"the offline clang route is not set up ({amd_offline.available()[1]})"
                   if base_arch in OFFLINE_ARCHS else f"the offline clang route covers only {', '.join(OFFLINE_ARCHS)}")
        hip = f"HIP {self._lib.runtime_version()}" if self.available()[0] else "no hiprtc"
        return (f"this hiprtc ({hip}) cannot compile for {base_arch} without aborting "
                f"the process; it is safe only for {', '.join(_OLD_HIPRTC_SAFE)}. Use ROCm >= 6 or the "
                f"offline clang route (jitgemm.runtime.amd_offline); {offline}")


class HipBackend:
    name = "hip"

    def __init__(self):
        self._lib = _HipLibrary()
        self.compiler = HipCompiler(self._lib)
        self._waits = StreamWaits(self)
        self.device_info = DeviceInfos("HIP", self.device_count, self._read_info)

    def _mod(self):
        return self._lib.mod()

    _check = staticmethod(checked)

    def available(self) -> tuple[bool, str]:
        try:
            hip = self._mod()
        except BackendUnavailable as e:
            return False, str(e)
        (err,) = hip.hipInit(0)
        if int(err) != 0:
            return False, f"hipInit: {err.name}"
        return True, "ok"

    def runtime_version(self) -> int:
        return self._lib.runtime_version()

    # ---- devices ---------------------------------------------------------------------------
    def device_count(self) -> int:
        hip = self._mod()
        err, n = hip.hipGetDeviceCount()
        return int(n) if int(err) == 0 else 0

    def _read_info(self, index: int) -> DeviceInfo:
        hip = self._mod()
        props = hip.hipDeviceProp_t()
        self._check("hipGetDeviceProperties", hip.hipGetDeviceProperties(props, index))
        return DeviceInfo(
            index=index, name=props.name.decode(errors="replace"),
            arch=props.gcnArchName.decode(errors="replace"),
            multiprocessors=int(props.multiProcessorCount), warp_size=int(props.warpSize),
            shared_per_block=int(props.sharedMemPerBlock), l2_bytes=int(props.l2CacheSize),
            memory_bytes=int(props.totalGlobalMem))

    def make_current(self, device: int) -> None:
        hip = self._mod()
        err, cur = hip.hipGetDevice()
        if int(err) != 0 or int(cur) != device:
            self._check("hipSetDevice", hip.hipSetDevice(device))

    def current_device(self) -> int:
        err, cur = self._mod().hipGetDevice()
        return int(cur) if int(err) == 0 else 0

    def device_of_pointer(self, ptr: int) -> int:
        hip = self._mod()
        attrs = self._check("hipPointerGetAttributes", hip.hipPointerGetAttributes(ptr))
        return int(attrs.device)

    # ---- modules and launches --------------------------------------------------------------------
    def load(self, code: bytes, device: int):
        hip = self._mod()
        self.make_current(device)
        return self._check("hipModuleLoadData", hip.hipModuleLoadData(code))

    def function(self, module, symbol: str):
        return self._check("hipModuleGetFunction", self._mod().hipModuleGetFunction(module, symbol.encode()))

    def set_max_dynamic_shared(self, func, nbytes: int) -> None:
        pass  # HIP grants the whole LDS without an opt-in

    def launch(self, func, grid, block, shared: int, stream: int, args: ArgPack, device: int,
               pdl: bool = False) -> None:  # HIP has no programmatic dependent launch
        hip = self._mod()
        self.make_current(device)
        (err,) = hip.hipModuleLaunchKernel(func, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                           shared, stream or None, args.address, None)
        if int(err) != 0:
            raise VendorError("hipModuleLaunchKernel", err.name)

    def launcher(self, func, grid, block, shared: int, args: ArgPack, device: int, pdl: bool = False):
        """`fire(stream)`: this kernel with these packed arguments (HIP has no programmatic dependent launch)."""
        return lambda stream: self.launch(func, grid, block, shared, stream, args, device)

    # ---- memory -----------------------------------------------------------------------------------
    def alloc(self, nbytes: int, device: int) -> int:
        hip = self._mod()
        self.make_current(device)
        return int(self._check("hipMalloc", hip.hipMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int, device: int) -> None:
        self.make_current(device)
        self._check("hipFree", self._mod().hipFree(ptr))

    def copy_htod(self, dst: int, src_host_ptr: int, nbytes: int, device: int) -> None:
        self.make_current(device)
        self._check("hipMemcpyHtoD", self._mod().hipMemcpyHtoD(dst, src_host_ptr, nbytes))

    def copy_dtoh(self, dst_host_ptr: int, src: int, nbytes: int, device: int) -> None:
        self.make_current(device)
        self._check("hipMemcpyDtoH", self._mod().hipMemcpyDtoH(dst_host_ptr, src, nbytes))

    def memset(self, ptr: int, byte: int, nbytes: int, stream: int, device: int) -> None:
        self.make_current(device)
        self._check("hipMemsetD8Async", self._mod().hipMemsetD8Async(ptr, byte, nbytes, stream or None))

    def synchronize(self, device: int) -> None:
        self.make_current(device)
        self._check("hipDeviceSynchronize", self._mod().hipDeviceSynchronize())

    def stream_synchronize(self, stream: int, device: int) -> None:
        self.make_current(device)
        self._check("hipStreamSynchronize", self._mod().hipStreamSynchronize(stream or None))

    def stream_wait(self, stream: int, on: int, device: int) -> None:
        """Make `stream` wait for the work enqueued on `on` so far (the host does not wait):
        jitgemm.runtime.events."""
        self.make_current(device)
        self._waits(stream, on, device)

    def _event_new(self):
        hip = self._mod()
        return self._check("hipEventCreateWithFlags", hip.hipEventCreateWithFlags(hip.hipEventDisableTiming))

    def _event_record(self, ev, stream: int) -> None:
        self._check("hipEventRecord", self._mod().hipEventRecord(ev, stream or None))

    def _event_wait(self, stream: int, ev) -> None:
        self._check("hipStreamWaitEvent", self._mod().hipStreamWaitEvent(stream or None, ev, 0))

    def stream_capturing(self, stream: int, device: int) -> bool:
        """Whether `stream` is capturing a graph (an error answer, as for the null stream while another
        stream captures in global mode, counts as capturing): CudaBackend's rule."""
        hip = self._mod()
        self.make_current(device)
        err, status = hip.hipStreamIsCapturing(stream or None)
        if int(err) != 0:
            return True
        return int(status) != int(hip.hipStreamCaptureStatus.hipStreamCaptureStatusNone)

    def versions(self) -> dict:
        try:
            return {"hip_runtime": self.runtime_version(), "hiprtc": self.compiler.identity()}
        except Exception as e:
            return {"hip": f"unavailable: {e}"}
