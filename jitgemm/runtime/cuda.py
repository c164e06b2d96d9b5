"""NVIDIA: NvrtcCompiler (NVRTC through cuda-python, no device needed) and CudaBackend (the driver API,
cuda.bindings.driver: devices, modules, launches, memory), which owns one."""
from __future__ import annotations

import threading
from typing import Sequence

from ..errors import BackendUnavailable, VendorError
from .compiler import Compiler
from .events import StreamWaits
from .types import ArgPack, CompileOptions, CompileResult, DeviceInfo, DeviceInfos, checked
from .resources import parse_ptxas_log
from .rtc import Nvrtc


def _arch_for(major: int, minor: int) -> str:
    # 'a' targets unlock the arch-specific instructions (wgmma, setmaxnreg) of 9.0 and 10.x
    suffix = "a" if major >= 9 else ""
    return f"sm_{major}{minor}{suffix}"


class NvrtcCompiler(Compiler):
    vendor = "cuda"
    portable_code = False  # a cubin is NVRTC-version specific: keyed on the compiler that built it

    def available(self) -> tuple[bool, str]:
        try:
            from cuda.bindings import nvrtc
            nvrtc.nvrtcVersion()
            return True, "ok"
        except Exception as e:
            return False, f"NVRTC unavailable ({type(e).__name__}: {e}); pip install 'jitgemm[cuda]'"

    def identity(self) -> str:
        from cuda.bindings import nvrtc
        major, minor = checked("nvrtcVersion", nvrtc.nvrtcVersion())
        return f"nvrtc-{major}.{minor}"

    def flags(self, options: CompileOptions) -> list[str]:
        # NVRTC rejects -O3 (it always optimises); registers/spills come from ptxas -v
        return [f"--gpu-architecture={options.arch}", f"--std={options.std}", "--ptxas-options=-v",
                "-DJG_NV=1", *options.define_flags(), *(f"-I{d}" for d in options.include_dirs),
                *options.extra]

    def compile(self, source: str, filename: str, names: Sequence[str], options: CompileOptions) -> CompileResult:
        try:
            from cuda.bindings import nvrtc
        except ImportError as e:
            raise BackendUnavailable(f"NVRTC unavailable ({e}); pip install 'jitgemm[cuda]'") from None
        cubin, lowered, log = Nvrtc(nvrtc).compile(source, filename, names, self.flags(options), options.arch)
        return CompileResult(code=cubin, lowered=lowered, log=log, compiler=self.identity(),
                             resources=parse_ptxas_log(log))


# Programmatic dependent launch came to captured graphs with CUDA 12.3's graph edge data (programmatic edges);
# jitgemm measured and tested it on CUDA 13 drivers only, so an older driver gets plain launches (the kernels'
# griddepcontrol is then a no-op): the cuda12 extra allows drivers from 12.0.
PDL_MIN_DRIVER = 12030


