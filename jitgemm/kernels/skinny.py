"""The 16-bit skinny family (wvSplitK / LLMM1 capability): configs, instances, launch geometry.

NVIDIA config (NT, MT, WK, U): 8-token tiles, 16-row weight tiles per block, warps splitting K,
32-element K steps per warp iteration. AMD config (YT, UNRL, WAVES): rows per wave, 512-element
steps in flight, waves per workgroup (template maximum; the launch may trim it)."""
from __future__ import annotations

from dataclasses import dataclass

from ..arch import parse
from ..runtime.jit import KernelInstance

# out, ldo, x, ldx, w, ldw, bias, bias_ld, bias_rows, N, M, K, and one i32 that is the tokens' LDS chunk
# on AMD and the L2 prefetch bytes per row on NVIDIA (one argument list for both vendors)
ARG_KINDS = ("ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i64", "i32", "i32", "i32", "i32", "i32")
TAG = {"float16": "jg_f16", "bfloat16": "jg_bf16"}
MAX_N = 16


MAX_N_MODERATE = 128  # tokens the moderate-N family (kernels/moderate.py) covers


@dataclass(frozen=True)
class NvConfig:
    MT: int = 1
    WK: int = 4
    U: int = 4
    SK: int = 1  # blocks of a cluster splitting K (sm_90 and later)
    NT: int = 0  # 8-token tiles per block; 0: just enough for N <= 16 (1 or 2)
    MB: int = 1  # the 4-bit family only: blocks an SM asked of ptxas (a table row's min_blocks; kernels/w4.py)

    def nt(self, n: int) -> int:
        return self.NT or (1 if n <= 8 else 2)

    def instance(self, dtype: str, n: int) -> KernelInstance:
        return KernelInstance("skinny.hip",
                              f"jg_skinny_nv<{TAG[dtype]}, {self.nt(n)}, {self.MT}, {self.WK}, {self.U}, {self.SK}>",
                              requires=self.requires)

    @property
    def requires(self) -> frozenset:
        """Arch capabilities the config needs: a K split over cluster blocks needs clusters (sm_90+)."""
        return frozenset({"clusters"}) if self.SK > 1 else frozenset()

    def token_tiles(self, n: int) -> int:
        """Blocks a row block takes for N tokens (8 * NT tokens each)."""
        return -(-n // (8 * self.nt(n)))

    def geometry(self, m: int, n: int = 1) -> tuple[tuple[int, int, int], tuple[int, int, int], int]:
        """grid.x: the row blocks times their token tiles, the tiles of a row block adjacent (the kernel's
        jg_block_origin), so they run together and share one read of the weight rows through L2;
        grid.y: the cluster blocks splitting K."""
        rows = 16 * self.MT
        return (-(-m // rows) * self.token_tiles(n), self.SK, 1), (32 * self.WK, 1, 1), 0

    @property
    def k_order(self) -> tuple[int, int, int]:
        """What fixes the order a row's K terms are summed in (so the bits of a result)."""
        return (self.WK, self.U, self.SK)

    def prefetch_bytes(self, m: int, k: int, sms: int, l2_bytes: int) -> int:
        """L2 prefetch per weight row at block start: what the blocks resident at once can pull in
        without their prefetches overflowing half of L2 (0 when less than 256 bytes a row)."""
        rows = 16 * self.MT
        grid = -(-m // rows) * self.SK
        resident = min(grid, sms * max(1, 2048 // (32 * self.WK)))
        per_row = (l2_bytes // 2) // max(resident * rows, 1) // 16 * 16
        per_row = min(per_row, k * 2)
        return per_row if per_row >= 256 else 0

    def describe(self) -> str:
        split = f" x {self.SK} cluster blocks" if self.SK > 1 else ""
        if self.NT:
            split += f", {8 * self.NT} tokens per block"
        return (f"nv mma.sync m16n8k16, {16 * self.MT} rows/block, K split over {self.WK} warps{split}, "
                f"{self.U}x32-element steps")


#: every NVIDIA config the dispatcher may choose (aot compiles these)
# Measured on an H100 (docs/benchmarks/NOTES.md): WK 1 and 2 never won a decode-suite shape; MT 4
# (64 rows a block, to cut token traffic at N = 16) won nothing either and cost 6 % at
# llama70b.gate_up N = 16 once a shared K order was imposed, so it is not searched.
NV_CONFIGS = tuple(NvConfig(mt, wk, u, sk) for sk in (1, 2, 4) for mt in (1, 2) for wk in (4, 8, 16)
                   for u in (2, 4))


@dataclass(frozen=True)
class AmdConfig:
    YT: int
    UNRL: int
    WAVES: int = 16

    def instance(self, dtype: str, n: int) -> KernelInstance:
        return KernelInstance("skinny.hip", f"jg_skinny_amd<{TAG[dtype]}, {n}, {self.YT}, {self.UNRL}, {self.WAVES}>")

    def describe(self) -> str:
        return f"amd wvSplitK-style, {self.YT} rows/wave, {self.UNRL}x512-element steps, <= {self.WAVES} waves/WG"


def amd_lds_bytes(arch: str) -> int:
    return parse(arch).lds_bytes


def amd_tile(n: int, m: int, k: int, cus: int, lds_bytes: int) -> AmdConfig:
    """The seed's CU-count heuristic: the largest row tile that still keeps all 4 SIMDs of every
    CU busy, fewer rows per wave when tokens do not fit LDS; bigger N keeps tiles small for registers."""
    s_yt = -(-m // (cus * 4))
    fits = k * n * 2 <= lds_bytes
    if s_yt <= 1:
        yt, unrl = 1, 4
    elif n == 1 or not fits or s_yt <= 8:
        yt, unrl = 2, 2
    elif s_yt <= 12:
        yt, unrl = 3, 2
    elif n == 4:
        yt, unrl = 4, 1
    else:
        yt, unrl = 4, 2
    return AmdConfig(*_register_cap(n, yt, unrl))


def _register_cap(n: int, yt: int, unrl: int) -> tuple[int, int]:
    # 16 waves per CU leave 128 VGPRs a lane; N x YT fp32 accumulators plus UNRL x YT 16-byte weight
    # loads must fit, so more tokens means fewer rows per wave (compile matrix: zero spills)
    if n > 8:
        return 1, min(unrl, 2)
    if n > 4:
        return min(yt, 2), min(unrl, 2)
    return yt, unrl


AMD_TILES = ((1, 4), (2, 2), (3, 2), (4, 1), (4, 2))


def amd_configs_for(n: int) -> list[AmdConfig]:
    out = []
    for yt, unrl in AMD_TILES:
        c = AmdConfig(*_register_cap(n, yt, unrl))
        if c not in out:
            out.append(c)
    return out


def mindiv(m: int, div1: int, div2: int) -> int:
    """Fewest waves (div2 down to div2-12) that need no more persistent rounds than div2 waves."""
    rounds = [-(-m // (div1 * (div2 - i))) for i in range(13)]
    best = div2
    for i in range(13):
        if rounds[i] == rounds[0]:
            best = div2 - i
    return best


def amd_geometry(cfg: AmdConfig, n: int, m: int, k: int, cus: int, lds_bytes: int):
    """grid, block, dynamic LDS bytes, and the token K-chunk held in LDS."""
    waves = mindiv(m, cus * cfg.YT, cfg.WAVES)
    step = 512 * cfg.UNRL
    if k * n * 2 <= lds_bytes:
        kc = k
    else:
        kc = max((lds_bytes // (2 * n)) // step * step, step)
    groups = -(-m // (waves * cfg.YT))
    grid = (max(min(cus, groups), 1), 1, 1)
    lds = n * min(kc, k) * 2
    return grid, (64, waves, 1), lds, kc
