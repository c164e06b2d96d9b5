"""jitgemm.torch.patch_linears(model, fuse_siblings=True): layers called one after another on one input (an
attention block's q / k / v, an MLP's gate / up) become one GEMM, and nothing a user can observe changes but the
speed: outputs against float64 references, parameters' values, autograd, in-place writes to the input or a weight
between siblings' calls, replaced weights, graph capture, unpatch and a second patch."""
import numpy as np
import pytest
from conftest import cuda_torch

pytestmark = pytest.mark.gpu


def _block(torch, bias: bool, k: int = 512):
    """A decoder block's linears in a model's calling pattern: q, k, v on x; o on their mix; gate, up on that;
    down on the product (o and down are called alone)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(k, k, bias=bias)
            self.k, self.v = nn.Linear(k, 128, bias=bias), nn.Linear(k, 128, bias=bias)
            self.o = nn.Linear(k, k, bias=bias)
            self.gate, self.up = nn.Linear(k, 1024, bias=bias), nn.Linear(k, 1024, bias=bias)
            self.down = nn.Linear(1024, k, bias=bias)

        def forward(self, x, between=None):
            q = self.q(x)
            if between is not None:
                between(x)
            kk, v = self.k(x), self.v(x)
            h = self.o(q * 0.5 + kk.repeat_interleave(4, -1) * 0.25 + v.repeat_interleave(4, -1) * 0.25)
            return self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))
    torch.manual_seed(0)
    return Block().to("cuda", torch.bfloat16)


def _reference(block, x):
    """The block in float64 on the host, from the parameters' current values."""
    p = {n: t.detach().double().cpu().numpy() for n, t in block.named_parameters()}

    def lin(name, a):
        y = a @ p[f"{name}.weight"].T
        return y + p[f"{name}.bias"] if f"{name}.bias" in p else y
    a = x.double().cpu().numpy()
    q, kk, v = lin("q", a), lin("k", a), lin("v", a)
    h = lin("o", q * 0.5 + np.repeat(kk, 4, -1) * 0.25 + np.repeat(v, 4, -1) * 0.25)
    g = lin("gate", h)
    return lin("down", g / (1 + np.exp(-g)) * lin("up", h))


def _grouped(torch, jt, bias: bool):
    """A patched block after four no-grad steps: its q / k / v and gate / up groups formed."""
    block = _block(torch, bias)
    jt.patch_linears(block, fuse_siblings=True)
    with torch.no_grad():
        for _ in range(4):
            block(torch.randn(2, 512, device="cuda", dtype=torch.bfloat16))
    assert block.k.forward.__func__.__name__ == "_member_forward"
    return block


def _close(got, ref, tol=3e-2):
    got = got.double().cpu().numpy()
    assert np.isfinite(got).all()
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err < tol, f"relative error {err:.3g}"


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_siblings_group_and_match_float64(bias, mode):
    torch = cuda_torch()
    import jitgemm.torch as jt
    block = _block(torch, bias)
    before = {n: t.detach().clone() for n, t in block.named_parameters()}
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    assert jt.patch_linears(block, fuse_siblings=True) == 7
    jt.routing(reset=True)
    try:
        with ctx():
            for step in range(6):
                x = torch.randn(3, 512, device="cuda", dtype=torch.bfloat16)
                _close(block(x), _reference(block, x))
        routes = jt.routing(reset=True)
        # two groups formed after two sightings: q/k/v and gate/up, three kept-row calls a step from then on
        assert routes.get("jitgemm: a sibling's rows", 0) >= 3 * 3, routes
        assert block.k.forward.__func__.__name__ == "_member_forward"
        assert block.o.forward.__func__.__name__ == "_patched_forward", "o is called alone: it stops observing"
        for n, t in block.named_parameters():
            assert torch.equal(t, before[n]), f"{n} changed value when stacked"
        g = block.q._jitgemm_group
        assert block.k.weight.data_ptr() == g.weight.data_ptr() + 512 * 512 * 2, "k's rows follow q's in one buffer"
    finally:
        assert jt.unpatch(block) == 7
    with torch.no_grad():
        x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
        _close(block(x), _reference(block, x))


