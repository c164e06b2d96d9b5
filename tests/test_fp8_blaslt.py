"""The cuBLASLt route of scaled_gemm on the CPU: which calls the dispatcher sends there (W8A8, per-tensor scales,
N >= FP8_LT_MIN_N, e4m3fn, no bias, M % 16, sm_89+, the library present, JITGEMM_BLAS not 0), the calls whose
pitch, address or missing algorithm keep the kernel, how scaled_gemm's values reach cublasLtMatmul (scales as
pointers or folded into alpha), and the ctypes mapping of out = x . w^T onto cuBLASLt's TN form. The numbers
themselves are checked on a GPU (tests/test_gpu_fp8.py)."""
import ctypes

import pytest

from jitgemm import config, dispatch, pipeline, scaled
from jitgemm.arrays import View
from jitgemm.kernels import fp8
from jitgemm.runtime import blaslt
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend
from jitgemm.runtime.types import DeviceInfo

E4M3, FNUZ = "float8_e4m3fn", "float8_e4m3fnuz"
N, M, K = 32, 4096, 2048


def plan(n=N, m=M, mode=fp8.W8A8, fmt=E4M3, arch="sm_90a", vendor="cuda", per=(False, False), bias=False,
         present=True):
    return dispatch.plan_fp8(vendor, arch, 132, "bfloat16", mode, fmt, n, m, K, scales=per, bias=bias,
                             lt_present=present)


def test_w8a8_per_tensor_from_16_tokens_goes_to_cublaslt_with_the_kernel_as_fallback():
    for n in (dispatch.FP8_LT_MIN_N, 17, 64, fp8.MAX_N):
        p = plan(n)
        kernel = p.extra["fallback"]
        assert p.family == "blaslt" and kernel.family == "fp8" and kernel.instance is not None
        assert "cuBLASLt" in p.reason and kernel.reason in p.reason and "JITGEMM_BLAS=0" in p.reason
        assert str(p).startswith("vendor BLAS: ")
    assert plan(dispatch.FP8_LT_MIN_N - 1).family == "fp8" and plan(1).family == "fp8"
    assert plan(16, arch="sm_89").family == "blaslt"


@pytest.mark.parametrize("change,why", [
    ({"fmt": FNUZ}, "does not take"), ({"m": M + 8}, f"M = {M + 8} is no multiple of 16"),
    ({"per": (True, True), "m": 1 << 20}, "its fp32 sums would take 128 MiB (more than 64 MiB)")])
def test_what_keeps_the_kernel_is_said(change, why):
    p = plan(**change)
    assert p.family == "fp8" and "cuBLASLt runs W8A8" in p.reason and why in p.reason and "the kernel runs" in p.reason


