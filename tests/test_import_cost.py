"""`import jitgemm` (and every CLI call, `--help` included) stays cheap: the heavy modules (ml_dtypes'
extension alone cost 0.5-0.7 s) are imported when a call needs them, not at import. Checked through
`python -X importtime` in fresh processes (which modules were imported, not a wall-time threshold)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# imported only by the calls that need them: bf16/fp8 numpy dtypes, the CLI's tables and progress bars,
# the cache's lock and index, the GPU bindings and array libraries
HEAVY = ("ml_dtypes", "rich", "filelock", "msgpack", "cupy", "torch", "cuda", "hip", "matplotlib")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for k in [k for k in env if k.startswith("JITGEMM_")]:
        env.pop(k)
    return env


def imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Every module a fresh `python -X importtime ARGS` imported (top-level package names included)."""
    p = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=_env(),
                       cwd=str(REPO), timeout=120)
    mods = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                mods.add(name)
                mods.add(name.split(".")[0])
    return mods, p


def test_import_jitgemm_imports_no_heavy_module():
    code = ("import jitgemm\n"
            "names = ['gemm', 'linear', 'matmul', 'Linear', 'explain', 'prepare', 'Prepared', 'scaled_gemm',\n"
            "         'quantize_fp8', 'prepare_scaled', 'JitgemmError', 'CompileError', 'VendorError',\n"
            "         'BackendUnavailable', '__version__', *jitgemm.__all__]\n"
            "missing = [n for n in names if not hasattr(jitgemm, n)]\n"
            "print('missing:', missing, 'file:', jitgemm.__file__)\n")
    mods, p = imported_modules("-c", code)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "missing: []" in p.stdout, p.stdout
    assert str(REPO / "jitgemm") in p.stdout, p.stdout  # this checkout's package, not another install
    assert "jitgemm.api" in mods and "numpy" in mods  # the parse worked
    heavy = sorted(m for m in HEAVY if m in mods)
    assert not heavy, f"`import jitgemm` imports {heavy}; import them where they are needed"


def test_cli_help_imports_no_heavy_module():
    mods, p = imported_modules("-m", "jitgemm", "--help")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "usage" in p.stdout.lower(), p.stdout
    heavy = sorted(m for m in HEAVY if m in mods)
    assert not heavy, f"`python -m jitgemm --help` imports {heavy}"


def test_bf16_and_fp8_numpy_dtypes_without_importing_ml_dtypes_first():
    """ml_dtypes comes in on the first call that needs a bf16/fp8 numpy dtype, and names are the same
    whether or not it is loaded."""
    code = ("import sys, numpy as np\n"
            "from jitgemm.arrays import dtype_name, numpy_dtype\n"
            "before = 'ml_dtypes' in sys.modules\n"
            "cheap = [dtype_name(d) for d in ('bfloat16', 'float8_e4m3fn', np.float16, np.float32, np.uint8, 'int8')]\n"
            "still = 'ml_dtypes' in sys.modules\n"
            "bf = numpy_dtype('bfloat16')\n"
            "import ml_dtypes\n"
            "print(before, still, 'ml_dtypes' in sys.modules, cheap, bf == np.dtype(ml_dtypes.bfloat16),\n"
            "      dtype_name(np.dtype(ml_dtypes.bfloat16)), dtype_name(ml_dtypes.float8_e4m3fnuz),\n"
            "      dtype_name(np.zeros(2, ml_dtypes.bfloat16).dtype), numpy_dtype('float8_e4m3fn').name)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=str(REPO),
                       timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == ["False", "False", "True",
                                "['bfloat16',", "'float8_e4m3fn',", "'float16',", "'float32',", "'uint8',", "None]",
                                "True", "bfloat16", "float8_e4m3fnuz", "bfloat16", "float8_e4m3fn"], p.stdout


@pytest.mark.parametrize("dt", ["bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float16", "float32", "uint8"])
def test_numpy_dtype_round_trips_through_dtype_name(dt):
    from jitgemm.arrays import dtype_name, numpy_dtype
    assert dtype_name(numpy_dtype(dt)) == dt
