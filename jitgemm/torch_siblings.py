"""Sibling linears for jitgemm.torch: layers a model calls one after another on the same input tensor
(attention's q / k / v projections, an MLP's gate / up) run as one GEMM over their weights stacked in one buffer.

Why: in eager decode a routed linear costs its host time, not its kernel (session 26: ~13-16 us of Python and
dispatch a call in hf_decode's step against a 5-10 us kernel), and no per-call trim of a Python path reaches
torch's C++ F.linear by much. Three calls become one GEMM and two kept-row hits, which removes two calls' host
cost (and two kernels' ramp and tail: the stacked weight streams in one grid).

How a group forms (`jitgemm.torch.patch_linears(model, fuse_siblings=True)`):
- each patched layer starts observing: its call runs as usual and is recorded in a run; consecutive recorded
  calls on the same input object (same version where it has one, same K, dtype, device and bias form) extend the
  run; a run of two or more layers seen GROUP_AFTER times becomes a group; a layer seen SOLO_AFTER times alone
  stops observing (its forward becomes the plain routed one);
- grouping copies the members' weights (and biases) into one [sum of M, K] buffer and points each member's
  parameter at its rows (`param.data = rows`): the model's memory stays the same and in-place updates of a
  weight reach the buffer. Weights that already lie back to back in one storage (a model patched again) are
  used where they are, with no copy;
- a member's call returns the rows a sibling's call computed for it if they were computed for this same input
  object, at the same version (tensors that have a version counter), on the same stream, with grad mode off and
  the member's parameters the same objects at the same versions; otherwise it runs one GEMM for the whole group
  (jitgemm or, for calls jitgemm does not take, F.linear on the stacked weight), returns its rows and keeps the
  others for their calls. Rows are views of the group's output (their row stride is the group's width), as vLLM's
  merged projections return them.

What stays exact: with grad mode on, a member always runs alone on its own parameter (autograd must see it);
a member whose parameter no longer points into the buffer dissolves the group (every member alone again);
a group whose kept rows go unused WASTE_LIMIT times dissolves too (siblings that only looked like siblings).
What cannot be checked: an inference tensor (made under torch.inference_mode) has no version counter, so an
in-place write to the input between two siblings' calls is not seen; that is why fusing is opt-in."""
from __future__ import annotations

import collections
import types

import torch

GROUP_AFTER = 2     # sightings of one run before its layers are grouped (one decode step can be a prefill)
SOLO_AFTER = 4      # sightings alone before a layer stops observing
WASTE_LIMIT = 8     # groups whose computed rows went unused this often are dissolved


class _Run:
    """The layers of the latest consecutive recorded calls on one input (module-level: calls come one at a
    time from a model's forward)."""
    __slots__ = ("x", "version", "layers")

    def __init__(self):
        self.x, self.version, self.layers = None, None, []


_RUN = _Run()

#: calls that returned rows a sibling's call computed ("jitgemm: a sibling's rows" in jitgemm.torch.routing())
ROWS_KEPT: collections.Counter = collections.Counter()


def _version(x: torch.Tensor):
    return None if x.is_inference() else x._version


# torch's current stream as an int in one C call (the public API builds a Stream object); older torch: that API
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) \
    or (lambda device: torch.cuda.current_stream(device).cuda_stream)


def _stream(x: torch.Tensor) -> int:
    return _raw_stream(x.get_device())


def start(mod, plain_forward, linear) -> None:
    """Make a patched layer observe its calls. plain_forward: the routed forward it runs meanwhile (and alone);
    linear(x, weight, bias, max_tokens): the routed call a group runs on its stacked weight."""
    mod._jitgemm_alone = 0
    mod._jitgemm_plain = plain_forward
    mod._jitgemm_linear = linear
    mod.forward = types.MethodType(_observing_forward, mod)


ATTRIBUTES = ("_jitgemm_alone", "_jitgemm_plain", "_jitgemm_linear", "_jitgemm_group", "_jitgemm_index",
              "_jitgemm_runs")


def forget() -> None:
    """Drop the current run (unpatch: its layers and input must not be kept alive, nor joined by later calls)."""
    _RUN.__init__()


def _observing_forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self._jitgemm_plain(x)
    if not torch.is_grad_enabled() and x.is_cuda:
        _record(self, x)
    return y


def _compatible(a, b) -> bool:
    wa, wb = a.weight, b.weight
    return (wa.dim() == 2 and wb.dim() == 2 and wa.shape[1] == wb.shape[1] and wa.dtype == wb.dtype
            and wa.device == wb.device and (a.bias is None) == (b.bias is None)
            and a._jitgemm_max_tokens == b._jitgemm_max_tokens)


def _record(mod, x: torch.Tensor) -> None:
    run, v = _RUN, _version(x)
    if run.x is x and run.version == v and mod not in run.layers and _compatible(run.layers[0], mod):
        run.layers.append(mod)
        return
    _close(run)
    run.x, run.version, run.layers = x, v, [mod]


