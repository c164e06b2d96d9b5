"""The run-time compilers' one procedure (NVRTC and hiprtc share it, function for function): create a program
from the source, register the name expressions, compile with the flags, read the log (all of it goes into
the CompileError of a failed compile), the lowered names and the code object. Needs no device."""
from __future__ import annotations

from typing import Sequence

from ..errors import CompileError
from .types import checked


class RtcProgram:
    """One compile through an NVRTC-like API (`api`: the cuda.bindings nvrtc or hip-python hiprtc module);
    a subclass names the API's prefix and its code-object calls."""
    PREFIX = ""
    CODE_CALLS = ("", "")   # (size of the code object, copy it out)

    def __init__(self, api):
        self.api = api

    def _call(self, name: str, *args):
        fn = self.PREFIX + name
        return checked(fn, getattr(self.api, fn)(*args))

    def compile(self, source: str, filename: str, names: Sequence[str], flags: Sequence[str],
                arch: str) -> tuple[bytes, dict[str, str], str]:
        """(code object, name expression -> lowered symbol, log); CompileError with the whole log."""
        prog = self._call("CreateProgram", source.encode(), filename.encode(), 0, [], [])
        try:
            for n in names:
                self._call("AddNameExpression", prog, n.encode())
            encoded = [f.encode() for f in flags]
            (status,) = getattr(self.api, self.PREFIX + "CompileProgram")(prog, len(encoded), encoded)
            log = self._log(prog)
            if int(status) != 0:
                raise CompileError(f"{filename} [{', '.join(names)}] for {arch}", status.name, log)
            lowered = {n: self._lowered(prog, n) for n in names}
            size = self._call(self.CODE_CALLS[0], prog)
            code = bytearray(size)
            self._call(self.CODE_CALLS[1], prog, code)
            return bytes(code), lowered, log
        finally:
            self._destroy(prog)

    def _log(self, prog) -> str:
        # the API writes into the buffer it is given: a bytearray, never bytes. `b" " * 1` is CPython's shared
        # one-byte object b" ", and an empty log (size 1: the NUL) turned every b" " in the process into b"\0"
        size = self._call("GetProgramLogSize", prog)
        buf = bytearray(size)
        if size:
            self._call("GetProgramLog", prog, buf)
        return bytes(buf).rstrip(b"\0 ").decode(errors="replace")

    def _lowered(self, prog, name: str) -> str:
        sym = self._call("GetLoweredName", prog, name.encode())
        return sym.decode() if isinstance(sym, bytes) else str(sym)

    def _destroy(self, prog) -> None:
        getattr(self.api, self.PREFIX + "DestroyProgram")(prog)


class Nvrtc(RtcProgram):
    PREFIX = "nvrtc"
    CODE_CALLS = ("GetCUBINSize", "GetCUBIN")


class Hiprtc(RtcProgram):
    PREFIX = "hiprtc"
    CODE_CALLS = ("GetCodeSize", "GetCode")

    def _destroy(self, prog) -> None:
        self.api.hiprtcDestroyProgram(prog.createRef())  # passing prog itself segfaults (HIP 5.2)
