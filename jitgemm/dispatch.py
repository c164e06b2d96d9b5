"""Which kernel family and template config runs for (arch, dtype, N, M, K), and why.

NVIDIA configs come from measured tables (jitgemm.tables: a JSON file per GPU, written by
`python -m jitgemm bench --tune`): first the user's own tuning of the exact shape on this device
(`jitgemm tune`, jitgemm.tuned), then the shipped table of the device (or of its arch), where shapes
between table points take the nearest measured shape in log(M), log(K). AMD configs follow the
seed's CU-count rules (no AMD GPU to measure on)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from . import config, tables, tuned
from .arch import parse
from .kernels import moderate, skinny
from .runtime.jit import KernelInstance


@dataclass(frozen=True)
class Plan:
    family: str  # "skinny" | "moderate" | "fp8" | "w4" | "blas" / "blaslt" (cuBLAS / cuBLASLt: no kernel of ours)
    reason: str
    config: object = None
    instance: KernelInstance | None = None
    grid: tuple = (1, 1, 1)
    block: tuple = (1, 1, 1)
    shared: int = 0
    extra: dict = field(default_factory=dict)  # what the launch needs beyond grid and block, by name:
    # "pdl" (programmatic dependent launch), and the family's last kernel argument: "prefetch_bytes"
    # (NVIDIA skinny: L2 prefetch per weight row), "lds_chunk" (AMD skinny: tokens' K-chunk in LDS), "kb"
    # (moderate: K blocks per slice, with "ws_floats" and "tiles" of its split-K workspace), "lds_bytes"
    # (AMD fp8 MFMA: token bytes in LDS), "fallback" (blaslt: the kernel's plan, for calls cuBLASLt cannot take)

    def __str__(self) -> str:
        if self.family in ("blas", "blaslt"):
            return f"vendor BLAS: {self.reason}"
        return (f"{self.family} {self.instance.name} grid={self.grid} block={self.block} "
                f"shared={self.shared}B: {self.reason}")


def settings_key() -> int:
    """What, besides shape and device, changes a plan: the settings snapshot's generation (a new one
    after every `config.reload()`), for caching plans safely."""
    return config.settings().generation


def n_bucket(n: int) -> int:
    return 1 if n == 1 else 4 if n <= 4 else 8 if n <= 8 else 16


def load_table(family: str = "skinny", *, device: str = "", arch: str = "sm_90a") -> list:
    """The measured rows of a family ('skinny', 'fp8', 'moderate' or a 4-bit 'w4-<format>') for a device (its
    name) of an arch: JITGEMM_NV_TUNING's file when set and it has the family, else the shipped file
    jitgemm.tables.choose picks. The user's own tuning (jitgemm.tuned) is consulted before these."""
    t = _table_file(device, arch, family)
    return t.family(family) if t else []


def _table_file(device: str, arch: str, family: str):
    override = config.settings().nv_tuning
    if override:
        t = tables.choose("cuda", device, arch, override)
        if t.has(family):
            return t
    return tables.choose("cuda", device, arch)


def every_row(family: str) -> list:
    """Every measured row of a family in any table the dispatcher may read here (each shipped file,
    JITGEMM_NV_TUNING's): what `aot` compiles configs from."""
    override = config.settings().nv_tuning
    if override:
        t = tables.choose("cuda", "", "sm_90a", override)
        if t.has(family):
            return list(t.family(family))
    return [r for t in tables.shipped() if t.vendor == "cuda" for r in t.family(family)]


def lookup(family: str, m: int, k: int, device: str = "", arch: str = "sm_90a", usable=None):
    """(row, why) of the measured row a shape takes, or None without any: the user's tuning of this
    exact (M, K) on this device first, else the nearest tuned shape in log(M), log(K) of the table;
    of the rows where `usable(row)` holds, if given (a moderate row measured at the N buckets asked for)."""
    row = tuned.exact(device, family, m, k)
    if row is not None and (usable is None or usable(row)):
        return row, f"tuned on this GPU ({tuned.describe(device)})"
    t = _table_file(device, arch, family)
    table = t.family(family) if t else []
    common = _common_wk(tuple(r[2][0] for r in table)) if family == "skinny" and table else None
    rows = [r for r in table if (usable is None or usable(r)) and _carries(family, common, r, m, k)]
    if not rows:
        return None
    row = nearest_row(rows, m, k)
    return row, f"measured table: nearest tuned shape M={row[0]} K={row[1]} ({t.device})"


def _carries(family: str, common: int | None, row, m: int, k: int) -> bool:
    """Whether a measured row may serve (M, K): its own shape always; a 16-bit skinny row another shape only when
    the row's K split (WK warps) is the table's most common one. The H100 broad suite (2026-12-05, N = 16) lost on 13 of
    the 15 untuned shapes nearest to the two WK = 8 rows (M = 5120, K = 2880 / 4096: 0.87-0.98x cuBLAS), while
    same-size shapes nearest to WK = 16 rows won 1.05-1.29x: a rare K split won at its own shape only. "Its own
    shape" includes sizes within 2 % of it in M and K (a padded tail of the same weight): the rerun (H100,
    session 15) lost 0.90 -> 0.83x at M = 5120, K = 2888 when the K = 2880 row no longer served it.
    A 4-bit row with min_blocks serves its own weight only: the same bound was +3 % of Qwen2.5-7B's step on its
    gate_up and -2 % of Llama-3.1-8B's on a weight 1.3x smaller (session 32). So does one with own_weight: the 70B
    TP-8 shard's o weight took another K order in session 33, measured in that step only, while its shared row (kept
    beside it) is the nearest of every small-K shape (about a hundred of a 29 x 18 grid of M and K)."""
    if _same_weight(row, m, k):
        return True
    if own_weight(row):
        return False
    if family != "skinny":
        return True
    return row[2][0] == common  # common: the table's most common WK (_common_wk), counted once per lookup


