"""y = a * x: the smoke kernel that proves compile -> cache -> load -> launch."""
from __future__ import annotations

from ..runtime.jit import KernelInstance

ARG_KINDS = ("ptr", "ptr", "f32", "i64")
BLOCK = 256
_TAG = {"float16": "jg_f16", "bfloat16": "jg_bf16"}


def instance(dtype: str) -> KernelInstance:
    if dtype == "float32":
        return KernelInstance("scale.hip", "jg_scale_f32")
    return KernelInstance("scale.hip", f"jg_scale<{_TAG[dtype]}>")


def instances() -> list[KernelInstance]:
    return [instance(d) for d in ("float16", "bfloat16", "float32")]


def grid(n: int) -> tuple[int, int, int]:
    return (max((n + BLOCK - 1) // BLOCK, 1), 1, 1)
