"""The call pipeline on the CPU, through a recording stand-in backend: a repeated call is served by its
cached entry (no re-planning), and a call that differs from a cached one in anything a rule looks at
(a stride, a pointer's alignment, a dtype, a device, the bias form, a scale's value) gets exactly the
error a cold call gets; the settings snapshot and reload(); outputs keep the input's kind."""
import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from jitgemm import api, config, pipeline, scaled
from jitgemm.arrays import View
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend
from jitgemm.runtime.types import DeviceInfo

ROOT = Path(__file__).resolve().parent.parent


def null_devices():
    return [DeviceInfo(d, "fake H100", "sm_90a", 132, 32, 227 << 10, 50 << 20, 80 << 30) for d in (0, 1)]


@pytest.fixture
def fake():
    """The whole call path on a recording stand-in backend (runtime.null): no GPU, no patched internals."""
    with installed(NullBackend(devices=null_devices())) as be:
        yield be


def dv(shape, ptr=0x100000, strides=None, dtype="bfloat16", device=0, readonly=False):
    """A device View (fake pointer): what CuPy/torch/DeviceArray operands become."""
    if strides is None:
        strides = (shape[1], 1) if len(shape) == 2 else (1,)
    return View(ptr, tuple(shape), tuple(strides), dtype, dtype, device, "device", None, vendor="cuda",
                readonly=readonly)


class Dev:
    """CuPy's Device as a __cuda_array_interface__ wrapper exposes it: an `id`."""

    def __init__(self, i):
        self.id = i


# both 16-bit types as uint16 bits: only the dtype attribute tells them apart, so the hot path's signature
# must hold it
_TYPESTR = {"float16": "<u2", "bfloat16": "<u2", "float32": "<f4", "float8_e4m3fn": "|u1"}


class CaiArray:
    """What the CuPy examples pass for bf16 (CuPy has no bfloat16): the interface of uint16 bits, a numpy
    `dtype` attribute that names the real type, and CuPy's `device`. `device=None`: no device attribute
    (the driver names the pointer's device)."""

    def __init__(self, ptr, shape, strides, dtype, device, stream=None, readonly=False, mask=None):
        import ml_dtypes
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype if dtype in ("float16", "float32") else getattr(ml_dtypes, dtype))
        if device is not None:
            self.device = Dev(device)
        self._cai = {"shape": self.shape, "strides": tuple(st * self.dtype.itemsize for st in strides),
                     "typestr": _TYPESTR[dtype], "data": (ptr, readonly), "version": 3}
        if mask is not None:
            self._cai["mask"] = mask
        if stream is not None:
            self._cai["stream"] = stream
        self._spec = (ptr, shape, strides, dtype, device)

    @property
    def __cuda_array_interface__(self):
        return self._cai

    @property
    def T(self):
        ptr, shape, strides, dtype, device = self._spec
        return CaiArray(ptr, shape[::-1], strides[::-1], dtype, device)


def as_cai(v):
    """A test View as a CaiArray on the same (fake) memory."""
    return v if v is None or not isinstance(v, View) else CaiArray(v.ptr, v.shape, v.strides, v.dtype, v.device,
                                                                   readonly=v.readonly)


def cold_error(fn):
    """The error a call raises with no cached entry."""
    pipeline.clear()
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    return type(e.value), str(e.value)


def warm_error(fn, warm):
    """The error the same call raises right after a valid call of a near signature was cached."""
    pipeline.clear()
    warm()
    assert pipeline._ENTRIES, "the valid call was not cached"
    with pytest.raises((ValueError, TypeError)) as e:
        fn()
    return type(e.value), str(e.value)


N, M, K = 4, 64, 128


