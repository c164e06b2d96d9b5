"""Where a prepared launch's host time goes (issue #15: Prepared.launch is 4.5-6 us, the target <= 3 us).

Times, per call, the layers of one cached launch of a 1024x1024 fp16 gemm at N = 1 on a CuPy stream:
`Prepared.launch`, the backend's `fire` closure, cuda.bindings' `cuLaunchKernel` and `cuCtxGetCurrent`
alone, and the same two driver entry points called through ctypes (CDLL releases the GIL per call,
PyDLL does not), each checked to compute the same result. Two numbers per row: the host time to issue
2000 calls (what a host-bound decode loop pays) and the wall time including the final sync (where the
GPU is the limit instead). A measurement for deciding, not a benchmark of record. On a GPU machine:
    PYTHONPATH=. python tools/launch_probe.py"""
import ctypes
import time

import cupy as cp
from cuda.bindings import driver as drv

import jitgemm

CALLS, REPS = 2000, 5


def per_call(fn, sync) -> tuple[float, float]:
    """(host-issue us, wall us incl. the sync) per call: best of REPS loops after a warm-up."""
    for _ in range(200):
        fn()
    sync()
    issue = wall = float("inf")
    for _ in range(REPS):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        issue, wall = min(issue, (t1 - t0) / CALLS * 1e6), min(wall, (t2 - t0) / CALLS * 1e6)
    return issue, wall


def main() -> None:
    rng = cp.random.default_rng(0)
    x = rng.standard_normal((1, 1024), dtype=cp.float32).astype(cp.float16)
    w = (rng.standard_normal((1024, 1024), dtype=cp.float32) * 0.03).astype(cp.float16)
    o = cp.empty((1, 1024), cp.float16)
    stream = cp.cuda.Stream(non_blocking=True)
    h = stream.ptr
    p = jitgemm.prepare(x, w, out=o)
    kl = p._fire.__self__  # the KernelLaunch behind the prepared call
    if not hasattr(kl, "func"):
        print(f"1024x1024 N=1 went to {type(kl).__name__}, not a kernel: nothing to probe")
        return
    ref = (x.astype(cp.float32) @ w.astype(cp.float32).T)
    func, (gx, gy, gz), (bx, by, bz), shared, addr = kl.func, kl.grid, kl.block, kl.shared, kl.pack.address
    fh = int(func)
    ctx = drv.cuCtxGetCurrent()[1]
    rows = [("Prepared.launch(stream)", lambda: p.launch(h)),
            ("KernelLaunch.fire(stream)", lambda: kl.fire(h)),
            ("backend fire closure", lambda: kl._launch(h)),
            ("cuda.bindings cuLaunchKernel", lambda: drv.cuLaunchKernel(func, gx, gy, gz, bx, by, bz, shared, h, addr, 0)),
            ("cuda.bindings cuCtxGetCurrent", drv.cuCtxGetCurrent)]
    for kind, lib in (("CDLL", ctypes.CDLL("libcuda.so.1")), ("PyDLL", ctypes.PyDLL("libcuda.so.1"))):
        launch = lib.cuLaunchKernel
        launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
        launch.restype = ctypes.c_int
        get = lib.cuCtxGetCurrent
        get.argtypes, get.restype = [ctypes.POINTER(ctypes.c_void_p)], ctypes.c_int
        cur = ctypes.c_void_p()
        ref_cur = ctypes.byref(cur)
        ctx_id = int(ctx)

        def both(launch=launch, get=get, cur=cur, ref_cur=ref_cur):
            get(ref_cur)
            if cur.value != ctx_id:
                raise RuntimeError("another context is current")
            if launch(fh, gx, gy, gz, bx, by, bz, shared, h, addr, None):
                raise RuntimeError("cuLaunchKernel failed")
        rows += [(f"ctypes {kind} cuLaunchKernel", lambda launch=launch: launch(fh, gx, gy, gz, bx, by, bz, shared, h,
                                                                               addr, None)),
                 (f"ctypes {kind} cuCtxGetCurrent", lambda get=get, r=ref_cur: get(r)),
                 (f"ctypes {kind} context check + launch", both)]
    rows.append(("cupy.matmul(x, w.T, out=o)", lambda: cp.matmul(x, w.T, out=o)))
    print(f"{cp.cuda.runtime.getDeviceProperties(0)['name'].decode()} · grid {kl.grid} block {kl.block} · "
          f"per call, best of {REPS} x {CALLS}")
    print("| layer | issue us | wall us | result |\n|---|---|---|---|")
    for name, fn in rows:
        with stream:  # the NaN fill on the probe's stream too: a non-blocking stream skips the legacy one
            o[...] = cp.nan
            issue, wall = per_call(fn, stream.synchronize)
        err = float(cp.abs(o.astype(cp.float32) - ref).max() / cp.abs(ref).max())
        ok = "-" if "GetCurrent" in name else ("ok" if err < 1e-2 else f"WRONG ({err:.3g})")
        print(f"| {name} | {issue:.2f} | {wall:.2f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()
