"""python -m jitgemm info | demo | bench | cache | aot"""
from __future__ import annotations

import argparse
import sys

from . import config


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
        ok, why = b.available()
        if not ok:
            print(f"  runtime: unavailable: {why}")
            continue
        n = b.device_count()
        print(f"  runtime: {b.versions()}; {n} device(s)")
        for i in range(n):
            d = b.device_info(i)
            print(f"  [{i}] {d.name}  arch {d.arch}  {d.multiprocessors} SM/CU  warp {d.warp_size}  "
                  f"L2 {d.l2_bytes / 2**20:.0f} MiB  shared/block {d.shared_per_block // 1024} KiB  "
                  f"memory {d.memory_bytes / 2**30:.0f} GiB")
    c = default_cache()
    entries = c.entries()
    print(f"cache: {c.root}  {len(entries)} entries  {sum(e[1] for e in entries) / 2**20:.2f} MiB  "
          f"(cap {c.max_bytes / 2**20:.0f} MiB)")
    return 0


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
    return scale.instances() + dispatch.all_instances(vendor)


def cmd_aot(args) -> int:
    from rich.progress import Progress
    from .runtime.cache import CodeCache, default_cache
    from .runtime.jit import compile_instance
    cache = CodeCache(args.out) if args.out else default_cache()
    failures = 0
    rows = []
    for arch in args.arch:
        insts = instances_for(arch)
        with Progress(transient=True) as prog:
            task = prog.add_task(f"compiling for {arch}", total=len(insts))
            for inst in insts:
                try:
                    r = compile_instance(inst, arch, cache)
                    for sym, res in r.resources.items():
                        rows.append((arch, inst.name, sym, res))
                except Exception as e:
                    failures += 1
                    print(f"FAILED {arch} {inst.name}: {e}", file=sys.stderr)
                prog.advance(task)
        print(f"{arch}: {len(insts)} instances into {cache.root}")
    if args.report or True:
        _print_resources(rows)
    return 1 if failures else 0


def _print_resources(rows) -> None:
    for arch, name, sym, res in rows:
        if "registers" in res:
            desc = (f"regs {res['registers']:3d}  spill st/ld {res.get('spill_stores', 0)}/{res.get('spill_loads', 0)}  "
                    f"stack {res.get('stack_frame', 0)}  smem {res.get('smem', 0)}")
        else:
            desc = (f"vgpr {res['vgpr']:3d} agpr {res['agpr']:3d} sgpr {res['sgpr']:3d}  spills v/s "
                    f"{res['vgpr_spill']}/{res['sgpr_spill']}  lds {res['lds']}  scratch {res['scratch']}")
        if name.split("<")[0] in sym or True:
            print(f"{arch:8s} {name:48s} {desc}")


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
    a.add_argument("--report", action="store_true", help="print registers/spills per instance")
    a.set_defaults(fn=cmd_aot)
    d = sub.add_parser("demo", help="run a few decode GEMMs and check them (or compile-only without a GPU)")
    d.set_defaults(fn=cmd_demo)
    b = sub.add_parser("bench", help="the decode benchmark suite (GPU + CuPy)")
    b.add_argument("--dtype", default="bf16,fp16")
    b.add_argument("--n", default=None, help="comma-separated token counts (default: the suite's)")
    b.add_argument("--shapes", default=None, help="a JSON shape file like jitgemm/data/decode_suite.json")
    b.add_argument("--group", default="decode")
    b.add_argument("--only", default=None, help="substring filter on shape names")
    b.add_argument("--out", default=None, help="directory for JSON, markdown and PNG")
    b.add_argument("--compare", default=None, help="an earlier JSON: print new/old time per case")
    b.add_argument("--no-baselines", action="store_true")
    b.add_argument("--tune", action="store_true", help="sweep every NVIDIA config, write tune.json")
    b.add_argument("--overhead", action="store_true", help="host overhead per call (10,000 calls)")
    b.add_argument("--cold", action="store_true", help="first-call time, empty vs warm disk cache")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
