"""The dispatcher on the CPU: the skinny family's plans for NVIDIA (measured tables, heuristics, token tiles,
PDL and prefetch switches, what aot compiles) and AMD (the seed's CU-count rules, LDS chunking)."""
import math

import pytest

from jitgemm import config, dispatch
from jitgemm.kernels import fp8, skinny


# ---- dispatch ----------------------------------------------------------------------------------------------------
def test_skinny_supported_messages():
    assert dispatch.skinny_supported("bfloat16", 1, 8) is None
    assert dispatch.skinny_supported("float16", 16, 4096) is None
    assert dispatch.skinny_supported("float32", 1, 8) == "dtype must be float16 or bfloat16, got float32"
    assert dispatch.skinny_supported("bfloat16", 0, 8) == "N (tokens) must be in 1..128, got 0"
    assert dispatch.skinny_supported("bfloat16", 129, 8) == "N (tokens) must be in 1..128, got 129"
    assert dispatch.skinny_supported("bfloat16", 4, 12) == "K must be a multiple of 8 (16-byte vectors), got 12"


def test_mindiv_seed_example_and_definition():
    assert skinny.mindiv(4096, 304 * 2, 16) == 7
    for m in (1, 100, 4096, 9728, 9729, 65536, 10**6):
        for div1 in (304, 608, 1216):
            r = skinny.mindiv(m, div1, 16)
            rounds = lambda w: -(-m // (div1 * w))
            assert 4 <= r <= 16
            assert rounds(r) == rounds(16)
            assert r == min(w for w in range(4, 17) if rounds(w) == rounds(16))


def test_plan_hip_seed_example():
    p = dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 1, 4096, 4096)
    assert p.family == "skinny"
    assert p.config == skinny.AmdConfig(2, 2, 16)
    assert p.instance.name == "jg_skinny_amd<jg_bf16, 1, 2, 2, 16>"
    assert p.block == (64, 7, 1)  # mindiv(4096, 304*2, 16) waves
    assert p.grid == (math.ceil(4096 / (7 * 2)), 1, 1) == (293, 1, 1)
    assert p.shared == 4096 * 2 and p.extra["lds_chunk"] == 4096
    assert "tokens whole in LDS" in p.reason and "304 CUs" in p.reason


@pytest.mark.parametrize("n,m,k,tile", [
    (4, 1024, 4096, (1, 4)),     # M <= 4 rows per CU: one row per wave, deep unroll
    (16, 1024, 4096, (1, 2)),    # ... capped for registers at N > 8
    (1, 65536, 4096, (2, 2)),    # N = 1 always 2 rows
    (4, 4096, 4096, (2, 2)),     # s_yt <= 8
    (4, 12160, 4096, (3, 2)),    # s_yt = 10 <= 12
    (4, 16384, 4096, (4, 1)),    # N = 4, s_yt > 12
    (2, 16384, 4096, (4, 2)),
    (8, 16384, 4096, (2, 2)),    # register cap for 4 < N <= 8
    (16, 16384, 4096, (1, 2)),   # register cap for N > 8
    (4, 16384, 16384, (2, 2)),   # tokens do not fit 64 KiB of LDS
])
def test_amd_tile_rules(n, m, k, tile):
    p = dispatch.plan_gemm("hip", "gfx942", 304, "float16", n, m, k)
    assert (p.config.YT, p.config.UNRL) == tile
    assert p.instance.name == f"jg_skinny_amd<jg_f16, {n}, {tile[0]}, {tile[1]}, 16>"


def test_amd_lds_chunking_depends_on_arch():
    p942 = dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 4, 16384, 16384)
    assert p942.extra["lds_chunk"] == 8192 and "K-chunks of 8192" in p942.reason
    assert p942.shared == 4 * 8192 * 2 <= 64 * 1024
    p950 = dispatch.plan_gemm("hip", "gfx950", 256, "bfloat16", 4, 16384, 16384)
    assert p950.extra["lds_chunk"] == 16384 and "tokens whole in LDS" in p950.reason
    assert p950.shared == 4 * 16384 * 2 <= 160 * 1024


