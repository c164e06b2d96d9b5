"""python -m jitgemm demo: decode-shaped GEMMs checked against numpy and timed; without a GPU,
a short notice and a compile of a few kernels for the default targets with their register report."""
from __future__ import annotations

import re
import sys
import time

import numpy as np

DEMO_SHAPES = [("llama8b.qkv", 6144, 4096), ("llama8b.down", 4096, 14336), ("llama70b-tp8.qkv", 1280, 8192)]
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def _gpu():
    """(backend, device), or (None, why there is none: one short reason per vendor)."""
    from .messages import short_reason
    from .errors import BackendUnavailable
    from .runtime.backend import default_backend, get_backend
    try:
        b = default_backend()
        return b, b.current_device()
    except BackendUnavailable:
        reasons = [(name, get_backend(name).available()) for name in ("cuda", "hip")]
        return None, "; ".join(f"{name}: {short_reason(why) if not ok else 'no device'}" for name, (ok, why) in reasons)


def _options(args):
    """(dtypes, token counts, compile-only archs) from the command line, or why they are refused."""
    from .targets import arch_problem
    dtypes = [DTYPES.get(d.strip(), d.strip()) for d in (args.dtype if args else "bf16,fp16").split(",")]
    bad = [d for d in dtypes if d not in DTYPES.values()]
    if bad:
        return f"unknown --dtype {bad[0]!r}; choose from {', '.join(DTYPES)}"
    try:
        ns = [int(n) for n in (args.n if args else "1,4,16").split(",")]
    except ValueError:
        return f"--n must be comma-separated integers, got {args.n!r}"
    if not all(1 <= n <= 128 for n in ns):
        return f"--n takes token counts 1..128, got {args.n!r}"
    archs = (args.arch if args else None) or ["sm_90a", "gfx90a"]
    bad = [arch_problem(a) for a in archs if arch_problem(a)]
    return bad[0] if bad else (dtypes, ns, archs)


def main(args=None) -> int:
    from .messages import refuse
    opts = _options(args)
    if isinstance(opts, str):
        return refuse("demo", opts)
    dtypes, ns, archs = opts
    backend, dev = _gpu()
    if backend is None:
        return _compile_only(dev, dtypes, archs)
    return _run_gpu(backend, dev, dtypes, ns)


def _of_dtypes(inst, dtypes) -> bool:
    """Whether an instance is one of these dtypes' (the dtype is its first template argument)."""
    mine = {"jg_bf16" if d == "bfloat16" else "jg_f16" for d in dtypes}
    typed = re.search(r"\bjg_b?f16\b", inst.name)
    return typed is None or typed.group(0) in mine


def _compile_only(why: str, dtypes, archs) -> int:
    from .precompile import compiler_problem, instances_for
    from .registers import print_register_table
    from .messages import short_reason
    from .runtime import amd_offline
    from .arch import parse
    from .runtime.amd_flags import OFFLINE_ARCHS
    from .runtime.jit import compile_instance
    from rich.progress import track
    print(f"no GPU found: compiling a few kernels for {', '.join(archs)} instead (no GPU needed for that)")
    print(f"  why no GPU: {why}")
    rows = []
    for arch in archs:
        problem = compiler_problem(arch)
        if problem:
            offline = parse(arch).base in OFFLINE_ARCHS  # the last line says how to get its toolchain
            why = "needs ROCm >= 6 or the offline clang-22 toolchain" if offline else short_reason(problem)
            print(f"{arch}: skipped, {why}")
            continue
        insts = [i for i in instances_for(arch) if _of_dtypes(i, dtypes)][:8]
        for inst in track(insts, description=f"compiling for {arch}", transient=True, disable=not sys.stdout.isatty()):
            r = compile_instance(inst, arch)
            rows += [(arch, inst.name, sym, res) for sym, res in r.resources.items()]
    if rows:
        print_register_table(rows)
    print("every shipped kernel for a target: python -m jitgemm aot --arch sm_90a (or gfx90a"
          + (", gfx942, gfx950)" if amd_offline.available()[0] else
             "; gfx942 and gfx950 need the offline clang-22 toolchain: .ci/amd-toolchain.sh PREFIX, "
             "see the README's AMD section)"))
    return 0


def _run_gpu(backend, dev, dtypes, ns) -> int:
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
    cases = [(s, d, n) for s in DEMO_SHAPES for d in dtypes for n in ns]
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