def _gemm_variants():
    """(name, valid call, the same call differing in one thing a rule looks at)."""
    x, w, o, b = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000), dv((M,), 0x90000)
    ok = lambda **kw: {"x": x, "w": w, "out": o, **kw}  # noqa: E731
    return [
        ("x misaligned", ok(), ok(x=dv((N, K), 0x10008))),
        ("w misaligned", ok(), ok(w=dv((M, K), 0x40002))),
        ("out misaligned", ok(), ok(out=dv((N, M), 0x80001))),
        ("out read-only", ok(), ok(out=dv((N, M), 0x80000, readonly=True))),
        ("out over x", ok(), ok(out=dv((N, M), 0x10000 + 2 * K))),  # from x's second row on
        ("out over w", ok(), ok(out=dv((N, M), 0x40000 + 2 * M * K - 16))),  # its first bytes on w's last
        ("bias misaligned", ok(bias=b), ok(bias=dv((M,), 0x90001))),
        ("x pitch", ok(), ok(x=dv((N, K), 0x10000, strides=(K + 4, 1)))),
        ("w inner stride", ok(), ok(w=dv((M, K), 0x40000, strides=(1, M)))),
        ("x dtype", ok(), ok(x=dv((N, K), 0x10000, dtype="float16"))),
        ("out dtype", ok(), ok(out=dv((N, M), 0x80000, dtype="float16"))),
        ("device", ok(), ok(w=dv((M, K), 0x40000, device=1))),
        ("bias form", ok(bias=b), ok(bias=dv((N + 1, M), 0x90000))),
        ("out shape", ok(), ok(out=dv((N, M + 1), 0x80000))),
        ("K mismatch", ok(), ok(w=dv((M, K - 8), 0x40000))),
    ]


# what each entry can differ in: a Linear's weight and bias are fixed at construction, matmul has no bias
# and takes b = w.T (a w with a non-unit inner stride is not its weight)
_NOT_FOR = {"linear": {"w misaligned", "w inner stride", "device", "K mismatch", "bias misaligned"},
            "matmul": {"bias misaligned", "bias form", "w inner stride"}, "gemm": set()}
_CASES = [(entry, *v) for entry in ("gemm", "matmul", "linear") for v in _gemm_variants() if v[0] not in _NOT_FOR[entry]]


@pytest.mark.parametrize("operands", ["View", "cai"])
@pytest.mark.parametrize("entry,name,valid,bad", _CASES, ids=[f"{c[0]}-{c[1]}" for c in _CASES])
def test_cached_signature_never_lets_an_invalid_call_through(fake, entry, name, valid, bad, operands):
    """Also for __cuda_array_interface__ objects that name their device (the CuPy bf16 wrapper): they
    have a hot path of their own, whose signature must hold everything the cold path reads."""
    if operands == "cai":
        valid, bad = ({k: as_cai(v) for k, v in kw.items()} for kw in (valid, bad))

    def run(kw):
        if entry == "gemm":
            return api.gemm(kw["x"], kw["w"], kw.get("bias"), out=kw["out"])
        if entry == "matmul":
            return api.matmul(kw["x"], kw["w"].T, out=kw["out"])
        return api.Linear(kw["w"], kw.get("bias"))(kw["x"], out=kw["out"])

    cold = cold_error(lambda: run(bad))
    for _ in range(2):  # also with the invalid signature's own (absent) entry looked up a second time
        assert warm_error(lambda: run(bad), lambda: run(valid)) == cold
    run(valid)  # and the valid call still runs after the refused one


def test_repeated_call_is_served_from_the_cache(fake):
    x, w, o = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000)
    api.gemm(x, w, out=o)
    asked = fake.calls["device_info"]
    assert asked, "the cold path plans for the device's arch"
    x2, o2 = dv((N, K), 0x20000), dv((N, M), 0xA0000)
    api.gemm(x2, w, out=o2)
    assert fake.calls["device_info"] == asked, "a known signature was planned again"
    words = fake.launches[-1][3]
    assert (words[0], words[2], words[4]) == (0xA0000, 0x20000, 0x40000), "the new pointers were not written"
    assert fake.launches[-2][3][1:] == words[1:] or words[0] != fake.launches[-2][3][0]


