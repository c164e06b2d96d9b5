"""The examples as a user meets them: each runs (on the CPU: one line and exit 0), the SmolLM2 and MiniLM
model code is right without a GPU (numpy smoke), and the notebook is valid and its CPU cells run."""
import dataclasses
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import GPU


REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SCRIPTS = ["numpy_quickstart.py", "cupy_quickstart.py", "fp8_linear.py", "smollm2_decode.py", "minilm_embeddings.py",
           "hf_decode.py"]
TRACEBACK = "Traceback (most recent call last)"




def run_example(script, *args, cache_dir, timeout=300):
    env = dict(os.environ)
    env["JITGEMM_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("JITGEMM_BACKEND", None)
    # one BLAS thread: on a shared 2-core CI machine OpenBLAS threads spin against each other (10x slower)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(cache_dir.parent))


def load_example(name):
    """Import an example as a module (examples/ is not a package): no work may happen at import."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


# ---- every example ---------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_imports_and_has_main(script):
    mod = load_example(script[:-3])
    assert callable(mod.main)
    assert mod.__doc__ and "python examples/" in mod.__doc__  # says how to run it


@pytest.mark.skipif(GPU, reason="a GPU is present: the examples run for real (see the gpu tests)")
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_without_gpu_prints_one_line_and_exits_0(script, tmp_path):
    p = run_example(script, cache_dir=tmp_path / "cache", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert TRACEBACK not in p.stderr, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    assert lines[0].startswith("no GPU found"), lines[0]


# ---- SmolLM2: model code on the CPU ---------------------------------------------------------------------
smollm2 = load_example("smollm2_decode")
MISSING = smollm2.missing_requirements()
needs_model = pytest.mark.skipif(MISSING is not None, reason=f"SmolLM2 smoke: {MISSING}")
# The reference's first greedy tokens for the default prompt ("Hello! I"); checked with margins below
EXPECTED_FIRST = [19556, 17, 339]


@pytest.fixture(scope="module")
def gguf_model():
    if MISSING:
        pytest.skip(MISSING)
    return smollm2.read_gguf(smollm2.find_gguf())


@needs_model
def test_smollm2_numpy_smoke_tokens_and_bitwise_determinism(tmp_path):
    """The CPU smoke CI runs: 3 greedy tokens with numpy matmuls, twice, in separate processes."""
    runs = []
    for i in range(2):
        t0 = time.perf_counter()
        out = tmp_path / f"run{i}.npz"
        p = run_example("smollm2_decode.py", "--device", "numpy", "--tokens", "3", "--save", str(out),
                        cache_dir=tmp_path / "cache")
        took = time.perf_counter() - t0
        assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stdout + p.stderr
        assert took < 60, f"the CPU smoke took {took:.0f} s"
        runs.append((p.stdout, np.load(out)))
    (stdout, a), (_, b) = runs
    assert f"tokens: {EXPECTED_FIRST}" in stdout, stdout
    assert "text: 'Hello! I'" in stdout, stdout
    assert a["tokens"].tolist() == EXPECTED_FIRST
    assert a["logits"].dtype == np.float32 and a["logits"].shape == (3, 49152)
    assert np.array_equal(a["logits"].view(np.uint32), b["logits"].view(np.uint32)), "logits differ between runs"
    # margins large enough that another BLAS's rounding cannot flip the expected tokens
    margins = [float(np.diff(np.sort(lg)[-2:])[0]) for lg in a["logits"]]
    assert min(margins) > 0.1, margins


@needs_model
def test_smollm2_chunked_prefill_matches_token_by_token(gguf_model):
    """The KV cache and causal mask: a 16-token chunk gives the logits of feeding its tokens one by one
    (on the first two layers, to keep it quick: the cache logic is the same in every layer)."""
    cfg, tensors, tok = gguf_model
    m = smollm2.build_model(dataclasses.replace(cfg, layers=2), tensors, tok, "numpy", "bfloat16", "16bit")
    ids = tok.chat("hi")[:20]
    m.reset(32)
    chunked = m.forward(ids[:16], 0)
    chunked2 = m.forward(ids[16:], 16)
    m.reset(32)
    for i, t in enumerate(ids):
        one = m.forward([t], i)
        if i == 15:
            single16 = one
    assert chunked.shape == (1, cfg.vocab)
    np.testing.assert_allclose(chunked, single16, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(chunked2, one, rtol=1e-4, atol=1e-3)


@needs_model
def test_smollm2_q4_keeps_the_files_blocks_and_its_reference_the_exact_values(gguf_model):
    """--weights q4: every linear matrix of the file (all Q4_1) read as 4-bit blocks without requantizing;
    the numpy reference then multiplies by their exactly dequantized values (gguf's), not 16-bit roundings,
    and the jitgemm path (the layers w4_gemm runs, on a GPU) receives the blocks themselves."""
    cfg, tensors, tok = gguf_model
    q4 = smollm2.read_q4(smollm2.find_gguf())
    assert len(q4) == 7 * cfg.layers and {w.format for w in q4.values()} == {"q4_min"}
    name = "blk.0.ffn_down.weight"
    assert q4[name].shape == tensors[name].shape == (cfg.dim, cfg.ffn)
    import jitgemm
    assert np.array_equal(jitgemm.quant4.dequantize(q4[name]), tensors[name])
    m = smollm2.build_model(dataclasses.replace(cfg, layers=1), tensors, tok, "numpy", "bfloat16", "q4", q4=q4)
    assert np.array_equal(m.layers[0]["wd"].w, tensors[name])            # exact, not rounded to bf16
    plain = smollm2.build_model(dataclasses.replace(cfg, layers=1), tensors, tok, "numpy", "bfloat16", "16bit")
    assert not np.array_equal(plain.layers[0]["wd"].w, tensors[name])    # the 16-bit path rounds


@needs_model
def test_smollm2_tokenizer(gguf_model):
    _, _, tok = gguf_model
    # ids from the `tokenizers` package (byte-level BPE + individual digits) over the same vocab and merges
    assert tok.encode("Hello world, it's 2024!") == [19556, 905, 28, 357, 506, 216, 34, 32, 34, 36, 17]
    chat = tok.chat("hi")
    assert chat[0] == tok.special["<|im_start|>"] == 1 and chat.count(2) == 2  # two <|im_end|>
    for text in ("naïve café — “quotes” 東京", "  spaces\n\nand\ttabs 12345 x_y"):
        assert tok.decode(tok.encode(text)) == text


# ---- GGUF Q4_1 dequantization ----------------------------------------------------------------------------
def _q4_1_by_hand(block: bytes) -> np.ndarray:
    """ggml's Q4_1: fp16 scale d, fp16 minimum m, 16 bytes of nibbles; element j (< 16) is the low nibble
    of byte j, element j + 16 its high nibble; value = nibble * d + m."""
    d, m = struct.unpack("<ee", block[:4])
    q = block[4:20]
    nib = [b & 0xF for b in q] + [b >> 4 for b in q]
    return np.array([n * d + m for n in nib], np.float64)


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")
def test_q4_1_block_dequantizes_as_computed_by_hand():
    from gguf import GGMLQuantizationType
    qs = bytes(j | ((15 - j) << 4) for j in range(16))         # low nibbles 0..15, high nibbles 15..0
    block = struct.pack("<ee", 0.5, -1.0) + qs
    got = smollm2.dequantize(np.frombuffer(block, np.uint8).reshape(1, 20), GGMLQuantizationType.Q4_1)
    assert got.shape == (1, 32)
    want = np.array([j * 0.5 - 1.0 for j in range(16)] + [(15 - j) * 0.5 - 1.0 for j in range(16)])
    np.testing.assert_array_equal(got[0], want)                 # exact: every value is representable
    np.testing.assert_array_equal(got[0], _q4_1_by_hand(block))
    assert got[0, 3] == 0.5 and got[0, 16] == 6.5               # two values checked with pen and paper


@needs_model
def test_q4_1_first_block_of_the_model_matches_hand_decoding():
    import gguf
    r = gguf.GGUFReader(str(smollm2.find_gguf()))
    t = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.Q4_1
    row = smollm2.dequantize(t.data[:1], t.tensor_type)         # one row = 18 blocks of 32
    assert row.shape == (1, 576)
    np.testing.assert_allclose(row[0, :32], _q4_1_by_hand(t.data[0, :20].tobytes()), rtol=1e-6, atol=1e-7)


# ---- all-MiniLM-L6-v2: the BERT encoder on the CPU ------------------------------------------------------
minilm = load_example("minilm_embeddings")
MINILM_MISSING = minilm.missing_requirements()
needs_minilm = pytest.mark.skipif(MINILM_MISSING is not None, reason=f"MiniLM: {MINILM_MISSING}")


@pytest.fixture(scope="module")
def minilm_model():
    """(model dir, config, float32 tensors, tokenized SENTENCES)."""
    if MINILM_MISSING:
        pytest.skip(MINILM_MISSING)
    d = minilm.find_model_dir()
    cfg, tensors = minilm.read_model(d)
    return d, cfg, tensors, minilm.tokenize(d, minilm.SENTENCES)


@pytest.fixture(scope="module")
def minilm_reference(minilm_model):
    _, cfg, tensors, batch = minilm_model
    return minilm.Encoder(cfg, tensors, minilm.NumpyLinear)(*batch)


def _bf16(a):
    import ml_dtypes
    return a.astype(ml_dtypes.bfloat16).astype(np.float32)


class _Bf16Emulated:
    """What a bf16 jitgemm layer computes: bf16 weight, bias and tokens, float32 accumulation, a bf16 output."""

    def __init__(self, w, b):
        self.w, self.b = _bf16(w), _bf16(b)

    def __call__(self, x):
        return _bf16(_bf16(x) @ self.w.T + self.b)


class _Fp8Emulated(_Bf16Emulated):
    """The fp8 layer (W8A16): e4m3 weights with one scale per output channel, quantized as Linear.from_float does."""

    def __init__(self, w, b):
        from jitgemm.scaled import quantize_weight
        w8, scale = quantize_weight(w, per_channel=True)
        self.w, self.b = w8.astype(np.float32) * scale[:, None], _bf16(b)


@needs_minilm
def test_minilm_tokenizer(minilm_model):
    d = minilm_model[0]
    ids, type_ids, mask = minilm.tokenize(d, ["Hello, World!", "The weather is lovely today."])
    # uncased word pieces (vocab.txt): [CLS] hello , world ! [SEP], then padding to the longer sentence
    assert ids.tolist() == [[101, 7592, 1010, 2088, 999, 102, 0, 0], [101, 1996, 4633, 2003, 8403, 2651, 1012, 102]]
    assert mask.tolist() == [[1] * 6 + [0] * 2, [1] * 8] and not type_ids.any()
    long_ids, _, long_mask = minilm.tokenize(d, ["word " * 300])
    assert long_ids.shape == (1, minilm.MAX_TOKENS) and long_ids[0, -1] == 102 and long_mask.all()


@needs_minilm
def test_minilm_reference_embeddings(minilm_model, minilm_reference):
    d, cfg, tensors, _ = minilm_model
    emb = minilm_reference
    assert emb.shape == (len(minilm.SENTENCES), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    para, other = minilm.pair_scores(emb)
    assert min(para) > max(other) + 0.3, (para, other)
    # the cosines sentence-transformers' documentation prints for this model (sbert.net, usage): an
    # independent check of the whole forward pass, pooling and normalisation included
    enc = minilm.Encoder(cfg, tensors, minilm.NumpyLinear)
    doc = enc(*minilm.tokenize(d, ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]))
    sim = doc @ doc.T
    np.testing.assert_allclose([sim[0, 1], sim[0, 2], sim[1, 2]], [0.6660, 0.1046, 0.1411], atol=6e-4)
    # the attention mask: a sentence alone (no padding) gets the embedding it gets in the padded batch
    alone = enc(*minilm.tokenize(d, minilm.SENTENCES[:1]))
    np.testing.assert_allclose(alone[0], emb[0], atol=2e-6)


@needs_minilm
@pytest.mark.parametrize("weights, layer", [("bf16", _Bf16Emulated), ("fp8", _Fp8Emulated)])
def test_minilm_rounded_weights_meet_the_example_threshold(minilm_model, minilm_reference, weights, layer):
    """The GPU check's thresholds are attainable: the same rounding as jitgemm's layers, emulated in numpy."""
    _, cfg, tensors, batch = minilm_model
    emb = minilm.Encoder(cfg, tensors, layer)(*batch)
    cos = np.sum(emb * minilm_reference, axis=1)
    assert cos.min() >= minilm.THRESHOLD[weights], cos
    assert cos.min() < 0.999999, "the emulation did not round anything"


def test_minilm_without_the_model_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(minilm, "find_model_dir", lambda: None)
    assert minilm.main(["--device", "numpy"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cannot run: ") and minilm.INSTALL_HINT in lines[0], lines


@needs_minilm
def test_minilm_numpy_cli(tmp_path):
    t0 = time.perf_counter()
    p = run_example("minilm_embeddings.py", "--device", "numpy", cache_dir=tmp_path / "cache", timeout=120)
    took = time.perf_counter() - t0
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stdout + p.stderr
    assert "paraphrase pairs: " in p.stdout and "[numpy float32 reference]" in p.stdout, p.stdout
    assert took < 30, f"the CPU run took {took:.0f} s"


# ---- HF transformers Llama decoding: the pure helpers (torch is needed only on the GPU) -------------------
hf_decode = load_example("hf_decode")


def test_hf_decode_token_agreement_and_first_divergence():
    ref = [[5, 6, 7, 8], [1, 2, 3, 4], [9, 9, 9, 9]]
    got = [[5, 6, 7, 8], [1, 2, 0, 4], [0, 9, 8, 9]]            # row 1 differs at step 2, row 2 at steps 0 and 2
    c = hf_decode.compare_tokens(ref, got)
    assert (c["tokens"], c["identical"]) == (12, 9) and c["fraction"] == 0.75
    assert [r["first_divergence"] for r in c["rows"]] == [None, 2, 0]
    assert [r["identical"] for r in c["rows"]] == [4, 3, 2]
    one = hf_decode.compare_tokens([3, 1, 4], [3, 1, 5])          # a flat list is one row
    assert one["rows"] == [{"row": 0, "identical": 2, "first_divergence": 2}]
    with pytest.raises(ValueError, match="shape"):
        hf_decode.compare_tokens([[1, 2]], [[1, 2, 3]])
    assert hf_decode.parse_batches("1, 8,1") == [1, 8]


def test_hf_decode_times_the_two_ways_in_alternation(monkeypatch):
    """tokens/s both ways: warm-up of each, then the timed runs alternate torch, jitgemm, torch, ... (an
    H100 host drifted ±10 % between runs: timing all of one way first decided a batch-1 ratio); each way's
    best and first tokens are its own, and the model is switched back after every run."""
    import sys
    import types
    fake = types.ModuleType("torch")
    fake.cuda = types.SimpleNamespace(synchronize=lambda: None)
    monkeypatch.setitem(sys.modules, "torch", fake)
    log, clock = [], iter(range(1000))
    monkeypatch.setattr(hf_decode.time, "perf_counter", lambda: float(next(clock)) * 0.5)
    cpu = iter(range(1000))
    monkeypatch.setattr(hf_decode.time, "thread_time", lambda: float(next(cpu)) * 0.25)
    state = {"way": "torch"}

    def fn():
        log.append(state["way"])
        if state["way"] == "jitgemm":  # a slower run of jitgemm's: two clock ticks, three ticks of CPU time
            next(clock), next(cpu), next(cpu)
        return types.SimpleNamespace(cpu=lambda: types.SimpleNamespace(numpy=lambda: np.array([len(log)])))
    ways = {"torch": (lambda: None, lambda: None),
            "jitgemm": (lambda: state.update(way="jitgemm"), lambda: state.update(way="torch"))}
    rec = hf_decode.time_alternating(fn, ways, 3)
    assert log == ["torch", "jitgemm"] * 4 and state["way"] == "torch"
    assert len(rec["torch"]["times_s"]) == len(rec["jitgemm"]["times_s"]) == 3
    assert rec["torch"]["best_s"] == 0.5 and rec["jitgemm"]["best_s"] == 1.0
    assert rec["torch"]["tokens"].tolist() == [3] and rec["jitgemm"]["tokens"].tolist() == [4]  # the first timed run's
    assert rec["torch"]["repeatable"] is False  # each run here returns other tokens
    assert rec["torch"]["best_cpu_s"] == 0.25 and rec["jitgemm"]["best_cpu_s"] == 0.75
    n = hf_decode.noisy_host_ratios(rec["torch"], rec["jitgemm"])
    assert n["median_round_ratio"] == 0.5 and n["cpu_ratio"] == pytest.approx(1 / 3)


def test_hf_decode_logit_comparison():
    ref = np.array([[[0.0, 3.0, 1.0, 2.5], [4.0, 0.0, 4.0, 1.0]]], np.float32)   # [batch 1, 2 positions, vocab 4]
    test = ref.copy()
    test[0, 0, 3] = 3.5                                           # position 0's top-1 flips from id 1 to id 3
    c = hf_decode.compare_logits(test, ref)
    assert c["positions"] == 2 and c["top1_agree"] == 1 and c["top1_agree_fraction"] == 0.5
    assert c["max_abs_diff"] == 1.0
    assert c["rel_err"] == pytest.approx(1.0 / np.linalg.norm(ref))
    assert c["flip_max_ref_margin"] == 0.5 and c["ref_ties"] == 1   # position 1 is an exact tie (4.0, 4.0)
    np.testing.assert_array_equal(hf_decode.top2_margin(ref), [[0.5, 0.0]])
    same = hf_decode.compare_logits(ref, ref)
    assert same["rel_err"] == 0.0 and same["top1_agree"] == 2 and same["flip_max_ref_margin"] is None
    assert "batch 8: 256 tokens -> torch" in hf_decode.prefill_note([1, 8], 32, 128)
    assert "batch 1: 32 tokens -> jitgemm" in hf_decode.prefill_note([1, 8], 32, 128)


def test_hf_decode_routing_line():
    line = hf_decode.routes_text({"jitgemm": 1200, "cold path: new signature": 7,
                                  "torch: more tokens than max_tokens or K % 8 != 0": 40}, 1240)
    assert line == ("jitgemm 1,200; torch: more tokens than max_tokens or K % 8 != 0 40; cold path: new signature 7 "
                    "(decode-step calls expected on jitgemm: 1,240)")
    assert hf_decode.routes_text({}, 5) == "no routed call was counted"


def test_hf_decode_fuse_siblings_flag():
    assert hf_decode.parse_args(["--fuse-siblings"]).fuse_siblings == "on"
    assert hf_decode.parse_args(["--fuse-siblings", "both"]).fuse_siblings == "both"
    assert hf_decode.parse_args([]).fuse_siblings == "off"
    with pytest.raises(SystemExit):
        hf_decode.parse_args(["--fuse-siblings", "maybe"])


# ---- the notebook ------------------------------------------------------------------------------------------
NOTEBOOK = EXAMPLES / "tour.ipynb"


def _cells():
    nb = json.loads(NOTEBOOK.read_text())
    return nb, [c for c in nb["cells"] if c["cell_type"] == "code"]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_notebook_is_valid_with_outputs_cleared():
    nb, code = _cells()
    assert nb["nbformat"] == 4 and code
    try:
        import nbformat
    except ImportError:
        nbformat = None
    if nbformat is not None:
        nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))
    for c in code:
        compile(_src(c), f"{NOTEBOOK.name}:{c.get('id')}", "exec")
        assert c["outputs"] == [] and c["execution_count"] is None, "commit the notebook with outputs cleared"


def _guarded_by_have_gpu(stmt) -> bool:
    """A top-level statement of a `gpu` cell that does no GPU work on a CPU machine: a definition, an
    import, or an `if` on HAVE_GPU."""
    import ast
    if isinstance(stmt, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
        return True
    return isinstance(stmt, ast.If) and any(isinstance(n, ast.Name) and n.id == "HAVE_GPU"
                                            for n in ast.walk(stmt.test))


def test_notebook_gpu_cells_are_tagged_and_guarded():
    """A cell that calls into the GPU carries the `gpu` tag, and every `gpu` cell runs its GPU work only
    under the first cell's HAVE_GPU flag (a one-line note otherwise), so "Run All" on a machine without
    a GPU goes through to the end."""
    import ast
    _, code = _cells()
    gpu_calls = ("jitgemm.gemm(", "jitgemm.Linear(", "jitgemm.prepare(", "jitgemm.matmul(", "layer(")
    assert "HAVE_GPU =" in _src(code[0])
    tagged = 0
    for c in code:
        src = _src(c)
        if "gpu" not in c.get("metadata", {}).get("tags", []):
            assert not any(g in src for g in gpu_calls), f"untagged cell calls the GPU:\n{src}"
            continue
        tagged += 1
        body = ast.parse(src).body
        assert all(_guarded_by_have_gpu(st) for st in body), f"`gpu` cell not guarded by HAVE_GPU:\n{src}"
        assert "no GPU: " in src, f"`gpu` cell without a note for a machine without a GPU:\n{src}"
    assert tagged >= 4


# The notebook, top to bottom, as a user runs it ("Run All"): through nbclient and a Jupyter kernel where
# those are installed (.ci/run installs them), else every code cell's source in order in one namespace.
# A separate process either way, in examples/ (the notebook's folder), with a private code cache.
_RUN_NOTEBOOK = r"""
import contextlib, io, json, sys, traceback
nb_path, out_path, folder = sys.argv[1:4]
try:
    import nbclient, nbformat
except ImportError:
    nbclient = None
if nbclient is not None:
    nb = nbformat.read(nb_path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=nb.metadata.kernelspec.name,
                                     resources={"metadata": {"path": folder}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out_path)
    print("ran with nbclient")
else:
    import matplotlib
    matplotlib.use("Agg")
    nb = json.load(open(nb_path))
    ns = {"__name__": "__main__"}
    for count, cell in enumerate([c for c in nb["cells"] if c["cell_type"] == "code"], 1):
        src = "".join(cell["source"])
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(src, f"<cell {count}>", "exec"), ns)
        except BaseException:
            cell["outputs"] = [{"output_type": "error", "traceback": traceback.format_exc().splitlines()}]
            json.dump(nb, open(out_path, "w"))
            print(buf.getvalue())
            raise
        cell["execution_count"] = count
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": buf.getvalue()}]
    json.dump(nb, open(out_path, "w"))
    print("ran the cells in one namespace (nbclient is not installed)")
"""


def _outputs_text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
        elif "data" in o and "text/plain" in o["data"]:
            t = o["data"]["text/plain"]
            out.append("".join(t) if isinstance(t, list) else t)
    return "".join(out)


def test_notebook_runs_top_to_bottom(tmp_path):
    """Every code cell, in order, on this machine: no cell may raise (on a CPU machine the `gpu` cells
    print their note, and the cache, AOT and plot cells run)."""
    env = dict(os.environ)
    env["JITGEMM_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("JITGEMM_BACKEND", None)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = tmp_path / "executed.ipynb"
    p = subprocess.run([sys.executable, "-c", _RUN_NOTEBOOK, str(NOTEBOOK), str(out), str(EXAMPLES)],
                       capture_output=True, text=True, env=env, cwd=str(EXAMPLES), timeout=900)
    assert p.returncode == 0, f"the notebook stopped:\n{p.stdout}\n{p.stderr[-6000:]}"
    nb = json.loads(out.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), "not every cell ran, in order"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    texts = [_outputs_text(c) for c in code]
    assert f"GPU: {GPU}" in texts[0], texts[0]
    for c, text in zip(code, texts):
        if "gpu" in c["metadata"].get("tags", []) and not GPU:
            assert text.startswith("no GPU: ") and text.count("\n") == 1, text   # one line, nothing else
    by_src = {_src(c): t for c, t in zip(code, texts)}
    cache_out = next(t for s, t in by_src.items() if "default_cache()" in s)
    assert "cache directory: " + str(tmp_path / "cache") in cache_out, cache_out
    aot_out = next(t for s, t in by_src.items() if "compile_instance(" in s)
    assert re.search(r"^N= 1: .*registers", aot_out, re.M) or "skipped: cannot compile for sm_90a" in aot_out, aot_out
    assert re.search(r"^\d+ entries in ", aot_out, re.M), aot_out
    plot_cell = next(c for c in code if "report.draw(" in _src(c))
    plot_out = _outputs_text(plot_cell)
    assert "cases, streaming-read ceiling" in plot_out, plot_out
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in plot_out
    elif "ran with nbclient" in p.stdout:   # a kernel shows the two PNGs (fp16 and bf16)
        pngs = [o for o in plot_cell["outputs"] if "image/png" in o.get("data", {})]
        assert len(pngs) == 2, plot_cell["outputs"]
    else:
        assert "Image object" in plot_out or "plots drawn" in plot_out, plot_out


def test_benchmark_plots_give_each_series_its_own_colour(tmp_path, monkeypatch):
    """The notebook's plot (jitgemm.bench.report.draw on the committed JSON): 12 shapes per plot, and
    matplotlib's default cycle has only 10 colours. Every jitgemm series (solid) gets its own colour, and
    its torch baseline (dashed) the same one."""
    pytest.importorskip("matplotlib", reason="matplotlib (the [bench] extra) is not installed")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from jitgemm.bench import report
    assert len(set(report.series_colors(12))) == 12 and len(set(report.series_colors(33))) == 33
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    for name in ("h100-decode", "h100-fp8", "h100-moderate"):
        run = json.loads((REPO / "docs" / "benchmarks" / f"{name}.json").read_text())
        figures.clear()
        report.draw(tmp_path, name, run["table"], run["ceiling_tbs"])
        dtypes = sorted({r["dtype"] for r in run["table"]})
        assert len(figures) == len(dtypes)
        for dtype, fig in zip(dtypes, figures):
            shapes = {r["shape"] for r in run["table"] if r["dtype"] == dtype}
            lines = fig.axes[0].get_lines()
            solid = {ln.get_label(): matplotlib.colors.to_hex(ln.get_color()) for ln in lines
                     if ln.get_linestyle() == "-" and ln.get_label() in shapes}
            dashed = {matplotlib.colors.to_hex(ln.get_color()) for ln in lines if ln.get_linestyle() == "--"}
            assert set(solid) == shapes, (name, dtype)
            assert len(set(solid.values())) == len(shapes), f"{name} {dtype}: {len(shapes)} series share colours"
            assert dashed <= set(solid.values())
            fig.clf()


# ---- on a GPU: the examples for real ---------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("script", ["numpy_quickstart.py", "fp8_linear.py", "cupy_quickstart.py"])
def test_example_runs_on_gpu(script, tmp_path):
    if script.startswith("cupy") and importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    p = run_example(script, cache_dir=tmp_path / "cache", timeout=600)
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stdout + p.stderr
    assert "failed" not in p.stdout, p.stdout


@pytest.mark.gpu
@needs_model
def test_smollm2_jitgemm_matches_reference_on_gpu(tmp_path):
    p = run_example("smollm2_decode.py", "--tokens", "20", cache_dir=tmp_path / "cache", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "check: same greedy tokens" in p.stdout, p.stdout


@pytest.mark.gpu
@needs_minilm
@pytest.mark.parametrize("device", ["jitgemm", "cupy"])
@pytest.mark.parametrize("weights", ["bf16", "fp8"])
def test_minilm_jitgemm_matches_reference_on_gpu(device, weights, tmp_path):
    if device == "cupy" and importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    p = run_example("minilm_embeddings.py", "--device", device, "--weights", weights, cache_dir=tmp_path / "cache",
                    timeout=600)
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stdout + p.stderr
    assert re.search(rf"^check: min cosine [01]\.\d+ >= {minilm.THRESHOLD[weights]}$", p.stdout, re.M), p.stdout


@pytest.mark.gpu
def test_notebook_every_cell_runs_on_gpu(monkeypatch, tmp_path):
    """The whole tour, `gpu` cells included, top to bottom in one namespace (what a user running
    all cells gets); plots go to a non-interactive backend."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    _, code = _cells()
    ns = {}
    for c in code:
        exec(compile(_src(c), NOTEBOOK.name, "exec"), ns)
    assert ns["HAVE_GPU"] is True
