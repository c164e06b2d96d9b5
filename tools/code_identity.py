"""Fingerprints of compiled kernels, to prove a source reorganisation changed no code: compile a sample of the
instances `aot` would build (one per kernel template and dtype, plus every STRIDE-th) for each arch into a fresh
cache, and write sha256 per (arch, instance) as JSON. Run it before and after, from the two trees, and compare.
No GPU needed (NVRTC, hiprtc, the offline clang route).

    PYTHONPATH=. python tools/code_identity.py before.json sm_90a sm_80 gfx90a gfx942 gfx950
    STRIDE=6 PYTHONPATH=. python tools/code_identity.py after.json sm_90a gfx942

NVIDIA: the whole cubin (NVRTC is deterministic). AMD: the code object's .text and .rodata (the ISA and the
kernel descriptors): clang's __hip_cuid_ symbol hashes the temporary file's path and differs on every compile."""
import hashlib
import json
import os
import struct
import sys
import tempfile

from jitgemm.precompile import instances_for
from jitgemm.runtime.cache import CodeCache
from jitgemm.runtime.jit import compile_instance


def sections(code: bytes, wanted=(".text", ".rodata")) -> bytes:
    """An ELF's named sections, concatenated (the input itself when it is not an ELF)."""
    if code[:4] != b"\x7fELF":
        return code
    shoff, = struct.unpack_from("<Q", code, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", code, 0x3A)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", code, shoff + i * shentsize) for i in range(shnum)]
    strtab = hdrs[shstrndx]

    def name(h):
        start = strtab[4] + h[0]
        return code[start:code.index(b"\0", start)].decode()
    return b"".join(code[h[4]:h[4] + h[5]] for h in hdrs if name(h) in wanted)


def main(out_path: str, archs: list[str]) -> None:
    stride = int(os.environ.get("STRIDE", "0"))
    out = {}
    with tempfile.TemporaryDirectory() as d:
        cache = CodeCache(d)
        for arch in archs:
            seen = set()
            for i, inst in enumerate(instances_for(arch)):
                head = inst.name.split("<")[0]
                dt = "bf16" if "bf16" in inst.name else "f16" if "f16" in inst.name else ""
                key = (head, dt, inst.source)
                if key in seen and not (stride and i % stride == 0):
                    continue
                seen.add(key)
                code = compile_instance(inst, arch, cache).code
                out[f"{arch} {inst.name}"] = hashlib.sha256(sections(code) if arch.startswith("gfx") else code).hexdigest()
                print(arch, inst.name, out[f"{arch} {inst.name}"][:12], flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
