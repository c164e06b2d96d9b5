"""The decode shape suite: data shipped in the package (jitgemm/data/decode_suite.json); users add
shapes with --shapes FILE of the same form."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "decode_suite.json"


@dataclass(frozen=True)
class Shape:
    name: str
    m: int
    k: int


def load(path: str | Path | None = None, group: str = "decode") -> tuple[list[Shape], list[int]]:
    d = json.loads(Path(path or DATA).read_text())
    if group not in d:
        raise ValueError(f"shape file {path or DATA} has no group {group!r}; "
                         f"groups: {[g for g in d if not g.startswith('ns')]}")
    shapes = [Shape(s["name"], int(s["m"]), int(s["k"])) for s in d[group]]
    return shapes, [int(n) for n in d.get(f"ns-{group}", d.get("ns", [1, 2, 4, 8, 16]))]
