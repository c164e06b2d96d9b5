"""python -m jitgemm info | demo | bench | cache | aot"""
from __future__ import annotations

import argparse
import os
import sys

from . import config


def _print_blas(vendor: str) -> None:
    """The vendor BLAS the dispatcher may send a shape to (NVIDIA: cuBLAS; AMD: none yet)."""
    if vendor != "cuda":
        return
    from .runtime import blas
    ok, where = blas.available()
    print(f"  vendor BLAS (for shapes measured faster there): "
          f"{f'cuBLAS {blas.version()} ({where})' if ok else f'none: {where}'}")


def cmd_info(args) -> int:
    from .runtime.backend import get_backend
    from .runtime.cache import default_cache
    import jitgemm
    print(f"jitgemm {jitgemm.__version__}")
    for name in ("cuda", "hip"):
        b = get_backend(name)
        ok, why = b.compiler_available()
        comp = b.compiler_identity() if ok else why
        print(f"backend {name}: compiler {comp}")
        if name == "hip":
            print(f"  {_offline_route()}")
        ok, why = b.available()
        if not ok:
            print(f"  runtime: unavailable: {why}")
            _print_blas(name)
            continue
        n = b.device_count()
        print(f"  runtime: {b.versions()}; {n} device(s)")
        for i in range(n):
            d = b.device_info(i)
            print(f"  [{i}] {d.name}  arch {d.arch}  {d.multiprocessors} SM/CU  warp {d.warp_size}  "
                  f"L2 {d.l2_bytes / 2**20:.0f} MiB  shared/block {d.shared_per_block // 1024} KiB  "
                  f"memory {d.memory_bytes / 2**30:.0f} GiB")
        _print_blas(name)
    c = default_cache()
    entries = c.entries()
    print(f"cache: {c.root}  {len(entries)} entries  {sum(e[1] for e in entries) / 2**20:.2f} MiB  "
          f"(cap {c.max_bytes / 2**20:.0f} MiB)")
    return 0


def _offline_route() -> str:
    """One line: which AMD archs compile where (hiprtc, or the offline clang-22 toolchain)."""
    from .runtime import amd_offline
    from .runtime.hip import _OFFLINE_ARCHS
    ok, why = amd_offline.available()
    if not ok:
        return f"offline clang route ({', '.join(_OFFLINE_ARCHS)} where hiprtc cannot): unavailable: {why}"
    t = amd_offline.find_toolchain()
    return (f"offline clang route for {', '.join(_OFFLINE_ARCHS)} where hiprtc cannot: clang {t.clang_version} "
            f"at {t.clang}, toolchain {t.prefix}")


def cmd_cache(args) -> int:
    from .runtime.cache import default_cache
    c = default_cache()
    if args.action == "list":
        for p, size, mtime in c.entries(args.arch):
            print(f"{p.parent.name:24s} {p.stem}  {size:8d} B")
    elif args.action == "size":
        es = c.entries(args.arch)
        print(f"{len(es)} entries, {sum(e[1] for e in es)} bytes in {c.root}")
    else:
        print(f"removed {c.clear(args.arch)} entries from {c.root}")
    return 0


def instances_for(arch: str):
    from . import dispatch
    from .kernels import scale
    vendor = "cuda" if arch.startswith("sm_") else "hip"
    insts = scale.instances() + dispatch.all_instances(vendor) + \
        dispatch.all_fp8_instances(vendor, arch.split(":", 1)[0] if vendor == "hip" else None)
    if vendor == "cuda" and not arch.startswith("sm_90a"):  # wgmma is sm_90a's alone
        insts = [i for i in insts if not dispatch.needs_wgmma(i)]
    if vendor == "cuda" and dispatch.sm_version(arch) < 90:  # what the dispatcher never picks there
        insts = [i for i in insts if not dispatch.needs_cluster(i)]
        if dispatch.sm_version(arch) < 89:
            insts = [i for i in insts if not i.name.startswith("jg_fp8_nv<")]  # e4m3 mma needs sm_89
    return insts


def _aot_compile(arch: str, root: str, inst) -> tuple:
    """One instance into the cache at root (in a worker process): (name, symbol, resources,
    compiled here?, error text or None). Plain values only, so results cross process boundaries."""
    from .runtime.cache import CodeCache
    from .runtime.jit import compile_instance
    cache = CodeCache(root)
    try:
        r = compile_instance(inst, arch, cache)
    except Exception as e:  # reported per instance; one failure must not hide the others
        return inst.name, None, None, False, f"{type(e).__name__}: {e}"
    sym = r.lowered[inst.name]
    return inst.name, sym, r.resources.get(sym, {}), cache.stats["compiles"] > 0, None