def test_cai_operands_naming_their_device_are_served_from_the_cache(fake):
    """The CuPy bf16 wrapper of the examples: planned once, then one launch a call with its new pointers;
    without a device attribute every call takes the cold path (the driver names the pointer's device)."""
    mk = lambda shape, ptr, dev=0: CaiArray(ptr, shape, (shape[1], 1), "bfloat16", dev)  # noqa: E731
    w = mk((M, K), 0x40000)
    api.gemm(mk((N, K), 0x10000), w, out=mk((N, M), 0x80000))
    asked = fake.calls["device_info"]
    api.gemm(mk((N, K), 0x20000), w, out=mk((N, M), 0xA0000))
    assert fake.calls["device_info"] == asked, "a known signature was planned again"
    words = fake.launches[-1][3]
    assert (words[0], words[2], words[4]) == (0xA0000, 0x20000, 0x40000)
    assert fake.launches[-1][2] == 0
    # the same memory read as float16 (another dtype attribute) is another signature, planned anew
    api.gemm(CaiArray(0x20000, (N, K), (K, 1), "float16", 0), CaiArray(0x40000, (M, K), (K, 1), "float16", 0),
             out=CaiArray(0xA0000, (N, M), (M, 1), "float16", 0))
    assert fake.calls["device_info"] > asked
    # no device attribute: the driver is asked every call, and nothing is cached for it
    pipeline.clear()
    for _ in range(2):
        before = fake.calls["device_of_pointer"]
        api.gemm(mk((N, K), 0x10000, None), mk((M, K), 0x40000, None), out=mk((N, M), 0x80000, None))
        assert fake.calls["device_of_pointer"] == before + 3
    assert not pipeline._ENTRIES


def test_stream_none_with_interface_operands_is_the_stream_x_names(fake):
    """stream=None and x an interface object: the launch goes on the stream its interface (v3) names,
    read from each call's x (a cached entry must not keep the first call's), 0 where it names none;
    an explicit stream wins (and waits for x's, test_operands_naming_other_streams_are_waited_for)."""
    def mk(shape, ptr, stream=None):
        return CaiArray(ptr, shape, (shape[1], 1), "bfloat16", 0, stream)
    w = mk((M, K), 0x40000)
    layer = api.Linear(w)
    for call in (lambda x, o, **kw: api.gemm(x, w, out=o, **kw), lambda x, o, **kw: layer(x, out=o, **kw)):
        pipeline.clear()
        for named in (0x5000, 0x6000, 1, 2, None):  # the first call plans; the others are cached launches
            call(mk((N, K), 0x10000, named), mk((N, M), 0x80000))
            assert fake.launches[-1][1] == (named or 0)
        call(mk((N, K), 0x10000, 0x5000), mk((N, M), 0x80000), stream=0x7000)
        assert fake.launches[-1][1] == 0x7000
    assert len(pipeline._ENTRIES) == 5  # the named stream is in the signature: one entry for each


def test_operands_naming_other_streams_are_waited_for(fake):
    """__cuda_array_interface__ v3: a consumer must order its work after the stream an operand names. The
    launch stream waits (an event, no host wait) for every other stream w, bias or out name, and for x's
    when an explicit stream is given; on the cold call and on the cached one alike; none where all name the
    launch stream or none; the legacy stream named 1 is jitgemm's 0. Inside a capture the wait cannot be
    taken: refused with what to do, before the launch."""
    def mk(shape, ptr, stream=None):
        return CaiArray(ptr, shape, (shape[1], 1), "bfloat16", 0, stream)
    w_on = {st: mk((M, K), 0x40000, st) for st in (0x5000, 0x6000, 1, None)}
    for _ in range(2):  # cold, then cached
        del fake.waits[:]
        api.gemm(mk((N, K), 0x10000, 0x5000), w_on[0x6000], out=mk((N, M), 0x80000))
        assert fake.launches[-1][1] == 0x5000 and fake.waits == [(0x5000, 0x6000, 0)]
        del fake.waits[:]
        api.gemm(mk((N, K), 0x10000, 0x5000), w_on[0x5000], out=mk((N, M), 0x80000, 0x5000))
        api.gemm(mk((N, K), 0x10000), w_on[None], out=mk((N, M), 0x80000))
        api.gemm(mk((N, K), 0x10000, 1), w_on[1])  # the legacy stream, as the interface names it
        assert fake.launches[-1][1] == 1
        api.gemm(mk((N, K), 0x10000), w_on[1], stream=0)  # and as jitgemm names it: the same stream
        assert fake.waits == [] and fake.launches[-1][1] == 0
        api.gemm(mk((N, K), 0x10000, 0x5000), w_on[0x6000], out=mk((N, M), 0x80000, 0x6000), stream=0x7000)
        assert fake.launches[-1][1] == 0x7000 and fake.waits == [(0x7000, 0x5000, 0), (0x7000, 0x6000, 0)]
    # jitgemm's own outputs name the stream they were made on
    y = api.gemm(mk((N, K), 0x10000, 0x5000), w_on[0x5000])
    assert y.stream == 0x5000
    del fake.waits[:]
    api.gemm(y, mk((M, M), 0x40000, 0x6000), out=mk((N, M), 0x90000))
    assert fake.launches[-1][1] == 0x5000 and fake.waits == [(0x5000, 0x6000, 0)]
    launches = len(fake.launches)
    fake.stream_capturing = lambda stream, device: True
    with pytest.raises(ValueError, match=r"names stream 0x6000, and the call is captured on stream 0x5000"):
        api.gemm(mk((N, K), 0x10000, 0x5000), w_on[0x6000], out=mk((N, M), 0x80000))
    assert len(fake.launches) == launches


