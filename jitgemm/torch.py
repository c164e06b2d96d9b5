"""torch integration: with its helper jitgemm.torch_siblings, the only jitgemm modules that import torch, and only
when a user imports jitgemm.torch.

- `Linear`: a drop-in `nn.Linear` whose forward runs `jitgemm.gemm` for decode-sized calls.
- `Fp8Linear`: e4m3 weights with per-output-channel scales (`Fp8Linear.from_linear`), through
  `jitgemm.scaled_gemm` (W8A16, a static token scale, or per-token dynamic quantization).
- `patch_linears(model)` / `unpatch(model)`: route every `nn.Linear` of a model (HF transformers,
  sentence-transformers, your own) through jitgemm, and back; `routing()` counts where the calls went.
  `patch_linears(model, fuse_siblings=True)` also runs layers called one after another on one input (q / k / v,
  gate / up) as one GEMM each (jitgemm.torch_siblings).

What is routed: inference calls (no autograd graph is being recorded: under `torch.no_grad()` /
`torch.inference_mode()`, or no operand requires grad) with fp16/bf16 CUDA tensors, tokens (all
leading dims together) N <= max_tokens, K % 8 == 0, and rows jitgemm can read with 16-byte vectors.
Everything else runs torch's own `F.linear`, so a patched model computes what it did before wherever
jitgemm does not apply (prefill chunks past 128 tokens, training, CPU tensors). Calls run on torch's
current stream, so they order with the surrounding torch work and are captured by `torch.cuda.graph`."""
from __future__ import annotations

import collections
import types

import torch
import torch.nn.functional as F
from torch import nn

from . import api, pipeline, scaled, torch_siblings
from .kernels import fp8, skinny

_SIXTEEN_BIT = (torch.float16, torch.bfloat16)


#: where the routed layers' calls went since the last routing(reset=True): "jitgemm", or "torch: <why>"
ROUTES: collections.Counter = collections.Counter()


def routing(reset: bool = False) -> dict:
    """Where patched / jitgemm.torch layers' calls went, with the call pipeline's cold-path counts: e.g.
    {"jitgemm": 12288, "torch: more tokens than max_tokens or K % 8 != 0": 64, "cold path: new signature":
    96}. A decode loop should show "jitgemm" growing and the cold path fixed after the first step; reset
    clears both counters after reading them."""
    out = dict(ROUTES)
    out.update(torch_siblings.ROWS_KEPT)
    out.update({f"cold path: {why}": n for why, n in pipeline.COLD_CALLS.items()})
    if reset:
        ROUTES.clear()
        torch_siblings.ROWS_KEPT.clear()
        pipeline.COLD_CALLS.clear()
    return out