def _aot_results(arch: str, root: str, insts, jobs: int):
    """Yield _aot_compile's tuples as they finish: in `jobs` processes (compiles are CPU-bound, and
    processes need no promise from hip-python that its hiprtc calls release the GIL), or in this one
    for jobs == 1."""
    if jobs <= 1 or len(insts) <= 1:
        for inst in insts:
            yield _aot_compile(arch, root, inst)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # spawn, not fork: a forked child would inherit hip-python's and the driver's state
    with ProcessPoolExecutor(min(jobs, len(insts)), mp_context=multiprocessing.get_context("spawn")) as ex:
        for f in as_completed([ex.submit(_aot_compile, arch, root, i) for i in insts]):
            yield f.result()


def cmd_aot(args) -> int:
    from rich.progress import Progress
    from .runtime.cache import default_cache
    root = str(args.out) if args.out else str(default_cache().root)
    failures = 0
    rows = []
    for arch in args.arch:
        insts = instances_for(arch)
        order = {inst.name: i for i, inst in enumerate(insts)}
        done, compiled = [], 0
        with Progress(transient=True) as prog:
            task = prog.add_task(f"compiling for {arch}", total=len(insts))
            for name, sym, res, fresh, err in _aot_results(arch, root, insts, args.jobs):
                if err:
                    failures += 1
                    print(f"FAILED {arch} {name}: {err}", file=sys.stderr)
                else:
                    compiled += fresh
                    done.append((arch, name, sym, res))
                prog.advance(task)
        rows += sorted(done, key=lambda r: order[r[1]])
        print(f"{arch}: {len(insts)} instances into {root} ({compiled} compiled, "
              f"{len(done) - compiled} from the cache)")
    # the rows are printed as aot always did; --report adds column names and a summary per arch
    if args.report:
        print("arch     instance                                         registers / spills / memory")
    _print_resources(rows)
    if args.report:
        from .runtime.cache import CodeCache
        failures += _seed_comparison(args.arch, CodeCache(root))
    if args.report:
        _print_summary(rows)
    return 1 if failures else 0


def _own_symbol(name: str, sym: str) -> bool:
    """Whether `sym` is the kernel that name expression `name` names, not another kernel of the
    same module (a module also carries every non-template kernel of its file). Itanium mangling
    starts with _Z, the length and the base name, then I for template arguments; extern "C" kernels
    keep their plain name."""
    base = name.split("<", 1)[0].strip()
    if sym == base:
        return True
    prefix = f"_Z{len(base)}{base}"
    return sym.startswith(prefix) and (sym[len(prefix):len(prefix) + 1] == "I") == ("<" in name)


def _seed_comparison(archs, cache) -> int:
    """The fp8 MFMA kernel at the seed's configuration (16 waves, YTILE 2, UNRL 2, N = 1..4) built
    with both MFMA shapes: 16x16x32 (what runs) and 32x32x16 (before vLLM #34100), side by side."""
    from .kernels import fp8
    from .runtime.jit import compile_instance
    bad = 0
    for arch in archs:
        if fp8.native_format("hip", arch) is None:
            continue
        print(f"seed comparison, {arch}: fp8 W8A8 kernel, 16 waves, 2 rows/wave, 2 x 1 KiB in flight")
        for nmax in (1, 2, 4):
            for mf in (16, 32):
                inst = fp8.AmdMfmaConfig(NMAX=nmax, MF=mf).instance("bfloat16")
                try:
                    r = compile_instance(inst, arch, cache)
                except Exception as e:  # the report goes on; the exit code says something failed
                    print(f"  N<={nmax} {mf}x{mf} MFMA: FAILED {e}")
                    bad += 1
                    continue
                res = r.resources[r.lowered[inst.name]]
                print(f"  N<={nmax} mfma {'16x16x32' if mf == 16 else '32x32x16'}: vgpr {res['vgpr']:3d} agpr {res['agpr']:3d} "
                      f"sgpr {res['sgpr']:3d} spills v/s {res['vgpr_spill']}/{res['sgpr_spill']} scratch {res['scratch']}")
    return bad


