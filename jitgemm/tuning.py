"""Tuning on the user's own GPU: `python -m jitgemm tune` and `jitgemm.tune(shapes)`.

For each weight shape [M, K] the tuner times, by graph replay over cold weight copies and after a
float64 check of each candidate:
  - N <= 16: every skinny config at N = 1, 4, 8, 16 (the buckets asked for); one K order for all of
    them (min-max regret, so a token's bits never depend on the batch), MT per bucket. The moderate
    family's 16-token tiles are not candidates: timed alone they won at some shapes (up to 11 % on an
    H200), and they lost every model step that ran them (H100 sessions 23-24: 7-24 %; H200 session 35:
    the 70B TP-8 shard's qkv, 11 % faster alone, 6 % slower in its step at N = 1 and 4);
  - N > 16: the moderate family's tiles x K slices at 32, 64, 128, and cuBLAS through jitgemm's own
    route (what runs when it wins);
  - dtype "fp8" (scaled_gemm's family, timed as W8A8 e4m3fn with per-tensor scales, bf16 out): every
    skinny-core config at N = 1, 4, 8, 16, one K order for all (every fp8 mode runs the chosen row; N > 16
    repeats bucket 16's token tile, so it needs no bucket of its own);
  - dtype "w4-<format>" (w4_gemm's family: mxfp4, q4_sym, q4_min, q4_zp; timed with bf16 tokens at the
    format's benchmark group, 32 or 128): every config of jitgemm.bench.tune_w4's grid at N = 1, 4, 8, 16,
    one K order for all; the row serves every group of the format and both token dtypes, so a config whose
    instance for any of them spills is no candidate.
The winners go to this device's tuning file (jitgemm.tuned), which the dispatcher reads before the
shipped tables, for exactly these shapes. Needs an NVIDIA GPU and CuPy (the timers and buffers)."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

SMALL_BUCKETS = (1, 4, 8, 16)      # the skinny family's N buckets
LARGE_BUCKETS = (32, 64, 128)      # the moderate family's
DEFAULT_NS = SMALL_BUCKETS + LARGE_BUCKETS
W4_MODES = ("w4-mxfp4", "w4-q4_sym", "w4-q4_min", "w4-q4_zp")  # jitgemm.bench.w4_runner.MODES
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "bfloat16": "bfloat16", "float16": "float16", "fp8": "fp8",
          **{m: m for m in W4_MODES}}


@dataclass(frozen=True)
class Shape:
    name: str
    m: int
    k: int


@dataclass
class Result:
    """What a tuning run measured and where it stored it."""
    path: Path | None
    device: str
    rows: list = field(default_factory=list)   # one dict per shape: name, m, k, chosen configs, times
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"tuned {len(self.rows)} shape(s) on {self.device} in {self.seconds:.0f} s -> {self.path}"]
        for r in self.rows:
            lines.append(f"  {r['name']} [{r['m']}x{r['k']}]: " + "; ".join(r["summary"]))
        return "\n".join(lines)


# ---- the request, checked before any GPU work ----------------------------------------------------------------
def shapes_from(spec) -> list[Shape]:
    """Shapes from a model name (jitgemm.models), a JSON file ({"shapes": [{"name", "m", "k"}]} or a
    list of such objects), or a list of (m, k) / (name, m, k) tuples or {"m", "k"} dicts."""
    from . import models
    if isinstance(spec, (str, Path)):
        if str(spec) in models.names():
            return [Shape(*s) for s in models.shapes(str(spec))]
        p = Path(spec)
        if not p.is_file():
            raise ValueError(f"shapes: {spec!r} is neither a model ({', '.join(models.names())}) nor a JSON file")
        import json
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"shapes file {p}: not JSON ({e})") from None
        spec = data.get("shapes") if isinstance(data, dict) else data
        if spec is None:
            raise ValueError(f"shapes file {p}: expected a list of {{name, m, k}} objects or {{\"shapes\": [...]}}")
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ValueError(f"shapes must be a non-empty list of (m, k) pairs, a model name or a JSON file, got {spec!r}")
    out = []
    for i, s in enumerate(spec):
        if isinstance(s, dict):
            unknown = set(s) - {"name", "m", "k"}
            if unknown:
                raise ValueError(f"shapes[{i}]: unknown fields {sorted(unknown)} (a shape has name, m, k)")
            name, m, k = s.get("name"), s.get("m"), s.get("k")
        elif isinstance(s, (list, tuple)) and len(s) in (2, 3):
            name, m, k = (None, *s) if len(s) == 2 else s
        else:
            raise ValueError(f"shapes[{i}] must be (m, k), (name, m, k) or {{name, m, k}}, got {s!r}")
        for what, v in (("m", m), ("k", k)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v > 2 ** 31 - 1:
                raise ValueError(f"shapes[{i}]: {what} must be an int in 1..2^31-1, got {v!r}")
        if k % 8:
            raise ValueError(f"shapes[{i}]: K must be a multiple of 8 (16-byte vectors), got {k}")
        out.append(Shape(str(name) if name is not None else f"m{m}.k{k}", m, k))
    return out


def check_request(shapes, dtype: str, ns) -> tuple[list[Shape], str, tuple[int, ...]]:
    """The request as (shapes, dtype, N buckets), or a ValueError naming the argument and the rule."""
    shapes = shapes_from(shapes)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(ns, int):
        ns = (ns,)
    ns = tuple(ns)
    bad = [n for n in ns if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128]
    if not ns or bad:
        raise ValueError(f"n must be token counts in 1..128, got {list(ns)!r}")
    if DTYPES[dtype] == "fp8":
        odd = [s for s in shapes if s.k % 16]
        if odd:
            raise ValueError(f"fp8 weights need K a multiple of 16 (16-byte fp8 slices): {odd[0].name} has K={odd[0].k}")
        return shapes, "fp8", tuple(sorted({_bucket(min(n, 16)) for n in ns}))  # N > 16 runs bucket 16's row
    if dtype in W4_MODES:
        from .bench.w4_runner import MODES
        group = MODES[dtype][1]
        odd = [s for s in shapes if s.k % group]
        if odd:
            raise ValueError(f"{dtype} is timed with groups of {group} k: K must be a multiple of {group}, "
                             f"{odd[0].name} has K={odd[0].k}")
        # as fp8: N > 16 takes bucket 16's K order (its token tiles: kernels.w4.token_tiling)
        return shapes, dtype, tuple(sorted({_bucket(min(n, 16)) for n in ns}))
    return shapes, DTYPES[dtype], tuple(sorted({_bucket(n) for n in ns}))


def _bucket(n: int) -> int:
    """The N bucket a token count is tuned at (the dispatcher's buckets)."""
    from .dispatch import n_bucket
    return n_bucket(n) if n <= 16 else 32 if n <= 32 else 64 if n <= 64 else 128


# ---- the run ---------------------------------------------------------------------------------------------
def tune(shapes, *, dtype: str = "bfloat16", n=None, progress: bool = True, jobs: int | None = None,
         device: int | None = None) -> Result:
    """Tune `shapes` for a CUDA device (default: CuPy's current one) and store the winners in its
    tuning file; returns what was measured. shapes: see shapes_from; n: the token counts (each tunes its
    N bucket); progress: a bar on a terminal, a line each tenth of the way elsewhere (False: silent);
    jobs: processes compiling the candidates first (default: every CPU)."""
    shapes, dtype, buckets = check_request(shapes, dtype, DEFAULT_NS if n is None else n)
    try:
        import cupy as cp
    except ImportError:
        raise ImportError("jitgemm tune needs CuPy for its timers and buffers: pip install 'jitgemm[cupy]'") from None
    import time
    from .runtime.backend import get_backend
    t0 = time.perf_counter()
    backend = get_backend("cuda")
    with cp.cuda.Device(device if device is not None else cp.cuda.Device().id) as d:
        return _run(cp, backend.device_info(int(d.id)), shapes, dtype, buckets, progress, jobs, t0)


def _run(cp, info, shapes, dtype, buckets, progress, jobs, t0) -> "Result":
    import time
    from . import precompile
    from .runtime.cache import default_cache
    plan = (_W4Sweep if dtype in W4_MODES else _Sweep)(cp, info, dtype, buckets)
    insts = plan.instances(shapes)
    compiled = {}  # what each candidate compiled to (the 4-bit sweep drops those that spill)
    with precompile.Progress("tune: compiling candidates", len(insts), "kernels", quiet=not progress) as advance:
        for name, _sym, res, _fresh, err in precompile.results(info.arch, str(default_cache().root), insts,
                                                               jobs or os.cpu_count() or 1):
            compiled[name] = {"error": err} if err else res
            if err and progress:
                print(f"tune: {name} does not compile here ({err.splitlines()[0]}); it is not a candidate", flush=True)
            advance()
    plan.compiled = compiled
    rows_s, rows_m, report, done = [], [], [], []
    try:
        with precompile.Progress("tune: timing", plan.count(shapes), "configs", quiet=not progress) as advance:
            for sh in shapes:
                srow, mrow, summary = plan.shape(sh, advance)
                if srow:
                    rows_s.append(srow)
                if mrow:
                    rows_m.append(mrow)
                report.append({"name": sh.name, "m": sh.m, "k": sh.k, "summary": summary})
                done.append(sh)
                cp.get_default_memory_pool().free_all_blocks()
    except KeyboardInterrupt:  # Ctrl-C: keep the shapes timed so far (minutes of work), then stop
        if done:
            path = _store(info, dtype, buckets, done, rows_s, rows_m,
                          f"jitgemm tune, interrupted after {len(done)} of {len(shapes)} shapes")
            print(f"tune interrupted: the {len(done)} of {len(shapes)} shape(s) timed so far are stored in {path}; "
                  f"run the same command again for the rest", flush=True)
        raise
    path = _store(info, dtype, buckets, shapes, rows_s, rows_m, "jitgemm tune")
    return Result(path, info.name, report, time.perf_counter() - t0)


def _store(info, dtype: str, buckets, shapes, rows_s: list, rows_m: list, how: str) -> Path:
    """This run's rows for `shapes`, merged with the earlier tuning file's others (every family it has),
    written atomically."""
    from . import tables, tuned
    key = tuned.machine_key(info.name)
    old = tuned.current(info.name)
    families = {f: list(old.doc[f]) for f in tables.FAMILIES if old is not None and f in old.doc}
    if dtype == "fp8" or dtype in W4_MODES:  # one family's rows; the others stay as they were
        fam = "fp8" if dtype == "fp8" else dtype
        families[fam] = _merge_skinny(old, rows_s, fam)
    else:
        tuned_buckets = ([16] if any(b <= 16 for b in buckets) else []) + [b for b in buckets if b > 16]
        families["skinny"] = _merge_skinny(old, rows_s)
        families["moderate"] = _merge_moderate(old, rows_m, {(s.m, s.k) for s in shapes}, tuned_buckets)
    for fam in ("skinny", "moderate", "fp8"):
        families.setdefault(fam, [])
    doc = tables.document("cuda", info.name, info.arch,
                          {"date": datetime.date.today().isoformat(), "dtype": dtype, "how": how}, families, key)
    return tuned.save(info.name, doc)


def _merge_skinny(old, rows: list, family: str = "skinny") -> list:
    """This run's skinny (or fp8) rows, and the earlier file's rows of shapes this run did not tune at
    N <= 16 (a K order is chosen over the buckets tuned together, so a new row replaces the old one whole)."""
    mine = {(r["m"], r["k"]) for r in rows}
    return [r for r in (old.doc.get(family, []) if old else []) if (r["m"], r["k"]) not in mine] + rows


def _merge_moderate(old, rows: list, shapes: set, tuned_buckets: list) -> list:
    """The earlier file's moderate rows with this run's buckets in place: for each shape this run tuned,
    the buckets it tuned are replaced (an earlier bucket 16 dropped where N <= 16 was tuned: the 16-token
    tile is no candidate any more, see the module's doc), the others kept."""
    merged = {(r["m"], r["k"]): dict(r, buckets=dict(r["buckets"])) for r in (old.doc.get("moderate", []) if old else [])}
    for m, k in shapes:
        if (m, k) in merged:
            for b in tuned_buckets:
                merged[(m, k)]["buckets"].pop(str(b), None)
    for r in rows:
        merged.setdefault((r["m"], r["k"]), {**r, "buckets": {}})["buckets"].update(r["buckets"])
    return [r for r in merged.values() if r["buckets"]]


class _Sweep:
    """The candidates and the timing of one tuning run on one device."""

    def __init__(self, cp, info, dtype: str, buckets: tuple[int, ...]):
        from .arch import parse
        from .kernels import skinny
        self.cp, self.info, self.dtype = cp, info, dtype
        self.fp8 = dtype == "fp8"
        self.small = [b for b in buckets if b in SMALL_BUCKETS]
        self.large = [b for b in buckets if b in LARGE_BUCKETS]
        self.cluster_ok = parse(info.arch).has("clusters")
        self.skinny = [c for c in skinny.NV_CONFIGS if c.SK == 1 or self.cluster_ok]
        self.stream = cp.cuda.Stream(non_blocking=True)

    def large_configs(self, sh: Shape, n: int) -> list:
        from .bench.tune_moderate import candidates
        return candidates(n, sh.m, sh.k, self.info.multiprocessors, self.cluster_ok, self.info.arch)

    def instances(self, shapes) -> list:
        from .kernels import fp8
        out = []
        for n in self.small:
            out += [fp8.nv_instance(c, "bfloat16", fp8.W8A8, n) if self.fp8 else c.instance(self.dtype, n)
                    for c in self.skinny]
        for sh in shapes:
            for n in self.large:
                out += [c.instance(self.dtype) for c in self.large_configs(sh, n)]
        return list(dict.fromkeys(out))

    def count(self, shapes) -> int:
        total = 0
        for sh in shapes:
            total += len(self.small) * len(self.skinny)
            total += sum(len(self.large_configs(sh, n)) + 1 for n in self.large)
        return total

    def shape(self, sh: Shape, advance) -> tuple[dict | None, dict | None, list[str]]:
        """(skinny row, moderate row, summary lines) of one shape, in the tables-file form."""
        from . import tables
        from .bench import runner, suite, tune_skinny
        from .dispatch import n_bucket
        from .kernels import moderate
        from .bench import fp8_runner
        shape = suite.Shape(sh.name, sh.m, sh.k)
        if self.fp8:
            ops = fp8_runner.Fp8Operands(self.cp, shape, self.info.l2_bytes, with_bf16=False)
        else:
            ops = runner.Operands(self.cp, shape, self.dtype, max(self.small + self.large), self.info.l2_bytes)
        srow = mrow = None
        buckets, summary = {}, []

        def timed(n, cfg, **kw):
            if self.fp8:  # W8A8 per tensor with the config forced, checked against float64
                kw = dict(make=lambda: runner.forced(cfg, lambda: ops.prepared("fp8", n)),
                          check=lambda p: ops.check("fp8", n, p))
            us, _why = runner.time_config(ops, n, cfg, self.stream, **kw)
            advance()
            return us
        if self.small:
            times = {(n_bucket(n), c): us for n in self.small for c in self.skinny
                     if (us := timed(n, c)) is not None}
            if not times:
                raise RuntimeError(f"tune: no skinny config ran correctly for {sh.name} [{sh.m}x{sh.k}]")
            best = tune_skinny.select(shape, times)
            srow = tables.skinny_row_doc(sh.name, sh.m, sh.k, best["k_order"], best["mt"], best["us"])
            summary.append(f"N<=16 {'fp8' if self.fp8 else 'skinny'} K order {tuple(best['k_order'])}, MT {best['mt']}, "
                           f"us {best['us']}")
        for n in self.large:
            cands = {c: us for c in self.large_configs(sh, n) if (us := timed(n, c)) is not None}
            with runner.forced_blas():
                blas_us = timed(n, None, make=lambda n=n: runner.prepared_calls(ops, n))
            if not cands:
                summary.append(f"N={n}: no kernel config ran correctly" + ("" if blas_us is None else "; cuBLAS runs"))
                continue
            pick = min(cands, key=cands.get)
            ratio = None if blas_us is None else round(blas_us / cands[pick], 3)
            buckets[n] = tables.moderate_entry_doc(moderate.to_entry(pick, ratio))
            winner = "cuBLAS" if ratio is not None and ratio < 1 else "kernel"
            summary.append(f"N={n} {winner}: kernel {cands[pick]:.2f} us ({pick.describe()}, S={pick.S}), "
                           f"cuBLAS {'-' if blas_us is None else f'{blas_us:.2f}'} us")
        if buckets:
            mrow = {"name": sh.name, "m": sh.m, "k": sh.k, "buckets": {str(b): e for b, e in buckets.items()}}
        return srow, mrow, summary


class _W4Sweep:
    """One tuning run of a 4-bit format (jitgemm.bench.tune_w4) on one device: _Sweep's interface, a row of
    the family "w4-<format>" a shape."""

    def __init__(self, cp, info, mode: str, buckets: tuple[int, ...]):
        from .arch import parse
        from .bench import tune_w4
        from .bench.w4_runner import MODES
        self.cp, self.info, self.mode, self.buckets = cp, info, mode, list(buckets)
        self.fmt = MODES[mode][0]
        cluster_ok = parse(info.arch).has("clusters")
        self.configs = [c for c in tune_w4.grid() if c.SK == 1 or cluster_ok]
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.compiled: dict = {}  # _run fills it: instance name -> resources or {"error": ...}

    def instances(self, shapes) -> list:
        """What each candidate becomes at each bucket for every group and token dtype of the format (a tuned
        row serves them all: one that spills in any is no candidate)."""
        from .bench import tune_w4
        return list(dict.fromkeys(i for c in self.configs for n in self.buckets
                                  for i in tune_w4.row_instances(c, self.fmt, n)))

    def count(self, shapes) -> int:
        return len(shapes) * len(self.buckets)  # progress: one step a (shape, N), every config timed in it

    def shape(self, sh: Shape, advance) -> tuple[dict | None, None, list[str]]:
        from .bench import suite, tune_w4
        rows = tune_w4.measure_shape(self.cp, self.stream, suite.Shape(sh.name, sh.m, sh.k), self.mode, self.buckets,
                                     self.configs, self.info.l2_bytes, lambda _row: advance(), self.info.name,
                                     self.info.arch, baseline=False)
        fam = tune_w4.table_rows({"resources": self.compiled, "rows": rows}).get(self.mode, [])
        if not fam:
            raise RuntimeError(f"tune: no 4-bit config ran correctly for {sh.name} [{sh.m}x{sh.k}] ({self.mode})")
        row = fam[0]
        return row, None, [f"N<=16 {self.mode} K order {tuple(row['k_order'])}, MT {row['mt']}, us {row['us']}"]

