"""The AMD moderate-N plan (moderate.amd_config through dispatch.plan_moderate), on the CPU: for every N of
the family and the gpt-oss / Llama-like M x K it exists, its K slices cover K with none empty, it sums
them with RED 0 or 2 only, aot compiles its instance, and its LDS fits the arch."""
import math

import pytest

from jitgemm import dispatch
from jitgemm.kernels import moderate

ARCHS = (("gfx942", 304, 64 << 10), ("gfx950", 256, 160 << 10), ("gfx90a", 104, 64 << 10))
MS, KS = (128, 640, 2880, 5120), (2880, 4096)


@pytest.mark.parametrize("arch,cus,lds", ARCHS, ids=[a[0] for a in ARCHS])
def test_amd_moderate_plans(arch, cus, lds):
    insts = set(dispatch.all_instances("hip"))
    for n in range(17, 129):
        for m in MS:
            for k in KS:
                dtype = "bfloat16" if (n + m) % 2 else "float16"
                p = dispatch.plan_moderate("hip", arch, cus, dtype, n, m, k)
                cfg, t = p.config, p.config.tile
                assert p.family == "moderate" and cfg.amd and isinstance(t, moderate.AmdTile)
                assert p.instance == cfg.instance(dtype) and p.instance in insts, p.instance.name
                assert p.instance.name.startswith("jg_moderate_amd<")
                kb, per = math.ceil(k / moderate.BK), cfg.kb_per_split(k)
                assert cfg.S >= 1 and per * cfg.S >= kb and per * (cfg.S - 1) < kb  # covers K, no empty slice
                assert cfg.RED in (moderate.RED_NONE, moderate.RED_WORKSPACE)
                assert (cfg.RED == moderate.RED_NONE) == (cfg.S == 1)
                assert cfg.S == 1 or per >= 2  # at least 2 K blocks a slice
                assert p.grid == (math.ceil(m / t.BM), math.ceil(n / t.BN), cfg.S)
                assert p.block == (64 * t.WM * t.WN, 1, 1) and p.block[0] <= 1024
                assert p.shared == t.shared_bytes() <= lds
                assert p.shared >= t.BN * (t.BM + 4) * 4  # the fp32 tile reuses the staging buffers
                assert p.extra["kb"] == per and p.extra["tiles"] == p.grid[0] * p.grid[1]
                assert p.extra["ws_floats"] == (p.grid[0] * p.grid[1] * cfg.S * t.BM * t.BN
                                                if cfg.RED == moderate.RED_WORKSPACE else 0)
                assert p.extra["tiles"] * cfg.S <= 2 * cus + p.extra["tiles"]  # about two workgroups per CU at most


def test_amd_moderate_instances_are_the_reachable_ones():
    """amd_instances() is exactly tiles x {RED 0, RED 2} x dtypes, all in all_instances('hip'), and the
    instance name carries the tile the kernel template expects (CS = 1: no clusters on AMD)."""
    insts = moderate.amd_instances()
    assert len(insts) == len(set(insts)) == 2 * 2 * sum(len(p) for p in moderate.AMD_TILES.values())
    assert set(insts) <= set(dispatch.all_instances("hip"))
    assert not any(i.name.startswith("jg_moderate_amd") for i in dispatch.all_instances("cuda"))
    cfg = moderate.ModerateConfig(moderate.AmdTile(64, 128, 2, 2), 4, moderate.RED_WORKSPACE)
    assert cfg.instance("bfloat16").name == "jg_moderate_amd<jg_bf16, 64, 128, 2, 2, 2, 2, 1>"
    assert cfg.instance("bfloat16").source == "moderate.hip"
    with pytest.raises(AssertionError):
        moderate.ModerateConfig(moderate.AmdTile(32, 32, 2, 2), 2, moderate.RED_CLUSTER).instance("float16")


def test_amd_moderate_split_rule():
    """Small M x K spreads over K slices (gpt-oss K=2880, M=128/640); a large M needs none; the last
    workgroup's sum stays bounded (S * 4*BM*BN <= (kb / S) * (BM + BN) * 128)."""
    p = dispatch.plan_moderate("hip", "gfx950", 256, "bfloat16", 32, 128, 2880)
    assert p.config.S > 1 and p.config.RED == moderate.RED_WORKSPACE and "summed in slice order" in p.reason
    assert dispatch.plan_moderate("hip", "gfx942", 304, "float16", 128, 65536, 2880).config.S == 1
    for arch, cus, _ in ARCHS:
        for n in (17, 32, 33, 64, 65, 128):
            for m in MS:
                for k in KS:
                    cfg = moderate.amd_config(n, m, k, cus, arch)
                    t, kb = cfg.tile, math.ceil(k / moderate.BK)
                    assert cfg.S ** 2 * 4 * t.BM * t.BN <= kb * (t.BM + t.BN) * 2 * moderate.BK
                    assert t.BN == (32 if n <= 32 else 64 if n <= 64 else 128)
