"""The fp8 family (wvSplitKQ capability and beyond): modes, formats, instances, launch geometry.

Modes: W8A8 (e4m3 tokens), W8A16 (16-bit tokens, fp8 weights widened in registers), W8Q (16-bit
tokens quantized to e4m3 in registers with a given scale: one launch). Formats per arch:
  NVIDIA sm_89+ : e4m3fn decoded by the tensor cores; e4m3fnuz refused (no native decode).
  NVIDIA sm_80  : no fp8 at all; refused.
  AMD           : e4m3fnuz on gfx942, e4m3fn on gfx950 are the native formats; the portable AMD
                  body decodes either format exactly in software, so any AMD arch takes both.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..arch import parse
from ..runtime.jit import KernelInstance
from .skinny import TAG, NvConfig

W8A8, W8A16, W8Q = 0, 1, 2
MODE_NAMES = {W8A8: "W8A8 (fp8 tokens)", W8A16: "W8A16 (16-bit tokens, no token quantization)",
              W8Q: "W8A8 with the tokens quantized in registers (static scale, one launch)"}
FORMATS = ("float8_e4m3fn", "float8_e4m3fnuz")
FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e4m3fnuz": 240.0}
# kernel arguments: out, ldo, x, ldx, w, ldw, sx*, sx_per_token, sx_val, sw*, sw_per_row, sw_val,
# bias*, bias_ld, bias_rows, N, M, K, extra (the AMD MFMA kernel's LDS bytes; ignored by the others)
ARG_KINDS = ("ptr", "i64", "ptr", "i64", "ptr", "i64", "ptr", "i32", "f32", "ptr", "i32", "f32",
             "ptr", "i64", "i32", "i32", "i32", "i32", "i32")
QUANT_ARG_KINDS = ("ptr", "i64", "ptr", "ptr", "i64", "i32", "i32")
# the cuBLASLt route's epilogue: out, ldo, acc (fp32 sums), lda, sx*, sx_per_token, sx_val, sw*, sw_per_row, sw_val,
# bias*, bias_ld, bias_rows, M (grid.y: the tokens)
EPILOGUE_ARG_KINDS = ("ptr", "i64", "ptr", "i64", "ptr", "i32", "f32", "ptr", "i32", "f32", "ptr", "i64", "i32", "i32")
EPILOGUE_BLOCK = 256
MAX_N = 128
# N = 17..128 (small batches, prefill chunks): the same kernels with their token tiles (16 on NVIDIA,
# NMAX on AMD) repeated: on NVIDIA the tiles of a row block side by side in grid.x (one DRAM read of its
# weight rows, L2 for the other tiles), on AMD over blockIdx.z, each tile reading the weights again.
# A token's K order is the shape's, never the batch's, so its bits do not depend on N here either.
TILE_N = 16


def native_format(vendor: str, arch: str) -> str | None:
    """The e4m3 flavour the device's hardware decodes (None: the device has no fp8)."""
    a = parse(arch)
    if vendor == "cuda":
        return "float8_e4m3fn" if a.has("fp8_mma") else None
    if a.has("fp8_mfma"):
        return "float8_e4m3fnuz" if a.base == "gfx942" else "float8_e4m3fn"
    return None


def format_rule(vendor: str, arch: str, fmt: str) -> str | None:
    """None if `fmt` runs on the arch, else the rule that refuses it."""
    if fmt not in FORMATS:
        return f"fp8 format must be one of {', '.join(FORMATS)}, got {fmt!r}"
    if vendor == "cuda":
        native = native_format(vendor, arch)
        if native is None:
            return f"{arch} has no fp8 support (fp8 needs sm_89 or newer)"
        if fmt != native:
            return (f"{fmt} is not decoded by NVIDIA hardware ({arch} decodes float8_e4m3fn); "
                    f"convert the weights to e4m3fn (values / 2 map exactly for normal numbers)")
    return None