class CudaBackend:
    name = "cuda"

    def __init__(self):
        self.compiler = NvrtcCompiler()
        self._lock = threading.Lock()
        self._driver = None
        self._driver_error: str | None = None
        self._ctx: dict[int, object] = {}
        self.device_info = DeviceInfos("CUDA", self.device_count, self._read_info)
        self._configs: dict[tuple, object] = {}
        self._waits = StreamWaits(self)
        self._pdl_ok: bool | None = None  # the driver's version allows programmatic dependent launch (once read)

    # ---- loading the vendor pieces -------------------------------------------------------
    def _drv(self):
        if self._driver is not None:
            return self._driver
        if self._driver_error:
            raise BackendUnavailable(self._driver_error)
        with self._lock:
            try:
                from cuda.bindings import driver
            except ImportError as e:
                self._driver_error = f"cuda-bindings is not installed ({e}); pip install 'jitgemm[cuda]'"
                raise BackendUnavailable(self._driver_error) from None
            try:
                (err,) = driver.cuInit(0)
            except Exception as e:  # the driver library itself is missing
                self._driver_error = f"NVIDIA driver not found ({type(e).__name__}: {e})"
                raise BackendUnavailable(self._driver_error) from None
            if err != driver.CUresult.CUDA_SUCCESS:
                self._driver_error = f"cuInit failed: {err.name}"
                raise BackendUnavailable(self._driver_error)
            self._driver = driver
        return driver

    _check = staticmethod(checked)

    def available(self) -> tuple[bool, str]:
        try:
            self._drv()
            return True, "ok"
        except BackendUnavailable as e:
            return False, str(e)

    # ---- devices ---------------------------------------------------------------------------
    def device_count(self) -> int:
        drv = self._drv()
        return self._check("cuDeviceGetCount", drv.cuDeviceGetCount())

    def _attr(self, dev, name: str) -> int:
        drv = self._driver
        attr = getattr(drv.CUdevice_attribute, "CU_DEVICE_ATTRIBUTE_" + name)
        return self._check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(attr, dev))

    def _read_info(self, index: int) -> DeviceInfo:
        drv = self._drv()
        dev = self._check("cuDeviceGet", drv.cuDeviceGet(index))
        raw = self._check("cuDeviceGetName", drv.cuDeviceGetName(256, dev))
        return DeviceInfo(
            index=index,
            name=raw.split(b"\0", 1)[0].decode(errors="replace"),
            arch=_arch_for(self._attr(dev, "COMPUTE_CAPABILITY_MAJOR"), self._attr(dev, "COMPUTE_CAPABILITY_MINOR")),
            multiprocessors=self._attr(dev, "MULTIPROCESSOR_COUNT"),
            warp_size=self._attr(dev, "WARP_SIZE"),
            shared_per_block=self._attr(dev, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN"),
            l2_bytes=self._attr(dev, "L2_CACHE_SIZE"),
            memory_bytes=self._check("cuDeviceTotalMem", drv.cuDeviceTotalMem(dev)),
        )

    def make_current(self, device: int) -> None:
        """Make the device's primary context current (the one CuPy and torch use too)."""
        drv = self._drv()
        ctx = self._ctx.get(device)
        if ctx is None:
            with self._lock:
                ctx = self._ctx.get(device)
                if ctx is None:
                    dev = self._check("cuDeviceGet", drv.cuDeviceGet(device))
                    ctx = self._check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(dev))
                    self._ctx[device] = ctx
        cur = drv.cuCtxGetCurrent()[1]
        if int(cur) != int(ctx):
            self._check("cuCtxSetCurrent", drv.cuCtxSetCurrent(ctx))

    def current_device(self) -> int:
        """The device of the thread's current context, 0 when none is current (asked without an
        erroring driver call: compute-sanitizer reports every failed API call)."""
        drv = self._drv()
        err, ctx = drv.cuCtxGetCurrent()
        if int(err) != 0 or int(ctx) == 0:
            return 0
        err, dev = drv.cuCtxGetDevice()
        return int(dev) if int(err) == 0 else 0

    def device_of_pointer(self, ptr: int) -> int:
        """The device whose memory `ptr` is: its context compared with each device's primary
        context (seen on an H200 pair: the DEVICE_ORDINAL attribute read back 0 for device 1)."""
        drv = self._drv()
        attr = drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_CONTEXT
        ctx = self._check("cuPointerGetAttribute", drv.cuPointerGetAttribute(attr, ptr))
        want = int(ctx)
        for dev in range(self.device_count()):
            if dev not in self._ctx:
                self.make_current(dev)  # retains the primary context
            if int(self._ctx[dev]) == want:
                return dev
        raise ValueError(f"pointer {ptr:#x} is not memory of any CUDA device's primary context "
                         f"(memory of a non-primary context cannot be used)")

    # ---- modules and launches --------------------------------------------------------------------
    def load(self, code: bytes, device: int):
        drv = self._drv()
        self.make_current(device)
        return self._check("cuModuleLoadData", drv.cuModuleLoadData(code))

    def function(self, module, symbol: str):
        drv = self._drv()
        return self._check("cuModuleGetFunction", drv.cuModuleGetFunction(module, symbol.encode()))

    def set_max_dynamic_shared(self, func, nbytes: int) -> None:
        drv = self._drv()
        attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        self._check("cuFuncSetAttribute", drv.cuFuncSetAttribute(func, attr, nbytes))

    def pdl_supported(self) -> bool:
        """Whether a launch asked for with programmatic dependent launch gets it (PDL_MIN_DRIVER)."""
        if self._pdl_ok is None:
            version = self._check("cuDriverGetVersion", self._drv().cuDriverGetVersion())
            self._pdl_ok = int(version) >= PDL_MIN_DRIVER
        return self._pdl_ok

    def launch(self, func, grid, block, shared: int, stream: int, args: ArgPack, device: int,
               pdl: bool = False) -> None:
        drv = self._driver
        self.make_current(device)
        if pdl and self.pdl_supported():
            # programmatic dependent launch: this kernel may start while the previous one in the
            # stream drains; it orders itself with griddepcontrol.wait before reading its inputs
            cfg = self._pdl_config(grid, block, shared)
            cfg.hStream = stream
            (err,) = drv.cuLaunchKernelEx(cfg, func, args.address, 0)
            if int(err) != 0:
                raise VendorError("cuLaunchKernelEx", err.name)
            return
        (err,) = drv.cuLaunchKernel(func, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                    shared, stream, args.address, 0)
        if int(err) != 0:
            raise VendorError("cuLaunchKernel", err.name)

    def launcher(self, func, grid, block, shared: int, args: ArgPack, device: int, pdl: bool = False):
        """`fire(stream)`: this kernel with these packed arguments, everything but the stream bound now,
        so a cached call's launch is one Python call, the context check and the driver's launch."""
        drv = self._drv()
        self.make_current(device)
        ctx = self._ctx[device]
        ctx_id, get_current, launch, success = int(ctx), drv.cuCtxGetCurrent, drv.cuLaunchKernel, drv.CUresult.CUDA_SUCCESS
        (gx, gy, gz), (bx, by, bz), address = grid, block, args.address
        if pdl and self.pdl_supported():  # the config carries the stream: one per thread, made once
            local, launch_ex = threading.local(), drv.cuLaunchKernelEx

            def fire_pdl(stream: int) -> None:
                if int(get_current()[1]) != ctx_id:
                    self._check("cuCtxSetCurrent", drv.cuCtxSetCurrent(ctx))
                cfg = getattr(local, "cfg", None)
                if cfg is None:
                    cfg = local.cfg = self._pdl_config(grid, block, shared)
                cfg.hStream = stream
                (err,) = launch_ex(cfg, func, address, 0)
                if err is not success:
                    raise VendorError("cuLaunchKernelEx", err.name)
            return fire_pdl

        def fire(stream: int) -> None:
            if int(get_current()[1]) != ctx_id:  # another device's context is current (torch/CuPy switched)
                self._check("cuCtxSetCurrent", drv.cuCtxSetCurrent(ctx))
            (err,) = launch(func, gx, gy, gz, bx, by, bz, shared, stream, address, 0)
            if err is not success:
                raise VendorError("cuLaunchKernel", err.name)
        return fire

    def _pdl_config(self, grid, block, shared):
        key = (tuple(grid), tuple(block), shared, threading.get_ident())
        cfg = self._configs.get(key)
        if cfg is None:
            drv = self._driver
            attr = drv.CUlaunchAttribute()
            attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
            attr.value.programmaticStreamSerializationAllowed = 1
            cfg = drv.CUlaunchConfig()
            cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
            cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block
            cfg.sharedMemBytes = shared
            cfg.attrs = [attr]
            cfg.numAttrs = 1
            self._configs[key] = cfg
        return cfg

    # ---- memory, streams, events (numpy path, tests, benchmarks) ---------------------------------
    def alloc(self, nbytes: int, device: int) -> int:
        drv = self._drv()
        self.make_current(device)
        return int(self._check("cuMemAlloc", drv.cuMemAlloc(max(int(nbytes), 1))))

    def free(self, ptr: int, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuMemFree", drv.cuMemFree(ptr))

    def copy_htod(self, dst: int, src_host_ptr: int, nbytes: int, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuMemcpyHtoD", drv.cuMemcpyHtoD(dst, src_host_ptr, nbytes))

    def copy_dtoh(self, dst_host_ptr: int, src: int, nbytes: int, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuMemcpyDtoH", drv.cuMemcpyDtoH(dst_host_ptr, src, nbytes))

    def memset(self, ptr: int, byte: int, nbytes: int, stream: int, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuMemsetD8Async", drv.cuMemsetD8Async(ptr, byte, nbytes, stream))

    def synchronize(self, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuCtxSynchronize", drv.cuCtxSynchronize())

    def stream_synchronize(self, stream: int, device: int) -> None:
        drv = self._drv()
        self.make_current(device)
        self._check("cuStreamSynchronize", drv.cuStreamSynchronize(stream))

    def stream_wait(self, stream: int, on: int, device: int) -> None:
        """Make `stream` wait for the work enqueued on `on` so far (an event recorded there; the host does
        not wait): jitgemm.runtime.events."""
        self.make_current(device)  # loads the driver first
        self._waits(stream, on, device)

    def _event_new(self):
        drv = self._driver
        return self._check("cuEventCreate", drv.cuEventCreate(int(drv.CUevent_flags.CU_EVENT_DISABLE_TIMING)))

    def _event_record(self, ev, stream: int) -> None:
        self._check("cuEventRecord", self._driver.cuEventRecord(ev, stream))

    def _event_wait(self, stream: int, ev) -> None:
        self._check("cuStreamWaitEvent", self._driver.cuStreamWaitEvent(stream, ev, 0))

    def stream_capturing(self, stream: int, device: int) -> bool:
        """Whether `stream` is capturing a graph (or cannot be asked: the legacy stream while another
        stream captures in global mode answers with an error, and counts as capturing)."""
        drv = self._drv()
        self.make_current(device)
        err, status = drv.cuStreamIsCapturing(stream)
        if int(err) != 0:
            return True
        return int(status) != int(drv.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE)

    def versions(self) -> dict:
        out = {}
        try:
            drv = self._drv()
            out["driver"] = self._check("cuDriverGetVersion", drv.cuDriverGetVersion())
        except Exception as e:
            out["driver"] = f"unavailable: {e}"
        try:
            out["nvrtc"] = self.compiler.identity()
        except Exception as e:
            out["nvrtc"] = f"unavailable: {e}"
        return out