def own_weight(row) -> bool:
    """Whether a measured row serves its own weight only: a 4-bit row with min_blocks or own_weight, the five-element
    form (tables._w4_row)."""
    return len(row) > 4


def bounded_row(row) -> bool:
    """Whether a 4-bit row carries a register bound (min_blocks; an own-weight row without one has an empty dict)."""
    return own_weight(row) and bool(row[4])


def _same_weight(row, m: int, k: int) -> bool:
    return abs(math.log2(row[0] / max(m, 1))) <= _NEAR and abs(math.log2(row[1] / max(k, 1))) <= _NEAR


_NEAR = math.log2(1.02)


def _common_wk(wks: tuple) -> int:
    """The most common WK of a table's rows (the larger on a tie: more warps splitting K read more at once)."""
    return max(set(wks), key=lambda w: (wks.count(w), w))


def nearest_row(table: list, m: int, k: int):
    """The tuned shape of a measured table nearest to (M, K) in log(M), log(K); at equal distance a 4-bit row kept
    to its own weight (min_blocks or own_weight) before a shared row of the same shape, which goes on serving the
    shapes nearest to it (tables: own_weight)."""
    return min(table, key=lambda r: (_log_dist(r, m, k), not own_weight(r)))


def _log_dist(row, m: int, k: int) -> float:
    return (math.log2(row[0]) - math.log2(max(m, 1))) ** 2 + (math.log2(row[1]) - math.log2(max(k, 8))) ** 2


def moderate_entry(n: int, m: int, k: int, device: str = "", arch: str = "sm_90a"):
    """(tuned M, tuned K, N bucket, entry, why) of the moderate-N row this shape takes, or None without
    one (or, for N <= 16, without a measured bucket 16). entry: see moderate.from_entry."""
    if n <= skinny.MAX_N:
        usable = lambda r: skinny.MAX_N in r[2]
    else:
        usable = lambda r: any(b > skinny.MAX_N for b in r[2])
    found = lookup("moderate", m, k, device, arch, usable)
    if not found:
        return None
    (tm, tk, buckets), why = found
    if n <= skinny.MAX_N:
        return (tm, tk, skinny.MAX_N, buckets[skinny.MAX_N], why) if skinny.MAX_N in buckets else None
    b = min((bb for bb in buckets if bb > skinny.MAX_N and bb >= n), default=max(buckets))
    return tm, tk, b, buckets[b], why


def small_n_moderate(m: int, k: int, arch: str, device: str = "") -> bool:
    """Whether N = 1..16 of this shape runs the moderate family instead of the skinny one: only at a
    shape whose row adopted it (its bucket 16, in a tables file a user gives: the tuners wrote it until
    session 35, and it lost every model step that ran it, jitgemm.tuning) and that is this very
    (M, K), with a tile this arch runs. One config then serves every N <= 16 (a 16-token tile, the same
    K slices), so a token's bits still do not depend on the batch size.

    Exact shapes only: the rule once took any shape within a factor of 2 of an adopting one, and on an
    H200 that lost 0.76-0.79x against cuBLAS at untuned weights at N = 1, 4 and 16 (a win measured at
    one shape does not carry to its neighbours), while the skinny family's nearest config holds up."""
    if tuned.exact(device, "skinny", m, k) is not None:
        # N <= 16 of this shape was tuned here (a tuning of N <= 16 always writes its skinny row): its verdict
        row = tuned.exact(device, "moderate", m, k)
        entry = row[2].get(skinny.MAX_N) if row is not None else None
        return entry is not None and moderate.from_entry(entry)[0].tile.runs_on(arch)
    found = moderate_entry(1, m, k, device, arch)
    if not found or (found[0], found[1]) != (m, k):
        return False
    return moderate.from_entry(found[3])[0].tile.runs_on(arch)


def nv_config(dtype: str, n: int, m: int, k: int, sms: int, arch: str = "sm_90a",
              family: str = "skinny", device: str = "") -> tuple[skinny.NvConfig, str]:
    """The measured config of the shape's row (jitgemm.dispatch.lookup). Its K order (WK, U, SK) is
    chosen per shape for all N together, so the same token gives the same bits at every N."""
    found = lookup(family, m, k, device, arch) or lookup("skinny", m, k, device, arch)
    if not found:
        return heuristic_nv(m, k, sms), "heuristic (no measured table)"
    return row_config(found[0], n, arch), found[1]