def nv_instance(cfg: NvConfig, out_dtype: str, mode: int, n: int) -> KernelInstance:
    nt = 1 if n <= 8 else 2
    return KernelInstance("fp8.hip", f"jg_fp8_nv<{TAG[out_dtype]}, {mode}, {nt}, {cfg.MT}, {cfg.WK}, {cfg.U}, {cfg.SK}>",
                          requires=cfg.requires | {"fp8_mma"})


@dataclass(frozen=True)
class AmdFp8Config:
    YT: int = 2
    WAVES: int = 16

    NMAX: int = 4  # tokens per group (groups tile over blockIdx.z)

    def instance(self, out_dtype: str, mode: int, fmt: str, n: int) -> KernelInstance:
        fnuz = "true" if fmt == "float8_e4m3fnuz" else "false"
        return KernelInstance("fp8.hip", f"jg_fp8_amd<{TAG[out_dtype]}, {mode}, {fnuz}, {self.NMAX}, {self.YT}, {self.WAVES}>")

    def geometry(self, m: int, cus: int, n: int = 1):
        waves = self.WAVES
        tiles = -(-m // (waves * self.YT))
        return (max(min(cus, tiles), 1), 1, -(-n // self.NMAX)), (64, waves, 1), 0


@dataclass(frozen=True)
class AmdMfmaConfig:
    """W8A8 in the device's native format on the MFMA units (gfx942 fnuz, gfx950 OCP): the seed's
    16 waves, 2 rows a wave, 2 x 1 KiB in flight; tokens in groups of NMAX <= 4 over blockIdx.z."""
    NMAX: int = 4
    YT: int = 2
    UNRL: int = 2
    WAVES: int = 16
    MF: int = 16  # 32: the pre-#34100 32x32x16 variant, compiled for the register comparison only

    def instance(self, out_dtype: str) -> KernelInstance:
        return KernelInstance("fp8.hip", f"jg_fp8q_amd<{TAG[out_dtype]}, {self.NMAX}, {self.YT}, {self.UNRL}, "
                                         f"{self.WAVES}, {self.MF}>", requires=frozenset({"fp8_mfma"}))

    def geometry(self, n: int, m: int, k: int, cus: int, lds_max: int):
        groups = -(-n // self.NMAX)
        tiles = -(-m // (self.WAVES * self.YT))
        tokens_in_lds = min(self.NMAX, lds_max // k)
        return (max(min(cus, tiles), 1), 1, groups), (64, self.WAVES, 1), tokens_in_lds * k


def mfma_config(n: int) -> AmdMfmaConfig:
    return AmdMfmaConfig(NMAX=1 if n == 1 else 2 if n == 2 else 4)


def mfma_applies(arch: str, mode: int, fmt: str) -> bool:
    return mode == W8A8 and native_format("hip", arch) == fmt


def amd_config(n: int, arch: str = "gfx942") -> AmdFp8Config:
    # 16 waves with 1 row each (software decode needs the registers), tokens in groups of up to 4;
    # 2 on gfx90a, whose HIP 5.2 compiler needs more registers for the same code (compile matrix)
    cap = 2 if parse(arch).base == "gfx90a" else 4
    return AmdFp8Config(1, 16, min(1 if n == 1 else 2 if n == 2 else 4, cap))


def epilogue_instance(out_dtype: str) -> KernelInstance:
    """The cuBLASLt route's epilogue (scales, bias, rounding of its fp32 sums) for an output dtype."""
    return KernelInstance("fp8.hip", f"jg_fp8_epilogue<{TAG[out_dtype]}>")


def quant_instance(dtype: str, per_token: bool, fmt: str) -> KernelInstance:
    return KernelInstance("fp8.hip", f"jg_quantize_fp8<{TAG[dtype]}, {'true' if per_token else 'false'}, "
                                     f"{'true' if fmt == 'float8_e4m3fnuz' else 'false'}>")
