"""Bench output: a rich table, a JSON file with every number, a markdown table, PNG plots."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .runner import tbs


def _fmt(v, nd=1):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def rows(cases, ceiling: float) -> list[dict]:
    out = []
    for c in cases:
        r = {"shape": c.shape, "N": c.n, "dtype": c.dtype, "route": c.family, "us_graph": c.us_graph,
             "us_b2b": c.us_b2b, "tbs_graph": tbs(c, c.us_graph), "pct_ceiling": 100 * tbs(c, c.us_graph) / ceiling}
        for name, b in c.baselines.items():
            if b and b.get("us_graph"):
                r[f"x_{name}_graph"] = b["us_graph"] / c.us_graph
                if c.family and name == "torch":  # 16-bit gemm (run_suite): jitgemm's own kernel, even where cuBLAS ran
                    r[f"x_{name}_graph_kernel_only"] = b["us_graph"] / c.us_graph_kernel
            if b and b.get("us_b2b"):
                r[f"x_{name}_b2b"] = b["us_b2b"] / c.us_b2b
        out.append(r)
    return out


LOSS = 0.97  # a case "loses" when jitgemm is more than 3 % slower than the baseline


def summary(table: list[dict]) -> dict:
    """Per ratio column: geomean, the worst case (which one), and how many cases lose more than 3 %."""
    s = {}
    for key in sorted({k for r in table for k in r if k.startswith("x_")}):
        rs = [r for r in table if key in r and r[key] and not math.isnan(r[key])]
        if rs:
            worst = min(rs, key=lambda r: r[key])
            s[key] = {"geomean": math.exp(statistics.fmean(math.log(r[key]) for r in rs)), "min": worst[key],
                      "worst_case": f"{worst['shape']} N={worst['N']} {worst['dtype']}", "cases": len(rs),
                      "losing_over_3pct": sum(r[key] < LOSS for r in rs)}
    return s


def print_table(table: list[dict], ceiling: float, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    keys = sorted({k for r in table for k in r if k.startswith("x_")})
    t = Table(title=f"{title} (ceiling {ceiling:.2f} TB/s)")
    for col in ["shape", "N", "dtype", "route", "µs graph", "µs b2b", "TB/s", "% ceil", *keys]:
        t.add_column(col, justify="right")
    for r in table:
        t.add_row(r["shape"], str(r["N"]), r["dtype"], r.get("route", ""), _fmt(r["us_graph"], 2), _fmt(r["us_b2b"], 2),
                  _fmt(r["tbs_graph"], 2), _fmt(r["pct_ceiling"]), *[_fmt(r.get(k), 2) for k in keys])
    Console(width=200).print(t)


def markdown(table: list[dict], ceiling: float, meta: dict) -> str:
    keys = sorted({k for r in table for k in r if k.startswith("x_")})
    head = ["shape", "N", "dtype", "route", "µs graph", "µs b2b", "TB/s (graph)", "% of ceiling", *keys]
    lines = [f"Device: {meta.get('device')} · driver {meta.get('driver')} · {meta.get('date')} · "
             f"ceiling {ceiling:.2f} TB/s (streaming read, same run). `x_torch_*` = torch time / jitgemm time; "
             f"route = what jitgemm's dispatcher ran (blas: cuBLAS, where the table measured it faster); "
             f"`*_kernel_only` = torch time / jitgemm's own kernel's time (JITGEMM_BLAS=0)."
             + (f" **Interrupted {meta['interrupted']}: a partial table.**" if meta.get("interrupted") else ""),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        lines.append("| " + " | ".join([r["shape"], str(r["N"]), r["dtype"], r.get("route", ""), _fmt(r["us_graph"], 2), _fmt(r["us_b2b"], 2),
                                         _fmt(r["tbs_graph"], 2), _fmt(r["pct_ceiling"]),
                                         *[_fmt(r.get(k), 2) for k in keys]]) + " |")
    return "\n".join(lines) + "\n"


def write(out_dir: str | Path, name: str, cases_dicts: list[dict], table: list[dict], ceiling: float, meta: dict,
          plot: bool = True) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "ceiling_tbs": ceiling, "cases": cases_dicts,
                                                  "table": table, "summary": summary(table)}, indent=1))
    (out / f"{name}.md").write_text(markdown(table, ceiling, meta))
    if not plot:
        return
    try:
        draw(out, name, table, ceiling)
    except ImportError:
        pass  # matplotlib is the [bench] extra


def series_colors(n: int) -> list[tuple]:
    """n distinct colours, one per plotted series (matplotlib's default cycle has 10, so a plot of 12
    shapes drew two pairs in the same colour): tab10's colours, then tab20's lighter twins of them, then,
    past 20, evenly spaced samples of a continuous map."""
    from matplotlib import colormaps
    if n <= 20:
        tab20 = colormaps["tab20"].colors
        return [tuple(c) for c in (tab20[0::2] + tab20[1::2])[:n]]
    cmap = colormaps["turbo"]
    return [tuple(cmap(i / (n - 1))) for i in range(n)]


def draw(out: Path, name: str, table: list[dict], ceiling: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for dtype in sorted({r["dtype"] for r in table}):
        rs = [r for r in table if r["dtype"] == dtype]
        shapes = sorted({r["shape"] for r in rs})
        fig, ax = plt.subplots(figsize=(11, 6))
        for sh, color in zip(shapes, series_colors(len(shapes))):
            pts = sorted((r["N"], r["tbs_graph"]) for r in rs if r["shape"] == sh)
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=sh, color=color)
            base = sorted((r["N"], r["tbs_graph"] / r["x_torch_graph"]) for r in rs
                          if r["shape"] == sh and r.get("x_torch_graph"))
            if base:
                ax.plot([p[0] for p in base], [p[1] for p in base], ls="--", color=line.get_color(), alpha=0.6)
        ax.axhline(ceiling, color="k", lw=1, label=f"streaming-read ceiling {ceiling:.2f} TB/s")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (tokens)")
        ax.set_ylabel("effective TB/s (graph replay)")
        ax.set_title(f"jitgemm {dtype}: solid = jitgemm, dashed = torch cuBLAS")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / f"{name}-{dtype}.png", dpi=110)
        plt.close(fig)


def compare(new: dict, old: dict) -> list[tuple[str, float]]:
    """(case, new/old time ratio) for cases in both files (--compare)."""
    def key(r):
        return f"{r['shape']} N={r['N']} {r['dtype']}"
    old_t = {key(r): r["us_graph"] for r in old["table"]}
    return [(key(r), r["us_graph"] / old_t[key(r)]) for r in new["table"] if key(r) in old_t]
