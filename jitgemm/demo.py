"""python -m jitgemm demo: decode-shaped GEMMs checked against numpy and timed; without a GPU,
a one-line notice and a compile of the default targets with their register report."""
from __future__ import annotations

import time

import numpy as np

DEMO_SHAPES = [("llama8b.qkv", 6144, 4096), ("llama8b.down", 4096, 14336), ("llama70b-tp8.qkv", 1280, 8192)]


def _gpu():
    from .runtime.backend import default_backend
    try:
        b = default_backend()
        return b, b.current_device()
    except Exception as e:
        return None, str(e)


def main(args=None) -> int:
    backend, dev = _gpu()
    if backend is None:
        return _compile_only(dev)
    return _run_gpu(backend, dev)


def _compile_only(why: str) -> int:
    from .cli import _print_resources, instances_for
    from .runtime.backend import backend_for_arch
    from .runtime.jit import compile_instance
    from rich.progress import track
    print(f"no GPU here ({why.splitlines()[0]}); compiling the kernels for the default targets instead")
    rows = []
    for arch in ("sm_90a", "gfx90a"):
        ok, why = backend_for_arch(arch).compiler_available()
        if not ok:
            print(f"{arch}: skipped, {why}")
            continue
        insts = instances_for(arch)[:8]
        for inst in track(insts, description=f"compiling for {arch}", transient=True):
            r = compile_instance(inst, arch)
            rows += [(arch, inst.name, sym, res) for sym, res in r.resources.items()]
    _print_resources(rows)
    print("run `python -m jitgemm aot --arch gfx942 ...` for the full set; the AMD offline route covers gfx942/gfx950")
    return 0


def _run_gpu(backend, dev) -> int:
    import ml_dtypes
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table
    import jitgemm
    info = backend.device_info(dev)
    rng = np.random.default_rng(0)
    t = Table(title=f"jitgemm demo on {info.name} ({info.arch}); numpy in/out includes copies, so see `bench` for speed")
    for col in ("shape", "dtype", "N", "max |err| / bound", "µs per call (device arrays)", "TB/s"):
        t.add_column(col, justify="right")
    cases = [(s, d, n) for s in DEMO_SHAPES for d in ("bfloat16", "float16") for n in (1, 4, 16)]
    for (name, m, k), dtype, n in track(cases, description="compiling and checking", transient=True):
        npdt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
        x = rng.standard_normal((n, k)).astype(npdt)
        w = (rng.standard_normal((m, k)) * (2 / k) ** 0.5).astype(npdt)
        got = jitgemm.gemm(x, w).astype(np.float64)
        ref = x.astype(np.float64) @ w.astype(np.float64).T
        bound = 2.0 ** (-7 if dtype == "bfloat16" else -10) * np.abs(ref) + k * 2.0 ** -23 * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T)
        ratio = float(np.max(np.abs(got - ref) / bound))
        us = _time_device(backend, dev, x, w, dtype)
        gbs = 2 * (m * k + n * k + n * m) / (us * 1e-6) / 1e12
        t.add_row(name, dtype, str(n), f"{ratio:.2f} {'ok' if ratio <= 1 else 'WRONG'}", f"{us:.1f}", f"{gbs:.2f}")
    Console().print(t)
    print("for cold-L2 timings against cuBLAS: python -m jitgemm bench")
    return 0


def _time_device(backend, dev, x, w, dtype) -> float:
    from .device_array import DeviceArray
    import jitgemm
    dx, dw = DeviceArray.from_numpy(backend, dev, x, dtype), DeviceArray.from_numpy(backend, dev, w, dtype)
    do = DeviceArray(backend, dev, (x.shape[0], w.shape[0]), dtype)
    p = jitgemm.prepare(dx.view(), dw.view(), out=do.view())
    for _ in range(3):
        p.launch(0)
    backend.synchronize(dev)
    reps = 50
    t0 = time.perf_counter()
    for _ in range(reps):
        p.launch(0)
    backend.synchronize(dev)
    return (time.perf_counter() - t0) / reps * 1e6
