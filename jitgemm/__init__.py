"""jitgemm: fast skinny GEMMs for LLM decoding, compiled at run time for NVIDIA and AMD GPUs."""
from .api import Linear, Prepared, explain, gemm, linear, matmul, prepare
from .scaled import prepare_scaled, quantize_fp8, scaled_gemm
from .errors import BackendUnavailable, CompileError, JitgemmError, VendorError

__version__ = "0.1.0"
__all__ = ["gemm", "linear", "scaled_gemm", "quantize_fp8", "prepare_scaled", "matmul", "Linear", "explain", "prepare", "Prepared", "JitgemmError", "CompileError", "VendorError",
           "BackendUnavailable", "__version__"]
