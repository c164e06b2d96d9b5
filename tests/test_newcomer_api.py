"""What a new user meets in the API on a machine without a GPU (issue #16, items 7-9): every argument
rule fires before any GPU work (not BackendUnavailable), explain() answers for a target arch with no
GPU here, and the [cuda] extra brings the cuBLAS the dispatcher needs."""
import importlib.metadata
import math
import tomllib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import jitgemm
from jitgemm import scaled

REPO = Path(__file__).resolve().parent.parent


def _fp8(shape):
    return (np.random.default_rng(0).standard_normal(shape) * 0.1).astype(ml_dtypes.float8_e4m3fn)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, np.float32(-0.5)])
@pytest.mark.parametrize("which", ["scale_x", "scale_w"])
def test_negative_or_nan_scales_are_refused_with_the_rule(which, bad):
    x8, w8 = _fp8((2, 32)), _fp8((16, 32))
    kw = {"scale_x": 0.5, "scale_w": 0.5, which: bad}
    with pytest.raises(ValueError, match=f"{which} must be a finite number >= 0"):
        jitgemm.scaled_gemm(x8, w8, **kw)


def test_linear_refuses_k_not_a_multiple_of_8_like_gemm():
    w = np.zeros((16, 60), np.float16)
    with pytest.raises(ValueError, match=r"K must be a multiple of 8 \(16-byte vectors\), got 60"):
        jitgemm.Linear(w)


def test_explain_of_non_arrays_raises():
    w = np.zeros((32, 64), np.float16)
    with pytest.raises(TypeError, match="x must be a numpy array.*got NoneType"):
        jitgemm.explain(None, w)
    with pytest.raises(TypeError, match="explain needs w"):
        jitgemm.explain(np.zeros((2, 64), np.float16))


def test_quantize_weight_of_none_names_the_type():
    with pytest.raises(TypeError, match="w must be a 2-D host array .* got NoneType"):
        scaled.quantize_weight(None)


@pytest.mark.parametrize("shape,arch,expect", [
    ((4, 4096, 4096, "bf16"), "sm_90a", "on sm_90a (H100 SXM, 132 SMs): skinny jg_skinny_nv<jg_bf16"),
    ((64, 5120, 4096, "bf16"), "sm_90a", "vendor BLAS: cuBLAS"),      # the table measured cuBLAS faster there
    ((64, 640, 2880, "fp16"), "sm_90a", "moderate jg_moderate_nv<jg_f16"),
    ((4, 4096, 4096, "bf16"), "gfx942", "on gfx942 (MI300X, 304 CUs): skinny jg_skinny_amd<jg_bf16, 4,"),
    ((4, 4096, 4096, "fp8"), "sm_90a", "fp8 jg_fp8_nv<jg_bf16, 0,"),
    ((4, 4096, 4096, "fp8"), "sm_80", "scaled_gemm would refuse this: scaled_gemm: sm_80 has no fp8 support"),
])
def test_explain_for_a_target_arch_without_a_gpu(shape, arch, expect):
    assert expect in jitgemm.explain(shape, arch=arch, scale_x=0.5, scale_w=0.5)


def test_explain_target_with_arrays_and_sms():
    x, w = np.zeros((2, 1024), np.float16), np.zeros((8192, 1024), np.float16)
    text = jitgemm.explain(x, w, arch="gfx942", sms=80)
    assert text.startswith("on gfx942 (80-unit part, 80 CUs)") and "80 CUs" in text
    assert jitgemm.explain(x, w, arch="gfx942") != text  # the CU count is an input of the AMD rule


@pytest.mark.parametrize("kw,exc,rule", [
    (dict(arch="sm90a"), ValueError, "unsupported arch 'sm90a' \\(did you mean sm_90a\\?\\); supported: sm_80, "),
    (dict(arch=90), TypeError, "arch must be a string"),
    (dict(arch="sm_90a", sms=0), ValueError, "sms must be a positive int"),
    (dict(), ValueError, r"explain\(\(n, m, k, dtype\)\) needs arch="),
])
def test_explain_target_rules(kw, exc, rule):
    with pytest.raises(exc, match=rule):
        jitgemm.explain((4, 4096, 4096, "bf16"), **kw)


