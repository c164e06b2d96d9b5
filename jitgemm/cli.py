"""python -m jitgemm info | demo | bench | cache | aot"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import config, precompile, registers

from .messages import refuse
from .targets import AMD_ARCHS, NV_ARCHS, arch_problem  # what aot and cache accept


def _settings_problems() -> list[str]:
    """The environment settings that are set but invalid (each message says the rule)."""
    out = []
    for read in (config.cache_max_bytes, config.backend_override):
        try:
            read()
        except ValueError as e:
            out.append(str(e))
    return out


def _info() -> dict:
    """What `info` reports, as plain values: printed as text, or as JSON with --json."""
    import dataclasses
    import jitgemm
    from .runtime.backend import get_backend
    out = {"jitgemm": jitgemm.__version__, "settings_errors": _settings_problems(),
           "backends": {}, "devices": [], "compilers": {}, "blas": {}}
    for name in ("cuda", "hip"):
        b = get_backend(name)
        ok, why = b.compiler.available()
        out["compilers"][name] = {"available": ok, "identity": b.compiler.identity() if ok else None,
                                  "reason": None if ok else why}
        ok, why = b.available()
        n = b.device_count() if ok else 0
        out["backends"][name] = {"available": ok, "reason": None if ok else why,
                                 "versions": b.versions() if ok else None, "devices": n}
        out["devices"] += [{"backend": name, **dataclasses.asdict(b.device_info(i)),
                            **(_tables_of(b.device_info(i)) if name == "cuda" else {})} for i in range(n)]
    out["compilers"]["amd_offline"] = _offline_route()
    out["blas"]["cuda"] = _blas()
    out["cache"] = _cache_info()
    return out


def _tables_of(info) -> dict:
    """Which measured table an NVIDIA device plans from, and its own tuning (jitgemm tune), if any."""
    from . import tables, tuned
    try:
        t = tables.choose("cuda", info.name, info.arch, config.settings().nv_tuning)
        mine = tuned.current(info.name)
    except ValueError as e:
        return {"table": f"invalid: {e}", "tuning": None}
    return {"table": f"{t.device} ({t.source})" if t else None,
            "tuning": {"path": str(tuned.path(info.name)),
                       "shapes": len({(r[0], r[1]) for f in tables.FAMILIES for r in mine.family(f)})}
            if mine else None}


def _offline_route() -> dict:
    """The offline clang-22 toolchain that compiles the AMD archs hiprtc cannot (amd_offline)."""
    from .runtime import amd_offline
    from .runtime.amd_flags import OFFLINE_ARCHS
    ok, why = amd_offline.available()
    if not ok:
        return {"available": False, "archs": list(OFFLINE_ARCHS), "reason": why}
    t = amd_offline.find_toolchain()
    return {"available": True, "archs": list(OFFLINE_ARCHS), "clang": t.clang, "clang_version": t.clang_version,
            "prefix": str(t.prefix)}


def _blas() -> dict:
    """The vendor BLAS the dispatcher may send a shape to (NVIDIA: cuBLAS; AMD: none yet)."""
    from .runtime import blas, blaslt
    ok, where = blas.available()
    lt_ok, lt_where = blaslt.available()
    lt = {"available": lt_ok, ("path" if lt_ok else "reason"): lt_where}
    if not ok:
        return {"available": False, "reason": where, "cublaslt": lt}
    return {"available": True, "library": "cuBLAS", "version": blas.version(), "path": where, "cublaslt": lt}


def _cache_info() -> dict:
    from .runtime.cache import CodeCache
    try:
        cap = config.cache_max_bytes()
    except ValueError:
        cap = None  # reported among the settings errors
    c = CodeCache(max_bytes=cap or 0)
    entries = c.entries()
    return {"dir": str(c.root), "entries": len(entries), "bytes": sum(e[1] for e in entries), "max_bytes": cap}


def cmd_info(args) -> int:
    info = _info()
    if args.json:
        import json
        print(json.dumps(info, indent=1))
    else:
        _print_info(info)
    return 2 if info["settings_errors"] else 0


def _print_info(info: dict) -> None:
    print(f"jitgemm {info['jitgemm']}")
    for why in info["settings_errors"]:
        print(f"invalid setting: {why}")
    for name, b in info["backends"].items():
        comp = info["compilers"][name]
        print(f"backend {name}: compiler {comp['identity'] or comp['reason']}")
        if name == "hip":
            r = info["compilers"]["amd_offline"]
            archs = ", ".join(r["archs"])
            route = (f"for {archs} where hiprtc cannot: clang {r['clang_version']} at {r['clang']}, toolchain {r['prefix']}"
                     if r["available"] else f"({archs} where hiprtc cannot): unavailable: {r['reason']}")
            print(f"  offline clang route {route}")
        if not b["available"]:
            print(f"  runtime: unavailable: {b['reason']}")
        else:
            print(f"  runtime: {b['versions']}; {b['devices']} device(s)")
        for d in (d for d in info["devices"] if d["backend"] == name):
            print(f"  [{d['index']}] {d['name']}  arch {d['arch']}  {d['multiprocessors']} SM/CU  warp {d['warp_size']}  "
                  f"L2 {d['l2_bytes'] / 2**20:.0f} MiB  shared/block {d['shared_per_block'] // 1024} KiB  "
                  f"memory {d['memory_bytes'] / 2**30:.0f} GiB")
            if "table" in d:
                tuning = d["tuning"]
                print(f"      measured table: {d['table']}; own tuning: "
                      + (f"{tuning['shapes']} shape(s) in {tuning['path']}" if tuning else "none (python -m jitgemm tune)"))
        r = info["blas"].get(name)
        if r:
            what = f"cuBLAS {r['version']} ({r['path']})" if r["available"] else f"none: {r['reason']}"
            print(f"  vendor BLAS (for shapes measured faster there): {what}")
            lt = r.get("cublaslt")
            if lt:
                print("  cuBLASLt (fp8 W8A8 per-tensor from 16 tokens): " +
                      (lt["path"] if lt["available"] else f"none: {lt['reason']}"))
    c = info["cache"]
    cap = f"cap {c['max_bytes'] / 2**20:.0f} MiB" if c["max_bytes"] is not None else "cap: invalid JITGEMM_CACHE_MAX_BYTES"
    print(f"cache: {c['dir']}  {c['entries']} entries  {c['bytes'] / 2**20:.2f} MiB  ({cap})")


def cmd_cache(args) -> int:
    from .runtime.cache import default_cache
    c = default_cache()
    # an arch that is no target any more may still have entries to list or clear
    if args.arch and arch_problem(args.arch) and not c.path("k", args.arch).parent.is_dir():
        return refuse("cache", f"{arch_problem(args.arch)}; nor has the cache any entries for it")
    es = c.entries(args.arch)
    if args.action == "list":
        _print_entries(c, es)
    elif args.action == "size":
        total = sum(e[1] for e in es)
        print(f"{len(es)} entries, {total / 2**20:.2f} MiB ({total} bytes) in {c.root} (cap {c.max_bytes / 2**20:.0f} MiB)")
    else:
        print(f"removed {c.clear(args.arch)} entries from {c.root}")
    return 0


def _print_entries(c, entries) -> None:
    """One row per entry, oldest (first to be evicted) first: arch, kernel, size, age, compiler."""
    if not entries:
        print(f"no entries in {c.root}")
        return
    unreadable = {"arch": None, "kernels": ["(unreadable entry)"], "compiler": "?"}
    rows = [(p.parent.name, size, mtime, {**unreadable, **(c.describe(p) or {})}) for p, size, mtime in entries]
    width = max(len(", ".join(d["kernels"])) for *_, d in rows)
    print(f"{'arch':8s} {'kernel':{width}s} {'size':>9s} {'age':>6s}  compiler")
    now = time.time()
    for folder, size, mtime, d in rows:
        print(f"{d['arch'] or folder:8s} {', '.join(d['kernels']):{width}s} {size / 1024:5.1f} KiB "
              f"{_age(now - mtime):>6s}  {d['compiler']}")
    print(f"{len(entries)} entries, {sum(e[1] for e in entries) / 2**20:.2f} MiB in {c.root}")


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds // span:.0f} {unit}"
    return f"{seconds:.0f} s"


def cmd_aot(args) -> int:
    # every arch checked before anything is compiled (or a worker started): a refusal leaves no entry
    problems = [arch_problem(a) for a in args.arch if arch_problem(a)]
    problems += [f"cannot compile for {a} here: {precompile.compiler_problem(a)}" for a in args.arch
                 if not problems and precompile.compiler_problem(a)]
    if problems:
        return refuse("aot", problems[0])
    from .runtime.cache import default_cache
    root = str(args.out) if args.out else str(default_cache().root)
    failures = 0
    rows = []
    for arch in args.arch:
        insts = precompile.instances_for(arch)
        order = {inst.name: i for i, inst in enumerate(insts)}
        done, compiled = [], 0
        with precompile.Progress(f"aot {arch}", len(insts), "instances") as advance:
            for name, sym, res, fresh, err in precompile.results(arch, root, insts, args.jobs):
                if err:
                    failures += 1
                    print(f"FAILED {arch} {name}: {err}", file=sys.stderr)
                else:
                    compiled += fresh
                    done.append((arch, name, sym, res))
                advance()
        rows += sorted(done, key=lambda r: order[r[1]])
        print(f"{arch}: {len(insts)} instances into {root} ({compiled} compiled, "
              f"{len(done) - compiled} from the cache)")
    # the rows are printed as aot always did; --report adds column names and a summary per arch
    if args.report:
        print(registers.RESOURCE_HEADER)
    registers.print_resources(rows)
    registers.print_spills(rows)
    if args.report:
        from .runtime.cache import CodeCache
        failures += _seed_comparison(args.arch, CodeCache(root))
    if args.report:
        registers.print_summary(rows)
    return 1 if failures else 0


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


def cmd_demo(args) -> int:
    from .demo import main
    return main(args)


def cmd_bench(args) -> int:
    from .bench.main import main
    return main(args)


def cmd_tune(args) -> int:
    """Tune shapes on this GPU: the request is checked first (exit 2 with the rule), then the GPU."""
    from . import models, tuning
    spec = args.model or args.shapes or [_shape_arg(v) for v in args.shape or []]
    if not spec:
        return refuse("tune", f"say what to tune: --model NAME ({', '.join(models.names())}), --shapes FILE or "
                              f"--shape MxK (repeat it)")
    try:
        ns = _int_list(args.n, "--n") if args.n else tuning.DEFAULT_NS
        tuning.check_request(spec, args.dtype, ns)
    except ValueError as e:
        return refuse("tune", str(e))
    from .bench.main import missing
    why = missing()
    if why:
        return refuse("tune", why)
    print(tuning.tune(spec, dtype=args.dtype, n=ns, jobs=args.jobs))
    if args.model:  # each kernel was timed alone; in a step its neighbours overlap it (docs/benchmarks/session22:
        # a re-tuning whose every kernel was faster alone made some steps slower), so say how to check the step
        print(f"each kernel was timed alone; check the whole step: python -m jitgemm bench --group model --models "
              f"{args.model} --dtype {args.dtype}, then the same with JITGEMM_TUNED=0 (the shipped tables alone)")
    return 0


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def _shape_arg(text: str):
    m, sep, k = text.lower().partition("x")
    if not sep or not m.strip().isdigit() or not k.strip().isdigit():
        return text  # check_request names it
    return int(m), int(k)


ARCH_HELP = f"a compile target: {', '.join(NV_ARCHS + AMD_ARCHS)} (AMD ones may carry features, e.g. gfx942:xnack-)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jitgemm", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="backends, devices, compilers, cache")
    i.add_argument("--json", action="store_true", help="print it as one JSON object (backends, devices, compilers, "
                                                       "blas, cache, settings_errors)")
    i.set_defaults(fn=cmd_info)
    c = sub.add_parser("cache", help="inspect or clear the code-object cache")
    c.add_argument("action", choices=["list", "size", "clear"],
                   help="list: one row per entry (arch, kernel, size, age, compiler); size: the total; clear: delete")
    c.add_argument("--arch", default=None, help="only the entries of this target (default: all); " + ARCH_HELP)
    c.set_defaults(fn=cmd_cache)
    a = sub.add_parser("aot", help="compile every shipped kernel instance for ARCH (no GPU needed)")
    a.add_argument("--arch", action="append", required=True, help=ARCH_HELP + "; repeat for several")
    a.add_argument("--out", default=None, help="cache directory to fill (default: the user cache)")
    a.add_argument("--report", action="store_true", help="add column names and a per-arch summary to the register rows")
    a.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile in this many processes")
    a.set_defaults(fn=cmd_aot)
    d = sub.add_parser("demo", help="run a few decode GEMMs and check them (or compile-only without a GPU)")
    d.add_argument("--dtype", default="bf16,fp16", help="comma-separated: bf16, fp16 (default: both)")
    d.add_argument("--n", default="1,4,16", help="comma-separated token counts, 1..128, of the GPU run (default: 1,4,16)")
    d.add_argument("--arch", action="append", default=None,
                   help="without a GPU, the target to compile for (default: sm_90a and gfx90a); repeat for several")
    d.set_defaults(fn=cmd_demo)
    b = sub.add_parser("bench", help="the decode benchmark suite (GPU + CuPy)")
    b.add_argument("--dtype", default="bf16,fp16",
                   help="comma-separated: bf16, fp16, an fp8 mode (fp8, fp8-channel, w8a16, fp8-static) or a 4-bit one "
                        "(w4-mxfp4, w4-q4_sym, w4-q4_min, w4-q4_zp); default bf16,fp16. "
                        "--group model: one 16-bit step (the first given) and the fp8 modes fp8, fp8-channel, w8a16")
    b.add_argument("--n", default=None, help="comma-separated token counts (default: the suite's)")
    b.add_argument("--shapes", default=None, help="a JSON shape file like jitgemm/data/decode_suite.json")
    b.add_argument("--group", default="decode",
                   help="a shape group of the suite (decode: N 1..16; moderate-n: N 16..128; broad: 60+ weights of public "
                        "models and odd tails, unseen by the tuner), model: the linear layers of whole decode steps of "
                        "public models, each step one CUDA graph, overhead: wall-clock cost per call of each public "
                        "entry and an eager Llama-3.1-8B decode step, beside torch and CuPy, or tp: a Llama-3.1-70B "
                        "layer's linears tensor-parallel over every GPU of the host, eager and graph, against torch "
                        "+ NCCL")
    b.add_argument("--models", default=None, help="--group model: comma-separated model names (default: all of "
                                                  "jitgemm/data/models.json; with fp8 modes only, Llama-3.1-8B "
                                                  "and the Llama-3.1-70B TP-8 shard); a MoE model as NAME+experts-stacked "
                                                  "runs each layer's experts as one GEMM of their stacked weights "
                                                  "(what a grouped call would read), as NAME+experts-grouped "
                                                  "(4-bit modes) as one w4_experts_gemm a layer kind "
                                                  "(jitgemm/models.py)")
    b.add_argument("--only", default=None, help="substring filter on shape names")
    b.add_argument("--out", default=None, help="directory for JSON, markdown and PNG")
    b.add_argument("--compare", default=None, help="an earlier JSON: print new/old time per case")
    b.add_argument("--label", default="", help="a name kept in overhead.json, to tell runs apart (e.g. old, new)")
    b.add_argument("--no-baselines", action="store_true", help="time jitgemm only, not torch (cuBLAS) and CuPy beside it")
    b.add_argument("--name", default=None, help="output file stem (default: the group name)")
    b.add_argument("--no-plot", action="store_true", help="JSON and markdown only")
    b.add_argument("--tune", action="store_true", help="sweep every NVIDIA config, write tune.json")
    b.add_argument("--overhead", action="store_true", help="the same as --group overhead")
    b.add_argument("--cold", action="store_true", help="first-call time, empty vs warm disk cache")
    b.set_defaults(fn=cmd_bench)
    t = sub.add_parser("tune", help="time the candidate configs and cuBLAS for your shapes on this GPU; the dispatcher "
                                    "uses the winners first (GPU + CuPy)")
    t.add_argument("--model", default=None, help="the weights of a model's decode step: " + ", ".join(_model_names()))
    t.add_argument("--shapes", default=None, help='a JSON file: {"shapes": [{"name": ..., "m": M, "k": K}, ...]}')
    t.add_argument("--shape", action="append", default=None, help="one weight as MxK (e.g. 4096x14336); repeat it")
    t.add_argument("--dtype", default="bf16", help="bf16, fp16, fp8 (scaled_gemm's family, every mode), or a 4-bit "
                                                   "format of w4_gemm: w4-mxfp4, w4-q4_sym, w4-q4_min, w4-q4_zp "
                                                   "(default bf16)")
    t.add_argument("--n", default=None, help="comma-separated token counts 1..128; each tunes its N bucket "
                                            "(default: every bucket, 1,4,8,16,32,64,128)")
    t.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile the candidates in this many processes")
    t.set_defaults(fn=cmd_tune)
    return p


def _model_names() -> list[str]:
    from . import models
    return models.names()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problems = _settings_problems()
    if problems and args.cmd != "info":  # info reports them beside everything else
        return refuse(args.cmd, problems[0])
    try:
        return args.fn(args)
    except BrokenPipeError:  # `... | head`: the reader has gone, and nothing is left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what was kept was said already (tune); no traceback, the shell's code
        print(f"jitgemm {args.cmd}: interrupted", file=sys.stderr)
        return 130