def test_settings_snapshot_and_reload(fake, monkeypatch):
    """A changed environment takes effect at reload(), and plans made before it are never reused."""
    x, w, o = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000)
    api.gemm(x, w, out=o)
    assert config.settings().pdl is None  # unset: the dispatcher's measured default
    monkeypatch.setenv("JITGEMM_PDL", "1")
    assert config.settings().pdl is None, "the environment is read once, not per call"
    gen = config.settings().generation
    config.reload()
    assert config.settings().pdl is True and config.settings().generation > gen
    asked = fake.calls["device_info"]
    api.gemm(x, w, out=o)
    assert fake.calls["device_info"] > asked, "a plan made under the old settings was reused after reload()"
    assert fake.launches[-1][0] == fake.launches[0][0]


def test_scaled_gemm_scale_values_checked_every_call(fake):
    x8 = dv((N, K), 0x10000, dtype="float8_e4m3fn")
    w8 = dv((M, K), 0x40000, dtype="float8_e4m3fn")
    o = dv((N, M), 0x80000)
    for bad in (-1.0, math.nan, math.inf):
        cold = cold_error(lambda: scaled.scaled_gemm(x8, w8, bad, 0.5, out=o))
        assert cold[0] is ValueError and re.search("scale_x must be a finite number >= 0", cold[1])
        assert warm_error(lambda: scaled.scaled_gemm(x8, w8, bad, 0.5, out=o),
                          lambda: scaled.scaled_gemm(x8, w8, 0.25, 0.5, out=o)) == cold
    pipeline.clear()
    scaled.scaled_gemm(x8, w8, 0.25, 0.5, out=o)
    scaled.scaled_gemm(x8, w8, 0.125, 0.5, out=o)
    f32 = np.frombuffer(np.array(fake.launches[-1][3], np.uint64).tobytes(), np.float32)
    assert f32[2 * 8] == np.float32(0.125), "the new scale value was not written into the launch"


@pytest.mark.parametrize("mode", ["w8a16", "static", "w8a8-vectors"])
def test_scaled_gemm_modes_run_cold_and_warm(fake, mode):
    """Every operand form of scaled_gemm (absent, number, device vector) packs on the cold path and the
    cached one, and both launches carry the same argument words."""
    w8 = dv((M, K), 0x40000, dtype="float8_e4m3fn")
    o = dv((N, M), 0x80000)
    if mode == "w8a8-vectors":
        args = (dv((N, K), 0x10000, dtype="float8_e4m3fn"), w8, dv((N,), 0x9000, dtype="float32"),
                dv((M,), 0xA000, dtype="float32"))
    else:
        args = (dv((N, K), 0x10000), w8, None if mode == "w8a16" else 0.5, 0.25)
    pipeline.clear()
    scaled.scaled_gemm(*args, out=o)
    scaled.scaled_gemm(*args, out=o)
    assert len(fake.launches) == 2 and fake.launches[0][3] == fake.launches[1][3]