def _print_resources(rows) -> None:
    for arch, name, sym, res in rows:
        if not _own_symbol(name, sym):
            continue
        if "registers" in res:
            desc = (f"regs {res['registers']:3d}  spill st/ld {res.get('spill_stores', 0)}/{res.get('spill_loads', 0)}  "
                    f"stack {res.get('stack_frame', 0)}  smem {res.get('smem', 0)}")
        else:
            desc = (f"vgpr {res['vgpr']:3d} agpr {res['agpr']:3d} sgpr {res['sgpr']:3d}  spills v/s "
                    f"{res['vgpr_spill']}/{res['sgpr_spill']}  lds {res['lds']}  scratch {res['scratch']}")
        print(f"{arch:8s} {name:48s} {desc}")


def _print_summary(rows) -> None:
    """Per arch: the largest register use and whether anything spilled."""
    for arch in dict.fromkeys(r[0] for r in rows):
        mine = [(name, res) for a, name, sym, res in rows if a == arch and _own_symbol(name, sym)]
        if not mine:
            continue
        if "registers" in mine[0][1]:
            name, res = max(mine, key=lambda r: r[1]["registers"])
            spills = sum(1 for _, r in mine if r.get("spill_stores") or r.get("spill_loads") or r.get("stack_frame"))
            print(f"{arch}: max {res['registers']} registers ({name}); {spills} instances spill")
        else:
            name, res = max(mine, key=lambda r: r[1]["vgpr"] + r[1]["agpr"])
            spills = sum(1 for _, r in mine if r["vgpr_spill"] or r["sgpr_spill"] or r["scratch"])
            sgpr = max(r["sgpr"] for _, r in mine)
            print(f"{arch}: max VGPR+AGPR {res['vgpr'] + res['agpr']} ({name}); max SGPR {sgpr}; "
                  f"{spills} instances spill or use scratch")


def cmd_demo(args) -> int:
    from .demo import main
    return main(args)


def cmd_bench(args) -> int:
    from .bench.main import main
    return main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jitgemm", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="backends, devices, compilers, cache").set_defaults(fn=cmd_info)
    c = sub.add_parser("cache", help="inspect or clear the code-object cache")
    c.add_argument("action", choices=["list", "size", "clear"])
    c.add_argument("--arch", default=None)
    c.set_defaults(fn=cmd_cache)
    a = sub.add_parser("aot", help="compile every shipped kernel instance for ARCH (no GPU needed)")
    a.add_argument("--arch", action="append", required=True)
    a.add_argument("--out", default=None, help="cache directory to fill (default: the user cache)")
    a.add_argument("--report", action="store_true", help="add column names and a per-arch summary to the register rows")
    a.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile in this many processes")
    a.set_defaults(fn=cmd_aot)
    d = sub.add_parser("demo", help="run a few decode GEMMs and check them (or compile-only without a GPU)")
    d.set_defaults(fn=cmd_demo)
    b = sub.add_parser("bench", help="the decode benchmark suite (GPU + CuPy)")
    b.add_argument("--dtype", default="bf16,fp16")
    b.add_argument("--n", default=None, help="comma-separated token counts (default: the suite's)")
    b.add_argument("--shapes", default=None, help="a JSON shape file like jitgemm/data/decode_suite.json")
    b.add_argument("--group", default="decode",
                   help="a shape group of the suite (decode, moderate-n, ...), or overhead: wall-clock cost per "
                        "call of each public entry and an eager Llama-3.1-8B decode step, beside torch and CuPy")
    b.add_argument("--only", default=None, help="substring filter on shape names")
    b.add_argument("--out", default=None, help="directory for JSON, markdown and PNG")
    b.add_argument("--compare", default=None, help="an earlier JSON: print new/old time per case")
    b.add_argument("--label", default="", help="a name kept in overhead.json, to tell runs apart (e.g. old, new)")
    b.add_argument("--no-baselines", action="store_true")
    b.add_argument("--name", default=None, help="output file stem (default: the group name)")
    b.add_argument("--no-plot", action="store_true", help="JSON and markdown only")
    b.add_argument("--tune", action="store_true", help="sweep every NVIDIA config, write tune.json")
    b.add_argument("--overhead", action="store_true", help="the same as --group overhead")
    b.add_argument("--cold", action="store_true", help="first-call time, empty vs warm disk cache")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