def test_siblings_see_an_in_place_write_between_calls():
    """x changes in place after q's call: k and v must read the new x (x's version counter moved), not the
    rows q's call computed for the old one; likewise a weight written in place between the calls."""
    torch = cuda_torch()
    import jitgemm.torch as jt
    block = _grouped(torch, jt, False)
    try:
        with torch.no_grad():
            x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
            seen = []

            def write(t):
                seen.append(t.clone())
                t.mul_(-2.0)
            got = block(x, between=write)
            x0 = seen[0].double().cpu().numpy()
            x1 = x.double().cpu().numpy()
            p = {n: t.detach().double().cpu().numpy() for n, t in block.named_parameters()}
            q, kk, v = x0 @ p["q.weight"].T, x1 @ p["k.weight"].T, x1 @ p["v.weight"].T
            h = (q * 0.5 + np.repeat(kk, 4, -1) * 0.25 + np.repeat(v, 4, -1) * 0.25) @ p["o.weight"].T
            g = h @ p["gate.weight"].T
            ref = (g / (1 + np.exp(-g)) * (h @ p["up.weight"].T)) @ p["down.weight"].T
            _close(got, ref)
            # k's weight scaled in place between q's call and k's: k's rows must use the new weight (the
            # parameter's own version counter moved; the buffer's did not)
            x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
            got = block(x, between=lambda t: block.k.weight.mul_(-3.0))
            _close(got, _reference(block, x))
    finally:
        jt.unpatch(block)


def test_siblings_follow_a_replaced_weight_and_keep_autograd():
    torch = cuda_torch()
    import jitgemm.torch as jt
    block = _grouped(torch, jt, True)
    try:
        with torch.no_grad():
            block.v.weight = torch.nn.Parameter(torch.randn_like(block.v.weight) * 0.05)  # out of the buffer
            x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
            _close(block(x), _reference(block, x))
            assert block.v.forward.__func__.__name__ == "_patched_forward", "the group dissolved"
            block.up.weight.mul_(3.0)  # in place: up's storage is its rows of the buffer, the next GEMM reads them
            _close(block(x), _reference(block, x))
        # grad mode on: every member runs alone on its own parameter, and the gradients reach it
        x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
        block(x).float().sum().backward()
        assert block.gate.weight.grad is not None and block.gate.weight.grad.abs().sum() > 0
    finally:
        jt.unpatch(block)


def test_siblings_are_captured_by_a_cuda_graph_and_a_second_patch_copies_nothing():
    torch = cuda_torch()
    import jitgemm.torch as jt
    block = _block(torch, False)
    jt.patch_linears(block, fuse_siblings=True)
    x = torch.randn(4, 512, device="cuda", dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(4):
                    block(x)
            torch.cuda.current_stream().wait_stream(s)
            assert block.q.forward.__func__.__name__ == "_member_forward"
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = block(x)
            x.copy_(torch.randn_like(x))
            graph.replay()
            torch.cuda.synchronize()
            _close(y, _reference(block, x))
        ptrs = [m.weight.data_ptr() for m in (block.q, block.k, block.v, block.gate, block.up)]
    finally:
        jt.unpatch(block)
    jt.patch_linears(block, fuse_siblings=True)
    try:
        with torch.no_grad():
            for _ in range(4):
                x = torch.randn(1, 512, device="cuda", dtype=torch.bfloat16)
                _close(block(x), _reference(block, x))
        assert block.gate.forward.__func__.__name__ == "_member_forward"
        assert [m.weight.data_ptr() for m in (block.q, block.k, block.v, block.gate, block.up)] == ptrs
        assert block.q._jitgemm_group.weight.data_ptr() == ptrs[0], "the stacked weights were used where they lie"
    finally:
        jt.unpatch(block)


def test_fuse_siblings_argument_is_checked():
    torch = cuda_torch()
    import jitgemm.torch as jt
    with pytest.raises(TypeError, match="fuse_siblings must be True or False"):
        jt.patch_linears(torch.nn.Linear(8, 8), fuse_siblings="yes")