def test_prepared_and_prepared_scaled_are_one_class(fake):
    x, w, o = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000)
    p = api.prepare(x, w, out=o)
    p.launch(7)
    assert fake.launches[-1][1] == 7 and fake.launches[-1][3][0] == 0x80000
    x8, w8 = dv((N, K), 0x10000, dtype="float8_e4m3fn"), dv((M, K), 0x40000, dtype="float8_e4m3fn")
    ps = scaled.prepare_scaled(x8, w8, 0.5, 0.5, out=o)
    assert type(ps) is type(p) is api.Prepared is scaled.PreparedScaled
    with pytest.raises(TypeError, match="stream must be None, an int handle"):
        p.launch("stream 0")


def test_read_only_out_is_refused_before_any_gpu_work(fake):
    """jitgemm writes into `out`: memory its producer marks read-only is refused, for a numpy out (host path:
    nothing uploaded) and for every entry's device out, cold and after a cached call with a writable one.
    The producer's word is the only one: a read-only x or w is read as before."""
    x, w = np.ones((N, K), np.float16), np.ones((M, K), np.float16)
    frozen = np.zeros((N, M), np.float16)
    frozen.flags.writeable = False
    for call in (lambda: api.gemm(x, w, out=frozen), lambda: api.matmul(x, w.T, out=frozen),
                 lambda: api.linear(x, w, out=frozen)):
        with pytest.raises(ValueError, match=r"out is read-only \(its ndarray says so\)"):
            call()
    assert not fake.launches and not fake.calls["copy_htod"], "a refused call touched the GPU"
    xr, wr = np.ones((N, K), np.float16), np.ones((M, K), np.float16)
    xr.flags.writeable = wr.flags.writeable = False
    assert api.gemm(xr, wr).shape == (N, M)

    o8 = dv((N, M), 0x80000)
    x8, w8 = dv((N, K), 0x10000, dtype="float8_e4m3fn"), dv((M, K), 0x40000, dtype="float8_e4m3fn")
    ro = CaiArray(0x80000, (N, M), (M, 1), "bfloat16", 0, readonly=True)
    cold = cold_error(lambda: scaled.scaled_gemm(x8, w8, 0.5, 0.5, out=ro))
    assert cold[0] is ValueError and "out is read-only (its CaiArray says so)" in cold[1]
    assert warm_error(lambda: scaled.scaled_gemm(x8, w8, 0.5, 0.5, out=ro),
                      lambda: scaled.scaled_gemm(x8, w8, 0.5, 0.5, out=as_cai(o8))) == cold


def test_out_sharing_memory_with_an_input_is_refused(fake):
    """The kernel's blocks read the inputs while others write out: an out over an input would give a wrong
    result that varies run to run. Refused cold and after a cached call; column blocks of one buffer (one row
    pitch, columns apart in every row) share no element and run, though each such call takes the cold path
    (the cached check compares extents only)."""
    from jitgemm import validate
    wide = 2 * K  # a [N, 2K] buffer: x in columns 0..K-1, out in columns K..K+M-1 (M <= K)
    x = dv((N, K), 0x10000, strides=(wide, 1))
    w, o = dv((M, K), 0x40000), dv((N, M), 0x80000)
    beside = dv((N, M), 0x10000 + 2 * K, strides=(wide, 1))
    pipeline.clear()
    for _ in range(2):
        api.gemm(x, w, out=o)
        api.gemm(x, w, out=beside)
    assert fake.launches[-1][3][0] == 0x10000 + 2 * K
    over = dv((N, M), 0x10000 + 2 * (K - 8), strides=(wide, 1))  # its first 8 columns are x's last 8
    cold = cold_error(lambda: api.gemm(x, w, out=over))
    assert cold[0] is ValueError and re.search(r"out shares memory with x \(out: bytes 0x10.*\): the kernel's "
                                               r"blocks would read x while others write out", cold[1])
    assert warm_error(lambda: api.gemm(x, w, out=over), lambda: api.gemm(x, w, out=o)) == cold
    # scaled_gemm: a scale vector counts as an input too
    x8, w8 = dv((N, K), 0x10000, dtype="float8_e4m3fn"), dv((M, K), 0x40000, dtype="float8_e4m3fn")
    sw = dv((M,), 0x90000, dtype="float32")
    cold = cold_error(lambda: scaled.scaled_gemm(x8, w8, 0.5, sw, out=dv((N, M), 0x90000 + 4 * M - 2)))
    assert cold[0] is ValueError and "out shares memory with scale_w" in cold[1]
    # the rule itself: extents apart, interleaved columns, the same pitch with touching columns, other pitches
    assert not validate._shares_memory(dv((2, 8), 0x1000), dv((2, 8), 0x1000 + 32))
    assert not validate._shares_memory(dv((2, 8), 0x1000, strides=(16, 1)), dv((2, 8), 0x1010, strides=(16, 1)))
    assert validate._shares_memory(dv((2, 8), 0x1000, strides=(16, 1)), dv((2, 9), 0x1010 - 2, strides=(16, 1)))
    assert validate._shares_memory(dv((2, 8), 0x1000, strides=(16, 1)), dv((2, 8), 0x1010, strides=(24, 1)))