def row_config(row, n: int, arch: str) -> skinny.NvConfig:
    """A skinny-form row's config for N tokens: its K order, and the MT of N's bucket (of the nearest bucket
    the row has, for a tuning of some buckets only)."""
    _m, _k, (wk, u, sk), mts = row[:4]
    if not parse(arch).has("clusters"):
        sk = 1  # clusters need sm_90
    b = n_bucket(n)
    b = b if b in mts else min(mts, key=lambda x: abs(x - b))
    blocks = row[4] if own_weight(row) else {}  # a 4-bit row's min_blocks (tables._w4_row)
    return skinny.NvConfig(mts[b], wk, u, sk, MB=blocks.get(b, 1))


def heuristic_nv(m: int, k: int, sms: int) -> skinny.NvConfig:
    """For shapes with no measured table (the table ships, so rarely): what won almost every
    decode shape on an H100, 16 warps splitting K, 2 steps in flight, 32 rows a block for large M."""
    return skinny.NvConfig(2 if m >= 8192 else 1, 16, 2, 1)


def moderate_nv_config(n: int, m: int, k: int, sms: int, arch: str,
                       device: str = "") -> tuple[moderate.ModerateConfig, str]:
    """N > 16 on NVIDIA: the measured config of the shape's row (jitgemm.dispatch.lookup) for the
    N bucket (32, 64, 128), else the heuristic. Clusters need sm_90: before it, the same K slices
    are summed through the workspace."""
    cluster_ok = parse(arch).has("clusters")
    found = moderate_entry(n, m, k, device, arch)
    if found:
        tm, tk, b, entry, why = found
        cfg, ratio = moderate.from_entry(entry)
        why += f", N bucket {b}"
        if not cfg.tile.runs_on(arch):  # a wgmma tile off sm_90a: the heuristic's tile, the same K slices
            cfg = replace(cfg, tile=moderate.heuristic(n, m, k, sms, cluster_ok).tile)
            why += f" (its wgmma tile needs sm_90a: {arch} runs an mma.sync tile)"
        if cfg.RED == moderate.RED_CLUSTER and not cluster_ok:
            cfg = replace(cfg, RED=moderate.RED_WORKSPACE)  # the same slices, summed through the workspace
        cfg = moderate.normalized(cfg, k)
        if b <= skinny.MAX_N:
            why += (" (chosen over the skinny family there for the smaller worst-case time over N = 1, 4, 8, 16; "
                    "every N <= 16 runs this config, so a token's bits do not depend on the batch size)")
        elif ratio is not None:
            why += f", {ratio:.2f}x cuBLAS's speed there"
        return cfg, why
    return moderate.heuristic(n, m, k, sms, cluster_ok), "heuristic for moderate N (no measured table)"


#: N > 16 at a shape no row measured: the nearest row's verdict (kernel or cuBLAS) carries only to small M.
#: The H100 broad suite (2026-12-05, N = 64): every untuned shape with M <= 129 ran faster on the kernel
#: (1.09-2.2x cuBLAS), while M = 896-1152 lost three of four on the nearest row's config (0.56-0.86x) -- the
#: generalisation the exact-shape rule already removed for N <= 16. Above this M, cuBLAS runs (where it can)
#: until `jitgemm tune` measures the shape.
UNTUNED_KERNEL_MAX_M = 256


def blas_choice(n: int, m: int, k: int, bias: bool, blas_present: bool | None = None, device: str = "",
                arch: str = "sm_90a") -> tuple[bool, str]:
    """(whether cuBLAS runs this shape, why the kernel runs although cuBLAS would). N > 16 on NVIDIA, without a
    bias (only the kernel fuses one), unless JITGEMM_BLAS=0 or the library does not load, cuBLAS runs where the
    shape's own row measured it faster, or where no row measured this shape and M > UNTUNED_KERNEL_MAX_M."""
    if n <= skinny.MAX_N:
        return False, ""
    found = moderate_entry(n, m, k, device, arch)
    if not found:
        return False, ""
    ratio = moderate.from_entry(found[3])[1]
    if (found[0], found[1]) == (m, k) or m <= UNTUNED_KERNEL_MAX_M:
        if ratio is None or ratio >= 1.0:
            return False, ""
        what, faster = "cuBLAS measured faster", f"measured {1 / ratio:.2f}x faster than"
    else:
        what = f"cuBLAS is the default for an untuned shape with M > {UNTUNED_KERNEL_MAX_M}"
        faster = (f"is the default for an untuned shape with M > {UNTUNED_KERNEL_MAX_M} (a tuned neighbour's verdict "
                  f"does not carry; `jitgemm tune` measures this one) instead of")
    ok, note = _library_route(what, ((bias, "this call has a bias, which only the kernel fuses"),), blas_present,
                              "blas", "libcublas", "cuBLAS (cublasGemmEx, fp32 accumulation")
    return ok, f"{note} {faster}" if ok else note


def _library_route(why: str, refusals, present: bool | None, module: str, lib: str, using: str) -> tuple[bool, str]:
    """The tail both vendor-library routes share: the first refusal that holds (a (condition, reason) pair),
    JITGEMM_BLAS=0, or a library that does not load keeps the kernel, and the note says why; else (True, `using`
    closed with the library's path). present: explaining for another machine (explain(arch=)), whose library is
    assumed. module: jitgemm.runtime's module of the library, imported only here (not at jitgemm's import)."""
    for cond, but in (*refusals, (not config.blas(), "JITGEMM_BLAS=0")):
        if cond:
            return False, f"; {why}, but {but}: the kernel runs"
    if present:
        return True, f"{using}, where {lib} loads)"
    import importlib
    ok, where = importlib.import_module(f".runtime.{module}", __package__).available()
    if not ok:
        return False, f"; {why}, but it is not available ({where}): the kernel runs"
    return True, f"{using}, {where})"