def test_amd_plans_are_consistent():
    insts = set(dispatch.all_instances("hip"))
    for arch, cus in (("gfx942", 304), ("gfx942", 80), ("gfx950", 256), ("gfx90a", 104)):
        lds = skinny.amd_lds_bytes(arch)
        for n in range(1, 17):
            for m in (1, 64, 1000, 4096, 28672, 128256):
                for k in (8, 512, 4096, 14336, 65536):
                    p = dispatch.plan_gemm("hip", arch, cus, "bfloat16", n, m, k)
                    cfg, kc = p.config, p.extra["lds_chunk"]
                    assert p.instance in insts, p.instance.name  # aot compiles what dispatch picks
                    assert 1 <= p.grid[0] <= cus and p.grid[1:] == (1, 1)
                    assert p.block[0] == 64 and cfg.WAVES - 12 <= p.block[1] <= cfg.WAVES
                    assert p.shared <= lds and p.shared == n * min(kc, k) * 2
                    assert kc >= k or kc % (512 * cfg.UNRL) == 0


@pytest.mark.parametrize("n,nt", [(1, 1), (2, 1), (8, 1), (9, 2), (12, 2), (16, 2)])
def test_plan_cuda_instance_and_token_tiles(n, nt):
    insts = set(dispatch.all_instances("cuda"))
    for m, k in ((4096, 4096), (28672, 4096), (1280, 8192), (100, 8), (128256, 4096)):
        for dtype, tag in (("float16", "jg_f16"), ("bfloat16", "jg_bf16")):
            p = dispatch.plan_gemm("cuda", "sm_90a", 132, dtype, n, m, k)
            cfg = p.config
            assert p.instance.name.startswith(f"jg_skinny_nv<{tag}, {nt}, {cfg.MT}, {cfg.WK}, {cfg.U}")
            assert p.instance == cfg.instance(dtype, n)
            assert p.instance in insts  # aot compiles what dispatch picks
            assert p.grid[0] == math.ceil(m / (16 * cfg.MT)) and p.grid[2] == 1
            assert p.block == (32 * cfg.WK, 1, 1) and p.block[0] <= 1024
            assert p.instance.name in str(p)


def test_plan_cuda_heuristic_without_table(nv_tables):
    nv_tables(skinny=[], fp8=[], moderate=[])
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 4, 4096, 4096)
    assert "heuristic" in p.reason
    # what won almost every decode shape on the H100: 16 warps split K, 2 steps; 32-row blocks for large M
    assert p.config == skinny.NvConfig(1, 16, 2, 1)
    assert dispatch.heuristic_nv(8192, 512, 132) == skinny.NvConfig(2, 16, 2, 1)
    assert dispatch.heuristic_nv(64, 64, 132) == skinny.NvConfig(1, 16, 2, 1)
    assert dispatch.heuristic_nv(64, 64, 132) in skinny.NV_CONFIGS  # aot compiles what it picks


def test_heuristic_choices_are_in_the_aot_set(nv_tables):
    nv_tables(skinny=[], fp8=[], moderate=[])
    names = {i.name for i in dispatch.all_instances("cuda")}
    for m in (64, 4096, 8192, 28672, 128256):
        for k in (64, 512, 4096, 28672):
            assert dispatch.heuristic_nv(m, k, 132).instance("bfloat16", 1).name in names


