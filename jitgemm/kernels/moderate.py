"""The moderate-N family (wvSplitKrc capability): tiled GEMM with K split across blocks.

A config is a block tile (BM weight rows x BN tokens), its warp/wave layout, the pipeline depth, the
number of K slices S and how the S partial tiles are summed (RED, see kernels_src/moderate.hip):
0 none (S = 1), 1 cluster shared memory (NVIDIA sm_90, S <= 8), 2 workspace + last-arriving block.
Every reduction adds the slices in a fixed order, so results are bit-identical run to run."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..arch import parse
from ..runtime.jit import KernelInstance

ARG_KINDS = ("ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i64", "i32", "i32", "i32", "i32", "i32", "ptr", "ptr")
TAG = {"float16": "jg_f16", "bfloat16": "jg_bf16"}
MAX_N = 128
BK = 64          # K elements per pipeline block
MAX_CLUSTER = 8  # portable cluster size on sm_90
RED_NONE, RED_CLUSTER, RED_WORKSPACE = 0, 1, 2


WGMMA = 0  # NvTile.WN of a wgmma tile: a warpgroup spans all BN tokens


@dataclass(frozen=True)
class NvTile:
    """BM weight rows x BN tokens a block, ST cp.async stages of 64-element K blocks. WN > 0: the
    mma.sync core, WM x WN warps. WN = WGMMA (0): the wgmma core (sm_90a), WM = BM / 64 warpgroups."""
    BM: int
    BN: int
    WM: int
    WN: int
    ST: int = 4
    KS: int = 1  # 64-element K blocks per stage (wgmma core): a weight row is read KS x 128 bytes at a time

    @property
    def wgmma(self) -> bool:
        return self.WN == WGMMA

    @property
    def threads(self) -> int:
        return 128 * self.WM if self.wgmma else 32 * self.WM * self.WN

    def shared_bytes(self) -> int:
        # wgmma: 1 KiB more, so the kernel can start its stages on a 1024-byte boundary (the swizzle's period)
        return self.ST * self.KS * (self.BM + self.BN) * 2 * BK + (1024 if self.wgmma else 0)

    def runs_on(self, arch: str) -> bool:
        """wgmma is an sm_90a instruction (not sm_90, not sm_100a)."""
        return not self.wgmma or parse(arch).has("wgmma")


# Tiles the tuner searches and the dispatcher may choose (aot compiles them): warp tiles of 16..64
# rows x 16..32 tokens, 2 to 8 warps.
NV_TILES = (
    NvTile(32, 32, 2, 1), NvTile(64, 32, 4, 1), NvTile(128, 32, 4, 1),
    NvTile(32, 64, 2, 2), NvTile(64, 64, 2, 2), NvTile(128, 64, 4, 2),
    NvTile(32, 128, 2, 4), NvTile(64, 128, 2, 4), NvTile(128, 128, 2, 4),
    NvTile(16, 32, 1, 2), NvTile(16, 64, 1, 4),
    NvTile(64, 128, 2, 2), NvTile(128, 64, 2, 2), NvTile(128, 128, 2, 2),  # bigger warp tiles: more mma per ldmatrix
    NvTile(32, 32, 2, 1, 6), NvTile(32, 64, 2, 2, 3), NvTile(64, 64, 2, 2, 3),  # deeper / shallower pipelines
    NvTile(64, 32, 4, 1, 3), NvTile(64, 64, 2, 2, 6),
    # wgmma (sm_90a): one warpgroup per 64 rows, operands straight from shared memory
    NvTile(64, 32, 1, WGMMA), NvTile(64, 64, 1, WGMMA), NvTile(64, 128, 1, WGMMA),
    NvTile(128, 32, 2, WGMMA), NvTile(128, 64, 2, WGMMA), NvTile(128, 128, 2, WGMMA),
    NvTile(64, 128, 1, WGMMA, 6), NvTile(128, 64, 2, WGMMA, 6), NvTile(128, 128, 2, WGMMA, 6),
    NvTile(256, 64, 4, WGMMA), NvTile(256, 128, 4, WGMMA), NvTile(64, 16, 1, WGMMA), NvTile(128, 16, 2, WGMMA),
    # two or four K blocks a stage (256 / 512 contiguous bytes of each weight row), deeper pipelines
    NvTile(64, 16, 1, WGMMA, 4, 2), NvTile(64, 16, 1, WGMMA, 8), NvTile(64, 32, 1, WGMMA, 4, 2),
    NvTile(64, 32, 1, WGMMA, 8), NvTile(64, 64, 1, WGMMA, 4, 2), NvTile(128, 64, 2, WGMMA, 4, 2),
    NvTile(128, 128, 2, WGMMA, 3, 2), NvTile(64, 128, 1, WGMMA, 4, 2), NvTile(128, 32, 2, WGMMA, 4, 2),
    NvTile(64, 16, 1, WGMMA, 3, 4), NvTile(128, 16, 2, WGMMA, 4, 2),
    # N <= 16 at large M runs one slice of 64 x 16 tiles (80 blocks at M = 5120): more bytes in flight a block
    NvTile(64, 16, 1, WGMMA, 12), NvTile(64, 16, 1, WGMMA, 8, 2), NvTile(64, 16, 1, WGMMA, 6, 2),
)


AMD_PITCH = BK + 8  # LDS row pitch in elements (kernels_src/amd/moderate.h): 8 elements of skew against bank conflicts


@dataclass(frozen=True)
class AmdTile:
    """A workgroup of WM x WN waves (64 lanes) over BM weight rows x BN tokens, in 16 x 16 MFMA pieces;
    ST = 2 LDS buffers, the next K block waiting in registers (the only depth kernels_src/amd/moderate.h has)."""
    BM: int
    BN: int
    WM: int
    WN: int
    ST: int = 2

    @property
    def threads(self) -> int:
        return 64 * self.WM * self.WN

    def shared_bytes(self) -> int:
        """The two staging buffers, or the fp32 tile [BN][BM + 4] that reuses them if that is larger."""
        return max(self.ST * (self.BM + self.BN) * AMD_PITCH * 2, self.BN * (self.BM + 4) * 4)


# Per token tile BN (the next of 32/64/128 at or above N): (32-row tile, 64-row tile). Four waves each,
# wave pieces of 16..32 rows x 16..64 tokens. At most 54 KiB of LDS: every tile fits 64 KiB (gfx90a,
# gfx942) and 160 KiB (gfx950).
AMD_TILES = {
    32: (AmdTile(32, 32, 2, 2), AmdTile(64, 32, 2, 2)),
    64: (AmdTile(32, 64, 2, 2), AmdTile(64, 64, 2, 2)),
    128: (AmdTile(32, 128, 1, 4), AmdTile(64, 128, 2, 2)),
}


@dataclass(frozen=True)
class ModerateConfig:
    tile: NvTile | AmdTile
    S: int = 1       # K slices
    RED: int = RED_NONE

    @property
    def amd(self) -> bool:
        return isinstance(self.tile, AmdTile)

    def instance(self, dtype: str) -> KernelInstance:
        t, cs = self.tile, self.S if self.RED == RED_CLUSTER else 1
        if self.amd:
            assert self.RED != RED_CLUSTER, "no clusters on AMD"
            return KernelInstance("moderate.hip",
                                  f"jg_moderate_amd<{TAG[dtype]}, {t.BM}, {t.BN}, {t.WM}, {t.WN}, {t.ST}, {self.RED}, 1>")
        requires = ({"clusters"} if cs > 1 else set()) | ({"wgmma"} if t.wgmma else set())
        return KernelInstance("moderate.hip",
                              f"jg_moderate_nv<{TAG[dtype]}, {t.BM}, {t.BN}, {t.WM}, {t.WN}, {t.ST}, {t.KS}, {self.RED}, {cs}>",
                              requires=frozenset(requires))

    def kb_per_split(self, k: int) -> int:
        return -(-(-(-k // BK)) // self.S)

    def grid(self, n: int, m: int) -> tuple[int, int, int]:
        return (-(-m // self.tile.BM), -(-n // self.tile.BN), self.S)

    def workspace_floats(self, n: int, m: int) -> int:
        """fp32 partial tiles (RED 2); tile counters are one per (M tile, N tile)."""
        if self.RED != RED_WORKSPACE:
            return 0
        return self.tiles(n, m) * self.S * self.tile.BM * self.tile.BN

    def tiles(self, n: int, m: int) -> int:
        return -(-m // self.tile.BM) * -(-n // self.tile.BN)

    def describe(self) -> str:
        t = self.tile
        red = {RED_NONE: "", RED_CLUSTER: f", K split over {self.S} cluster blocks summed through distributed "
                                          f"shared memory in rank order",
               RED_WORKSPACE: f", K split over {self.S} blocks summed in slice order by the last to finish "
                              f"(workspace)"}[self.RED]
        if self.amd:
            return (f"amd tiled MFMA 16x16 (x32 on gfx950, x16 before), {t.BM} rows x {t.BN} tokens a workgroup, "
                    f"{t.WM}x{t.WN} waves, LDS double buffer fed through registers{red}")
        if t.wgmma:
            return (f"nv tiled wgmma m64n{t.BN}k16, {t.BM} rows x {t.BN} tokens a block, {t.WM} warpgroup(s), "
                    f"{t.ST}-stage cp.async pipeline{red}")
        return (f"nv tiled mma.sync m16n8k16, {t.BM} rows x {t.BN} tokens a block, {t.WM}x{t.WN} warps, "
                f"{t.ST}-stage cp.async pipeline{red}")


def from_entry(entry) -> tuple[ModerateConfig, float | None]:
    """A moderate table entry as (config, cuBLAS time / ours or None). Entries are
    (BM, BN, WM, WN, ST, KS, S, RED, ratio); tables written before KS existed have
    (BM, BN, WM, WN, ST, S, RED[, ratio]) and mean KS = 1."""
    e = tuple(entry)
    if len(e) == 9:
        bm, bn, wm, wn, st, ks, s, red, ratio = e
    else:
        (bm, bn, wm, wn, st, s, red), ks, ratio = e[:7], 1, (e[7] if len(e) > 7 else None)
    return ModerateConfig(NvTile(bm, bn, wm, wn, st, ks), s, red), ratio


def to_entry(cfg: ModerateConfig, ratio: float) -> list:
    t = cfg.tile
    return [t.BM, t.BN, t.WM, t.WN, t.ST, t.KS, cfg.S, cfg.RED, ratio]


def normalized(cfg: ModerateConfig, k: int) -> ModerateConfig:
    """The same config with S cut to the slices that hold K blocks (no empty slices), RED matching."""
    kb = -(-k // BK)
    s = max(1, min(cfg.S, kb))
    per = -(-kb // s)
    s = -(-kb // per)
    red = RED_NONE if s == 1 else (cfg.RED if cfg.RED != RED_NONE else RED_WORKSPACE)
    if red == RED_CLUSTER and s > MAX_CLUSTER:
        red = RED_WORKSPACE
    return replace(cfg, S=s, RED=red)


def heuristic(n: int, m: int, k: int, sms: int, cluster_ok: bool) -> ModerateConfig:
    """No measured table: a 64 x 64 tile (32 x 32 below 64 tokens), slices for about one block per SM."""
    tile = NvTile(64, 64, 2, 2) if n > 32 else NvTile(32, 32, 2, 1)
    tiles = -(-m // tile.BM) * -(-n // tile.BN)
    s = max(1, min(sms // max(tiles, 1), -(-k // BK) // 2))
    red = RED_CLUSTER if cluster_ok and s <= MAX_CLUSTER else RED_WORKSPACE
    return normalized(ModerateConfig(tile, s, red), k)


def amd_config(n: int, m: int, k: int, cus: int, arch: str) -> ModerateConfig:
    """AMD, no measured table yet. BN: the next of 32/64/128 tokens; 64-row tiles once they alone give
    every CU a workgroup, else 32 rows (twice the tiles). S: about two workgroups per CU (tiles x S), at
    least 2 K blocks a slice, and no more than keeps the last workgroup's sum short: it reads all S
    partial tiles (4*BM*BN bytes each) alone, after the others finished, while a slice reads
    (BM + BN) * 128 bytes per K block; S * 4*BM*BN <= (kb / S) * (BM + BN) * 128 keeps that tail at most
    one slice long. Every tile fits any arch's LDS, so arch does not change the choice."""
    del arch
    bn = 32 if n <= 32 else 64 if n <= 64 else 128
    small, big = AMD_TILES[bn]
    tile = big if -(-m // big.BM) * -(-n // bn) >= cus else small
    tiles = -(-m // tile.BM) * -(-n // tile.BN)
    kb = -(-k // BK)
    fill = max(1, round(2 * cus / tiles))
    tail = math.isqrt(kb * (tile.BM + tile.BN) * 2 * BK // (4 * tile.BM * tile.BN))
    s = max(1, min(fill, kb // 2, tail))
    return normalized(ModerateConfig(tile, s, RED_WORKSPACE), k)


def amd_instances() -> list[KernelInstance]:
    """Every AMD instance amd_config can choose: each tile with RED 0 (one slice) and RED 2, both dtypes."""
    return [ModerateConfig(t, 2 if red else 1, red).instance(dtype) for dtype in TAG
            for pair in AMD_TILES.values() for t in pair for red in (RED_NONE, RED_WORKSPACE)]
