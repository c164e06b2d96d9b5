"""SASS instruction counts of a kernel's main loop, on a machine without a GPU: compiles jitgemm instances with
NVRTC (as the runtime does), disassembles the cubin with nvdisasm (`pip install nvidia-cuda-nvdisasm`) and
prints, per instance, its registers and spills, the instructions of its largest loop (a backward branch's
span), the tensor-core instructions in it, and the most frequent opcodes there. Session 15 found with it that
NVCC recomputed the 4-bit kernel's 64-bit row addresses in every 32-k group (NOTES.md).

    python tools/sass_loop_count.py                        # the 4-bit heuristic's configs, three formats
    python tools/sass_loop_count.py 'jg_w4_nv<jg_bf16, 1, 128, 1, 1, 16, 2, 1>' --arch sm_90a --ops 20
"""
import argparse
import collections
import glob
import os
import re
import subprocess
import tempfile

import msgpack

from jitgemm import dispatch, precompile


def nvdisasm() -> str:
    import nvidia
    for root in nvidia.__path__:
        found = glob.glob(os.path.join(root, "*", "bin", "nvdisasm"))
        if found:
            return found[0]
    raise SystemExit("nvdisasm not found: pip install nvidia-cuda-nvdisasm")


def sass(inst, arch: str) -> tuple[dict, str]:
    """(resources, SASS text) of one instance compiled for arch (jitgemm's code cache format: JGC1 + sha256 +
    msgpack with the cubin under "code")."""
    root = tempfile.mkdtemp()
    _name, _sym, res, _fresh, err = precompile.compile_one(arch, root, inst)
    if err:
        raise SystemExit(err)
    blob = open(glob.glob(os.path.join(root, arch, "*.jgc"))[0], "rb").read()
    cubin = os.path.join(root, "k.cubin")
    with open(cubin, "wb") as f:
        f.write(msgpack.unpackb(blob[36:], raw=False)["code"])
    return res, subprocess.run([nvdisasm(), "-c", cubin], capture_output=True, text=True, check=True).stdout


def largest_loop(text: str) -> list[str]:
    """The instructions from a label to the backward branch that returns to it, the longest such span."""
    labels, ins = {}, []
    for line in text.splitlines():
        m = re.match(r"\s*(\.L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = re.search(r"/\*[0-9a-f]{4}\*/\s+(.*?)\s*;", line)
        if m:
            ins.append(m.group(1))
    best = (0, -1)
    for i, t in enumerate(ins):
        m = re.search(r"BRA\s+`\((\.L_x_\d+)\)", t)
        if m and labels.get(m.group(1), i + 1) <= i and i - labels[m.group(1)] > best[1] - best[0]:
            best = (labels[m.group(1)], i)
    return ins[best[0]:best[1] + 1]


def opcode(t: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", t).split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="instance names as dispatch lists them (default: the 4-bit heuristic's)")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--ops", type=int, default=0, help="also print the N most frequent opcodes of the loop")
    a = ap.parse_args()
    every = {i.name: i for i in dispatch.all_w4_instances("cuda") + dispatch.all_instances("cuda")
             + dispatch.all_fp8_instances("cuda")}
    names = a.names or [n for n in every if n.startswith("jg_w4_nv<jg_bf16") and ", 1, 16, 2, 1>" in n]
    for name in names:
        if name not in every:
            raise SystemExit(f"no such instance: {name!r}")
        res, text = sass(every[name], a.arch)
        loop = largest_loop(text)
        mma = sum(1 for t in loop if opcode(t).startswith(("HMMA", "HGMMA", "QMMA")))
        print(f"{name} ({a.arch}): {res['registers']} registers, {res['spill_stores']} B spilled; loop "
              f"{len(loop)} instructions, {mma} tensor-core ({len(loop) / max(mma, 1):.1f} per mma)")
        if a.ops:
            print("   ", collections.Counter(opcode(t) for t in loop).most_common(a.ops))


if __name__ == "__main__":
    main()
