"""jitgemm: fast skinny GEMMs for LLM decoding, compiled at run time for NVIDIA and AMD GPUs."""
from .api import Linear, Prepared, explain, gemm, linear, matmul, prepare
from .scaled import prepare_scaled, quantize_fp8, scaled_gemm
from .w4gemm import Q4Device, w4_gemm
from .w4experts import Q4Experts, w4_experts_gemm
from .cupy_bf16 import CupyBf16
from . import quant4
from .errors import BackendUnavailable, CompileError, JitgemmError, VendorError
from .runtime.backend import why_unavailable
from .version import __version__
from . import autotune  # noqa: F401  (installs JITGEMM_AUTOTUNE's hooks in the API)


def tune(shapes, *, dtype: str = "bfloat16", n=None, progress: bool = True,
         jobs: int | None = None, device: int | None = None):
    """Tune `shapes` on this GPU and store the winners where the dispatcher reads them first (see
    jitgemm.tuning.tune: shapes are [(m, k), ...], (name, m, k) tuples, a model name such as
    'llama-3.1-8b', or a JSON file; n: token counts, default every N bucket 1..128). Needs an NVIDIA GPU
    and CuPy."""
    from .tuning import tune as run
    return run(shapes, dtype=dtype, n=n, progress=progress, jobs=jobs, device=device)

def free_idle_memory() -> int:
    """Free the device memory jitgemm keeps for reuse: blocks of dropped outputs it allocated itself (calls
    without out= whose operands' library cannot hold the result), kept per stream so the next output takes
    one without a driver call; at most 256 MiB a device. Returns the bytes freed (each free waits for its
    device, so call it between steps, not in a loop)."""
    from .stream_pool import release
    return release()


__all__ = ["gemm", "tune", "linear", "scaled_gemm", "quantize_fp8", "prepare_scaled", "w4_gemm", "Q4Device", "w4_experts_gemm", "Q4Experts", "quant4", "CupyBf16", "free_idle_memory", "matmul", "Linear", "explain", "prepare", "Prepared", "why_unavailable", "JitgemmError", "CompileError", "VendorError",
           "BackendUnavailable", "__version__"]
