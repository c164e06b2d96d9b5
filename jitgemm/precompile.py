"""Compiling many kernel instances at once, with progress shown: which instances an arch gets (what `aot`
compiles), whether this machine can compile for it, and the parallel compile `aot` and `tune` use."""
from __future__ import annotations

import sys


def instances_for(arch: str):
    """Every instance the dispatcher may choose on `arch`: those whose required capabilities (clusters,
    wgmma, fp8 mma, ...) the arch has."""
    from . import dispatch
    from .arch import parse
    from .kernels import scale
    a = parse(arch)
    base = a.base if a.vendor == "hip" else None
    insts = scale.instances() + dispatch.all_instances(a.vendor) + dispatch.all_fp8_instances(a.vendor, base) + \
        dispatch.all_w4_instances(a.vendor, base)
    return [i for i in insts if a.runs(i.requires)]


def compiler_problem(arch: str) -> str | None:
    """Why nothing can compile for `arch` on this machine (NVRTC, hiprtc, or the offline clang route
    missing), or None."""
    from .runtime.backend import backend_for_arch
    c = backend_for_arch(arch).compiler
    if hasattr(c, "route"):  # AMD: hiprtc or the offline clang route, depending on the arch
        tool, why = c.route(arch)
        return None if tool else why
    ok, why = c.available()
    return None if ok else why


def compile_one(arch: str, root: str, inst) -> tuple:
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


def results(arch: str, root: str, insts, jobs: int):
    """Yield compile_one's tuples as they finish: in `jobs` processes (compiles are CPU-bound, and
    processes need no promise from hip-python that its hiprtc calls release the GIL), or in this one
    for jobs == 1."""
    if jobs <= 1 or len(insts) <= 1:
        for inst in insts:
            yield compile_one(arch, root, inst)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # spawn, not fork: a forked child would inherit hip-python's and the driver's state
    ex = ProcessPoolExecutor(min(jobs, len(insts)), mp_context=multiprocessing.get_context("spawn"))
    yield from as_finished(ex, compile_one, [(arch, root, i) for i in insts])


def as_finished(ex, fn, calls):
    """Yield fn(*args) for each args of `calls`, run in the executor `ex`, as they finish, then shut `ex` down. If
    the consumer stops first (Ctrl-C, an error, close()), the calls not yet started are dropped: a `with` block's
    shutdown would have run every one of them before returning (session 24: `jitgemm aot` went on compiling its
    hundreds of kernels after SIGINT). What finished is kept (each compile is in the disk cache as it ends)."""
    from concurrent.futures import as_completed
    done = False
    try:
        for f in as_completed([ex.submit(fn, *args) for args in calls]):
            yield f.result()
        done = True
    finally:
        # all finished: wait for the workers to exit here, where it is quick. Left to the interpreter's exit, the
        # executor's exit handler raced their teardown and printed "Bad file descriptor" tracebacks after a
        # successful `jitgemm aot` (CI, 2026-12-08)
        ex.shutdown(wait=done, cancel_futures=not done)


class Progress:
    """A rich progress bar on a terminal; elsewhere (a log, a pipe) a line each tenth of the way,
    so long work is seen working. `with Progress(label, total, "instances") as advance:` ... `advance()`.
    quiet=True shows nothing (library calls that were asked for no output)."""

    def __init__(self, label: str, total: int, unit: str, quiet: bool = False):
        self.label, self.total, self.unit, self.done, self.quiet = label, total, unit, 0, quiet
        self.step = max(1, -(-total // 10))
        self.bar = None
        if sys.stdout.isatty() and not quiet:
            from rich.progress import Progress as Bar
            self.bar = Bar(transient=True)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self.advance

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def advance(self) -> None:
        self.done += 1
        if self.bar:
            self.bar.advance(self.task)
        elif not self.quiet and (self.done % self.step == 0 or self.done == self.total):
            print(f"{self.label}: {self.done}/{self.total} {self.unit} done", flush=True)