def test_masked_interface_operands_are_refused(fake):
    """A __cuda_array_interface__ with a mask says some elements are not data; jitgemm reads and writes
    them all, so it refuses the mask, also when an unmasked twin's call is cached."""
    mk = lambda ptr, shape, mask=None: CaiArray(ptr, shape, (shape[1], 1), "bfloat16", 0, mask=mask)  # noqa: E731
    w, o = mk(0x40000, (M, K)), mk(0x80000, (N, M))
    masked = mk(0x10000, (N, K), mask=mk(0x20000, (N, K)))
    cold = cold_error(lambda: api.gemm(masked, w, out=o))
    assert cold[0] is ValueError and "has a mask: masked arrays are not supported" in cold[1]
    assert warm_error(lambda: api.gemm(masked, w, out=o), lambda: api.gemm(mk(0x10000, (N, K)), w, out=o)) == cold


def test_cold_calls_are_counted_by_why(fake):
    """pipeline.COLD_CALLS (read by jitgemm.torch.routing): a repeated signature plans once; a pointer the
    entry's checks refuse, host operands and new signatures each count under their reason."""
    x, w, o = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000)
    pipeline.COLD_CALLS.clear()
    for _ in range(5):
        api.gemm(x, w, out=o)
    assert pipeline.COLD_CALLS == {"new signature": 1}
    with pytest.raises(ValueError):
        api.gemm(dv((N, K), 0x10002), w, out=o)
    api.gemm(np.ones((N, K), np.float16), np.ones((M, K), np.float16))
    assert pipeline.COLD_CALLS == {"new signature": 1, pipeline._CHECK_FAILED: 1,
                                   "no fast-path signature (host arrays, other types)": 1}


def test_host_operands_are_never_cached(fake):
    x = np.ones((N, K), np.float16)
    w = np.ones((M, K), np.float16)
    for _ in range(2):
        launches, uploads = len(fake.launches), fake.calls["copy_htod"]
        y = api.gemm(x, w)   # numpy in: uploaded, launched, downloaded (the stand-in computes nothing)
        assert isinstance(y, np.ndarray) and y.shape == (N, M) and y.dtype == np.float16
        assert len(fake.launches) == launches + 1 and fake.calls["copy_htod"] == uploads + 2
    assert not pipeline._ENTRIES


