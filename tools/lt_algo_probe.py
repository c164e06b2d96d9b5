"""Why jitgemm's cuBLASLt call ran 0.81-0.87x torch._scaled_mm on four N = 64 shapes of the H100 broad suite
(session 14: large K, M 2048-3584): the same library, so the difference is the algorithm its heuristic picks for
our preferences. For each shape this times, under CUDA graph replay with the weights rotated through four copies
(cold L2), torch._scaled_mm and every algorithm cuBLASLt's heuristic offers for our descriptors at three
workspace limits (1, 4 and 32 MiB), and prints which one the route takes today (the first at 32 MiB).
Run on a GPU machine: PYTHONPATH=. python3 tools/lt_algo_probe.py"""
import ctypes

import torch

from jitgemm.runtime import blaslt
from jitgemm.runtime.backend import default_backend

SHAPES = (("llama3.2-1b.down", 2048, 8192), ("qwen2.5-7b.down", 3584, 18944), ("gemma2-9b.down", 3584, 14336),
          ("llama3.1-405b-tp8.qkv", 2304, 16384), ("llama3.1-8b.qkv", 6144, 4096))
N, COPIES, CALLS, REPLAYS = 64, 4, 20, 10
E4M3 = torch.float8_e4m3fn


def graph_us(stream, body) -> float:
    """µs per call of body(i) (i: which weight copy), captured CALLS times into one graph, replayed."""
    with torch.cuda.stream(stream):
        for i in range(COPIES):
            body(i)
    stream.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        for i in range(CALLS):
            body(i % COPIES)
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(5):
        start.record(stream)
        with torch.cuda.stream(stream):
            for _ in range(REPLAYS):
                g.replay()
        end.record(stream)
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / (REPLAYS * CALLS))
    return best


def algorithms(mm, ws_bytes: int, count: int = 8) -> list:
    """The heuristic's results for mm's descriptors with a workspace limit (the preferences the route sets)."""
    lt = mm.lt
    pref = ctypes.c_void_p()
    lt.check("create", lt.lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)))
    ws = ctypes.c_uint64(ws_bytes)
    lt.lib.cublasLtMatmulPreferenceSetAttribute(pref, 1, ctypes.byref(ws), ctypes.sizeof(ws))
    for attr in (5, 6, 7, 8):
        v = ctypes.c_uint32(256)
        lt.lib.cublasLtMatmulPreferenceSetAttribute(pref, attr, ctypes.byref(v), ctypes.sizeof(v))
    res = (blaslt._Heuristic * count)()
    got = ctypes.c_int(0)
    a, b, d = mm.abd
    lt.check("heuristic", lt.lib.cublasLtMatmulAlgoGetHeuristic(mm.handle, mm.desc, a, b, d, d, pref, count, res,
                                                                ctypes.byref(got)))
    lt.lib.cublasLtMatmulPreferenceDestroy(pref)
    return [res[i] for i in range(got.value) if res[i].state == 0]


def main():
    be = default_backend()
    stream = torch.cuda.Stream()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {blaslt.available()[1]}", flush=True)
    for name, m, k in SHAPES:
        x = (torch.randn(N, k, device="cuda") * 0.1).to(E4M3)
        ws = [(torch.randn(m, k, device="cuda") * 0.1).to(E4M3) for _ in range(COPIES)]
        out = torch.empty(N, m, device="cuda", dtype=torch.bfloat16)
        one = torch.ones((), device="cuda")
        t_torch = graph_us(stream, lambda i: torch._scaled_mm(x, ws[i].t(), one, one, out_dtype=torch.bfloat16))
        mm = blaslt.Fp8Matmul(be, 0, "bfloat16", N, m, k, k, k, m, (256, 256, 256))
        today = bytes(mm.algo.algo)

        def ours(i):
            mm.run(torch.cuda.current_stream().cuda_stream, x.data_ptr(), ws[i].data_ptr(), 0, 0, 1.0,
                   out.data_ptr())
        t_today = graph_us(stream, ours)
        print(f"{name} M={m} K={k} N={N}: torch {t_torch:.2f} us; route today {t_today:.2f} us "
              f"({t_torch / t_today:.3f}x torch)", flush=True)
        keep = mm.algo
        for limit in (1 << 20, 4 << 20, 32 << 20):
            for j, h in enumerate(algorithms(mm, limit)):
                mm.algo, mm.ws_size = h, h.workspace_size
                mm.refs = (mm.refs[0], mm.refs[1], ctypes.byref(h.algo))
                t = graph_us(stream, ours)
                mark = " <- today's" if bytes(h.algo) == today else ""
                print(f"   ws<={limit >> 20:2d} MiB #{j}: needs {h.workspace_size >> 10:6d} KiB, waves {h.waves:5.2f}: "
                      f"{t:7.2f} us ({t_torch / t:.3f}x torch){mark}", flush=True)
        mm.algo = keep


if __name__ == "__main__":
    main()
