"""Measured dispatch tables: JSON data files, one per GPU, schema-versioned.

A tables file holds what a tuning sweep measured on one GPU, per kernel family:
  - "skinny" and "fp8": rows {name, m, k, k_order: [WK, U, SK], mt: {N bucket: MT}, us: {bucket: time}};
    the K order is shared by every N bucket of a shape (so a token's bits do not depend on the batch),
  - "moderate": rows {name, m, k, buckets: {N bucket: {tile: [BM, BN, WM, WN, ST, KS], slices,
    reduction: none|cluster|workspace, cublas_over_ours}}}; bucket 16 (the 16-token tile for every N <= 16)
    only in a file a user writes: no tuner writes it since session 35 (jitgemm.tuning says why),
  - "w4-mxfp4", "w4-q4_sym", "w4-q4_min", "w4-q4_zp": the 4-bit family per weight format, rows as skinny's
    (tools/w4_sweep.py --table writes them), optionally with min_blocks: {N bucket: blocks an SM the kernel asks
    ptxas to fit} (registers only, never the K order), measured in a model's step: such a row serves its own
    weight only (dispatch._carries); so does a row with own_weight: true (a K order measured in one model's step,
    which is no evidence for the shapes nearest to it). Such a row may sit beside a shared row of the same shape:
    the weight takes the own-weight row, the shapes nearest to it the shared one (dispatch.nearest_row).

Shipped files live in jitgemm/data/tables/ (`python -m jitgemm bench --tune` writes new ones); the
dispatcher takes the file measured on the device it plans for, else one measured on the same arch,
else the vendor's first. JITGEMM_NV_TUNING=path replaces the shipped choice for the families the file
has (an empty list: no measured rows, the heuristics run). `jitgemm tune` writes a
file of the same schema for the user's own shapes (jitgemm.tuned), which the dispatcher reads first.

Rows keep the tuple forms the dispatcher has always used: skinny/fp8 (M, K, (WK, U, SK), {bucket: MT}), a 4-bit
row with min_blocks or own_weight (M, K, (WK, U, SK), {bucket: MT}, {bucket: blocks}) ({} where unbounded): a
five-element row serves its own weight only,
moderate (M, K, {bucket: (BM, BN, WM, WN, ST, KS, S, RED, cuBLAS time / ours)})."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .arch import parse as parse_arch

SCHEMA = "jitgemm.tables/1"
W4_FAMILIES = ("w4-mxfp4", "w4-q4_sym", "w4-q4_min", "w4-q4_zp")  # the 4-bit family, one per format
FAMILIES = ("skinny", "fp8", "moderate") + W4_FAMILIES
REDUCTIONS = {"none": 0, "cluster": 1, "workspace": 2}
DATA = Path(__file__).resolve().parent / "data" / "tables"

_TOP = {"schema": str, "vendor": str, "device": str, "arch": str, "measured": dict, "key": dict,
        **{f: list for f in FAMILIES}}
_SKINNY_ROW = {"name": str, "m": int, "k": int, "k_order": list, "mt": dict, "us": dict, "note": str}
_W4_ROW = {**_SKINNY_ROW, "min_blocks": dict, "own_weight": bool}
MAX_MIN_BLOCKS = 32  # an SM holds at most 32 blocks (sm_80 / sm_90)
_MODERATE_ROW = {"name": str, "m": int, "k": int, "buckets": dict, "note": str}
_MODERATE_ENTRY = {"tile": list, "slices": int, "reduction": str, "cublas_over_ours": (int, float, type(None))}


class TableError(ValueError):
    """A tables file that does not follow the schema: names the file, the field and the rule."""


@dataclass(frozen=True)
class Tables:
    """One file's rows per family, in the dispatcher's tuple forms, and where they came from."""
    vendor: str
    device: str
    arch: str
    source: str                      # the file
    rows: dict = field(default_factory=dict)   # family -> list of rows
    key: dict = field(default_factory=dict)    # a tuning file's machine key (device, driver, compiler, jitgemm)
    doc: dict = field(default_factory=dict, repr=False)  # the file as read (a tuner merges its rows into it)

    def family(self, name: str) -> list:
        return self.rows.get(name, [])

    def has(self, name: str) -> bool:
        """Whether the file has the family at all (an empty list counts: it says "no measured rows")."""
        return name in self.rows


def parse(doc: object, where: str) -> Tables:
    """A tables document, validated: every required field present with its type, no unknown field."""
    if not isinstance(doc, dict):
        raise TableError(f"{where}: a tables file is a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise TableError(f"{where}: schema must be {SCHEMA!r}, got {doc.get('schema')!r} "
                         f"(files from an older jitgemm: run the tuning again)")
    _fields(doc, _TOP, where, required=("schema", "vendor", "device", "arch"))
    if doc["vendor"] not in ("cuda", "hip"):
        raise TableError(f"{where}: vendor must be 'cuda' or 'hip', got {doc['vendor']!r}")
    rows = {}
    for fam in (f for f in FAMILIES if f in doc):
        read = _moderate_row if fam == "moderate" else _w4_row if fam in W4_FAMILIES else _skinny_row
        rows[fam] = [read(r, f"{where}: {fam}[{i}]") for i, r in enumerate(doc[fam])]
    return Tables(doc["vendor"], doc["device"], doc["arch"], where, rows, dict(doc.get("key", {})), doc)


def _fields(obj: dict, spec: dict, where: str, required=()) -> None:
    for name in obj:
        if name not in spec:
            raise TableError(f"{where}: unknown field {name!r} (known: {', '.join(spec)})")
        if not isinstance(obj[name], spec[name]) or (isinstance(obj[name], bool) and spec[name] is not bool):
            want = spec[name].__name__ if isinstance(spec[name], type) else " or ".join(t.__name__ for t in spec[name])
            raise TableError(f"{where}: field {name!r} must be {want}, got {obj[name]!r}")
    for name in required:
        if name not in obj:
            raise TableError(f"{where}: field {name!r} is missing")


def _positive(v, where: str, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise TableError(f"{where}: {what} must be an int >= 1, got {v!r}")
    return v


def _bucket(b: str, where: str) -> int:
    if not re.fullmatch(r"[1-9]\d*", b):
        raise TableError(f"{where}: N bucket keys are token counts like \"16\", got {b!r}")
    return int(b)


def _skinny_row(r: object, where: str, spec: dict = _SKINNY_ROW) -> tuple:
    if not isinstance(r, dict):
        raise TableError(f"{where}: a row is an object, got {r!r}")
    _fields(r, spec, where, required=("m", "k", "k_order", "mt"))
    m, k = _positive(r["m"], where, "m"), _positive(r["k"], where, "k")
    order = r["k_order"]
    if len(order) != 3:
        raise TableError(f"{where}: k_order is [WK, U, SK], got {order!r}")
    order = tuple(_positive(v, where, "k_order values") for v in order)
    if not r["mt"]:
        raise TableError(f"{where}: mt needs at least one N bucket")
    mts = {_bucket(b, where): _positive(v, where, "mt values") for b, v in r["mt"].items()}
    return m, k, order, mts


def _w4_row(r: object, where: str) -> tuple:
    """A 4-bit row: skinny's, and where it has min_blocks, those per N bucket as a fifth element (buckets of
    its mt only, 1..MAX_MIN_BLOCKS); own_weight: true alone gives an empty fifth element (no bound)."""
    row = _skinny_row(r, where, _W4_ROW)
    if r.get("own_weight") is False and "min_blocks" in r:
        raise TableError(f"{where}: a row with min_blocks serves its own weight only; own_weight: false contradicts "
                         "it (leave own_weight out)")
    if "min_blocks" not in r:
        return (*row, {}) if r.get("own_weight") else row
    blocks = {}
    for b, v in r["min_blocks"].items():
        n = _bucket(b, where)
        if n not in row[3]:
            raise TableError(f"{where}: min_blocks bucket {b!r} has no mt entry (mt buckets: "
                             f"{', '.join(str(x) for x in sorted(row[3]))})")
        if _positive(v, where, "min_blocks values") > MAX_MIN_BLOCKS:
            raise TableError(f"{where}: min_blocks values must be <= {MAX_MIN_BLOCKS} (blocks an SM), got {v!r}")
        blocks[n] = v
    if not blocks:
        raise TableError(f"{where}: min_blocks needs at least one N bucket (or leave it out)")
    return (*row, blocks)


def _moderate_row(r: object, where: str) -> tuple:
    if not isinstance(r, dict):
        raise TableError(f"{where}: a row is an object, got {r!r}")
    _fields(r, _MODERATE_ROW, where, required=("m", "k", "buckets"))
    m, k = _positive(r["m"], where, "m"), _positive(r["k"], where, "k")
    buckets = {}
    for b, e in r["buckets"].items():
        at = f"{where} bucket {b}"
        if not isinstance(e, dict):
            raise TableError(f"{at}: an entry is an object, got {e!r}")
        _fields(e, _MODERATE_ENTRY, at, required=("tile", "slices", "reduction"))
        if len(e["tile"]) != 6 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in e["tile"]):
            raise TableError(f"{at}: tile is [BM, BN, WM, WN, ST, KS] of ints >= 0, got {e['tile']!r}")
        if e["reduction"] not in REDUCTIONS:
            raise TableError(f"{at}: reduction must be one of {', '.join(REDUCTIONS)}, got {e['reduction']!r}")
        ratio = e.get("cublas_over_ours")
        buckets[_bucket(b, where)] = (*e["tile"], _positive(e["slices"], at, "slices"), REDUCTIONS[e["reduction"]],
                                      None if ratio is None else float(ratio))
    return m, k, buckets


def load(path: str | Path) -> Tables:
    """A tables file from disk, validated (TableError names what is wrong)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as e:
        raise TableError(f"{p}: cannot read it ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise TableError(f"{p}: not JSON ({e})") from None
    return parse(doc, str(p))


_shipped: list[Tables] | None = None


def shipped() -> list[Tables]:
    """Every tables file in jitgemm/data/tables/, by file name."""
    global _shipped
    if _shipped is None:
        _shipped = [load(p) for p in sorted(DATA.glob("*.json"))]
    return _shipped


def choose(vendor: str, device: str, arch: str, override: str | None = None, files: list | None = None) -> Tables | None:
    """The tables a plan for `device` (its name, as the driver reports it) of `arch` uses: the override
    file when given, else the shipped file (of `files`, default every shipped one) measured on that
    device, else one measured on the same arch (features after ':' ignored), else the vendor's first;
    None when the vendor has none."""
    if override:
        return _override(override)
    files = [t for t in (shipped() if files is None else files) if t.vendor == vendor]
    base = parse_arch(arch).base
    for pick in (lambda t: t.device == device, lambda t: parse_arch(t.arch).base == base):
        for t in files:
            if pick(t):
                return t
    return files[0] if files else None


_overrides: dict[str, Tables] = {}


def _override(path: str) -> Tables:
    if path not in _overrides:
        try:
            _overrides[path] = load(path)
        except TableError as e:
            raise TableError(f"JITGEMM_NV_TUNING: {e}") from None
    return _overrides[path]


# ---- writing ----------------------------------------------------------------------------------------------
def document(vendor: str, device: str, arch: str, measured: dict, families: dict, key: dict | None = None) -> dict:
    """A tables document from rows already in the file form (what the tuners produce)."""
    doc = {"schema": SCHEMA, "vendor": vendor, "device": device, "arch": arch, "measured": measured}
    if key:
        doc["key"] = key
    for fam in FAMILIES:
        if families.get(fam) is not None:
            doc[fam] = families[fam]
    parse(doc, "a document being written")  # never write what could not be read back
    return doc


def dumps(doc: dict) -> str:
    """JSON with one row per line: readable, and a diff shows which shape's measurement changed."""
    head = {k: v for k, v in doc.items() if k not in FAMILIES}
    text = json.dumps(head, indent=1)[:-2]
    for fam in FAMILIES:
        if fam in doc:
            rows = ",\n".join("  " + json.dumps(r) for r in doc[fam])
            text += f',\n "{fam}": [\n{rows}\n ]'
    return text + "\n}\n"


def skinny_row_doc(name: str, m: int, k: int, k_order, mts: dict, us: dict | None = None,
                   min_blocks: dict | None = None, own_weight: bool = False) -> dict:
    row = {"name": name, "m": m, "k": k, "k_order": list(k_order), "mt": {str(b): v for b, v in mts.items()}}
    if us:
        row["us"] = {str(b): v for b, v in us.items()}
    if min_blocks:  # 4-bit rows only (_w4_row)
        row["min_blocks"] = {str(b): v for b, v in min_blocks.items()}
    elif own_weight:  # 4-bit rows only: an unbounded row kept to its own weight
        row["own_weight"] = True
    return row


def moderate_entry_doc(entry) -> dict:
    """A moderate entry tuple (BM, BN, WM, WN, ST, KS, S, RED, ratio) in the file form."""
    bm, bn, wm, wn, st, ks, s, red, ratio = entry
    names = {v: n for n, v in REDUCTIONS.items()}
    return {"tile": [bm, bn, wm, wn, st, ks], "slices": s, "reduction": names[red], "cublas_over_ours": ratio}


def merged(base: "Tables | None", vendor: str, device: str, arch: str, measured: dict, family: str,
           rows: list, key: dict | None = None) -> dict:
    """A document for `device`: `base`'s families (where it has them) with `family`'s rows for the shapes
    measured now replaced by `rows` (file form): what a tuning run writes, so its file is complete on its
    own. A sweep of some shapes (`bench --tune --only ...`) keeps base's rows for the others. Provenance:
    base's "measured" stays (it tells how the kept families were measured), `measured` goes under
    measured.by_family[family], with how many rows were kept and from which file."""
    families = {f: base.doc[f] for f in FAMILIES if base is not None and f in base.doc}
    fresh = {(r["m"], r["k"]) for r in rows}
    kept = [r for r in families.get(family, []) if (r["m"], r["k"]) not in fresh]
    families[family] = list(rows) + kept
    earlier = dict(base.doc.get("measured", {})) if base is not None else {}
    if base is not None and base.device != device:  # the other families were measured on another GPU
        notes = {"other_families_from": f"{base.device} ({Path(base.source).name})", "base_measured": earlier}
    else:
        notes = earlier
    now = dict(measured)
    if kept:
        now["kept_rows"] = f"{len(kept)} rows of shapes this run did not measure, from {Path(base.source).name}"
    notes["by_family"] = {**notes.get("by_family", {}), family: now}
    return document(vendor, device, arch, notes, families, key)


def slug(device: str) -> str:
    """A file name for a device name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "device"
