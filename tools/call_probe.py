"""Where a device call's host time goes: each piece of the hot path timed alone (best of 5 loops of
20,000), and a cProfile of gemm with torch operands. For NOTES.md; run on a GPU machine:
    PYTHONPATH=. python tools/call_probe.py"""
import cProfile
import ctypes
import pstats
import sys
import time

import jitgemm


def burst(fn, sync, n=300, reps=20):
    """Host time per call while the launch queue has room: bursts of n calls from an idle device,
    timed without waiting for the GPU (a loop of thousands measures the GPU once the queue fills)."""
    for _ in range(50):
        fn()
    out = 1e9
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out = min(out, (time.perf_counter() - t0) / n * 1e6)
    sync()
    return out


def best(fn, n=20000, reps=5):
    for _ in range(500):
        fn()
    out = 1e9
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out = min(out, (time.perf_counter() - t0) / n * 1e6)
    return out


def main():
    import torch
    from cuda.bindings import driver as drv

    from jitgemm.runtime.backend import get_backend
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(1, 4096, device="cuda", dtype=torch.bfloat16)
    jitgemm.gemm(x, w, out=o)
    p = jitgemm.prepare(x, w, out=o)
    be = get_backend("cuda")
    launch = p._fire.__self__
    s = torch.cuda.current_stream().cuda_stream
    ctx = drv.cuCtxGetCurrent()[1]
    rows = {
        "x.data_ptr()": lambda: x.data_ptr(),
        "x.shape": lambda: x.shape,
        "x.stride()": lambda: x.stride(),
        "x.dtype": lambda: x.dtype,
        "x.get_device()": lambda: x.get_device(),
        "torch._C._cuda_getCurrentRawStream(0)": lambda: torch._C._cuda_getCurrentRawStream(0),
        "torch.cuda.current_stream().cuda_stream": lambda: torch.cuda.current_stream().cuda_stream,
        "drv.cuCtxGetCurrent()": lambda: drv.cuCtxGetCurrent(),
        "int(ctx)": lambda: int(ctx),
        "backend._make_current(0)": lambda: be._make_current(0),
        "drv.cuLaunchKernel (int stream)": lambda: drv.cuLaunchKernel(launch.func, *launch.grid, *launch.block,
                                                                      launch.shared, s, launch.pack.address, 0),
        "backend.launch": lambda: be.launch(launch.func, launch.grid, launch.block, launch.shared, s, launch.pack, 0),
        "Prepared.launch(s)": lambda: p.launch(s),
        "gemm(x, w, out=o)": lambda: jitgemm.gemm(x, w, out=o),
        "gemm(x, w)": lambda: jitgemm.gemm(x, w),
        "x.new_empty((1, 4096))": lambda: x.new_empty((1, 4096)),
        "F.linear(x, w)": lambda: torch.nn.functional.linear(x, w),
    }
    try:  # the driver's own entry point through ctypes, for comparison with cuda-python's wrapper
        lib = ctypes.CDLL("libcuda.so.1")
        f = lib.cuLaunchKernel
        vp, u = ctypes.c_void_p, ctypes.c_uint
        f.argtypes = [vp, u, u, u, u, u, u, u, vp, vp, vp]
        fptr = int(launch.func)
        g, b = launch.grid, launch.block
        rows["ctypes cuLaunchKernel"] = lambda: f(fptr, g[0], g[1], g[2], b[0], b[1], b[2], launch.shared, s,
                                                  launch.pack.address, None)
        get_cur = lib.cuCtxGetCurrent
        cur = ctypes.c_void_p()
        ref = ctypes.byref(cur)
        rows["ctypes cuCtxGetCurrent"] = lambda: get_cur(ref)
    except OSError as e:
        print("no libcuda through ctypes:", e)
    for name, fn in rows.items():
        print(f"{name:45s} {best(fn):7.2f} us", flush=True)
    # host cost alone: a 64 x 64 weight (the kernel takes a few us) in bursts from an idle GPU
    xs, ws = torch.randn(1, 64, device="cuda", dtype=torch.bfloat16), torch.randn(64, 64, device="cuda",
                                                                                  dtype=torch.bfloat16)
    os_ = torch.empty(1, 64, device="cuda", dtype=torch.bfloat16)
    ps = jitgemm.prepare(xs, ws, out=os_)
    ls = ps._fire.__self__
    lin = jitgemm.Linear(ws)
    small = {"drv.cuLaunchKernel": lambda: drv.cuLaunchKernel(ls.func, *ls.grid, *ls.block, ls.shared, s,
                                                              ls.pack.address, 0),
             "Prepared.launch(s)": lambda: ps.launch(s),
             "gemm(x, w, out=o)": lambda: jitgemm.gemm(xs, ws, out=os_),
             "gemm(x, w)": lambda: jitgemm.gemm(xs, ws),
             "Linear(x)": lambda: lin(xs),
             "matmul(x, w.T, out=o)": lambda: jitgemm.matmul(xs, ws.T, out=os_),
             "F.linear(x, w)": lambda: torch.nn.functional.linear(xs, ws)}
    for name, fn in small.items():
        print(f"host only, 64x64, {name:35s} {burst(fn, torch.cuda.synchronize):7.2f} us", flush=True)
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20000):
        jitgemm.gemm(x, w, out=o)
    prof.disable()
    torch.cuda.synchronize()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
