"""The 4-bit family (kernels_src/w4.hip, issue #19): formats, instances, launch geometry.

NVIDIA: the skinny core's organisation (kernels/skinny.NvConfig: MT weight tiles of 16 rows a block, WK
warps and SK cluster blocks splitting K, U 128-k slices in flight a warp) with the codes widened exactly
in registers for mma.sync and each 32-k group scaled in fp32. AMD: the fp8 software kernel's organisation
(YT rows a wave, WAVES waves, tokens in groups of NMAX over blockIdx.z), codes widened to fp32."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..arch import parse
from ..runtime.jit import KernelInstance
from .skinny import TAG, NvConfig

FMT_ID = {"mxfp4": 0, "q4_sym": 1, "q4_min": 2, "q4_zp": 3}
# NVIDIA's MXFP4 whose every scale is a normal exponent (Q4Device.normal_scales): its loop decodes a scale with one
# shift, no selects for the 2^-127 subnormal and NaN (kernels_src/w4.hip, JG_MXFP4_NORMAL)
MXFP4_NORMAL_ID = 4
# out, ldo, x, ldx, w, ldw (bytes), scales (q4_min: scale records), lds, aux (zero points), lda, bias, bias_ld,
# bias_rows, N, M, K
ARG_KINDS = ("ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i64", "i32", "i32",
             "i32", "i32")
# jg_w4_experts_nv / jg_w4_experts_amd (w4_experts_gemm): ARG_KINDS, then the expert ids (int32 [G]), E, and the
# strides of a group (x, out: elements) and of an expert (codes, scales, zero points: bytes; bias: elements)
EXPERTS_ARG_KINDS = ARG_KINDS + ("ptr", "i32", "i64", "i64", "i64", "i64", "i64", "i64")
MAX_GROUPS = 65535  # grid y / z
MAX_N = 128        # beyond one block's token tile (16 on NVIDIA, NMAX on AMD) the tile repeats (fp8.py says how)


def nv_heuristic(m: int, k: int, n: int = 1, fmt: str = "q4_sym") -> NvConfig:
    """For a shape with no measured row (dispatch.w4_nv_config): 2 slices in flight a warp, as many warps (4..16) as K
    has 256-k steps for, 32 rows a block for large M. The K order depends on (K, WK, U, SK) only, so a
    token's bits never depend on N (the rows a block takes do not enter a row's sums). Two row tiles only with
    one token tile and not for q4_min: with both doubled, or q4_min's token sums, the kernel spilled at the
    128-register cap of 512-thread blocks (sm_90a)."""
    wk = 16 if k >= 16 * 256 else 8 if k >= 8 * 256 else 4
    two_rows = m >= 8192 and n <= 8 and fmt != "q4_min"
    return NvConfig(2 if two_rows else 1, wk, 2, 1)


def token_tiling(cfg: NvConfig, fmt: str, n: int) -> NvConfig:
    """The block's token tiles for N > 16 (the measured row or heuristic gives the K order, kept: a token's bits
    never depend on N). With the 16-token blocks of N <= 16, N = 64 took four blocks a row tile, each reading and
    widening the same weight slices again; 32- and 64-token blocks widen them once. Session 20's H100 sweep
    (docs/benchmarks/session20/h100-w4-moderate-nt.json, six shapes, N = 32 / 64 / 128, K order fixed): MXFP4
    and q4_min 1.2-2.0x faster this way; q4_sym's best stayed with 16-token blocks and two row tiles (within
    10 % either way), which it takes where its row had one (session 21: the Llama-3.1-8B step at N = 64 3.6 %
    faster); q4_zp, unmeasured above N = 16, keeps its row's tiles. Two row tiles of 64 tokens fit
    ptxas's 255 registers without spilling for MXFP4 only (q4_min's fp16 instance spilled 508 bytes; its 32-token
    blocks were 0-28 % slower than the spilling bf16 one), q4_min's two row tiles of 32 tokens with one slice in
    flight only (with two, its fp16 G128 instance spilled), and no larger tile fits the 128 registers of
    512-thread blocks (WK = 16)."""
    if n <= 16 or cfg.WK > 8 or fmt == "q4_zp":
        return cfg
    if fmt == "q4_sym":  # 16-token blocks, two row tiles (the sweep: 1.0-1.38x over the N = 16 row's one tile)
        return replace(cfg, MT=2)
    if n <= 32:
        return replace(cfg, MT=1, NT=4)
    if fmt == "mxfp4":
        return replace(cfg, MT=2, NT=8)
    return replace(cfg, MT=2 if cfg.U == 1 else 1, NT=4)


# The group each format's table rows are measured at (bench.w4_runner.MODES, tools/w4_sweep.py)
TABLE_GROUP = {"mxfp4": 32, "q4_sym": 128, "q4_min": 32, "q4_zp": 128}


def measured_bound(cfg: NvConfig, fmt: str, group: int, n: int) -> NvConfig:
    """A row's register bound (MB: the tables' min_blocks) where it was measured only: the format's table group
    and N <= 16 (one or two token tiles). Elsewhere the same bound holds other loops: q4_min G64 / G128 spill
    28-52 bytes under G32's at two token tiles (sm_90a), and wider token tiles more."""
    if cfg.MB == 1 or (group == TABLE_GROUP[fmt] and n <= 16):
        return cfg
    return replace(cfg, MB=1)