def test_scale_vectors_or_a_bias_from_17_tokens_go_to_cublaslt_with_the_epilogue():
    for per, bias in (((True, True), False), ((True, False), False), ((False, True), False), ((False, False), True),
                      ((True, True), True)):
        for n in (dispatch.FP8_LT_MIN_N_EPILOGUE, 64, fp8.MAX_N):
            p = plan(n, per=per, bias=bias)
            epi = p.extra["epilogue"]
            assert p.family == "blaslt" and "epilogue kernel" in p.reason and p.extra["fallback"].family == "fp8"
            assert epi.instance == fp8.epilogue_instance("bfloat16") and epi.extra["lda"] == M
            assert epi.grid == (M // fp8.EPILOGUE_BLOCK, n, 1) and epi.extra["ws_floats"] == n * M
        below = plan(dispatch.FP8_LT_MIN_N_EPILOGUE - 1, per=per, bias=bias)
        assert below.family == "fp8" and "cuBLASLt" not in below.reason  # N = 16: the kernel measured faster
    assert "epilogue" not in plan(64).extra                               # per-tensor, no bias: straight
    assert dispatch.epilogue_pitch(1000) == 1024 and dispatch.epilogue_pitch(1024) == 1024


def test_other_modes_vendors_and_archs_never_take_cublaslt():
    for kw in ({"mode": fp8.W8A16}, {"mode": fp8.W8Q}, {"arch": "sm_80"}, {"arch": "sm_86"},
               {"vendor": "hip", "arch": "gfx942", "fmt": FNUZ}):
        p = plan(**kw)
        assert p.family == "fp8" and "cuBLASLt" not in p.reason, kw


def test_jitgemm_blas_0_and_a_missing_library_keep_the_kernel(monkeypatch):
    monkeypatch.setenv("JITGEMM_BLAS", "0")
    config.reload()
    try:
        p = plan()
        assert p.family == "fp8" and "JITGEMM_BLAS=0" in p.reason
    finally:
        monkeypatch.delenv("JITGEMM_BLAS")
        config.reload()
    monkeypatch.setattr(blaslt, "available", lambda: (False, "no libcublasLt here"))
    p = plan(present=None)
    assert p.family == "fp8" and "not available (no libcublasLt here)" in p.reason


def test_explain_for_another_machine_names_the_route():
    import jitgemm
    text = jitgemm.explain((64, 4096, 4096, "fp8"), arch="sm_90a")
    assert "cuBLASLt" in text and "4 tiles a row block" in text  # the route, and the kernel it replaces
    assert "cuBLASLt" not in jitgemm.explain((4, 4096, 4096, "fp8"), arch="sm_90a")


# ---- the call path, on the recording stand-in backend, with cuBLASLt faked ----------------------------------
class FakeMatmul:
    """Stands in for blaslt.Fp8Matmul: records how it was made and each run."""
    made, runs = [], []
    refuse = False

    def __init__(self, backend, device, out_dtype, n, m, k, ldx, ldw, ldo, aligns):
        if FakeMatmul.refuse:
            raise blaslt.Unsupported("no algorithm (fake)")
        FakeMatmul.made.append((out_dtype, n, m, k, ldx, ldw, ldo, aligns))

    def run(self, stream, x, w, x_scale, w_scale, alpha, out):
        FakeMatmul.runs.append((stream, x, w, x_scale, w_scale, alpha, out))


@pytest.fixture
def lt(monkeypatch):
    devices = [DeviceInfo(0, "fake H100", "sm_90a", 132, 32, 227 << 10, 50 << 20, 80 << 30)]
    monkeypatch.setattr(blaslt, "available", lambda: (True, "fake libcublasLt"))
    monkeypatch.setattr(blaslt, "Fp8Matmul", FakeMatmul)
    FakeMatmul.made, FakeMatmul.runs, FakeMatmul.refuse = [], [], False
    pipeline.clear()
    with installed(NullBackend(devices=devices)) as be:
        yield be
    pipeline.clear()


def dv(shape, ptr, dtype, strides=None):
    strides = strides or ((shape[1], 1) if len(shape) == 2 else (1,))
    return View(ptr, tuple(shape), tuple(strides), dtype, dtype, 0, "device", None, vendor="cuda")


X, W, O = 0x100000, 0x400000, 0x1000000


def operands(o_ptr=O, o_strides=None, x_ptr=X):
    return dv((N, K), x_ptr, E4M3), dv((M, K), W, E4M3), dv((N, M), o_ptr, "bfloat16", o_strides)


def test_scales_by_value_fold_into_alpha_and_pointers_reach_cublaslt(lt):
    x, w, o = operands()
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=o, stream=7)
    scaled.scaled_gemm(x, w, 0.125, 0.5, out=o, stream=7)  # the cached entry: a new value, no new matmul
    assert FakeMatmul.made == [("bfloat16", N, M, K, K, K, M, (256, 256, 256))]
    assert FakeMatmul.runs == [(7, X, W, 0, 0, 0.125, O), (7, X, W, 0, 0, 0.0625, O)]
    assert not lt.launches, "a kernel ran although cuBLASLt had the call"
    sx, sw = dv((1,), 0x9000, "float32"), dv((1,), 0xA000, "float32")
    scaled.scaled_gemm(x, w, sx, 0.5, out=o)
    scaled.scaled_gemm(x, w, 0.5, sw, out=o)
    scaled.scaled_gemm(x, w, sx, sw, out=o)
    scaled.scaled_gemm(x, w, None, None, out=o)
    assert [r[3:6] for r in FakeMatmul.runs[2:]] == [(0x9000, 0, 0.5), (0, 0xA000, 0.5), (0x9000, 0xA000, 1.0),
                                                    (0, 0, 1.0)]
    assert len(FakeMatmul.made) == 5  # one per signature: the scales' forms are in the key


def test_prepared_calls_take_the_same_route(lt):
    x, w, o = operands()
    p = scaled.prepare_scaled(x, w, 0.25, 0.5, out=o)
    assert p.plan.family == "blaslt"
    p.launch(9)
    assert FakeMatmul.runs == [(9, X, W, 0, 0, 0.125, O)]