# ---- NVIDIA launch extras: programmatic dependent launch and L2 prefetch -----------------------------------------
def test_pdl_and_prefetch_switches(monkeypatch):
    monkeypatch.setenv("JITGEMM_PDL", "1")
    monkeypatch.setenv("JITGEMM_PREFETCH", "1")
    config.reload()  # settings are a snapshot: read the environment again
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096, 50 << 20)
    assert p.extra["pdl"] is True and "programmatic dependent launch" in p.reason
    pf = p.extra["prefetch_bytes"]
    assert pf == 0 or (256 <= pf <= 2 * 4096 and pf % 16 == 0)
    # sm_80 has neither, whatever the switches say
    assert dispatch.plan_gemm("cuda", "sm_80", 108, "bfloat16", 1, 4096, 4096).extra == {"prefetch_bytes": 0, "pdl": False}
    assert dispatch.plan_gemm("hip", "gfx942", 304, "bfloat16", 1, 4096, 4096).extra["pdl"] is False
    w4 = dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, 1, 4096, 4096)  # the 4-bit family too
    assert w4.extra["pdl"] is True and "programmatic dependent launch" in w4.reason
    assert dispatch.plan_w4("cuda", "sm_80", 108, "bfloat16", "q4_sym", 128, 1, 4096, 4096).extra["pdl"] is False
    monkeypatch.setenv("JITGEMM_PDL", "0")
    monkeypatch.setenv("JITGEMM_PREFETCH", "off")
    config.reload()  # settings are a snapshot: read the environment again
    p = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096)
    assert p.extra == {"prefetch_bytes": 0, "pdl": False} and "programmatic" not in p.reason
    assert dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "mxfp4", 32, 1, 4096, 4096).extra["pdl"] is False


def test_pdl_unset_takes_the_measured_default(monkeypatch):
    """JITGEMM_PDL unset (or "auto"): the skinny, fp8 and 4-bit kernels (dispatch.use_pdl, measured on whole
    steps); never before sm_90; 0 turns it off, 1 on."""
    for raw in (None, "auto"):
        if raw is None:
            monkeypatch.delenv("JITGEMM_PDL", raising=False)
        else:
            monkeypatch.setenv("JITGEMM_PDL", raw)
        config.reload()
        assert config.pdl() is None
        got = {n: dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", n, 4096, 4096).extra["pdl"] for n in (1, 8, 9, 16)}
        assert got == {1: True, 8: True, 9: True, 16: True}
        for n in (1, 16, 64):
            assert dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "mxfp4", 32, n, 4096, 4096).extra["pdl"] is True
        assert dispatch.plan_w4("cuda", "sm_80", 108, "bfloat16", "mxfp4", 32, 1, 4096, 4096).extra["pdl"] is False
        for mode in (fp8.W8A8, fp8.W8A16):
            assert dispatch._plan_fp8_kernel("cuda", "sm_90a", 132, "bfloat16", mode, "e4m3fn", 1, 4096, 4096).extra["pdl"]
        assert dispatch.plan_gemm("cuda", "sm_80", 108, "bfloat16", 16, 4096, 4096).extra["pdl"] is False
    for raw, want in (("0", False), ("1", True)):
        monkeypatch.setenv("JITGEMM_PDL", raw)
        config.reload()
        assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096).extra["pdl"] is want
        assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 16, 4096, 4096).extra["pdl"] is want
        assert dispatch.plan_w4("cuda", "sm_90a", 132, "bfloat16", "q4_sym", 128, 1, 4096, 4096).extra["pdl"] is want
    monkeypatch.delenv("JITGEMM_PDL")
    config.reload()


@pytest.mark.parametrize("arch", ["sm_100a", "sm_120"])
def test_pdl_on_archs_newer_than_sm90(monkeypatch, arch):
    monkeypatch.setenv("JITGEMM_PDL", "1")
    config.reload()  # settings are a snapshot: read the environment again
    assert dispatch.plan_gemm("cuda", arch, 148, "bfloat16", 1, 4096, 4096).extra["pdl"] is True


def test_cuda_dispatch_before_sm90_is_covered_by_aot(nv_tables):
    # a measured row whose K split uses a 2-block cluster, in the dispatcher's (M, K, (WK, U, SK), {bucket: MT}) form
    row = (4096, 4096, (8, 2, 2), {1: 1, 4: 1, 8: 1, 16: 1})
    nv_tables(skinny=[row], fp8=[], moderate=[])
    insts = set(dispatch.all_instances("cuda"))
    assert dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 1, 4096, 4096).instance in insts
    assert dispatch.plan_gemm("cuda", "sm_80", 108, "bfloat16", 1, 4096, 4096).instance in insts