def _linear16(x: torch.Tensor, weight: torch.Tensor, bias, max_tokens: int):
    """jitgemm.linear for a call it takes, else F.linear (which also raises torch's own errors)."""
    if x.is_cuda and x.dtype in _SIXTEEN_BIT and not (
            torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                         or (bias is not None and bias.requires_grad))):
        k = weight.shape[1]
        if k and k % 8 == 0 and 1 <= x.numel() // k <= max_tokens:
            if bias is None:  # a model's usual layer: its cached entry in one frame (pipeline.torch_pair says why)
                y = pipeline.torch_pair(api.LINEAR_TAG, x, weight)
                if y is not None:
                    ROUTES["jitgemm"] += 1
                    return y
            try:
                y = api.linear(x, weight, bias)
            except (ValueError, TypeError) as e:  # another dtype, rows it cannot read: torch's own
                ROUTES[f"torch: jitgemm refused ({str(e).splitlines()[0][:120]})"] += 1
            else:
                ROUTES["jitgemm"] += 1
                return y
        else:
            ROUTES["torch: more tokens than max_tokens or K % 8 != 0"] += 1
    else:
        ROUTES["torch: not a 16-bit CUDA inference call"] += 1
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear with jitgemm for decode-sized inference calls (see the module's doc for what is routed)."""

    max_tokens: int = skinny.MAX_N_MODERATE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear16(x, self.weight, self.bias, self.max_tokens)

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> "Linear":
        """The same layer (its parameters shared, not copied) as a jitgemm Linear."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = lin.in_features, lin.out_features
        new.weight, new.bias = lin.weight, lin.bias
        return new


def _patched_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _linear16(x, self.weight, self.bias, self._jitgemm_max_tokens)


def patch_linears(model: nn.Module, *, max_tokens: int = skinny.MAX_N_MODERATE, fuse_siblings: bool = False) -> int:
    """Route every nn.Linear in `model` through jitgemm (for the calls it takes); returns how many
    layers were patched. The parameters are untouched: `unpatch(model)` restores torch's forward.

    fuse_siblings=True: layers the model calls one after another on the same input (q / k / v, gate / up) learn
    so in the first calls and then run as one GEMM over their weights stacked in one buffer (jitgemm.torch_siblings
    says how, and what it checks). Their parameters then point into that buffer (same memory, same values), and
    their outputs are views with the group's row stride. Opt-in: under torch.inference_mode an in-place write to
    the input between two siblings' calls cannot be seen (inference tensors have no version counter)."""
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= skinny.MAX_N_MODERATE:
        raise ValueError(f"max_tokens must be an int in 1..{skinny.MAX_N_MODERATE}, got {max_tokens!r}")
    if not isinstance(fuse_siblings, bool):
        raise TypeError(f"fuse_siblings must be True or False, got {fuse_siblings!r}")
    count = 0
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and not isinstance(mod, Linear):
            mod._jitgemm_max_tokens = max_tokens
            if "forward" not in mod.__dict__:
                mod.forward = types.MethodType(_patched_forward, mod)
                if fuse_siblings:
                    torch_siblings.start(mod, mod.forward, _linear16)
                count += 1
    return count


_OURS = (_patched_forward,) + torch_siblings.FORWARDS


def unpatch(model: nn.Module) -> int:
    """Undo patch_linears: every patched layer runs its class's own forward again; returns how many. Parameters
    that fuse_siblings stacked stay views of their buffer (the same values and memory)."""
    count = 0
    for mod in model.modules():
        if getattr(mod.__dict__.get("forward"), "__func__", None) in _OURS:
            del mod.forward
            for name in ("_jitgemm_max_tokens",) + torch_siblings.ATTRIBUTES:
                mod.__dict__.pop(name, None)
            count += 1
    torch_siblings.forget()
    return count


class Fp8Linear(nn.Module):
    """y = x @ (w8 * scale_w[:, None]).T + bias with e4m3fn weights and one scale per output channel.

    activation: None (W8A16: 16-bit tokens, weights widened in the kernel), a float (tokens quantized
    with that static scale inside the kernel, one launch) or "dynamic" (per-token scales by
    jitgemm.quantize_fp8, then W8A8). Calls jitgemm does not take (N > 16, CPU, grad) run F.linear on the
    dequantized weight."""

    def __init__(self, w8: torch.Tensor, scale_w: torch.Tensor, bias: torch.Tensor | None = None, *,
                 activation=None, out_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        if w8.dtype != torch.float8_e4m3fn or w8.dim() != 2:
            raise TypeError(f"w8 must be a 2-D torch.float8_e4m3fn tensor [M, K], got {w8.dtype} {tuple(w8.shape)}")
        if scale_w.dtype != torch.float32 or scale_w.shape != (w8.shape[0],):
            raise ValueError(f"scale_w must be float32 [M] = [{w8.shape[0]}], got {scale_w.dtype} {tuple(scale_w.shape)}")
        if activation not in (None, "dynamic") and not (isinstance(activation, float) and activation > 0):
            raise ValueError(f"activation must be None, 'dynamic' or a float scale > 0, got {activation!r}")
        self.register_buffer("w8", w8)
        self.register_buffer("scale_w", scale_w)
        self.register_buffer("bias", bias)
        self.activation, self.out_dtype = activation, out_dtype
        self.out_features, self.in_features = w8.shape

    @classmethod
    def from_linear(cls, lin: nn.Linear, *, activation=None) -> "Fp8Linear":
        """Quantize a 16/32-bit nn.Linear per output channel: scale = amax / 448, w8 = rne(w / scale)."""
        with torch.no_grad():
            w = lin.weight.float()
            amax = w.abs().amax(dim=1)
            scale = torch.where(amax > 0, amax / fp8.FP8_MAX["float8_e4m3fn"], torch.ones_like(amax))
            w8 = (w / scale[:, None]).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
            bias = lin.bias.detach().to(lin.weight.dtype) if lin.bias is not None else None
        dtype = lin.weight.dtype if lin.weight.dtype in _SIXTEEN_BIT else torch.bfloat16
        return cls(w8, scale.contiguous(), bias, activation=activation, out_dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.in_features
        if x.is_cuda and x.dtype in _SIXTEEN_BIT and 1 <= x.numel() // k <= fp8.MAX_N and k % 16 == 0 \
                and not (torch.is_grad_enabled() and x.requires_grad):
            x2 = x.reshape(-1, k)
            try:
                if self.activation == "dynamic":
                    x8, sx = scaled.quantize_fp8(x2, per_token=True, fp8_format="e4m3fn")
                    y = scaled.scaled_gemm(x8, self.w8, sx, self.scale_w, self.bias, out_dtype=str(x.dtype)[6:])
                else:
                    y = scaled.scaled_gemm(x2, self.w8, self.activation, self.scale_w, self.bias)
                return y.view(*x.shape[:-1], self.out_features)
            except (ValueError, TypeError):
                pass  # rows jitgemm cannot read: the dequantized product below
        w = (self.w8.float() * self.scale_w[:, None]).to(x.dtype)
        return F.linear(x, w, self.bias)
