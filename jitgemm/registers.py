"""Register, spill and memory use of compiled kernels, as `aot` and `demo` print it: one row per instance,
a warning line per instance that spills, and a summary per arch."""
from __future__ import annotations

from .kernels.w4 import bounded


def own_symbol(name: str, sym: str) -> bool:
    """Whether `sym` is the kernel that name expression `name` names, not another kernel of the
    same module (a module also carries every non-template kernel of its file). Itanium mangling
    starts with _Z, the length and the base name, then I for template arguments; extern "C" kernels
    keep their plain name."""
    base = name.split("<", 1)[0].strip()
    if sym == base:
        return True
    prefix = f"_Z{len(base)}{base}"
    return sym.startswith(prefix) and (sym[len(prefix):len(prefix) + 1] == "I") == ("<" in name)


RESOURCE_HEADER = "arch     instance                                         registers / spills / memory"


def _spills(res: dict) -> bool:
    """Whether a kernel spills registers (or otherwise uses stack / scratch memory)."""
    if "registers" in res:
        return bool(res.get("spill_stores") or res.get("spill_loads") or res.get("stack_frame"))
    return bool(res["vgpr_spill"] or res["sgpr_spill"] or res["scratch"])


def _describe(res: dict) -> str:
    if "registers" in res:
        return (f"regs {res['registers']:3d}  spill st/ld {res.get('spill_stores', 0)}/{res.get('spill_loads', 0)}  "
                f"stack {res.get('stack_frame', 0)}  smem {res.get('smem', 0)}")
    return (f"vgpr {res['vgpr']:3d} agpr {res['agpr']:3d} sgpr {res['sgpr']:3d}  spills v/s "
            f"{res['vgpr_spill']}/{res['sgpr_spill']}  lds {res['lds']}  scratch {res['scratch']}")


def print_resources(rows) -> None:
    for arch, name, sym, res in rows:
        if own_symbol(name, sym):
            print(f"{arch:8s} {name:48s} {_describe(res)}")


def print_spills(rows) -> None:
    """A line per spilling instance, always: it works, but slower than a kernel that fits its registers (unless
    a table row bounded its registers on purpose: kernels.w4.bounded)."""
    for arch, name, sym, res in rows:
        if own_symbol(name, sym) and _spills(res):
            why = "; a table row's register bound, measured faster with it" if bounded(name) else ""
            print(f"warning: {arch} {name} spills ({_describe(res)}{why})")


def print_summary(rows) -> None:
    """Per arch: the largest register use and how many instances spill."""
    for arch in dict.fromkeys(r[0] for r in rows):
        mine = [(name, res) for a, name, sym, res in rows if a == arch and own_symbol(name, sym)]
        if not mine:
            continue
        spills = sum(1 for _, r in mine if _spills(r))
        if "registers" in mine[0][1]:
            name, res = max(mine, key=lambda r: r[1]["registers"])
            print(f"{arch}: max {res['registers']} registers ({name}); {spills} instances spill")
        else:
            name, res = max(mine, key=lambda r: r[1]["vgpr"] + r[1]["agpr"])
            sgpr = max(r["sgpr"] for _, r in mine)
            print(f"{arch}: max VGPR+AGPR {res['vgpr'] + res['agpr']} ({name}); max SGPR {sgpr}; "
                  f"{spills} instances spill or use scratch")


def print_register_table(rows) -> None:
    """The rows with column names, flagged spills and a summary per arch (demo, aot --report)."""
    print(RESOURCE_HEADER)
    print_resources(rows)
    print_spills(rows)
    print_summary(rows)
