"""Exception types. Validation errors are plain ValueError/TypeError (numpy's habit);
these cover what goes wrong below the API: vendor calls, compiles, missing backends."""


class JitgemmError(RuntimeError):
    """Base class for runtime failures inside jitgemm."""


class BackendUnavailable(JitgemmError):
    """A vendor runtime (CUDA driver, HIP runtime, NVRTC, hiprtc) cannot be loaded or used."""


class VendorError(JitgemmError):
    """A vendor API call returned a non-success status; `name` is the vendor's error name."""

    def __init__(self, call: str, name: str, detail: str = ""):
        self.call, self.name = call, name
        super().__init__(f"{call} failed: {name}" + (f" ({detail})" if detail else ""))


class CompileError(JitgemmError):
    """A run-time compile failed. The message carries the compiler's whole log."""

    def __init__(self, what: str, status: str, log: str):
        self.status, self.log = status, log
        super().__init__(f"compiling {what} failed with {status}\n--- compiler log ---\n{log}")
