"""The URSS random-walk block against a dense reference (softmax of the explicit energy matrix), its
identity at initialisation and its memory refusal."""

from __future__ import annotations

import pytest
import torch

from wsss.errors import UserError
from wsss.models.random_walk import RandomWalk, check_walk_memory, walk_bytes


def _dense_reference(block, f):
    """f^L by explicit matrices per image: rows of F are grid positions (row-major)."""
    b, d, h, w = f.shape
    outs, energies = [], []
    for i in range(b):
        fm = f[i].reshape(d, h * w).T  # N×D
        if block.form == "code":
            q = fm @ block.query.weight[:, :, 0, 0].T + block.query.bias
            k = fm @ block.key.weight[:, :, 0, 0].T + block.key.bias
            v = fm @ block.value.weight[:, :, 0, 0].T + block.value.bias
        else:
            q = k = v = fm
        e = torch.empty(h * w, h * w, dtype=f.dtype)
        for r in range(h * w):
            for c in range(h * w):
                e[r, c] = (q[r] * k[c]).sum()
        p = torch.exp(e - e.max(1, keepdim=True).values)
        p = p / p.sum(1, keepdim=True)
        assert torch.allclose(p.sum(1), torch.ones(h * w, dtype=f.dtype))
        out = block.alpha * (p @ v) + fm
        outs.append(out.T.reshape(d, h, w))
        energies.append(e)
    return torch.stack(outs), torch.stack(energies)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_walk_matches_dense_reference(form):
    torch.manual_seed(0)
    block = RandomWalk(16, form=form).double()
    with torch.no_grad():
        block.alpha.fill_(0.7)
    f = torch.randn(2, 16, 3, 4, dtype=torch.float64) * (1.0 if form == "code" else 0.3)
    got, energy = block(f)
    want, want_e = _dense_reference(block, f)
    assert torch.allclose(energy, want_e, atol=1e-10)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_walk_starts_as_identity(form):
    torch.manual_seed(1)
    block = RandomWalk(8, form=form)
    assert float(block.alpha.detach()) == 0.0
    f = torch.randn(1, 8, 5, 5)
    out, _ = block(f)
    assert torch.equal(out, f)
    out.sum().backward()  # α still receives a gradient
    assert block.alpha.grad is not None and float(block.alpha.grad.abs()) > 0


def test_walk_refuses_a_grid_that_does_not_fit():
    assert walk_bytes(2, 100, matrices=1) == 2 * 100 * 100 * 4
    with pytest.raises(UserError, match="random walk on a 59×59 feature grid"):
        check_walk_memory(16, (59, 59), torch.device("cpu"), limit=1 << 30)
    check_walk_memory(1, (10, 10), torch.device("cpu"), limit=1 << 30)
    block = RandomWalk(4, memory_limit=1000)
    with pytest.raises(UserError, match="--crop-size"):
        block(torch.zeros(1, 4, 6, 6))
    with pytest.raises(UserError, match="--walk"):
        RandomWalk(4, form="dense")


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet50", "resnet101", "mobilenet_v2"])
def test_urss_network_on_each_backbone_has_the_stride_8_grid(backbone):
    """The URSS network builds on every backbone of the toolkit at output stride 8: logits at input size,
    the walk's energy on the ⌈size/8⌉² grid (the estimate wsss train's memory check uses), α starting at 0."""
    import warnings

    from wsss.models import ModelConfig, empty_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = empty_model(ModelConfig(num_classes=3, backbone=backbone, output_stride=8, head="urss")).eval()
    assert float(net.walk.alpha) == 0.0
    with torch.no_grad():
        for size in (64, 65):
            logits, energy, grid = net(torch.rand(1, 3, size, size) * 255, with_energy=True)
            n = -(-size // 8)
            assert logits.shape == (1, 3, size, size) and grid == (n, n) and energy.shape == (1, n * n, n * n)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_energy_stays_float32_under_float16_autocast(form):
    """Training with AMP runs the network under float16 autocast: the energy's sums of D products must not
    overflow float16's 65504 (here 512 · 20² = 204800 in the paper form), so E is computed in float32."""
    torch.manual_seed(0)
    block = RandomWalk(512, form=form)
    with torch.no_grad():
        block.alpha.fill_(0.5)
    f = torch.full((1, 512, 3, 3), 20.0) + torch.rand(1, 512, 3, 3)
    want_out, want_e = block(f)
    with torch.autocast("cpu", dtype=torch.float16):
        out, e = block(f)
    assert e.dtype == torch.float32 and torch.isfinite(e).all() and torch.isfinite(out).all()
    if form == "paper":
        assert e.max() > 65504  # would be inf in float16
        torch.testing.assert_close(e, want_e)
    torch.testing.assert_close(out.float(), want_out, rtol=1e-2, atol=0.5)