def fit_shared(cfg: moderate.ModerateConfig, limit: int) -> moderate.ModerateConfig:
    """The config with fewer pipeline stages if its shared memory exceeds the device's per-block
    limit; raises when even two stages (or the fp32 tile) do not fit."""
    from dataclasses import replace
    t = cfg.tile
    while t.shared_bytes() > limit and t.ST > 2:
        t = replace(t, ST=t.ST - 1)
    if t.shared_bytes() > limit or t.BN * (t.BM + 4) * 4 > t.shared_bytes():
        raise ValueError(f"moderate-N tile {t.BM}x{t.BN} needs {max(t.shared_bytes(), t.BN * (t.BM + 4) * 4)} B of "
                         f"shared memory per block, more than this device's {limit} B")
    return replace(cfg, tile=t)


def plan_gemm(vendor: str, arch: str, cus: int, dtype: str, n: int, m: int, k: int, l2_bytes: int = 50 << 20,
                shared_limit: int = 0, bias: bool = False, blas_present: bool | None = None,
                device: str = "") -> Plan:
    """The plan of a 16-bit gemm (N = 1..128): the skinny family, the moderate-N family or cuBLAS.
    bias: whether the call has one (cuBLAS is only chosen without). device: the GPU's name (which
    measured table and which of the user's tunings apply)."""
    if n > skinny.MAX_N or (vendor == "cuda" and small_n_moderate(m, k, arch, device)):
        return plan_moderate(vendor, arch, cus, dtype, n, m, k, shared_limit, bias, blas_present, device)
    if vendor == "cuda":
        cfg, why = nv_config(dtype, n, m, k, cus, arch, device=device)
        grid, block, shared = cfg.geometry(m, n)
        sm90 = parse(arch).sm >= 90  # the kernel's L2 prefetch is built for sm_90 and later (use_pdl checks its own)
        pf = cfg.prefetch_bytes(m, k, cus, l2_bytes) if config.prefetch() and sm90 else 0
        pdl = use_pdl("skinny", arch)
        how = (f"; L2 prefetch {pf} B/row" if pf else "") + _pdl_note(pdl)
        return Plan("skinny", f"{cfg.describe()}{how}; {why}", cfg, cfg.instance(dtype, n), grid, block, shared,
                    {"prefetch_bytes": pf, "pdl": pdl})
    lds = skinny.amd_lds_bytes(arch)
    cfg = skinny.amd_tile(n, m, k, cus, lds)
    grid, block, shared, kc = skinny.amd_geometry(cfg, n, m, k, cus, lds)
    how = "tokens whole in LDS" if kc >= k else f"tokens staged in LDS in K-chunks of {kc}"
    return Plan("skinny", f"{cfg.describe()}; seed CU-count rule ({cus} CUs), {how}", cfg,
                cfg.instance(dtype, n), grid, block, shared, {"lds_chunk": kc, "pdl": False})


def plan_moderate(vendor: str, arch: str, cus: int, dtype: str, n: int, m: int, k: int, shared_limit: int = 0,
                  bias: bool = False, blas_present: bool | None = None, device: str = "") -> Plan:
    """N = 17..128: the tiled split-K family, or cuBLAS where the measured table says it is faster
    (NVIDIA, no bias, JITGEMM_BLAS not 0, the library loads). shared_limit: the device's per-block
    maximum (0: the arch's known value)."""
    if vendor == "cuda":
        cfg, why = moderate_nv_config(n, m, k, cus, arch, device)
        use_blas, note = blas_choice(n, m, k, bias, blas_present, device, arch)
        if use_blas:
            return Plan("blas", f"{note} the best moderate-N kernel ({cfg.describe()}, S={cfg.S}; {why}); "
                                f"JITGEMM_BLAS=0 runs the kernel", cfg)
        why += note
        limit = shared_limit or (227 << 10 if parse(arch).sm >= 90 else 99 << 10)
    else:
        cfg, why = moderate.amd_config(n, m, k, cus, arch), f"amd rule ({cus} CUs)"
        limit = shared_limit or skinny.amd_lds_bytes(arch)
    cfg = fit_shared(cfg, limit)
    grid = cfg.grid(n, m)
    extra = {"kb": cfg.kb_per_split(k), "ws_floats": cfg.workspace_floats(n, m), "tiles": cfg.tiles(n, m),
             "pdl": False}
    waves = (f"; {grid[0] * grid[1] * grid[2]} blocks for {cus} SMs/CUs: more than one pass"
             if grid[0] * grid[1] * grid[2] > cus * 2 else "")
    return Plan("moderate", f"{cfg.describe()}{waves}; {why}", cfg, cfg.instance(dtype), grid,
                (cfg.tile.threads, 1, 1), cfg.tile.shared_bytes(), extra)