def _close(run: _Run) -> None:
    layers = run.layers
    if len(layers) == 1:
        mod = layers[0]
        if getattr(mod.forward, "__func__", None) is _observing_forward:  # (it may have been grouped since)
            mod._jitgemm_alone += 1
            if mod._jitgemm_alone >= SOLO_AFTER:
                mod.forward = mod._jitgemm_plain
    elif len(layers) > 1:
        runs = layers[0].__dict__.setdefault("_jitgemm_runs", {})
        key = tuple(map(id, layers))
        runs[key] = runs.get(key, 0) + 1
        if runs[key] >= GROUP_AFTER and not torch.cuda.is_current_stream_capturing() \
                and all(getattr(m.forward, "__func__", None) is _observing_forward and not m.weight.is_inference()
                        and (m.bias is None or not m.bias.is_inference()) for m in layers):
            _Group(layers)


def _stacked(tensors: list):
    """One [sum of rows, K] tensor holding `tensors`' rows: where they already lie back to back in one storage,
    a view of it (no copy); else None."""
    first = tensors[0]
    if not all(t.is_contiguous() for t in tensors):
        return None
    storage, offset = first.untyped_storage().data_ptr(), first.storage_offset()
    ptr = first.data_ptr()
    for t in tensors:
        if t.untyped_storage().data_ptr() != storage or t.data_ptr() != ptr:
            return None
        ptr += t.numel() * t.element_size()
    rows = sum(t.shape[0] for t in tensors)
    shape, stride = ((rows, first.shape[1]), (first.shape[1], 1)) if first.dim() == 2 else ((rows,), (1,))
    return first.detach().as_strided(shape, stride, offset)


def _stack(params: list):
    """The parameters' rows in one buffer, each parameter then a view of its rows (no copy where they are
    already stacked)."""
    data = [p.data for p in params]
    buf = _stacked(data)
    if buf is None:
        buf = torch.cat(data)
        at = 0
        for p in params:
            p.data = buf[at:at + p.shape[0]]
            at += p.shape[0]
    return buf


class _Group:
    """Layers computed together; each member's forward is `_member_forward`."""

    def __init__(self, layers: list):
        # outside inference mode: a normal buffer, which the (normal) parameters' .data may point into
        with torch.inference_mode(False), torch.no_grad():
            self.weight = _stack([m.weight for m in layers])
            self.bias = None if layers[0].bias is None else _stack([m.bias for m in layers])
        self.layers = layers
        self.sizes = [m.weight.shape[0] for m in layers]
        # (parameter dict, weight, bias): read without nn.Module.__getattr__'s Python frame; their addresses
        self.own = [(m._parameters, m.weight, m.bias) for m in layers]
        self.ptrs = [(w.data_ptr(), b is not None and b.data_ptr()) for _, w, b in self.own]
        self.max_tokens = layers[0]._jitgemm_max_tokens
        self.linear = layers[0]._jitgemm_linear
        self.kept = [None] * len(layers)
        self.wasted = 0
        for i, m in enumerate(layers):
            m._jitgemm_group, m._jitgemm_index = self, i
            m.forward = types.MethodType(_member_forward, m)

    def states(self) -> list | None:
        """Each member's parameter version (`_state`), or None where a member's parameters are no longer the
        objects grouped or no longer point at their rows of the buffer. Read once a group call: the versions
        are kept with the rows."""
        states = []
        for own, (w, b) in zip(self.own, self.ptrs):
            state = _state(own)
            if state == -1 or own[1].data_ptr() != w or (own[2] is not None and own[2].data_ptr() != b):
                return None
            states.append(state)
        return states

    def dissolve(self) -> None:
        for m in self.layers:
            m.forward = m._jitgemm_plain
        self.kept = [None] * len(self.layers)

    def run(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Member i's output for x: one GEMM for every member, the others' rows kept for their calls."""
        if torch.is_grad_enabled() or not x.is_cuda:
            return self.layers[i]._jitgemm_plain(x)
        states = self.states()
        if states is None:
            self.dissolve()
            return self.layers[i]._jitgemm_plain(x)
        if self.kept.count(None) < len(self.kept):  # rows computed for a call that never came
            self.wasted += 1
            if self.wasted >= WASTE_LIMIT:
                self.dissolve()
                return self.layers[i]._jitgemm_plain(x)
        parts = self.linear(x, self.weight, self.bias, self.max_tokens).split(self.sizes, dim=-1)
        key = (x, _version(x), _stream(x))
        kept = self.kept = [key + (state, p) for state, p in zip(states, parts)]
        kept[i] = None
        return parts[i]


def _state(own: tuple) -> int:
    """A member's parameters' version (the sum of their version counters: it moves with any in-place write to
    either), or -1 where the layer's parameters are no longer the objects grouped. The parameters' own counters:
    `param.data = rows` gave them storage in the buffer but not the buffer's counter."""
    params, w, b = own
    if params.get("weight") is not w or params.get("bias") is not b:
        return -1
    return w._version if b is None else w._version + b._version


def _member_forward(self, x: torch.Tensor) -> torch.Tensor:
    g = self._jitgemm_group
    i = self._jitgemm_index
    k = g.kept[i]
    if k is not None:  # the checks _version and _stream make, inline: this is the call that replaces a GEMM
        g.kept[i] = None
        if k[0] is x and k[1] == (None if x.is_inference() else x._version) \
                and k[2] == _raw_stream(x.get_device()) \
                and k[3] == _state(g.own[i]) != -1 and not torch.is_grad_enabled():
            ROWS_KEPT["jitgemm: a sibling's rows"] += 1
            return k[4]
    return g.run(i, x)


#: the forwards this module installs (jitgemm.torch.unpatch recognises them)
FORWARDS = (_observing_forward, _member_forward)