def test_linear_flattens_leading_dimensions(fake):
    """jitgemm.linear is F.linear: x [..., K] -> [..., M]; the leading dims become gemm's N rows."""
    w = dv((M, K), 0x40000)
    x3 = View(0x10000, (2, 3, K), (3 * K, K, 1), "bfloat16", "bfloat16", 0, "device", None, vendor="cuda")
    o3 = View(0x80000, (2, 3, M), (3 * M, M, 1), "bfloat16", "bfloat16", 0, "device", None, vendor="cuda")
    api.linear(x3, w, out=o3)
    grid, _, _, words = fake.launches[-1]
    assert words[9:12] == [6, M, K] and words[3] == K and words[1] == M  # N = 6 rows of pitch K
    # a slice of rows of a longer sequence ([B, 1, K] of [B, T, K], the LM head's input) still flattens
    last = View(0x10000 + 2 * 4 * K, (2, 1, K), (5 * K, K, 1), "bfloat16", "bfloat16", 0, "device", None,
                vendor="cuda")
    api.linear(last, w, out=View(0x80000, (2, 1, M), (M, M, 1), "bfloat16", "bfloat16", 0, "device", None,
                                 vendor="cuda"))
    assert fake.launches[-1][3][9] == 2 and fake.launches[-1][3][3] == 5 * K
    one = dv((K,), 0x10000)
    api.linear(one, w, out=dv((M,), 0x80000))
    assert fake.launches[-1][3][9] == 1
    bad = View(0x10000, (2, 3, K), (4 * K, K, 1), "bfloat16", "bfloat16", 0, "device", None, vendor="cuda")
    with pytest.raises(ValueError, match="do not flatten to rows of one pitch"):
        api.linear(bad, w, out=o3)
    with pytest.raises(ValueError, match=r"out must have shape \[..., M\] = \(2, 3, 64\)"):
        api.linear(x3, w, out=dv((6, M), 0x80000))
    assert warm_error(lambda: api.linear(bad, w, out=o3), lambda: api.linear(x3, w, out=o3)) == \
        cold_error(lambda: api.linear(bad, w, out=o3))


def test_forced_config_applies_inside_and_restores_after(fake):
    """The tuners' and GPU tests' forced config reaches the call path (a new settings generation, so no
    cached entry survives it) and is gone afterwards."""
    from jitgemm import dispatch
    from jitgemm.bench.runner import forced_config
    from jitgemm.kernels import skinny
    orig = (dispatch.nv_config, dispatch.moderate_nv_config, dispatch.small_n_moderate, dispatch.blas_choice)
    x, w, o = dv((N, K), 0x10000), dv((M, K), 0x40000), dv((N, M), 0x80000)
    api.gemm(x, w, out=o)
    normal = fake.launches[-1][0]
    cfg = skinny.NvConfig(2, 4, 2, 1)
    with forced_config(cfg):
        api.gemm(x, w, out=o)
        assert fake.launches[-1][0] == cfg.geometry(M, N)[0] != normal
    assert (dispatch.nv_config, dispatch.moderate_nv_config, dispatch.small_n_moderate, dispatch.blas_choice) == orig
    api.gemm(x, w, out=o)
    assert fake.launches[-1][0] == normal


def test_allocation_refused_during_capture_says_what_to_do():
    from jitgemm.errors import JitgemmError, VendorError
    from jitgemm.runtime.types import capture_guard
    with pytest.raises(JitgemmError, match="cannot be allocated during graph capture .* once on that stream"):
        with capture_guard("the split-K workspace", 0x1234):
            raise VendorError("cuMemAlloc", "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")
    with pytest.raises(VendorError):
        with capture_guard("the split-K workspace", 0x1234):
            raise VendorError("cuMemAlloc", "CUDA_ERROR_OUT_OF_MEMORY")


def test_forced_config_is_not_hidden_by_plan_cached_keys_of_the_caller(fake):
    """GPU tests ask _plan_cached for a forced plan with a settings key of their own: each forced config
    must still be what it answers."""
    from jitgemm.bench.runner import forced_config
    from jitgemm.kernels import moderate
    for tile in (moderate.NvTile(64, 64, 2, 2, 3), moderate.NvTile(64, 64, 2, 2, 6)):
        cfg = moderate.ModerateConfig(tile, 1, moderate.RED_NONE)
        with forced_config(cfg):
            plan = api._plan_cached("cuda", "sm_90a", 132, "bfloat16", 117, 661, 3080, 50 << 20, 227 << 10, True, ())
            assert plan.instance == cfg.instance("bfloat16")