def test_a_pitch_address_or_refusal_cublaslt_cannot_take_runs_the_kernel(lt):
    x, w, _ = operands()
    for o, why in ((dv((N, M), O, "bfloat16", (M + 4, 1)), "pitch 4100 is no multiple of 8"),
                   (dv((N, M), O + 8, "bfloat16"), "not 16-byte aligned")):
        p = scaled.prepare_scaled(x, w, 0.25, 0.5, out=o)
        assert p.plan.family == "fp8" and why in p.plan.reason, p.plan.reason
    FakeMatmul.refuse = True
    p = scaled.prepare_scaled(x, w, 0.25, 0.5, out=operands()[2])
    assert p.plan.family == "fp8" and "no algorithm (fake)" in p.plan.reason
    before = len(lt.launches)
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=operands()[2])
    assert len(lt.launches) == before + 1 and not FakeMatmul.runs


def test_a_less_aligned_pointer_later_gets_an_algorithm_for_its_alignment(lt):
    """The algorithm is picked for the first call's alignments; a call of the same signature whose x is only
    16-byte aligned fails the entry's check and plans again (an algorithm for 256-byte operands may not take it)."""
    x, w, o = operands()
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=o)
    x16 = operands(x_ptr=X + 16)[0]
    scaled.scaled_gemm(x16, w, 0.25, 0.5, out=o)
    assert [m[-1] for m in FakeMatmul.made] == [(256, 256, 256), (256, 16, 256)]
    assert FakeMatmul.runs[-1][1] == X + 16
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=o)  # a better-aligned x still suits the second algorithm
    assert len(FakeMatmul.made) == 2


