"""Concurrency (issue 8, part 2).

CPU: 8 processes share one cold cache directory and compile, through the real NVRTC path
(jitgemm.runtime.jit.compile_instance), keys that all of them want, keys that pairs of them want
and keys only one wants, all released at once. Each key must be compiled exactly once (every
process records the names its backend really compiled), every process must get the same bytes
(which are also what a private compile of the key gives, and what the cache file holds), and
nothing partial may be left in the directory.

GPU (marker gpu): 8 threads call jitgemm.gemm (and scaled_gemm) on one device, each on its own
CuPy stream, cold kernels included; every result is checked against float64 and threads given the
same operands get the same bits.
"""
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from jitgemm import dispatch
from jitgemm.kernels import fp8, scale
from jitgemm.runtime.cache import CodeCache, decode_entry
from jitgemm.runtime.jit import KernelInstance, compile_instance

REPO = Path(__file__).resolve().parent.parent
PROCS = 8


def _nvrtc_available() -> bool:
    from jitgemm.runtime.backend import get_backend
    try:
        return get_backend("cuda").compiler.available()[0]
    except Exception:
        return False


def _jobs() -> tuple[list[list[tuple[KernelInstance, str]]], set]:
    """What each of the 8 processes compiles: 2 keys for all, 1 key per pair, 1 key of its own."""
    skinny_insts = dispatch.all_instances("cuda")
    shared = [(scale.instance("float32"), "sm_90a"), (skinny_insts[0], "sm_90a")]
    pairs = [(scale.instance("float16"), "sm_90a"), (scale.instance("bfloat16"), "sm_90a"),
             (fp8.quant_instance("float16", True, "float8_e4m3fn"), "sm_90a"), (scale.instance("float32"), "sm_80")]
    own = [(scale.instance(dt), arch) for arch in ("sm_80", "sm_89") for dt in ("float16", "bfloat16")] + \
          [(fp8.quant_instance(dt, pt, "float8_e4m3fn"), "sm_89") for dt in ("float16", "bfloat16") for pt in (True, False)]
    jobs = []
    for i in range(PROCS):
        mine = shared + [pairs[i // 2], own[i]]
        order = np.random.default_rng(i).permutation(len(mine))  # each process asks in its own order
        jobs.append([mine[j] for j in order])
    keys = {(inst.name, arch) for job in jobs for inst, arch in job}
    return jobs, keys


WORKER = r'''
import hashlib, json, sys
from jitgemm.runtime.backend import backend_for_arch
from jitgemm.runtime.cache import CodeCache
from jitgemm.runtime.jit import KernelInstance, compile_instance

root, jobs = sys.argv[1], json.loads(sys.argv[2])
compiled = []
for arch in {a for _, _, a in jobs}:  # record what the compiler is really asked to build
    be = backend_for_arch(arch).compiler
    if not getattr(be, "_recording", False):
        orig = be.compile
        def rec(source, filename, names, options, orig=orig):
            compiled.extend([n, options.arch] for n in names)
            return orig(source, filename, names, options)
        be.compile, be._recording = rec, True
cache = CodeCache(root)
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"   # released together by the parent
results = []
for source, name, arch in jobs:
    r = compile_instance(KernelInstance(source, name), arch, cache)
    results.append([name, arch, hashlib.sha256(r.code).hexdigest(), r.code[:4].hex(), r.lowered.get(name, "")])
print(json.dumps({"results": results, "compiled": compiled, "stats": cache.stats}), flush=True)
'''


@pytest.mark.skipif(not _nvrtc_available(), reason="NVRTC (cuda-bindings + nvidia-cuda-nvrtc) not installed")
def test_eight_processes_one_cold_cache_compile_each_key_once(tmp_path):
    root = tmp_path / "cache"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    jobs, keys = _jobs()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])), JITGEMM_CACHE_DIR=str(root))
    env.pop("JITGEMM_DEBUG", None)
    procs = [subprocess.Popen([sys.executable, str(script), str(root),
                               json.dumps([[i.source, i.name, a] for i, a in job])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for job in jobs]
    try:
        for p in procs:  # every process imported jitgemm and patched its backend: the barrier
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    # each key compiled exactly once, by one of the eight
    compiled = Counter(tuple(c) for o in outs for c in o["compiled"])
    assert set(compiled) == keys, (set(compiled) ^ keys)
    assert all(v == 1 for v in compiled.values()), {k: v for k, v in compiled.items() if v != 1}
    assert sum(o["stats"]["compiles"] for o in outs) == len(keys)
    asked = sum(len(j) for j in jobs)
    assert sum(o["stats"]["disk_hits"] for o in outs) == asked - len(keys)
    assert all(o["stats"]["bad_entries"] == 0 for o in outs)

    # the same bytes everywhere: across processes, in the cache file, and in a private compile
    by_key: dict = {}
    for o in outs:
        for name, arch, digest, magic, symbol in o["results"]:
            assert magic == "7f454c46" and symbol, (name, arch, magic, symbol)  # an ELF cubin, a lowered name
            by_key.setdefault((name, arch), set()).add(digest)
    assert set(by_key) == keys and all(len(d) == 1 for d in by_key.values()), by_key
    cache = CodeCache(root)
    private = CodeCache(tmp_path / "private")
    from jitgemm.runtime.jit import cache_key
    from jitgemm.runtime.backend import backend_for_arch
    insts = {(i.name, a): i for job in jobs for i, a in job}
    for (name, arch), digests in by_key.items():
        inst = insts[(name, arch)]
        path = cache.path(cache_key(inst, arch, backend_for_arch(arch)), arch)
        entry = decode_entry(path.read_bytes(), arch)
        assert entry is not None and hashlib.sha256(entry.code).hexdigest() in digests
        fresh = compile_instance(inst, arch, private)
        assert hashlib.sha256(fresh.code).hexdigest() in digests, f"{name} for {arch} differs from a private compile"

    # nothing partial or foreign left behind
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp-")], files
    assert {p.suffix for p in files} <= {".jgc", ".lock"}, files
    assert len([p for p in files if p.suffix == ".jgc"]) == len(keys)
    assert len(cache.entries()) == len(keys)


# ---- GPU: 8 threads, one device, separate streams -------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif("not __import__('importlib').util.find_spec('cupy')")
def test_gpu_eight_threads_separate_cupy_streams():
    """Every thread runs gemm on its own non-blocking stream (threads t and t + 4 on the same operands,
    so their bits must agree); threads 6 and 7 also run scaled_gemm on shared fp8 operands."""
    import cupy as cp

    import jitgemm
    from fp8_reference import quantize, reference as fp8_ref
    from jitgemm.arrays import View
    from reference import NP, assert_close, random, ulp

    rng = np.random.default_rng(21)
    k, m = 2056, 1048  # a shape no other test uses: the first calls race through compile and module load
    dts = ["bfloat16", "float16", "bfloat16", "float16"]
    ws = {dt: random((m, k), dt, rng, scale=(2.0 / k) ** 0.5) for dt in ("float16", "bfloat16")}
    xs = [random((1 + 5 * j, k), dts[j], rng) for j in range(4)]   # N = 1, 6, 11, 16
    k8 = k + 8
    w8 = quantize(rng.standard_normal((m, k8)), 0.05, "float8_e4m3fn")
    x8 = quantize(rng.standard_normal((3, k8)), 0.05, "float8_e4m3fn")
    ref8, mag8 = fp8_ref(x8, w8, 0.05, 0.05)
    iters = 15
    barrier = threading.Barrier(8)
    errors: list = []
    bits: dict = {}

    def dev_view(host: np.ndarray, dtype: str):
        """A cupy buffer holding host's bytes and a jitgemm View of it typed as `dtype` (CuPy has no bf16/fp8)."""
        raw = cp.asarray(host.view(np.uint8 if host.dtype.itemsize == 1 else np.uint16))
        return raw, View(raw.data.ptr, host.shape, (host.shape[1], 1), dtype, dtype, 0, "device", raw, vendor="cuda")

    def worker(t: int):
        try:
            cp.cuda.Device(0).use()
            s = cp.cuda.Stream(non_blocking=True)
            j = t % 4
            dt, x = dts[j], xs[j]
            with s:  # every buffer is made and filled on this thread's stream
                keep = [dev_view(x, dt), dev_view(ws[dt], dt)]
                out = cp.empty((x.shape[0], m), dtype=cp.uint16)
                ov = View(out.data.ptr, out.shape, (m, 1), dt, dt, 0, "device", out, vendor="cuda")
                if t >= 6:
                    keep += [dev_view(x8, "float8_e4m3fn"), dev_view(w8, "float8_e4m3fn")]
                    out8 = cp.empty((3, m), dtype=cp.float16)
                s.synchronize()
                barrier.wait()  # all eight start together
                first = first8 = None
                for i in range(iters):
                    out.fill(0xFFFF)
                    jitgemm.gemm(keep[0][1], keep[1][1], out=ov, stream=s)
                    if t >= 6:
                        out8.fill(cp.nan)
                        jitgemm.scaled_gemm(keep[2][1], keep[3][1], 0.05, 0.05, out_dtype="float16", out=out8,
                                            stream=s)
                    got = cp.asnumpy(out)  # on s: after the kernels
                    if first is None:
                        assert_close(got.view(NP[dt]), x, ws[dt], None, dt)
                        first = got
                    else:
                        assert np.array_equal(got, first), f"thread {t}: gemm bits changed at iteration {i}"
                    if t >= 6:
                        g8 = cp.asnumpy(out8)
                        g64 = g8.astype(np.float64)
                        assert not np.isnan(g64).any(), f"thread {t}: NaN from scaled_gemm"
                        assert (np.abs(g64 - ref8) <= ulp(ref8, "float16") + k8 * 2.0 ** -23 * mag8).all()
                        if first8 is None:
                            first8 = g8.view(np.uint16)
                        else:
                            assert np.array_equal(g8.view(np.uint16), first8), f"thread {t}: fp8 bits changed"
                s.synchronize()
            bits[t] = (first, first8)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append((t, repr(e)))
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    for t in range(4):
        assert np.array_equal(bits[t][0], bits[t + 4][0]), f"threads {t} and {t + 4} disagree"
    assert np.array_equal(bits[6][1], bits[7][1])