def test_an_installed_backend_is_used_then_forgotten():
    """The test seam itself: inside installed(), the registry and the default backend are the stand-in's, and
    no cached launch bound to it survives the block (nor one bound to the real backend enters it)."""
    from jitgemm.runtime import backend as registry
    before = registry._BACKENDS.get("cuda")
    with installed(NullBackend()) as be:
        assert registry.get_backend("cuda") is be and registry.default_backend() is be
        api.gemm(dv((N, K)), dv((M, K), 0x40000), out=dv((N, M), 0x80000))
        assert pipeline._ENTRIES and len(be.launches) == 1
    assert not pipeline._ENTRIES and registry._BACKENDS.get("cuda") is before


def test_torch_outputs_are_made_in_the_dtype_asked_for(monkeypatch):
    """output_factory for torch inputs (a stand-in torch module: the factory reads it from sys.modules): an output
    of x's own dtype is x.new_empty(shape) (no dtype to parse), any other dtype (scaled_gemm's out_dtype,
    quantize_fp8's fp8 and float32 scales) is asked for by name."""
    import types
    calls = []

    class Tensor:
        def __init__(self, dtype):
            self.dtype = dtype

        def new_empty(self, shape, **kw):
            calls.append((shape, kw))
            return Tensor(kw.get("dtype", self.dtype))

        def data_ptr(self):
            return 0x1000

    fake_torch = types.SimpleNamespace(bfloat16="torch.bfloat16", float32="torch.float32",
                                       float8_e4m3fn="torch.float8_e4m3fn")
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    like = View(0x2000, (4, 64), (64, 1), "bfloat16", "bfloat16", 0, "torch", None, vendor="cuda")
    x = Tensor("torch.bfloat16")
    for dtype, want_kw in (("bfloat16", {}), ("float32", {"dtype": "torch.float32"}),
                           ("float8_e4m3fn", {"dtype": "torch.float8_e4m3fn"})):
        calls.clear()
        out, ptr = pipeline.output_factory(like, None, 0, (4, 32), dtype)(x, 0)
        assert calls == [((4, 32), want_kw)] and ptr == 0x1000
        assert out.dtype == getattr(fake_torch, dtype)


def _standin_torch():
    """tools/hotpath_cpu.py's stand-in torch module (plain-Python tensors with torch's attribute names)."""
    spec = importlib.util.spec_from_file_location("hotpath_cpu", ROOT / "tools" / "hotpath_cpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.standin_torch()


def test_torch_pair_is_linears_cached_call_or_none(fake, monkeypatch):
    """pipeline.torch_pair, jitgemm.torch's one-frame door for a routed layer: None until linear's own call has made
    the entry; then the same launch with this call's pointers and a torch output of linear's shape; None (so the full
    call runs, and refuses) for whatever the key or the per-call checks tell apart: another dtype, another stride,
    a misaligned pointer."""
    torch = _standin_torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    T, tag = torch.Tensor, api.LINEAR_TAG
    pipeline.clear()
    x, w = T((1, 1, K)), T((M, K))
    assert pipeline.torch_pair(tag, x, w) is None, "no entry yet: the caller must take the full call"
    api.linear(x, w)
    before = len(fake.launches)
    x2 = T((1, 1, K))
    y = pipeline.torch_pair(tag, x2, w)
    assert isinstance(y, T) and tuple(y.shape) == (1, 1, M) and y.dtype is torch.bfloat16
    assert len(fake.launches) == before + 1, "one launch"
    words = fake.launches[-1][3]
    assert {x2.data_ptr(), w.data_ptr(), y.data_ptr()} <= set(words), "this call's pointers were not written"
    assert pipeline.torch_pair(tag, T((1, 1, K), dt=torch.float16), w) is None, "another dtype: another key"
    assert pipeline.torch_pair(tag, x, T((M, 2 * K))) is None, "another shape: another key"
    odd = T((1, 1, K), ptr=x2.data_ptr() + 2)
    assert pipeline.torch_pair(tag, odd, w) is None, "a misaligned x passed the per-call checks"
    with pytest.raises(ValueError, match="align"):
        api.linear(odd, w)
    assert len(fake.launches) == before + 1, "a refused call launched"
    assert isinstance(pipeline.torch_pair(tag, x2, w), T), "a valid call after refused ones missed its entry"
    assert len(fake.launches) == before + 2
    pipeline.clear()