def test_scale_vectors_and_a_bias_reach_the_epilogue_after_cublaslt_fp32_sums(lt):
    """cuBLASLt writes fp32 sums (scale 1) into the stream's workspace, then one epilogue launch per call gets the
    workspace pointer, the scales (pointers or values) and the bias; out may have any pitch and 2-byte address."""
    import ctypes as ct
    from jitgemm import workspace
    x, w, _ = operands()
    o = dv((N, M), O + 2, "bfloat16", (M + 3, 1))   # no 16-byte address, an odd pitch: the epilogue writes it
    sx, sw, b = dv((N,), 0x9000, "float32"), dv((M,), 0xA000, "float32"), dv((M,), 0xB000, "bfloat16")
    for _ in range(2):  # cold, then the cached entry
        scaled.scaled_gemm(x, w, sx, sw, b, out=o, stream=3)
    assert FakeMatmul.made == [("float32", N, M, K, K, K, M, (256, 256, 256))]
    ws = workspace.get(lt, 0, 3, N * M, 1).partials.ptr
    assert [r for r in FakeMatmul.runs] == [(3, X, W, 0, 0, 1.0, ws)] * 2
    assert len(lt.launches) == 2
    grid, stream, _, words = lt.launches[-1]
    assert grid == (M // 256, N, 1) and stream == 3
    assert (words[0], words[1], words[2], words[3]) == (O + 2, M + 3, ws, M)      # out, ldo, acc, lda
    assert (words[4], words[5], words[7], words[8]) == (0x9000, 1, 0xA000, 1)     # the scale vectors
    assert (words[10], words[12], words[13]) == (0xB000, 1, M)                   # bias [M] (one row), M
    # scales by value: the kernel's f32 slots; x and w never reach the kernel's block
    scaled.scaled_gemm(x, w, 0.5, 0.25, b, out=o, stream=3)
    words = lt.launches[-1][3]
    f = lambda v: ct.c_float.from_buffer_copy(ct.c_uint64(v)).value
    assert (words[4], f(words[6]), words[7], f(words[9])) == (0, 0.5, 0, 0.25)
    assert X not in words and W not in words


def test_a_cublaslt_refusal_with_the_epilogue_runs_the_kernel(lt):
    x, w, o = operands()
    FakeMatmul.refuse = True
    p = scaled.prepare_scaled(x, w, dv((N,), 0x9000, "float32"), dv((M,), 0xA000, "float32"), out=o)
    assert p.plan.family == "fp8" and "no algorithm (fake)" in p.plan.reason


# ---- the ctypes mapping onto cublasLtMatmul --------------------------------------------------------------
class FakeLt:
    """cuBLASLt's entry points as recorders; the heuristic returns `algos` algorithms."""

    def __init__(self, algos=1):
        self.calls, self.algos, self.next = [], algos, 0x1000

    def __getattr__(self, name):
        def f(*args):
            self.calls.append((name, args))
            if name.endswith("Create"):  # hand out a fresh opaque handle
                self.next += 1
                args[0]._obj.value = self.next
            if name == "cublasLtMatmulAlgoGetHeuristic":
                args[-1]._obj.value = self.algos
            return 0
        return f


class Backend:
    def make_current(self, device):
        pass

    def alloc(self, nbytes, device):
        return 0xAB000


def lt_with(monkeypatch, fake):
    lt = blaslt._Lt.__new__(blaslt._Lt)
    lt.lib, lt.path, lt.handles, lt.lock = fake, "fake", {0: ctypes.c_void_p(0x77)}, __import__("threading").Lock()
    monkeypatch.setattr(blaslt._lt, "obj", lt)
    monkeypatch.setattr(blaslt, "workspace", lambda backend, device, stream: 0xAB000 + stream)


def value_of(arg):
    obj = arg._obj
    return obj.value if hasattr(obj, "value") else obj


def test_fp8_matmul_is_cublaslt_tn_with_scales_set_only_when_they_change(monkeypatch):
    fake = FakeLt()
    lt_with(monkeypatch, fake)
    mm = blaslt.Fp8Matmul(Backend(), 0, "bfloat16", 24, 5120, 4096, 4112, 4096, 5128, (256, 128, 16))
    made = [(n, a) for n, a in fake.calls]
    layouts = [a[1:] for n, a in made if n == "cublasLtMatrixLayoutCreate"]
    assert layouts == [(28, 4096, 5120, 4096), (28, 4096, 24, 4112), (14, 5120, 24, 5128)]  # w^T, x, out (col-major)
    sets = {a[1]: value_of(a[2]) for n, a in made if n == "cublasLtMatmulDescSetAttribute"}
    assert sets == {3: 1, 4: 0}                                             # TRANSA = T, TRANSB = N
    prefs = {a[1]: value_of(a[2]) for n, a in made if n == "cublasLtMatmulPreferenceSetAttribute"}
    assert prefs == {1: blaslt.MAX_WORKSPACE_BYTES, 5: 256, 6: 128, 7: 16, 8: 16}
    assert [a[1:3] for n, a in made if n == "cublasLtMatmulDescCreate"] == [(68, 0)]  # fp32 compute and scale
    fake.calls.clear()
    mm.run(5, 0x100, 0x200, 0, 0xA0, 0.5, 0x300)
    mm.run(5, 0x100, 0x200, 0, 0xA0, 0.25, 0x300)
    names = [n for n, _ in fake.calls]
    assert names == ["cublasLtMatmulDescSetAttribute", "cublasLtMatmul", "cublasLtMatmul"]  # w's scale set once
    assert fake.calls[0][1][1] == 17 and value_of(fake.calls[0][1][2]) == 0xA0
    a = fake.calls[2][1]
    assert value_of(a[2]) == 0.25 and (a[3], a[5], a[8], a[10]) == (0x200, 0x100, 0x300, 0x300)  # alpha, A=w, B=x, C=D=out
    assert a[4] is mm.abd[0] and a[6] is mm.abd[1] and a[9] is a[11] is mm.abd[2]
    assert (a[13], a[15]) == (0xAB005, 5)                                   # the stream's workspace, the stream


def test_no_algorithm_is_unsupported(monkeypatch):
    lt_with(monkeypatch, FakeLt(algos=0))
    with pytest.raises(blaslt.Unsupported, match="no fp8 algorithm for N=24, M=5120, K=4096"):
        blaslt.Fp8Matmul(Backend(), 0, "bfloat16", 24, 5120, 4096, 4112, 4096, 5128, (256, 256, 256))


def test_alignment_classes():
    assert [blaslt.alignment(p) for p in (0x1000, 0x1080, 0x1040, 0x1020, 0x1010)] == [256, 128, 64, 32, 16]


def test_the_route_follows_each_calls_addresses_not_the_calls_before_it(lt):
    """A call whose out address cuBLASLt refuses runs the kernel without displacing the signature's cuBLASLt
    entry: the next aligned call is cuBLASLt's again (same operands, same route, same bits)."""
    x, w, o = operands()
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=o)
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=operands(o_ptr=O + 8)[2])
    scaled.scaled_gemm(x, w, 0.25, 0.5, out=o)
    assert len(lt.launches) == 1 and [r[-1] for r in FakeMatmul.runs] == [O, O]
    assert len(FakeMatmul.made) == 1