def test_cuda_extras_bring_cublas_and_a_cuda12_set():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("nvidia-cublas>=13") for d in extras["cuda"])
    cu12 = " ".join(extras["cuda12"])
    for name in ("cuda-bindings==12.9", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12",
                 "cupy-cuda12x"):
        assert name in cu12


def test_cublas_loads_from_the_pip_wheel_when_installed():
    """CI installs the [cuda] extra: the dispatcher's cuBLAS must then load with no driver and no
    JITGEMM_CUBLAS (info then says where it came from)."""
    try:
        importlib.metadata.version("nvidia-cublas")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the nvidia-cublas wheel is not installed here (pip install 'jitgemm[cuda]')")
    from jitgemm.runtime import blas
    ok, where = blas.available()
    assert ok, where
    assert "libcublas.so" in where


def test_readme_configuration_names_every_variable_the_package_reads():
    import re
    used = set()
    for f in (REPO / "jitgemm").rglob("*.py"):
        used |= set(re.findall(r"\bJITGEMM_[A-Z_]+[A-Z]\b", f.read_text()))
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ", 5)]
    missing = sorted(v for v in used if f"`{v}`" not in table and f"`{v}=" not in table)
    assert not missing, f"README's configuration section does not name {missing}"


def test_readme_and_package_say_the_token_range_gemm_takes():
    from jitgemm.kernels import skinny
    first = (REPO / "README.md").read_text().split("\n\n")[1]
    desc = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["description"]
    for text in (first, desc):
        assert f"1..{skinny.MAX_N_MODERATE}" in text and "1..16 " not in text
    readme = (REPO / "README.md").read_text()
    for term in ("*ceiling*", "*fp8-static*", "*moderate-n suite*", "*decode suite*"):
        assert term in readme, f"README uses {term} without defining it"


def test_why_unavailable_is_none_with_a_device_and_the_reason_without_one():
    from jitgemm.runtime.backend import installed
    from jitgemm.runtime.null import NullBackend
    with installed(NullBackend()) as b:
        assert jitgemm.why_unavailable() is None
        assert b.calls["launch"] == 0 and b.calls["alloc"] == 0  # it asks, and runs nothing
    with installed(NullBackend(devices=[])):
        assert jitgemm.why_unavailable() == "no GPU found (cuda: no device)"
    with installed(NullBackend(fail=lambda what: AssertionError(f"{what} called"))):
        assert jitgemm.why_unavailable() == "no GPU found (cuda: null backend: no device)"


def test_why_unavailable_names_each_vendor_on_a_machine_without_a_gpu():
    from jitgemm.runtime.backend import default_backend
    try:
        default_backend()
    except jitgemm.BackendUnavailable:
        pass
    else:
        pytest.skip("this machine has a GPU")
    why = jitgemm.why_unavailable()
    assert why.startswith("no GPU found (cuda: ") and "; hip: " in why and "\n" not in why


def test_why_unavailable_names_a_bad_jitgemm_backend(monkeypatch):
    monkeypatch.setenv("JITGEMM_BACKEND", "bogus")
    assert jitgemm.why_unavailable() == "JITGEMM_BACKEND must be 'cuda', 'hip', 'auto' or unset, got 'bogus'"


def test_explain_answers_for_operands_no_call_could_take(no_device):
    from jitgemm.arrays import View
    far = View(0x7F00_0000_0000, (2, 64), (2**69, 1), "float16", "float16", 0, "fuzz", None, vendor="cuda")
    w = View(0x7F10_0000_0000, (32, 64), (64, 1), "float16", "float16", 0, "fuzz", None, vendor="cuda")
    assert jitgemm.explain(far, w).startswith("gemm would refuse this: x of shape (2, 64)")
