"""tools/carveout_probe.py on the CPU (the driver stood in for): every function the CUDA backend loads after
install() asks for the given shared-memory carveout, a percent outside 0..100 is refused with the rule, and the tool
without a command says how to call it."""
import sys
import types
from pathlib import Path

import pytest

from jitgemm.runtime.cuda import CudaBackend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import carveout_probe  # noqa: E402


def test_each_loaded_function_asks_for_the_carveout(monkeypatch):
    monkeypatch.setattr(CudaBackend, "function", CudaBackend.function)  # undone after the test
    calls = []
    drv = types.SimpleNamespace(
        cuModuleGetFunction=lambda module, name: (0, f"func:{name.decode()}"),
        cuFuncSetAttribute=lambda func, attr, value: calls.append((func, attr, value)) or (0,),
        CUfunction_attribute=types.SimpleNamespace(CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT=9))
    be = CudaBackend()
    be._driver = drv
    be._check = lambda what, res: res[1] if isinstance(res, tuple) and len(res) > 1 else None
    carveout_probe.install(100)
    assert be.function("module", "jg_skinny_nv") == "func:jg_skinny_nv"
    assert calls == [("func:jg_skinny_nv", 9, 100)]
    with pytest.raises(ValueError, match="0..100"):
        carveout_probe.install(120)


def test_without_a_command_it_says_how(capsys):
    assert carveout_probe.main(["100"]) == 2
    assert "carveout_probe.py 100 -- bench" in capsys.readouterr().err
