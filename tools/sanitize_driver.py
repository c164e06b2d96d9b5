#!/usr/bin/env python3
"""The program tools/sanitize.sh runs under compute-sanitizer (memcheck, racecheck, ...).

It launches, through the public API with the dispatcher's choice forced, every kernel instance the
NVIDIA dispatcher can choose:
  * 16-bit: every skinny instance of jitgemm.dispatch.all_instances("cuda"), reached as the
    dispatcher reaches it (N <= 16 through dispatch.nv_config);
  * moderate N: every jg_moderate_nv instance there (through dispatch.moderate_nv_config), N in
    {17, just past one token tile, 128}, M and K at tile and K-block edges, its own cluster size or
    3 and 16 workspace slices (empty slices included);
  * fp8: every config of the fp8 tuning table (and its pre-sm_90 SK=1 variant) x output dtype x
    mode (W8A8, W8A16, W8Q) x token tile (N <= 8, 9..16);
  * quantize_fp8: both dtypes x per-token/per-tensor x both e4m3 formats;
  * 4-bit weights: every jg_w4_nv instance (each format and group, both dtypes, token tiles, the configs
    kernels.w4.nv_heuristic picks), K at group edges with a partial last 128-k block, N over one and
    several token tiles (blockIdx.z), the weights as Q4Device.upload lays them out;
on tail shapes (M, N, K at and just past tile edges: M in {1, 15, 16, 17, 33}, N in {1, 8, 9, 16},
K in {16, 48, 528} for fp8 and {8, 24, 264} for 16-bit), padded row pitches, every bias and scale
form, and the smallest shapes. The kernel instance each call really fetched is checked against the
one forced (plans may be cached per shape). Buffers are allocated to the byte (a padded operand's last row ends
at its last element) so memcheck sees any read past an operand; outputs are poisoned and their row
padding is checked afterwards. Every result is also checked against float64 (tests/reference.py,
tests/fp8_reference.py). Prints one 'driver:' summary line; exits 1 if any result is wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402

import jitgemm  # noqa: E402
from jitgemm import dispatch  # noqa: E402
from jitgemm.arrays import View  # noqa: E402
from jitgemm.device_array import DeviceArray  # noqa: E402
from jitgemm.kernels import fp8, skinny  # noqa: E402
from jitgemm.runtime.backend import default_backend  # noqa: E402
from jitgemm.bench.runner import forced_w4_config  # noqa: E402
from jitgemm.dispatch import every_row  # noqa: E402

from fp8_reference import MAX, quantize, reference as fp8_reference  # noqa: E402
from reference import NP, q4_weight, reference as ref16, ulp, w4_reference  # noqa: E402

M_TAILS = [1, 15, 16, 17, 33]
K_TAILS = {"16bit": [8, 24, 264], "fp8": [16, 48, 528]}
SKINNY_NAME = re.compile(r"jg_skinny_nv<(jg_f16|jg_bf16), (\d+), (\d+), (\d+), (\d+), (\d+)>")
TAG_DTYPE = {"jg_f16": "float16", "jg_bf16": "bfloat16"}


LAUNCHED: list = []   # the kernel instances the API really fetched, in order


def _record(get_kernel):
    def wrapped(inst, *a, **k):
        LAUNCHED.append(inst)
        return get_kernel(inst, *a, **k)
    return wrapped


def install_recorder():
    from jitgemm import api, scaled, w4gemm
    for mod in (api, scaled, w4gemm):
        mod.get_kernel = _record(mod.get_kernel)


@contextlib.contextmanager
def fetches(cfg, want):
    """On exit, checks that the call inside fetched exactly the kernel instance `want` (forcing `cfg`)."""
    LAUNCHED.clear()
    yield
    if LAUNCHED != [want]:
        raise AssertionError(f"forcing {cfg} launched {[i.name for i in LAUNCHED]}, not {want.name}")


@contextlib.contextmanager
def forced(cfg, want):
    """The dispatcher returns `cfg` whatever the shape (jitgemm.bench.runner.forced_config), and the call
    inside must fetch `want`."""
    from jitgemm.bench.runner import forced_config
    with fetches(cfg, want), forced_config(cfg, "forced by tools/sanitize_driver.py"):
        yield


class Device:
    def __init__(self):
        self.b = default_backend()
        self.d = self.b.current_device()
        self.arch = self.b.device_info(self.d).arch
        self.keep = []

    def put(self, host: np.ndarray, dtype: str, pitch: int | None = None) -> View:
        """host on the device, rows `pitch` elements apart, allocated to the last element."""
        raw = host.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[host.dtype.itemsize])
        if host.ndim == 1:
            rows, cols, pitch = 1, host.size, host.size
        else:
            rows, cols = host.shape
            pitch = pitch or cols
        flat = np.zeros((rows - 1) * pitch + cols, raw.dtype)
        for r in range(rows):
            flat[r * pitch: r * pitch + cols] = raw.reshape(rows, cols)[r]
        owner = DeviceArray.from_numpy(self.b, self.d, flat.view(np.uint8), "uint8")
        self.keep.append(owner)
        strides = (pitch, 1) if host.ndim == 2 else (1,)
        return View(owner.ptr, host.shape, strides, dtype, dtype, self.d, "device", owner, vendor=self.b.name)

    def out(self, rows: int, cols: int, dtype: str, pitch: int):
        """A poisoned output (0xFF bytes: NaN in fp16/bf16) allocated to its last element."""
        n = (rows - 1) * pitch + cols
        owner = DeviceArray(self.b, self.d, (n,), dtype)
        self.b.memset(owner.ptr, 0xFF, owner.nbytes, 0, self.d)
        self.keep.append(owner)
        return owner, View(owner.ptr, (rows, cols), (pitch, 1), dtype, dtype, self.d, "device", owner,
                           vendor=self.b.name)

    def read_out(self, owner: DeviceArray, rows: int, cols: int, pitch: int) -> np.ndarray:
        self.b.synchronize(self.d)
        flat = owner.to_numpy().view(np.uint16)
        body = np.stack([flat[r * pitch: r * pitch + cols] for r in range(rows)])
        gaps = [flat[r * pitch + cols: (r + 1) * pitch] for r in range(rows - 1)]
        if gaps and not all((g == 0xFFFF).all() for g in gaps):
            raise AssertionError("the kernel wrote into the padding between output rows")
        return body

    def release(self):
        self.b.synchronize(self.d)
        self.keep.clear()


class Tally:
    def __init__(self):
        self.launches, self.instances, self.failures = {}, {}, []

    def ran(self, family: str, inst: str):
        self.launches[family] = self.launches.get(family, 0) + 1
        self.instances.setdefault(family, set()).add(inst)

    def fail(self, what: str, err: BaseException):
        self.failures.append(f"{what}: {type(err).__name__}: {err}")
        print(f"FAIL {what}\n{traceback.format_exc()}", file=sys.stderr, flush=True)


def close_enough(got, ref, mag, k, dtype) -> None:
    got = np.asarray(got).astype(np.float64)
    if np.isnan(got).any():
        raise AssertionError(f"NaN (an unwritten output?) at {np.argwhere(np.isnan(got))[:4].tolist()}")
    tol = ulp(ref, dtype) + k * 2.0 ** -23 * mag
    err = np.abs(got - ref)
    if (err > tol).any():
        raise AssertionError(f"{int((err > tol).sum())} of {err.size} out of bound, max err {err.max():.3g}")


def gemm_16bit(dev: Device, tally: Tally, rng, family: str, inst, cfg, dtype: str, n: int, m: int, k: int,
               padded: bool, bias_kind: int, what: str) -> None:
    """One forced 16-bit gemm on buffers allocated to the byte (rows padded when asked), bias none /
    [M] / [N, M], the result checked against float64; a failure is tallied, never raised."""
    try:
        x = rng.standard_normal((n, k)).astype(NP[dtype])
        w = (rng.standard_normal((m, k)) * (2.0 / k) ** 0.5).astype(NP[dtype])
        bias = None if bias_kind == 0 else rng.standard_normal((m,) if bias_kind == 1 else (n, m)).astype(NP[dtype])
        xv = dev.put(x, dtype, k + (24 if padded else 0))
        wv = dev.put(w, dtype, k + (8 if padded else 0))
        bv = None if bias is None else dev.put(bias, dtype, m + (3 if padded else 0))
        ldo = m + (5 if padded else 0)
        owner, ov = dev.out(n, m, dtype, ldo)
        with forced(cfg, inst):
            jitgemm.gemm(xv, wv, bv, out=ov)
        tally.ran(family, inst.name)
        got = dev.read_out(owner, n, m, ldo).view(NP[dtype])
        mag = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
        close_enough(got, ref16(x, w, bias), mag, k, dtype)
    except Exception as e:  # noqa: BLE001 - keep going: the sanitizer should see everything
        tally.fail(what, e)
    finally:
        dev.release()


def launch_plans(nt: int, MT: int, WK: int, U: int, SK: int) -> list:
    """(N, config to force) pairs that reach a skinny instance the way the dispatcher uses it:
    N <= 16 through nv_config (NT 1: N 1..8, NT 2: N 9..16)."""
    return [(n, skinny.NvConfig(MT, WK, U, SK)) for n in ((1, 8) if nt == 1 else (9, 16))]


MODERATE_NAME = re.compile(r"jg_moderate_nv<(jg_f16|jg_bf16), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)>")


def moderate_plans(bm, bn, wm, wn, st, ks, red, cs) -> list:
    """(N, M, K, config) launches for one moderate instance: token, row and K-block edges."""
    from jitgemm.kernels import moderate
    tile = moderate.NvTile(bm, bn, wm, wn, st, ks)
    slices = [cs] if red == moderate.RED_CLUSTER else [1] if red == moderate.RED_NONE else [3, 16]
    past = bn + 1 if bn < moderate.MAX_N else bn - 1  # N past one token tile (or a tail in the only one)
    shapes = [(17, 1, 8), (past, bm + 1, 64 * 3 + 8), (128, 2 * bm - 1, 264), (33, bm, 64 * 16),
              (1, bm - 1, 72)]  # one token (N <= 16 runs this family where the table says so)
    return [(n, m, k, moderate.ModerateConfig(tile, s, red)) for s in slices for n, m, k in shapes]


def run_moderate(dev: Device, tally: Tally, rng):
    for inst in dispatch.all_instances("cuda"):
        mt = MODERATE_NAME.fullmatch(inst.name)
        if mt is None:
            continue
        dtype = TAG_DTYPE[mt.group(1)]
        for i, (n, m, k, cfg) in enumerate(moderate_plans(*(int(v) for v in mt.groups()[1:]))):
            padded, bias_kind = bool(i % 2), i % 3
            what = f"{inst.name} S={cfg.S} N={n} M={m} K={k} padded={padded} bias={bias_kind}"
            gemm_16bit(dev, tally, rng, "moderate", inst, cfg, dtype, n, m, k, padded, bias_kind, what)


# ---- 16-bit ---------------------------------------------------------------------------------------------------------
def run_16bit(dev: Device, tally: Tally, rng, launches_per_instance: int):
    insts = [i for i in dispatch.all_instances("cuda") if not MODERATE_NAME.fullmatch(i.name)]
    for j, inst in enumerate(insts):
        mt = SKINNY_NAME.fullmatch(inst.name)
        if mt is None:
            raise SystemExit(f"unexpected instance name {inst.name!r}: update tools/sanitize_driver.py")
        dtype = TAG_DTYPE[mt.group(1)]
        plans = launch_plans(*(int(v) for v in mt.groups()[1:]))
        if not plans or any(cfg.instance(dtype, n) != inst for n, cfg in plans):
            raise SystemExit(f"cannot reach {inst.name} with {plans}: update tools/sanitize_driver.py")
        for i in range(max(launches_per_instance, len(plans))):
            n, cfg = plans[i % len(plans)]
            if i == 0:   # the smallest shape this instance takes
                m, k, padded, bias_kind = 1, K_TAILS["16bit"][0], False, 0
            else:
                m = M_TAILS[(i + j) % len(M_TAILS)]
                k = K_TAILS["16bit"][(i + 2 * j) % 3]
                padded, bias_kind = bool((i + j) % 2), (i + j) % 3
            what = f"{inst.name} N={n} M={m} K={k} padded={padded} bias={bias_kind}"
            gemm_16bit(dev, tally, rng, "16bit", inst, cfg, dtype, n, m, k, padded, bias_kind, what)


# ---- fp8 ------------------------------------------------------------------------------------------------------------
def fp8_configs() -> list:
    cfgs = {skinny.NvConfig(mt, *r[2]) for r in every_row("fp8") for mt in r[3].values()}
    if not cfgs:
        cfgs = {skinny.NvConfig(2 if m >= 8192 else 1, 16, 2, 1) for m in (1, 8192)}   # the heuristic
    cfgs |= {skinny.NvConfig(c.MT, c.WK, c.U, 1) for c in cfgs}   # what sm_89 gets
    return sorted(cfgs, key=str)


def run_fp8(dev: Device, tally: Tally, rng, launches_per_instance: int):
    fmt = fp8.native_format("cuda", dev.arch)
    if fmt is None:
        print(f"driver: {dev.arch} has no fp8: fp8 instances skipped", flush=True)
        return
    j = 0
    for cfg in fp8_configs():
        for out_dtype in ("bfloat16", "float16"):
            for mode in (fp8.W8A8, fp8.W8A16, fp8.W8Q):
                for nt in (1, 2):
                    ns = [1, 8] if nt == 1 else [9, 16]
                    inst = fp8.nv_instance(cfg, out_dtype, mode, ns[0])
                    j += 1
                    for i in range(launches_per_instance):
                        if i == 0:
                            m, k, n, padded, form = 1, 16, ns[0], False, 0
                        else:
                            m = M_TAILS[(i + j) % len(M_TAILS)]
                            k = K_TAILS["fp8"][(i + 2 * j) % 3]
                            n, padded, form = ns[i % len(ns)], bool((i + j) % 2), (i + j) % 3
                        what = f"{inst.name} N={n} M={m} K={k} padded={padded} form={form}"
                        try:
                            one_fp8(dev, tally, rng, cfg, inst, fmt, out_dtype, mode, n, m, k, padded, form)
                        except Exception as e:  # noqa: BLE001
                            tally.fail(what, e)
                        finally:
                            dev.release()


def one_fp8(dev, tally, rng, cfg, inst, fmt, out_dtype, mode, n, m, k, padded, form):
    """form 0: scalar scales, no bias; 1: per-token x per-channel scale vectors, bias [M];
    2: one-element scale arrays on the device, bias [N, M]."""
    w8 = quantize(rng.standard_normal((m, k)), 0.05, fmt)
    wv = dev.put(w8.view(np.uint8), fmt, k + (256 if padded else 0))
    if mode == fp8.W8A8:
        x = quantize(rng.standard_normal((n, k)), 0.05, fmt)
        xv = dev.put(x.view(np.uint8), fmt, k + (16 if padded else 0))
    else:
        x = rng.standard_normal((n, k)).astype(NP[out_dtype])
        xv = dev.put(x, out_dtype, k + (8 if padded else 0))
    if form == 1:
        sx = rng.uniform(0.01, 0.1, n).astype(np.float32)
        sw = rng.uniform(0.01, 0.1, m).astype(np.float32)
        sx_arg, sw_arg = dev.put(sx, "float32"), dev.put(sw, "float32")
        bias = rng.standard_normal(m).astype(NP[out_dtype])
    elif form == 2:
        sx, sw = np.float32(0.05), np.float32(0.07)
        sx_arg, sw_arg = dev.put(np.array([sx]), "float32"), dev.put(np.array([sw]), "float32")
        bias = rng.standard_normal((n, m)).astype(NP[out_dtype])
    else:
        sx, sw, bias = np.float32(0.05), np.float32(0.07), None
        sx_arg, sw_arg = float(sx), float(sw)
    if mode == fp8.W8A16:
        sx, sx_arg = np.float32(1.0), None
    bv = None if bias is None else dev.put(bias, out_dtype, m + (3 if padded and bias.ndim == 2 else 0))
    ldo = m + (5 if padded else 0)
    owner, ov = dev.out(n, m, out_dtype, ldo)
    with forced(cfg, inst):
        jitgemm.scaled_gemm(xv, wv, sx_arg, sw_arg, bv, out_dtype=out_dtype, out=ov)
    tally.ran("fp8", inst.name)
    got = dev.read_out(owner, n, m, ldo).view(NP[out_dtype])
    xq = quantize(x, sx, fmt) if mode == fp8.W8Q else x
    sxr = np.asarray(sx, np.float64) if np.ndim(sx) else float(sx)
    ref, mag = fp8_reference(xq, w8, sxr, np.asarray(sw, np.float64) if np.ndim(sw) else float(sw), bias)
    close_enough(got, ref, mag, k, out_dtype)


# ---- quantize_fp8 -----------------------------------------------------------------------------------------------------
def run_quantize(dev: Device, tally: Tally, rng):
    shapes = [(1, 1, 0), (1, 16, 0), (3, 1000, 3), (17, 1025, 0), (5, 4097, 9)]   # (N, K, row padding)
    for dtype in ("float16", "bfloat16"):
        for per_token in (True, False):
            for fmt in fp8.FORMATS:
                inst = fp8.quant_instance(dtype, per_token, fmt)
                for n, k, pad in shapes:
                    what = f"{inst.name} N={n} K={k} pad={pad}"
                    try:
                        x = (rng.standard_normal((n, k)) * 3).astype(NP[dtype])
                        xv = dev.put(x, dtype, k + pad)
                        LAUNCHED.clear()
                        q, s = jitgemm.quantize_fp8(xv, per_token, fmt)
                        dev.b.synchronize(dev.d)
                        if LAUNCHED != [inst]:
                            raise AssertionError(f"launched {[i.name for i in LAUNCHED]}, not {inst.name}")
                        tally.ran("quantize", inst.name)
                        q, s = q.to_numpy(), s.to_numpy().astype(np.float32)
                        x32 = x.astype(np.float32)
                        amax = np.abs(x32).max(axis=1) if per_token else np.abs(x32).max().reshape(1)
                        want_s = np.where(amax > 0, amax / np.float32(MAX[fmt]), np.float32(1)).astype(np.float32)
                        if not np.array_equal(s, want_s):
                            raise AssertionError(f"scales {s[:4]} != {want_s[:4]}")
                        want = quantize(x32, s if per_token else float(s[0]), fmt)
                        if not np.array_equal(q.view(np.uint8), want.view(np.uint8)):
                            raise AssertionError(f"{int((q.view(np.uint8) != want.view(np.uint8)).sum())} bytes differ")
                    except Exception as e:  # noqa: BLE001
                        tally.fail(what, e)
                    finally:
                        dev.release()


# ---- 4-bit weights -----------------------------------------------------------------------------------------------
W4_NAME = re.compile(r"jg_w4_nv<(jg_f16|jg_bf16), (\d), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)(?:, (\d+))?>")
W4_K = {32: [32, 160, 288], 64: [64, 192, 320], 128: [128, 384, 640]}   # group edges, partial 128-k blocks


@contextlib.contextmanager
def forced_w4(cfg, want):
    """`cfg` for every shape (no cached entry survives), and the call inside must fetch `want`."""
    from jitgemm import pipeline
    pipeline.clear()
    try:
        with forced_w4_config(cfg, "the sanitizer driver"), fetches(cfg, want):
            yield
    finally:
        pipeline.clear()


def run_w4(dev: Device, tally: Tally, rng, launches_per_instance: int):
    from jitgemm.kernels import w4
    from jitgemm.w4gemm import Q4Device
    fmt_of = {v: k for k, v in w4.FMT_ID.items()} | {w4.MXFP4_NORMAL_ID: "mxfp4"}
    for j, inst in enumerate(dispatch.all_w4_instances("cuda")):
        mt = W4_NAME.fullmatch(inst.name)
        if mt is None:
            raise SystemExit(f"unexpected instance name {inst.name!r}: update tools/sanitize_driver.py")
        dtype, fmt, group = TAG_DTYPE[mt.group(1)], fmt_of[int(mt.group(2))], int(mt.group(3))
        nt = int(mt.group(4))  # 1, 2: what N <= 16 takes (NvConfig.NT 0); 4, 8: set (kernels.w4.token_tiling)
        mt_, wk, u, sk, mb = mt.groups()[4:]  # mb: a table row's register bound (absent: 1)
        cfg = skinny.NvConfig(int(mt_), int(wk), int(u), int(sk), NT=nt if nt > 2 else 0, MB=int(mb or 1))
        # the second and later launches: several token tiles (40: three of 16, 70: three of 32, 100: two of 64)
        ns = {1: [1, 8], 2: [9, 40, 16], 4: [17, 70, 32], 8: [33, 100, 64]}[nt]
        for i in range(launches_per_instance):
            if i == 0:   # the smallest shape this instance takes
                n, m, k, padded, bias_kind = ns[0], 1, group, False, 0
            else:
                n, m = ns[i % len(ns)], M_TAILS[(i + j) % len(M_TAILS)]
                k = W4_K[group][(i + 2 * j) % 3]
                padded, bias_kind = bool((i + j) % 2), (i + j) % 3
            what = f"{inst.name} N={n} M={m} K={k} padded={padded} bias={bias_kind}"
            try:
                w = q4_weight(fmt, group, m, k, seed=i + 100 * j)
                if int(mt.group(2)) == w4.FMT_ID["mxfp4"]:
                    w.scales[-1, 0] = 0  # a 2^-127 scale: the weight takes the exact decode (else the normal one)
                dw = Q4Device.upload(w)
                dev.keep.append(dw)
                x = (rng.standard_normal((n, k)) * 0.5).astype(NP[dtype])
                xv = dev.put(x, dtype, k + (24 if padded else 0))
                bias = None if bias_kind == 0 else rng.standard_normal((m,) if bias_kind == 1 else (n, m)).astype(NP[dtype])
                bv = None if bias is None else dev.put(bias, dtype, m + (3 if padded and bias.ndim == 2 else 0))
                ldo = m + (5 if padded else 0)
                owner, ov = dev.out(n, m, dtype, ldo)
                with forced_w4(cfg, inst):
                    jitgemm.w4_gemm(xv, dw, bv, out=ov)
                tally.ran("w4", inst.name)
                got = dev.read_out(owner, n, m, ldo).view(NP[dtype])
                ref, mag = w4_reference(x, w, bias)
                close_enough(got, ref, mag, k, dtype)
            except Exception as e:  # noqa: BLE001
                tally.fail(what, e)
            finally:
                dev.release()


def run_w4_experts(dev: Device, tally: Tally, rng, launches_per_format: int):
    """w4_experts_gemm (the experts wrappers, jitgemm/w4experts.py): each format and dtype on tail shapes, with a
    token shared by every group (group stride 0) or padded groups, a per-expert bias or none, and an expert id out
    of range (its group must come back NaN, the others right): the wrapper's offsets, not every config (its body is
    run_w4's)."""
    from jitgemm.w4experts import Q4Experts
    e_count = 3
    for j, (fmt, group) in enumerate((("mxfp4", 32), ("q4_sym", 128), ("q4_min", 32), ("q4_zp", 64))):
        for dtype in ("bfloat16", "float16"):
            for i in range(launches_per_format):
                n = (1, 9, 40, 3)[i % 4]
                m, k = M_TAILS[(i + j) % len(M_TAILS)], W4_K[group][(i + j) % 3]
                shared, with_bias = n == 1 and i % 2 == 0, bool((i + j) % 2)
                ids = np.array([2, -1, 0, 2], np.int32)
                g = len(ids)
                what = f"experts {fmt} G{group} {dtype} N={n} M={m} K={k} shared={shared} bias={with_bias}"
                try:
                    ws = [q4_weight(fmt, group, m, k, seed=100 * j + 10 * i + e) for e in range(e_count)]
                    st = Q4Experts.upload(ws)
                    dev.keep.append(st)
                    x = (rng.standard_normal((1 if shared else g, n, k)) * 0.5).astype(NP[dtype])
                    pitch = k + 8
                    flat = dev.put(x.reshape(-1, k), dtype, pitch)
                    gs = 0 if shared else n * pitch
                    xv = View(flat.ptr, (g, n, k), (gs, pitch, 1), dtype, dtype, dev.d, "device", flat.obj,
                              vendor=dev.b.name)
                    bias = rng.standard_normal((e_count, m)).astype(NP[dtype]) if with_bias else None
                    bv = None if bias is None else dev.put(bias, dtype)
                    idv = dev.put(ids, "int32")
                    owner, ov2 = dev.out(g * n, m, dtype, m + 5)
                    ov = View(ov2.ptr, (g, n, m), (n * (m + 5), m + 5, 1), dtype, dtype, dev.d, "device", owner,
                              vendor=dev.b.name)
                    jitgemm.w4_experts_gemm(xv, idv, st, bv, out=ov)
                    tally.ran("w4-experts", f"{fmt} G{group} {dtype}")
                    got = dev.read_out(owner, g * n, m, m + 5).view(NP[dtype]).reshape(g, n, m)
                    for grp, e in enumerate(ids):
                        if e < 0:
                            if not np.isnan(got[grp].astype(np.float32)).all():
                                raise AssertionError(f"group {grp} (expert id {e}) is not all NaN")
                            continue
                        ref, mag = w4_reference(x[0 if shared else grp], ws[e], None if bias is None else bias[e])
                        close_enough(got[grp], ref, mag, k, dtype)
                except Exception as exc:  # noqa: BLE001
                    tally.fail(what, exc)
                finally:
                    dev.release()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["16bit", "moderate", "fp8", "quantize", "w4", "w4-experts"], action="append",
                    help="run only these families (repeatable; default: all)")
    ap.add_argument("--launches", type=int, default=4, help="launches per kernel instance (default 4)")
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("JITGEMM_CACHE_DIR", tempfile.mkdtemp(prefix="jitgemm-sanitize-"))  # read at compile time
    only = set(args.only or ["16bit", "moderate", "fp8", "quantize", "w4", "w4-experts"])
    dev = Device()
    if dev.b.name != "cuda":
        print("driver: NVIDIA only", flush=True)
        return 2
    rng = np.random.default_rng(args.seed)
    install_recorder()
    tally = Tally()
    if "16bit" in only:
        run_16bit(dev, tally, rng, args.launches)
    if "moderate" in only:
        run_moderate(dev, tally, rng)
    if "fp8" in only:
        run_fp8(dev, tally, rng, max(2, args.launches - 2))
    if "quantize" in only:
        run_quantize(dev, tally, rng)
    if "w4" in only:
        run_w4(dev, tally, rng, args.launches)
    if "w4-experts" in only:
        run_w4_experts(dev, tally, rng, args.launches)
    parts = [f"{fam} {tally.launches[fam]} launches / {len(tally.instances[fam])} instances" for fam in tally.launches]
    total = sum(tally.launches.values())
    verdict = "all results correct" if not tally.failures else f"{len(tally.failures)} WRONG"
    print(f"driver: {dev.arch}, {total} launches ({'; '.join(parts)}), {verdict}", flush=True)
    for f in tally.failures[:20]:
        print(f"  {f}", flush=True)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
