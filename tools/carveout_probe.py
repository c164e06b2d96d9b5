"""Experiment (NOTES.md, session 22, idea 10): does switching the shared-memory carveout between consecutive kernels
cost whole steps? The re-tuned H100 table put six decode weights on the moderate family's 16-token tile (~100 KB of
shared memory) between skinny kernels (none), and the 70B TP-8 step at N = 4 lost 2.5 us a layer where each kernel
measured faster alone. This runs a `python -m jitgemm ...` command with every kernel jitgemm loads asking for the
same preferred carveout (CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, a percent of the unified L1 / shared
memory, a hint the driver may round), so that no SM has to drain to reconfigure between them:

    python tools/carveout_probe.py 100 -- bench --group model --models llama-3.1-70b-tp8 --n 1,4,16 --name co100
    python tools/carveout_probe.py none -- bench ...   # the same process without the attribute (the baseline)

Compare with JITGEMM_NV_TUNING at session22/retune/retuned-table.json (where the steps mix the families) and with
the shipped table (where they rarely do). Changes nothing in the package."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def install(percent: int) -> None:
    """Every function the CUDA backend loads from now on asks for `percent` (0..100) of shared memory."""
    from jitgemm.runtime.cuda import CudaBackend
    if not 0 <= percent <= 100:
        raise ValueError(f"carveout: a percent 0..100 of the unified L1 / shared memory, got {percent}")
    plain = CudaBackend.function

    def function(self, module, symbol: str):
        func = plain(self, module, symbol)
        drv = self._drv()
        attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
        self._check("cuFuncSetAttribute", drv.cuFuncSetAttribute(func, attr, percent))
        return func
    CudaBackend.function = function


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if argv[0] != "none":
        install(int(argv[0]))
    from jitgemm.cli import main as cli
    return cli(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
