"""Input rules, checked before any GPU work. Each failure names the argument, the rule and the values."""
from __future__ import annotations

from .arrays import View, as_view


def require_2d(v: View, arg: str, dims: str) -> None:
    if v.ndim != 2:
        raise ValueError(f"{arg} must be 2-D [{dims}], got {v.ndim}-D with shape {v.shape}")


def require_dtype(v: View, arg: str, allowed: tuple[str, ...]) -> None:
    if v.dtype not in allowed:
        raise TypeError(f"{arg} dtype must be one of {', '.join(allowed)}, got {v.raw_dtype}")


def require_same_dtype(a: View, an: str, b: View, bn: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{an} and {bn} must have the same dtype, got {an}: {a.raw_dtype} and {bn}: {b.raw_dtype}")


def require_rows(v: View, arg: str, min_pitch: int, vector_elems: int) -> int:
    """Device operand read with 16-byte vectors: inner stride 1, row pitch >= row length and a
    multiple of the vector, 16-byte aligned base. Returns the row pitch in elements."""
    rows, cols = v.shape
    if cols > 1 and v.strides[1] != 1:
        raise ValueError(f"{arg} must have unit stride along its last dimension (row-major rows), "
                         f"got element strides {v.strides}")
    pitch = v.strides[0] if rows > 1 else max(cols, vector_elems)
    if rows > 1 and pitch < cols:
        raise ValueError(f"{arg} row pitch {pitch} is smaller than its row length {cols}: rows overlap")
    if pitch % vector_elems:
        raise ValueError(f"{arg} row pitch must be a multiple of {vector_elems} elements (16-byte aligned rows), "
                         f"got {pitch}")
    if v.ptr % 16:
        raise ValueError(f"{arg} data pointer must be 16-byte aligned, got address {v.ptr:#x} "
                         f"(offset {v.ptr % 16} bytes)")
    return pitch


def require_out_rows(v: View, arg: str) -> int:
    rows, cols = v.shape
    if cols > 1 and v.strides[1] != 1:
        raise ValueError(f"{arg} must have unit stride along its last dimension, got element strides {v.strides}")
    pitch = v.strides[0] if rows > 1 else cols
    if rows > 1 and pitch < cols:
        raise ValueError(f"{arg} row pitch {pitch} is smaller than its row length {cols}: rows overlap")
    if v.ptr % v.itemsize:
        raise ValueError(f"{arg} data pointer {v.ptr:#x} is not aligned to its element size {v.itemsize}")
    return pitch


def bias_layout(bias: View, n: int, m: int, dtype: str) -> tuple[int, int]:
    """(bias_rows, bias_ld): 1 for [M] / [1, M] (one row for every token), N for [N, M]."""
    if bias.dtype != dtype:
        raise TypeError(f"bias dtype must equal the output dtype {dtype}, got {bias.raw_dtype}")
    if bias.ndim == 1:
        if bias.shape[0] != m:
            raise ValueError(f"bias of shape {bias.shape} does not match M={m}: expected [M], [1, M] or [N, M]")
        if m > 1 and bias.strides[0] != 1:
            raise ValueError(f"bias must be contiguous, got element stride {bias.strides[0]}")
        return 1, m
    if bias.ndim == 2 and bias.shape[1] == m and bias.shape[0] in (1, n):
        if m > 1 and bias.strides[1] != 1:
            raise ValueError(f"bias must have unit stride along M, got element strides {bias.strides}")
        return (1, m) if bias.shape[0] == 1 else (n, bias.strides[0] if n > 1 else m)
    raise ValueError(f"bias of shape {bias.shape} does not match N={n}, M={m}: expected [M], [1, M] or [N, M]")


def optional_bias(bias, n: int, m: int, dtype: str) -> View | None:
    """A call's bias as a View (None for none), checked: [M], [1, M] or [N, M] of `dtype`, 2-byte aligned."""
    if bias is None:
        return None
    bv = as_view(bias, "bias")
    bias_layout(bv, n, m, dtype)
    require_aligned(bv, "bias", 2)
    return bv


def require_writable(v: View, arg: str) -> None:
    """The result is written into `arg`: refuse memory its producer marks read-only (a numpy array with
    writeable=False, a __cuda_array_interface__ whose data is (ptr, True)) before any GPU work."""
    if v.readonly:
        raise ValueError(f"{arg} is read-only (its {type(v.obj).__name__} says so), and jitgemm writes the result "
                         f"into {arg}; pass a writable array, or no {arg} to get a new one")


def out_view(out, n: int, m: int, dtype: str, dtype_rule: str = "the input dtype") -> View:
    """A call's out as a View, checked: writable, 2-D [N, M] (ValueError) of `dtype` (TypeError; `dtype_rule`
    says where that dtype comes from). Every entry's rule: gemm, matmul, scaled_gemm, w4_gemm."""
    ov = as_view(out, "out")
    require_writable(ov, "out")
    require_2d(ov, "out", "N, M")
    if ov.shape != (n, m):
        raise ValueError(f"out must have shape [N, M] = {(n, m)}, got {ov.shape}")
    if ov.dtype != dtype:
        raise TypeError(f"out dtype must be {dtype} ({dtype_rule}), got {ov.raw_dtype}")
    return ov


def require_same_device(views: list[tuple[str, View]]) -> tuple[str | None, int | None]:
    """All device operands on one vendor and device; host (numpy) operands may not be mixed in."""
    dev = [(n, v) for n, v in views if v.device is not None]
    host = [(n, v) for n, v in views if v.device is None]
    if dev and host:
        raise ValueError(f"operands must all be host (numpy) arrays or all device arrays: "
                         f"{', '.join(n for n, _ in host)} on the host, {', '.join(n for n, _ in dev)} on a device")
    if not dev:
        return None, None
    first_name, first = dev[0]
    for name, v in dev[1:]:
        if (v.vendor, v.device) != (first.vendor, first.device):
            raise ValueError(f"operands must be on the same device: {first_name} on {first.vendor}:{first.device}, "
                             f"{name} on {v.vendor}:{v.device}")
    return first.vendor, first.device


def require_addressable(views: list[tuple[str, View]]) -> None:
    """Every device operand's farthest element within a signed 64-bit byte offset of its base: what the
    kernels' 64-bit offset arithmetic (and a launch's int64 pitch arguments) can hold. No array in memory
    is that large; only a made-up __cuda_array_interface__ can claim it, and it would wrap silently."""
    for name, v in views:
        if v.device is None:
            continue
        lo, hi = byte_extent(v)  # an empty array spans nothing: it addresses no memory
        if hi - lo >= 2**63:
            raise ValueError(f"{name} of shape {v.shape} with element strides {v.strides} spans "
                             f"{(hi - lo) // max(v.itemsize, 1)} elements: past what a 64-bit byte offset can "
                             f"address (no array in memory is this large)")


def byte_extent(v: View) -> tuple[int, int]:
    """[lo, hi): the bytes, relative to v.ptr, that v's elements lie in (empty for an empty array)."""
    lo = hi = 0
    for size, stride in zip(v.shape, v.strides):
        if size == 0:
            return 0, 0
        reach = (size - 1) * stride
        if reach < 0:
            lo += reach
        else:
            hi += reach
    isz = max(v.itemsize, 1)
    return lo * isz, (hi + 1) * isz


def _shares_memory(a: View, b: View) -> bool:
    """Whether any element of a is in b's bytes: their extents intersect, unless both are row layouts of one
    row pitch whose columns fall apart in every row (two column blocks of one buffer)."""
    alo, ahi = byte_extent(a)
    blo, bhi = byte_extent(b)
    if not (a.ptr + alo < b.ptr + bhi and b.ptr + blo < a.ptr + ahi):
        return False
    if a.ndim == b.ndim == 2 and min(a.shape[0], b.shape[0]) > 1 and a.strides[0] * a.itemsize == \
            b.strides[0] * b.itemsize > 0 and a.strides[1] == b.strides[1] == 1:
        pitch = a.strides[0] * a.itemsize
        at = (a.ptr - b.ptr) % pitch  # where a's columns start within b's row period
        return not (b.shape[1] * b.itemsize <= at and at + a.shape[1] * a.itemsize <= pitch)
    return True


def require_out_apart(views: list[tuple[str, View]]) -> None:
    """A device `out` shares no memory with an input: the kernels' blocks read the inputs while other
    blocks write out, so a result written over its own inputs would be wrong (and vary run to run)."""
    out = next((v for name, v in views if name == "out"), None)
    if out is None or out.device is None:
        return
    for name, v in views:
        if name != "out" and v.device is not None and _shares_memory(out, v):
            lo, hi = byte_extent(v)
            olo, ohi = byte_extent(out)
            raise ValueError(f"out shares memory with {name} (out: bytes {out.ptr + olo:#x}..{out.ptr + ohi:#x}, "
                             f"{name}: {v.ptr + lo:#x}..{v.ptr + hi:#x}): the kernel's blocks would read {name} while "
                             f"others write out; pass an out apart from the inputs")


INT32_MAX = 2**31 - 1


def require_int32_dims(**dims: int) -> None:
    """Kernel arguments N, M, K are 32-bit (offsets inside are 64-bit): refuse what would wrap."""
    for name, v in dims.items():
        if v > INT32_MAX:
            raise ValueError(f"{name} = {v} is too large: N, M and K must be < 2^31 (they are 32-bit kernel "
                             f"arguments; offsets are computed in 64 bits)")


def stream_handle(stream) -> int:
    """A stream argument that is not None as its raw handle (an int, or a CuPy/torch stream's), or the
    rule it breaks. The one place the rule is written: checked before any GPU work, read at launch."""
    if isinstance(stream, int) and not isinstance(stream, bool):
        return stream
    for attr in ("ptr", "cuda_stream", "handle"):
        h = getattr(stream, attr, None)
        if isinstance(h, int):
            return h
    raise TypeError(f"stream must be None, an int handle, or an object with .ptr / .cuda_stream "
                    f"(a CuPy or torch stream); got {type(stream).__name__}")


def require_stream_type(stream) -> None:
    """The stream argument's kind, checked before any GPU work (its handle is read later)."""
    if stream is not None:
        stream_handle(stream)


def require_aligned(v, arg: str, nbytes: int) -> None:
    if v is not None and v.device is not None and v.ptr % nbytes:
        raise ValueError(f"{arg} data pointer {v.ptr:#x} is not aligned to {nbytes} bytes (its element size)")


def require_str_option(value, arg: str, choices: str = "a string") -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{arg} must be {choices} or None, got {type(value).__name__} {value!r}")
