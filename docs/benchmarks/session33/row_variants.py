"""Session 33's step-level search for the 70B TP-8 shard's q4_min rows (#19: its step 2.48-2.49x against 2.5x):
one patch per (layer, K order), each moving one row of the H100 table, for tools/w4_ab.sh to time in the step
(session 31: kernels timed alone pick what loses in a chain). As-run record; writes OUT/<name>.patch and prints
the PATCHES= value."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools"))
from w4_bound_patches import patch  # noqa: E402

TABLE = "jitgemm/data/tables/nvidia-h100-80gb-hbm3.json"
VARIANTS = {  # name: (row, new K order [WK, U, SK])
    "g422": ("llama70b-tp8.gate_up", [4, 2, 2]), "g821": ("llama70b-tp8.gate_up", [8, 2, 1]),
    "g411": ("llama70b-tp8.gate_up", [4, 1, 1]), "g822": ("llama70b-tp8.gate_up", [8, 2, 2]),
    "d422": ("llama70b-tp8.down", [4, 2, 2]), "d821": ("llama70b-tp8.down", [8, 2, 1]),
    "d411": ("llama70b-tp8.down", [4, 1, 1]),
    "q821": ("llama70b-tp8.qkv", [8, 2, 1]), "q1611": ("llama70b-tp8.qkv", [16, 1, 1]),
    "q1622": ("llama70b-tp8.qkv", [16, 2, 2]), "q1612": ("llama70b-tp8.qkv", [16, 1, 2]),  # 80 blocks for 132 SMs
    "o411": ("llama70b-tp8.o", [4, 1, 1]), "o821": ("llama70b-tp8.o", [8, 2, 1]),
}


def moved(text: str, row_name: str, order: list) -> str:
    lines = text.split("\n")
    start = lines.index(' "w4-q4_min": [')
    for i in range(start + 1, len(lines)):
        if f'"name": "{row_name}"' in lines[i]:
            row = json.loads(lines[i].strip().rstrip(","))
            row["k_order"] = order
            row.pop("us", None)  # the old times were another config's
            lines[i] = "  " + json.dumps(row) + ("," if lines[i].rstrip().endswith(",") else "")
            return "\n".join(lines)
    raise SystemExit(f"no row {row_name}")


out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
text = (ROOT / TABLE).read_text()
for name, (row, order) in VARIANTS.items():
    (out / f"{name}.patch").write_text(patch(text, moved(text, row, order), TABLE))
print('PATCHES="' + " ".join(f"{n}={out.resolve().relative_to(ROOT)}/{n}.patch" for n in VARIANTS) + '"')
