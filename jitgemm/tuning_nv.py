"""Measured NVIDIA configs, one row per tuned shape: (M, K, (WK, U, SK), {N bucket: MT}).
The K order (WK, U, SK) is shared by every N bucket of a shape (batch-invariant bits); MT is
picked per bucket. Written by `python -m jitgemm bench --tune` (tuning_nv.py in its --out dir);
configs that spill are never chosen. Regenerate rather than edit. JITGEMM_NV_TUNING=path/tune.json overrides it at run time."""
import json
import os

NV_TABLE: list = [  # NVIDIA H100 80GB HBM3, driver 13000, 2026-11-24
    (6144, 4096, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama8b.qkv: {1: 19.61, 4: 19.67, 8: 19.83, 16: 21.62} us
    (4096, 4096, (16, 2, 1), {1: 2, 4: 1, 8: 1, 16: 1}),  # llama8b.o: {1: 14.08, 4: 14.02, 8: 14.1, 16: 14.62} us
    (28672, 4096, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama8b.gate_up: {1: 79.8, 4: 79.99, 8: 80.25, 16: 82.95} us
    (4096, 14336, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama8b.down: {1: 41.84, 4: 41.96, 8: 42.1, 16: 43.15} us
    (10240, 8192, (16, 2, 1), {1: 2, 4: 1, 8: 1, 16: 1}),  # llama70b.qkv: {1: 59.97, 4: 60.11, 8: 59.93, 16: 62.09} us
    (8192, 8192, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama70b.o: {1: 47.24, 4: 47.58, 8: 47.99, 16: 48.94} us
    (57344, 8192, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama70b.gate_up: {1: 313.05, 4: 313.69, 8: 315.02, 16: 317.66} us
    (8192, 28672, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 2}),  # llama70b.down: {1: 163.07, 4: 163.53, 8: 164.43, 16: 168.98} us
    (1280, 8192, (16, 2, 2), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama70b-tp8.qkv: {1: 11.55, 4: 11.38, 8: 11.45, 16: 12.26} us
    (8192, 1024, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama70b-tp8.o: {1: 7.61, 4: 7.64, 8: 7.68, 16: 8.16} us
    (7168, 8192, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama70b-tp8.gate_up: {1: 41.95, 4: 41.97, 8: 42.39, 16: 43.32} us
    (8192, 3584, (16, 2, 1), {1: 2, 4: 2, 8: 2, 16: 1}),  # llama70b-tp8.down: {1: 21.7, 4: 21.91, 8: 22.12, 16: 23.19} us
]


NV_TABLE_FP8: list = [  # the fp8 family, W8A8 per-tensor timings; NVIDIA H100 80GB HBM3, 2026-11-24
    (6144, 4096, (8, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama8b.qkv: {1: 11.74, 4: 11.39, 8: 11.45, 16: 12.98} us
    (4096, 4096, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama8b.o: {1: 8.88, 4: 8.61, 8: 8.67, 16: 10.08} us
    (28672, 4096, (4, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama8b.gate_up: {1: 41.07, 4: 41.15, 8: 41.33, 16: 44.01} us
    (4096, 14336, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama8b.down: {1: 22.95, 4: 22.33, 8: 22.7, 16: 24.61} us
    (10240, 8192, (4, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama70b.qkv: {1: 32.4, 4: 32.16, 8: 32.3, 16: 33.38} us
    (8192, 8192, (8, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama70b.o: {1: 26.15, 4: 25.26, 8: 25.41, 16: 26.81} us
    (57344, 8192, (8, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama70b.gate_up: {1: 159.25, 4: 159.14, 8: 159.11, 16: 160.43} us
    (8192, 28672, (4, 2, 2), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama70b.down: {1: 82.85, 4: 83.12, 8: 83.02, 16: 84.77} us
    (1280, 8192, (16, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama70b-tp8.qkv: {1: 7.34, 4: 7.06, 8: 7.14, 16: 9.25} us
    (8192, 1024, (4, 2, 1), {1: 1, 4: 1, 8: 1, 16: 1}),  # llama70b-tp8.o: {1: 5.52, 4: 5.33, 8: 5.34, 16: 5.97} us
    (7168, 8192, (8, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama70b-tp8.gate_up: {1: 23.28, 4: 22.72, 8: 22.61, 16: 23.84} us
    (8192, 3584, (8, 2, 1), {1: 1, 4: 1, 8: 1, 16: 2}),  # llama70b-tp8.down: {1: 13.13, 4: 12.58, 8: 12.56, 16: 13.68} us
]


NV_TABLE_MODERATE: list = [  # N > 16: (M, K, (WK, U, SK), {N bucket: (MT, NT)}); NVIDIA H100 80GB HBM3, 2026-11-24
    (128, 2880, (8, 2, 8), {32: (1, 2), 64: (1, 2), 128: (2, 2)}),  # m128.k2880: {'32': 4.48, '64': 5.42, '128': 6.91} us
    (640, 2880, (8, 2, 2), {32: (1, 2), 64: (1, 2), 128: (2, 2)}),  # m640.k2880: {'32': 7.37, '64': 8.44, '128': 10.88} us
    (2880, 2880, (8, 2, 1), {32: (2, 4), 64: (2, 4), 128: (2, 4)}),  # m2880.k2880: {'32': 11.36, '64': 15.74, '128': 26.47} us
    (5120, 2880, (4, 2, 1), {32: (2, 4), 64: (2, 4), 128: (2, 4)}),  # m5120.k2880: {'32': 17.75, '64': 22.15, '128': 45.01} us
    (128, 4096, (8, 2, 8), {32: (1, 2), 64: (1, 2), 128: (2, 2)}),  # m128.k4096: {'32': 4.8, '64': 5.59, '128': 7.05} us
    (640, 4096, (8, 2, 2), {32: (1, 2), 64: (1, 2), 128: (2, 2)}),  # m640.k4096: {'32': 8.86, '64': 10.19, '128': 12.94} us
    (2880, 4096, (8, 2, 1), {32: (1, 4), 64: (2, 4), 128: (2, 4)}),  # m2880.k4096: {'32': 13.95, '64': 20.38, '128': 34.13} us
    (5120, 4096, (4, 2, 1), {32: (2, 4), 64: (2, 4), 128: (2, 4)}),  # m5120.k4096: {'32': 22.99, '64': 27.03, '128': 59.89} us
]


def load_table(family: str = "skinny") -> list:
    """The shipped table of a family ('skinny' or 'fp8'), or the one in JITGEMM_NV_TUNING's file."""
    path = os.environ.get("JITGEMM_NV_TUNING")
    key = "table" if family == "skinny" else f"table_{family}"
    shipped = {"skinny": NV_TABLE, "fp8": NV_TABLE_FP8, "moderate": NV_TABLE_MODERATE}[family]
    if not path:
        return shipped
    if (path, key) not in _loaded:
        data = json.load(open(path))
        if key not in data:  # a tune file of another family leaves this one as shipped
            _loaded[(path, key)] = shipped
            return shipped
        rows = data[key]
        _loaded[(path, key)] = [(r["m"], r["k"], tuple(r["k_order"]),
                                 {int(b): (tuple(t) if isinstance(t, list) else t) for b, t in r["mt"].items()})
                                for r in rows]
    return _loaded[(path, key)]


_loaded: dict = {}
