"""jitgemm with CuPy device arrays: no copies, no syncs, CuPy's streams, a planned launch, a CUDA graph.

    pip install -e ".[cuda,cupy]" && python examples/cupy_quickstart.py

Checks each result against the float64 product of the same inputs and times jitgemm against
cupy.matmul (cuBLAS) with CUDA events (weights stay hot in L2 here; `python -m jitgemm bench` is the
cold-L2 measurement). Without CuPy or a GPU it prints one line and exits 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    import jitgemm
except ImportError:  # run from a source checkout without `pip install -e .`: use the checkout's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import jitgemm

M, K = 6144, 4096  # Llama-3-8B's fused QKV projection


def gpu_notice() -> str | None:
    why = jitgemm.why_unavailable()
    if why:
        return f"{why}; this example needs a GPU"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install 'jitgemm[cupy]'); this example needs it"
    return None


def rel_err(got, x, w) -> float:
    """max |got - exact| / max |exact|, exact = float64 product of the same 16-bit inputs (on the host)."""
    ref = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref)))


def time_us(cp, fn, stream, calls: int = 200) -> float:
    """Mean µs per call of `fn` enqueued back to back on `stream`, from CUDA events."""
    for _ in range(10):
        fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    for _ in range(calls):
        fn()
    end.record(stream)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) * 1e3 / calls


def main() -> int:
    why = gpu_notice()
    if why:
        print(why)
        return 0
    import cupy as cp
    import ml_dtypes

    rng = np.random.default_rng(0)
    w_host = (rng.standard_normal((M, K)) * (2.0 / K) ** 0.5).astype(np.float16)
    x_host = rng.standard_normal((16, K)).astype(np.float16)
    w, x = cp.asarray(w_host), cp.asarray(x_host)

    # 1. the plain call: a CuPy array in, a CuPy array out, on CuPy's current stream
    y = jitgemm.gemm(x[:4], w)
    print(f"gemm(x {x[:4].shape} fp16, w {w.shape}) -> {type(y).__module__}.{type(y).__name__} {y.shape} {y.dtype}; "
          f"rel err vs float64 {rel_err(y.get(), x_host[:4], w_host):.2e}")
    print("  " + jitgemm.explain(x[:4], w))

    # 2. into a preallocated output, on a stream of our own
    s = cp.cuda.Stream(non_blocking=True)
    out = cp.empty((16, M), dtype=cp.float16)
    jitgemm.gemm(x, w, out=out, stream=s)
    s.synchronize()
    print(f"gemm(x {x.shape}, w, out=, stream=) rel err {rel_err(out.get(), x_host, w_host):.2e}; "
          f"cupy.matmul rel err {rel_err(cp.matmul(x, w.T).get(), x_host, w_host):.2e}")

    # 3. plan once, then one driver call per launch: what a decode loop or a CUDA graph wants
    print(f"\n{'N':>3s} {'jitgemm µs':>11s} {'cupy.matmul µs':>15s} {'speed-up':>9s}   (hot L2, back-to-back)")
    for n in (1, 4, 16):
        o = cp.empty((n, M), dtype=cp.float16)
        p = jitgemm.prepare(x[:n], w, out=o)
        ours = time_us(cp, lambda: p.launch(s.ptr), s)
        ob = cp.empty((n, M), dtype=cp.float16)

        def blas():
            with s:
                cp.matmul(x[:n], w.T, out=ob)
        theirs = time_us(cp, blas, s)
        print(f"{n:3d} {ours:11.2f} {theirs:15.2f} {theirs / ours:8.2f}x")

    # 4. capture the planned launch in a CUDA graph and replay it
    o = cp.zeros((1, M), dtype=cp.float16)
    p = jitgemm.prepare(x[:1], w, out=o)
    s.begin_capture()
    for _ in range(8):
        p.launch(s.ptr)
    g = s.end_capture()
    g.launch(s)
    s.synchronize()
    print(f"\nCUDA graph of 8 launches replayed: rel err {rel_err(o.get(), x_host[:1], w_host):.2e}")

    # 5. bf16: CuPy has no bfloat16, so the bits live in uint16 arrays; jitgemm.CupyBf16 wraps one (no copy)
    #    and results come back wrapped (.bits is the CuPy uint16 array, .get() the host bf16 values)
    wb_host, xb_host = w_host.astype(ml_dtypes.bfloat16), x_host[:4].astype(ml_dtypes.bfloat16)
    wb, xb = jitgemm.CupyBf16.from_host(wb_host), jitgemm.CupyBf16.from_host(xb_host)
    yb = jitgemm.gemm(xb, wb)
    print(f"bf16 gemm, jitgemm.CupyBf16 operands -> {type(yb).__name__} {yb.shape}: "
          f"rel err {rel_err(yb.get(), xb_host, wb_host):.2e}")
    print("  " + jitgemm.explain(xb, wb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