def bounded(name: str) -> bool:
    """Whether an instance name is a 4-bit kernel under a table row's register bound (its ninth argument, MB > 1):
    such an instance may spill a few bytes, measured faster with them (session 32)."""
    return name.startswith("jg_w4_nv<") and name.count(",") == 8


def scale_decodes(fmt: str) -> tuple[bool, ...]:
    """The normal_scales values an NVIDIA instance of the format can take (MXFP4: the exact and the short decode)."""
    return (False, True) if fmt == "mxfp4" else (False,)


def nv_instance(cfg: NvConfig, dtype: str, fmt: str, group: int, n: int, normal_scales: bool = False) -> KernelInstance:
    """normal_scales: MXFP4 whose every e8m0 scale is 1..254 (the host checked), decoded without selects."""
    fid = MXFP4_NORMAL_ID if normal_scales and fmt == "mxfp4" else FMT_ID[fmt]
    bound = f", {cfg.MB}" if cfg.MB > 1 else ""  # the kernel's MB (default 1): unbounded instances keep their names
    return KernelInstance("w4.hip", f"jg_w4_nv<{TAG[dtype]}, {fid}, {group}, {cfg.nt(n)}, {cfg.MT}, "
                                    f"{cfg.WK}, {cfg.U}, {cfg.SK}{bound}>", requires=cfg.requires)


@dataclass(frozen=True)
class AmdW4Config:
    NMAX: int = 4
    YT: int = 2
    WAVES: int = 16

    def instance(self, dtype: str, fmt: str, group: int) -> KernelInstance:
        return KernelInstance("w4.hip", f"jg_w4_amd<{TAG[dtype]}, {FMT_ID[fmt]}, {group}, {self.NMAX}, {self.YT}, "
                                        f"{self.WAVES}>")

    def geometry(self, m: int, cus: int, n: int):
        tiles = -(-m // (self.WAVES * self.YT))
        return (max(min(cus, tiles), 1), 1, -(-n // self.NMAX)), (64, self.WAVES, 1), 0

    def describe(self) -> str:
        return (f"amd {self.YT} rows/wave, {self.WAVES} waves, tokens in groups of {self.NMAX}, codes widened to "
                f"fp32 in registers (software decode)")


def amd_config(n: int, arch: str = "gfx942", fmt: str = "q4_sym") -> AmdW4Config:
    """Tokens in groups of up to 4 (2 on gfx90a, whose HIP 5.2 compiler needs more registers for the same
    code). A format with a second per-group value (q4_min's min, q4_zp's zero point) costs registers too: with
    4 tokens it takes one row a wave (the compile matrix at 2 rows, gfx942/gfx950: q4_min 128 VGPRs, q4_zp
    122, over the budget of 120)."""
    cap = 2 if parse(arch).base == "gfx90a" else 4
    nmax = min(1 if n == 1 else 2 if n == 2 else 4, cap)
    return AmdW4Config(nmax, 1 if fmt in ("q4_min", "q4_zp") and nmax == 4 else 2)


def experts_instance(inst: KernelInstance) -> KernelInstance:
    """The experts kernel (one launch, a group of tokens an expert of a stack) of a plain 4-bit instance: the same
    body and template arguments, so each group's sums are those of the plain kernel's call."""
    base = inst.name.split("<", 1)[0]
    wrapper = {"jg_w4_nv": "jg_w4_experts_nv", "jg_w4_amd": "jg_w4_experts_amd"}[base]
    return replace(inst, name=wrapper + inst.name[len(base):])
