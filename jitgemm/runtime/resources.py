"""Register/spill/LDS figures of a compiled kernel, read from what the compilers leave behind:
the ptxas -v report in NVRTC's log, the msgpack NT_AMDGPU_METADATA note in an AMD code object."""
from __future__ import annotations

import re
import struct

_PTXAS_FUNC = re.compile(r"Function properties for (\S+)")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Compiling entry function '(\S+)'|Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas_log(log: str) -> dict[str, dict]:
    """symbol -> {registers, spill_stores, spill_loads, stack_frame, smem} from `ptxas -v` output."""
    out: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = m.group(1)
            out.setdefault(current, {})
            continue
        m = _PTXAS_FUNC.search(line)
        if m:
            current = m.group(1)
            out.setdefault(current, {})
            continue
        if current is None:
            continue
        m = _PTXAS_FRAME.search(line)
        if m:
            out[current].update(stack_frame=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            out[current]["smem"] = int(s.group(1)) if s else 0
    return out


def _elf_notes(code: bytes):
    """Yield (name, type, desc) for every note in every SHT_NOTE section of a 64-bit ELF."""
    if code[:4] != b"\x7fELF" or code[4] != 2:
        return
    shoff, = struct.unpack_from("<Q", code, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", code, 0x3A)
    for i in range(shnum):
        sh_type, = struct.unpack_from("<I", code, shoff + i * shentsize + 4)
        if sh_type != 7:  # SHT_NOTE
            continue
        off, size = struct.unpack_from("<QQ", code, shoff + i * shentsize + 0x18)
        pos, end = off, off + size
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", code, pos)
            pos += 12
            name = code[pos:pos + namesz].rstrip(b"\0")
            pos += (namesz + 3) & ~3
            desc = code[pos:pos + descsz]
            pos += (descsz + 3) & ~3
            yield name, ntype, desc


def amdgpu_kernel_resources(code: bytes) -> dict[str, dict]:
    """symbol -> {vgpr, agpr, sgpr, vgpr_spill, sgpr_spill, lds, scratch, wave} from the
    code object's NT_AMDGPU_METADATA (type 32) note."""
    import msgpack

    out: dict[str, dict] = {}
    for name, ntype, desc in _elf_notes(code):
        if name != b"AMDGPU" or ntype != 32:
            continue
        meta = msgpack.unpackb(desc, raw=False)
        for k in meta.get("amdhsa.kernels", []):
            out[k[".name"]] = {
                "vgpr": k.get(".vgpr_count", 0), "agpr": k.get(".agpr_count", 0),
                "sgpr": k.get(".sgpr_count", 0), "vgpr_spill": k.get(".vgpr_spill_count", 0),
                "sgpr_spill": k.get(".sgpr_spill_count", 0), "lds": k.get(".group_segment_fixed_size", 0),
                "scratch": k.get(".private_segment_fixed_size", 0), "wave": k.get(".wavefront_size", 0),
            }
    return out