@pytest.mark.parametrize("arch", ["sm_90a", "sm_89", "gfx942", "gfx950", "gfx90a"])
def test_fp8_token_tiles_cover_n_17_to_128(arch):
    """scaled_gemm takes N up to fp8.MAX_N: enough token tiles for every token, the instance (so the K order)
    that of N = 16. NVIDIA: the tiles of a row block side by side in grid.x (one weight read, the kernel's
    jg_block_origin); AMD: over grid.z, each re-reading the weights. explain says which."""
    from jitgemm.kernels import fp8
    vendor = "cuda" if arch.startswith("sm") else "hip"
    fmt = fp8.native_format(vendor, arch) or "float8_e4m3fn"
    for mode in (fp8.W8A8, fp8.W8A16, fp8.W8Q):
        at16 = dispatch.plan_fp8(vendor, arch, 132, "bfloat16", mode, fmt, 16, 5000, 4096)
        for n in (17, 40, 64, 127, fp8.MAX_N):
            p = dispatch.plan_fp8(vendor, arch, 132, "bfloat16", mode, fmt, n, 5000, 4096)
            per_tile = {"cuda": 16}.get(vendor) or p.config.NMAX
            tiles = -(-n // per_tile)
            assert tiles * per_tile >= n and p.block == at16.block
            if vendor == "cuda":
                assert p.grid == (at16.grid[0] * tiles, at16.grid[1], 1)
                assert f"{n} tokens in {tiles} tiles a row block, side by side" in p.reason
                assert p.instance == at16.instance  # one K order: a token's bits do not depend on N
            else:
                assert p.grid == (*at16.grid[:2], tiles)
                assert f"{n} tokens in {tiles} tiles over blockIdx.z" in p.reason


def test_scaled_gemm_token_limit_names_the_rule():
    import jitgemm
    from jitgemm.kernels import fp8
    text = jitgemm.explain((fp8.MAX_N, 4096, 4096, "fp8"), arch="sm_90a")
    assert "8 tiles a row block, side by side" in text and "refuse" not in text
    text = jitgemm.explain((fp8.MAX_N + 1, 4096, 4096, "fp8"), arch="sm_90a")
    assert f"1..{fp8.MAX_N}, got N={fp8.MAX_N + 1}" in text and "chunks" in text


def test_a_rare_warp_count_serves_only_its_own_shape(nv_tables):
    """A 16-bit skinny row whose K split (WK) is not the table's most common one runs at its own (M, K) only: the
    H100 broad suite lost on the untuned neighbours of such rows. Other shapes take the nearest common row."""
    common = {1: 1, 4: 1, 8: 1, 16: 1}
    nv_tables(skinny=[[4096, 4096, [16, 2, 1], common], [8192, 2048, [16, 2, 1], common],
                      [5120, 2880, [8, 2, 1], common], [1024, 1024, [4, 4, 1], common]], moderate=[])
    wk = lambda m, k: dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 16, m, k).config.WK
    assert wk(5120, 2880) == 8 and wk(1024, 1024) == 4          # its own shape: the row's verdict
    assert wk(5120, 2888) == 8 and wk(5100, 2880) == 8          # ... and a tail within 2 % of it
    assert wk(5120, 3072) == 16 and wk(4608, 2880) == 16        # its neighbours: the nearest WK = 16 row
    assert wk(1000, 1024) == 16
    reason = dispatch.plan_gemm("cuda", "sm_90a", 132, "bfloat16", 16, 5120, 3072).reason
    assert "nearest tuned shape M=4096 K=4096" in reason
    # the fp8 family's rows are not filtered: its K splits vary with the shape by design
    nv_tables(fp8=[[4096, 4096, [16, 2, 1], common], [8192, 2048, [16, 2, 1], common], [5120, 2880, [8, 2, 1], common]], moderate=[])
    assert dispatch.nv_config("bfloat16", 16, 5120, 3072, 132, family="fp8")[0].WK == 8