#: W8A8 with per-tensor scales from this many tokens on runs in cuBLASLt (NVIDIA, where it loads): the skinny
#: fp8 kernel measured 0.67-1.2x (geomean 0.92) torch._scaled_mm at N = 16 over 58 unseen shapes and 0.37-0.44x
#: at N = 64 in the 8B / 70B TP-8 steps (H100, 2026-12-05), while N <= 4 won (geomean 1.10-1.13).
FP8_LT_MIN_N = 16
#: W8A8 with per-token / per-channel scale vectors or a bias from this many tokens on runs in cuBLASLt too, its
#: fp32 sums finished by jitgemm's epilogue kernel (scales, bias, one rounding): the kernel measured 1.14-1.41x
#: the row-wise baseline at N = 16 but 0.47-0.52x at N = 64 (H100, 2026-12-05), so N <= 16 stays on the kernel.
#: (cuBLASLt's own outer-vector scales: CUBLAS_STATUS_INVALID_VALUE for fp8 on an H100 with cuBLASLt 13.1.)
FP8_LT_MIN_N_EPILOGUE = 17
#: the fp32 sums the epilogue route keeps per stream (N x M floats, M padded): above this, the kernel runs
FP8_EPILOGUE_MAX_BYTES = 64 << 20


def epilogue_pitch(m: int) -> int:
    """The row pitch (floats) of the epilogue route's fp32 sums: M rounded up to 64 (256-byte rows)."""
    return -(-m // 64) * 64


def lt_choice(vendor: str, arch: str, mode: int, fmt: str, n: int, m: int, scales: tuple[bool, bool], bias: bool,
              lt_present: bool | None = None) -> tuple[bool, bool, str]:
    """(whether cuBLASLt runs this scaled_gemm, whether through the epilogue, why the kernel runs although N alone
    would send it there). cuBLASLt's fp8 path: W8A8 in e4m3fn on sm_89 and later, M a multiple of 16 (what its
    fp8 kernels and torch._scaled_mm require), JITGEMM_BLAS not 0, the library loads. Per-tensor scales without
    a bias go straight to it from FP8_LT_MIN_N tokens (its scale pointers, or alpha); scale vectors (scales: per
    token, per channel) or a bias from FP8_LT_MIN_N_EPILOGUE, through fp32 sums and the epilogue kernel. The
    call's own pointers and pitches are checked where the launch is made (scaled._launch_for)."""
    from .kernels import fp8
    epilogue = any(scales) or bias
    least = FP8_LT_MIN_N_EPILOGUE if epilogue else FP8_LT_MIN_N
    if vendor != "cuda" or mode != fp8.W8A8 or n < least or parse(arch).sm < 89:
        return False, False, ""
    kind = "per-tensor scales" if not epilogue else "its fp32 sums scaled by jitgemm's epilogue kernel"
    why = f"cuBLASLt runs W8A8 with {kind} from N = {least} tokens on (the kernel measured slower there)"
    sums = n * epilogue_pitch(m) * 4
    ok, note = _library_route(why, ((fmt != "float8_e4m3fn", f"the weights are {fmt}, which cuBLASLt does not take"),
                                    (m % 16 != 0, f"M = {m} is no multiple of 16"),
                                    (epilogue and sums > FP8_EPILOGUE_MAX_BYTES,
                                     f"its fp32 sums would take {sums >> 20} MiB (more than "
                                     f"{FP8_EPILOGUE_MAX_BYTES >> 20} MiB)")),
                              lt_present, "blaslt", "libcublasLt", "cuBLASLt (cublasLtMatmul, fp8 tensor cores"
                              + ("; scales and bias in jitgemm's epilogue kernel, one rounding" if epilogue else ""))
    return ok, epilogue and ok, note


def plan_fp8(vendor: str, arch: str, cus: int, out_dtype: str, mode: int, fmt: str, n: int, m: int, k: int,
             device: str = "", scales: tuple[bool, bool] = (False, False), bias: bool = False,
             lt_present: bool | None = None) -> Plan:
    """The plan of a checked scaled_gemm (N = 1..128): cuBLASLt where lt_choice says so (the kernel's plan in
    extra["fallback"], for calls whose pointers or pitches cuBLASLt cannot take; extra["epilogue"]: the epilogue
    kernel's plan where cuBLASLt leaves fp32 sums), else the fp8 family's kernel for the vendor, arch, mode and
    format; N beyond one block's token tile takes more blocks (_token_tiles says how). scales: whether scale_x is
    per token, scale_w per channel; bias: the call has one."""
    from .kernels import fp8
    kernel = _plan_fp8_kernel(vendor, arch, cus, out_dtype, mode, fmt, n, m, k, device)
    use_lt, epilogue, note = lt_choice(vendor, arch, mode, fmt, n, m, scales, bias, lt_present)
    if not use_lt:
        return replace(kernel, reason=kernel.reason + note) if note else kernel
    extra = {"fallback": kernel}
    if epilogue:
        lda = epilogue_pitch(m)
        extra["epilogue"] = Plan("blaslt", "the epilogue of cuBLASLt's fp32 sums", None,
                                 fp8.epilogue_instance(out_dtype), (-(-m // fp8.EPILOGUE_BLOCK), n, 1),
                                 (fp8.EPILOGUE_BLOCK, 1, 1), 0,
                                 {"ws_floats": n * lda, "tiles": 1, "lda": lda, "pdl": False})
    return Plan("blaslt", f"{note} instead of the fp8 kernel ({kernel.reason}); JITGEMM_BLAS=0 runs the kernel",
                kernel.config, extra=extra)


def _plan_fp8_kernel(vendor: str, arch: str, cus: int, out_dtype: str, mode: int, fmt: str, n: int, m: int, k: int,
                     device: str = "") -> Plan:
    from .kernels import fp8
    if vendor == "cuda":
        cfg, why = nv_config(out_dtype, n, m, k, cus, arch, family="fp8", device=device)
        grid, block, shared = cfg.geometry(m, n)
        tiles = _token_tiles(grid, n, cfg.token_tiles(n))
        pdl = use_pdl("fp8", arch)
        return Plan("fp8", f"{fp8.MODE_NAMES[mode]}; {cfg.describe()}{tiles}"
                           f"{_pdl_note(pdl)}; {why}", cfg,
                    fp8.nv_instance(cfg, out_dtype, mode, n), grid, block, shared, {"pdl": pdl})
    if fp8.mfma_applies(arch, mode, fmt):
        cfg = fp8.mfma_config(n)
        grid, block, shared = cfg.geometry(n, m, k, cus, skinny.amd_lds_bytes(arch))
        return Plan("fp8", f"{fp8.MODE_NAMES[mode]}; amd mfma_f32_16x16x32_fp8_fp8 diagonal trick, {cfg.WAVES} waves, "
                           f"{cfg.YT} rows/wave, tokens in groups of {cfg.NMAX}, {shared} B of tokens in LDS"
                           f"{_token_tiles(grid, n)}",
                    cfg, cfg.instance(out_dtype), grid, block, shared, {"pdl": False, "lds_bytes": shared})
    cfg = fp8.amd_config(n, arch)
    grid, block, shared = cfg.geometry(m, cus, n)
    return Plan("fp8", f"{fp8.MODE_NAMES[mode]}; amd {cfg.YT} rows/wave, {cfg.WAVES} waves, {fmt} decoded exactly "
                       f"in software (no fp8 MFMA for this arch/format){_token_tiles(grid, n)}",
                cfg, cfg.instance(out_dtype, mode, fmt, n), grid, block, shared, {"pdl": False})


def _token_tiles(grid: tuple, n: int, tiles: int | None = None) -> str:
    """What explain says when the tokens take more than one tile (N > 16). tiles: NVIDIA's count, whose tiles
    of one row block run side by side in grid.x (one DRAM read of its weight rows, the other tiles' from
    L2); None: AMD's, over grid.z, each tile sweeping the weights again (from L2 where they fit)."""
    if tiles is not None:
        return f"; {n} tokens in {tiles} tiles a row block, side by side: one weight read, L2 for the rest" \
            if n > skinny.MAX_N and tiles > 1 else ""
    if n <= skinny.MAX_N or grid[2] <= 1:
        return ""
    return f"; {n} tokens in {grid[2]} tiles over blockIdx.z, each reading the weights (from L2 where they fit)"


def use_pdl(family: str, arch: str) -> bool:
    """Whether a kernel of this family is launched with programmatic dependent launch: sm_90 and later only
    (griddepcontrol), JITGEMM_PDL=1 / 0 as set, else (unset) on for every family whose kernels wait for the
    previous kernel before their first read (skinny, fp8, 4-bit), because whole decode steps
    measured faster with it at every N tried (session 21, H100: Llama-3.1-8B, Qwen2.5-7B and the Llama-3.1-70B
    TP-8 shard, one CUDA graph a step, N = 1, 4, (8,) 16; docs/benchmarks/session21). The next kernel's launch and
    start hide behind this one's end. 4-bit (trigger after the main loop): MXFP4 steps 2.46 -> 2.62x bf16 cuBLAS on
    the shard, 2.94 -> 3.08x on the 8B at N = 1; q4_sym 2.80 -> 3.00 and 3.19 -> 3.34. fp8 (after the main loop):
    per tensor at N = 1 1.077 -> 1.105x _scaled_mm on the 8B, 1.098 -> 1.138x on the shard; W8A16 1.857 -> 1.901x
    (and session 22: its trigger after the store, 0.5-2.8 % faster again at N = 1 and 4). The moderate family has no
    griddepcontrol: with it (branch s22-moderate-pdl) the 16-bit steps were within 0.4 % of today's.
    16-bit skinny (trigger after the store; after the main loop it made the 8B step 1 % slower at N <= 8): the 8B
    step 4.833 -> 4.765 ms at N = 1, 5.086 -> 5.040 at N = 16; the shard 6.424 -> 6.314 and 7.002 -> 6.880."""
    forced = config.pdl()
    return parse(arch).sm >= 90 and (family in ("skinny", "fp8", "w4") if forced is None else forced)


def _pdl_note(pdl: bool) -> str:
    """What a plan's reason says of programmatic dependent launch (the same words for every family)."""
    return "; programmatic dependent launch" if pdl else ""


def plan_w4(vendor: str, arch: str, cus: int, dtype: str, fmt: str, group: int, n: int, m: int, k: int,
            device: str = "", normal_scales: bool = False) -> Plan:
    """The plan of a checked w4_gemm (4-bit weights, N = 1..128). NVIDIA: the format's measured row
    (family "w4-<format>" of the tables, the nearest tuned shape; its K order is one per shape, so a token's
    bits do not depend on N), else kernels.w4.nv_heuristic (its K order depends on (M, K) only); MXFP4 with
    normal_scales (Q4Device's: every e8m0 in 1..254) the instance that decodes them without selects, the same
    sums. AMD the fp8 software kernel's organisation."""
    from .kernels import w4
    normal = normal_scales and fmt == "mxfp4"
    what = f"{fmt} weights, groups of {group}" + (" (every e8m0 scale normal)" if normal else "")
    if vendor == "cuda":
        cfg, why = w4_nv_config(fmt, n, m, k, device, arch, group)
        grid, block, shared = cfg.geometry(m, n)
        pdl = use_pdl("w4", arch)
        return Plan("w4", f"{what}; nv mma.sync m16n8k16 on codes widened in registers, {16 * cfg.MT} rows/block, "
                          f"K split over {cfg.WK} warps, {cfg.U}x128-k slices in flight, "
                          f"{f'{8 * cfg.NT} tokens a block, ' if cfg.NT else ''}each group scaled in fp32"
                          f"{_token_tiles(grid, n, cfg.token_tiles(n))}"
                          f"{_pdl_note(pdl)}; {why}",
                    cfg, w4.nv_instance(cfg, dtype, fmt, group, n, normal), grid, block, shared, {"pdl": pdl})
    cfg = w4.amd_config(n, arch, fmt)
    grid, block, shared = cfg.geometry(m, cus, n)
    return Plan("w4", f"{what}; {cfg.describe()}{_token_tiles(grid, n)}", cfg, cfg.instance(dtype, fmt, group),
                grid, block, shared, {"pdl": False})


def plan_w4_experts(vendor: str, arch: str, cus: int, dtype: str, fmt: str, group: int, n: int, m: int, k: int,
                    groups: int, device: str = "", normal_scales: bool = False) -> Plan:
    """The plan of a checked w4_experts_gemm: plan_w4's for one group (its config, so each group's sums are those of
    a w4_gemm call of its own), on the experts kernel, with the groups on the grid's last free axis (NVIDIA z; AMD y:
    its z holds the token groups)."""
    from .kernels import w4
    plan = plan_w4(vendor, arch, cus, dtype, fmt, group, n, m, k, device, normal_scales)
    if vendor == "cuda" and plan.config.MB > 1:
        # a row's register bound was measured on its own weight's plain kernel: the experts kernel keeps its group's
        # bases in registers through the loop (2-24 more), and spilled 4-16 bytes under the bounds (NVRTC, sm_90a)
        cfg = replace(plan.config, MB=1)
        plan = replace(plan, config=cfg,
                       instance=w4.nv_instance(cfg, dtype, fmt, group, n, normal_scales and fmt == "mxfp4"))
    gx, gy, gz = plan.grid
    grid = (gx, gy, groups) if vendor == "cuda" else (gx, groups, gz)
    return replace(plan, instance=w4.experts_instance(plan.instance), grid=grid,
                   reason=f"{plan.reason}; {groups} groups of {n} tokens, each against its expert, in one launch")


def w4_nv_config(fmt: str, n: int, m: int, k: int, device: str, arch: str,
                 group: int | None = None) -> tuple[skinny.NvConfig, str]:
    """(config, why) of a 4-bit NVIDIA plan: the format's measured row (nearest tuned shape), else the
    heuristic. The one place that chooses it: the sweep and sanitizer tools force a config by replacing this.
    group: the weights' (default the format's table group), where a row's register bound holds (w4.measured_bound)."""
    from .kernels import w4
    found = lookup(f"w4-{fmt}", m, k, device, arch)
    if found:
        cfg = w4.token_tiling(row_config(found[0], n, arch), fmt, n)
        return w4.measured_bound(cfg, fmt, w4.TABLE_GROUP[fmt] if group is None else group, n), found[1]
    return w4.token_tiling(w4.nv_heuristic(m, k, n, fmt), fmt, n), "heuristic (no measured table for this format here)"


def all_w4_instances(vendor: str, arch: str | None = None) -> list[KernelInstance]:
    """Every 4-bit instance the dispatcher can choose (what `aot` compiles): each format and group, both
    dtypes, the heuristic's and the measured rows' configs (NVIDIA) or token groups (AMD)."""
    from . import quant4
    from .kernels import w4
    kinds = [(f, g) for f in quant4.FORMATS for g in quant4.groups_of(f)]
    out: list[KernelInstance] = []
    for dtype in skinny.TAG:
        for fmt, group in kinds:
            if vendor == "cuda":
                # what w4_nv_config makes of the heuristic and of each row: one and two token tiles, and the
                # wider blocks of N > 16 (w4.token_tiling: the row's N = 16 MT at 32 and 64)
                uses = [(w4.token_tiling(w4.nv_heuristic(m, k, n, fmt), fmt, n), n) for m in (4096, 8192)
                        for k in (256, 2048, 4096) for n in (1, 9, 32, 64)]
                uses += [(w4.measured_bound(w4.token_tiling(row_config(r, n, "sm_90a"), fmt, n), fmt, group, n), n)
                         for r in every_row(f"w4-{fmt}") for n in (*r[3], 32, 64)]
                insts = [w4.nv_instance(c, dtype, fmt, group, n, normal) for c, n in uses
                         for normal in w4.scale_decodes(fmt)]
            else:
                insts = [w4.amd_config(n, arch or "gfx942", fmt).instance(dtype, fmt, group) for n in (1, 2, 4)]
            for i in insts:
                if i not in out:
                    out.append(i)
    return out


def all_fp8_instances(vendor: str, arch: str | None = None) -> list[KernelInstance]:
    """Every fp8 instance the dispatcher can choose (what `aot` compiles)."""
    from .kernels import fp8
    out: list[KernelInstance] = []
    for out_dtype in skinny.TAG:
        if vendor == "cuda":
            cfgs = {skinny.NvConfig(mt, *r[2]) for r in every_row("fp8") for mt in r[3].values()} or \
                {heuristic_nv(m, 4096, 132) for m in (4096, 8192)}
            cfgs |= {skinny.NvConfig(c.MT, c.WK, c.U, 1) for c in cfgs}
            insts = [fp8.nv_instance(c, out_dtype, mode, n) for c in sorted(cfgs, key=str)
                     for mode in (fp8.W8A8, fp8.W8A16, fp8.W8Q) for n in (1, 9)]
        else:
            insts = [fp8.amd_config(n, arch or "gfx942").instance(out_dtype, mode, f, n) for f in fp8.FORMATS
                     for mode in (fp8.W8A8, fp8.W8A16, fp8.W8Q) for n in (1, 2, 4)
                     if not (arch and fp8.mfma_applies(arch, mode, f))]
            if arch and fp8.native_format("hip", arch):
                insts += [fp8.AmdMfmaConfig(NMAX=nm).instance(out_dtype) for nm in (1, 2, 4)]
        insts += [fp8.quant_instance(out_dtype, pt, f) for pt in (True, False)
                  for f in (fp8.FORMATS if vendor == "hip" else ("float8_e4m3fn",))]
        insts.append(fp8.epilogue_instance(out_dtype))  # the cuBLASLt route's: runs on NVIDIA, compiles for AMD too
        for i in insts:
            if i not in out:
                out.append(i)
    return out


def skinny_supported(dtype: str, n: int, k: int) -> str | None:
    """None if the skinny family takes the shape, else the rule it breaks."""
    if dtype not in skinny.TAG:
        return f"dtype must be float16 or bfloat16, got {dtype}"
    if not 1 <= n <= skinny.MAX_N_MODERATE:
        return f"N (tokens) must be in 1..{skinny.MAX_N_MODERATE}, got {n}"
    if k % 8:
        return f"K must be a multiple of 8 (16-byte vectors), got {k}"
    return None


def moderate_nv_instances() -> list[KernelInstance]:
    """Moderate-N instances the NVIDIA dispatcher can choose: the table's configs, the smaller slice
    counts `normalized` falls back to when K has fewer blocks than the table's S (a cluster's size is
    part of the instance), and the workspace variant pre-sm_90 GPUs get instead of a cluster; without
    a table, the heuristic's. A wgmma config also brings the heuristic's mma.sync tiles, which
    stand in for it off sm_90a."""
    cfgs = []
    for row in every_row("moderate"):
        for v in row[2].values():
            cfgs.append(moderate.from_entry(v)[0])
    heuristic_tiles = [moderate.heuristic(n, 128, 4096, 132, True).tile for n in (17, 64)]  # its two tiles
    if not cfgs:
        cfgs = [moderate.ModerateConfig(t, moderate.MAX_CLUSTER, moderate.RED_CLUSTER) for t in heuristic_tiles]
    cfgs += [replace(c, tile=t) for c in cfgs if c.tile.wgmma for t in heuristic_tiles]
    variants = []
    for c in cfgs:
        variants += [moderate.normalized(replace(c, S=s), 1 << 20) for s in range(1, c.S + 1)]
        variants.append(moderate.ModerateConfig(c.tile, max(c.S, 2), moderate.RED_WORKSPACE))
    out = []
    for c in variants:
        for dtype in skinny.TAG:
            i = c.instance(dtype)
            if i not in out:
                out.append(i)
    return out


def all_instances(vendor: str) -> list[KernelInstance]:
    """Every skinny instance the dispatcher can choose on a vendor (what `aot` compiles)."""
    out: list[KernelInstance] = []
    for dtype in skinny.TAG:
        for n in range(1, skinny.MAX_N + 1):
            if vendor == "cuda":
                table = every_row("skinny")
                cfgs = {skinny.NvConfig(mt, *r[2]) for r in table for mt in r[3].values()} or set(skinny.NV_CONFIGS)
                cfgs |= {skinny.NvConfig(c.MT, c.WK, c.U, 1) for c in cfgs}  # what pre-sm_90 GPUs get
                cfgs = sorted(cfgs, key=str)
                if n not in (1, 9):  # NT depends only on N <= 8 or not
                    continue
            else:
                cfgs = skinny.amd_configs_for(n)
            for c in cfgs:
                inst = c.instance(dtype, n)
                if inst not in out:
                    out.append(inst)
    if vendor == "cuda":
        out += [i for i in moderate_nv_instances() if i not in out]
    # ---- AMD moderate N (17..128): every tile x reduction moderate.amd_config can choose, both dtypes ----
    if vendor == "hip":
        out += [i for i in moderate.amd_instances() if i not in out]
    return out
