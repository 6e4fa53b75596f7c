"""Cross-entropy terms CE(y, σ) (self-labeling.md §4, the paper's Figure 3)."""

from __future__ import annotations

import pytest
import torch

from wsss.potts.crossentropy import CROSS_ENTROPIES, get_cross_entropy, safe_log

D = torch.float64


def logsimplex(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(*shape, generator=g, dtype=D) * 2, 1)


def test_formulas_and_argument_order():
    ly, ls = logsimplex(4, 5, 3, 3, seed=1), logsimplex(4, 5, 3, 3, seed=2)
    y, s = ly.exp(), ls.exp()
    assert torch.allclose(CROSS_ENTROPIES["standard"](ly, ls), -(y * s.log()).sum(1))  # H(y, σ)
    assert torch.allclose(CROSS_ENTROPIES["reverse"](ly, ls), -(s * y.log()).sum(1))  # H(σ, y)
    assert torch.allclose(CROSS_ENTROPIES["collision"](ly, ls), -(y * s).sum(1).log())
    assert torch.allclose(CROSS_ENTROPIES["quadratic"](ly, ls), 0.5 * ((y - s) ** 2).sum(1))
    # collision is symmetric, standard and reverse are each other's swap
    assert torch.allclose(CROSS_ENTROPIES["collision"](ly, ls), CROSS_ENTROPIES["collision"](ls, ly))
    assert torch.allclose(CROSS_ENTROPIES["standard"](ly, ls), CROSS_ENTROPIES["reverse"](ls, ly))
    assert not torch.allclose(CROSS_ENTROPIES["standard"](ly, ls), CROSS_ENTROPIES["reverse"](ly, ls))


@pytest.mark.parametrize("name", list(CROSS_ENTROPIES))
def test_gradcheck_both_arguments(name):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 4, 3, 2, generator=g, dtype=D, requires_grad=True)
    b = torch.randn(2, 4, 3, 2, generator=g, dtype=D, requires_grad=True)
    term = CROSS_ENTROPIES[name]
    assert torch.autograd.gradcheck(lambda a, b: term(torch.log_softmax(a, 1), torch.log_softmax(b, 1)), (a, b))


@pytest.mark.parametrize("name", list(CROSS_ENTROPIES))
def test_one_hot_targets_are_finite(name):
    y = torch.eye(3, dtype=D)[[0, 1, 2, 0]]
    z = torch.randn(4, 3, dtype=D, requires_grad=True)
    v = CROSS_ENTROPIES[name](safe_log(y), torch.log_softmax(z, 1)).sum()
    (gz,) = torch.autograd.grad(v, z)
    assert torch.isfinite(v) and torch.isfinite(gz).all()


def _grad_wrt_logits(name, y, z):
    z = z.clone().requires_grad_(True)
    v = CROSS_ENTROPIES[name](safe_log(y), torch.log_softmax(z, 1)).sum()
    (g,) = torch.autograd.grad(v, z)
    return g


def test_figure3_uniform_pseudo_label():
    """With y uniform: standard pushes σ toward uniform; reverse and collision give no gradient."""
    k = 4
    y = torch.full((3, k), 1.0 / k, dtype=D)
    z = torch.tensor([[3.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.0], [-2.0, -1.0, 4.0, 1.0]], dtype=D)
    sigma = torch.softmax(z, 1)
    g_std = _grad_wrt_logits("standard", y, z)
    assert torch.allclose(g_std, sigma - y)  # d/dz H(y, softmax z) = σ − y
    # a descent step makes σ more uniform (entropy rises) — the network copies y's uncertainty
    ent = lambda p: -(p * p.log()).sum(1)  # noqa: E731
    assert (ent(torch.softmax(z - 0.5 * g_std, 1)) > ent(sigma) + 1e-3).all()
    for name in ("reverse", "collision"):
        g = _grad_wrt_logits(name, y, z)
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-12), name
    # control: a non-uniform y does pull σ under collision (the zero above is not vacuous)
    y2 = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 3, dtype=D)
    assert _grad_wrt_logits("collision", y2, z).abs().max() > 1e-2


def test_collision_does_not_make_predictions_uncertain():
    """Collision CE is minimized by a one-hot σ at the arg-max of y (no mimicking of y's softness)."""
    y = torch.tensor([[0.5, 0.3, 0.2]], dtype=D)
    z = torch.zeros(1, 3, dtype=D, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        CROSS_ENTROPIES["collision"](safe_log(y), torch.log_softmax(z, 1)).sum().backward()
        opt.step()
    s = torch.softmax(z, 1)[0]
    assert s[0] > 0.95
    # whereas standard CE converges to σ = y
    z2 = torch.zeros(1, 3, dtype=D, requires_grad=True)
    opt = torch.optim.SGD([z2], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        CROSS_ENTROPIES["standard"](safe_log(y), torch.log_softmax(z2, 1)).sum().backward()
        opt.step()
    assert torch.allclose(torch.softmax(z2, 1)[0], y[0], atol=1e-3)


def test_unknown_name():
    with pytest.raises(ValueError, match="cross-entropy"):
        get_cross_entropy("kl")
