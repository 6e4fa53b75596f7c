"""The closed-form energy gradient of the mirror-descent solver (collision divergence on a grid,
collision CE) against autograd of the energies it replaces, and the solver's result with it against the
autograd path."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from wsss.potts.crossentropy import collision, collision_with_gradient
from wsss.potts.neighbourhoods import grid_neighbourhood
from wsss.potts.relaxations import collision_divergence
from wsss.potts.solver import SolverConfig, soft_jaccard, solve_pseudolabels


def _inputs(seed=0, b=2, k=4, h=9, w=11, one_hot_rows=True):
    g = torch.Generator().manual_seed(seed)
    image = 255 * torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)
    y = torch.softmax(3 * torch.randn(b, k, h, w, generator=g, dtype=torch.float64), 1)
    if one_hot_rows:  # disjoint one-hot neighbours: the clamped (zero-gradient) branch of the log
        y[:, :, 0] = 0.0
        y[:, 0, 0, 0::2] = 1.0
        y[:, 1, 0, 1::2] = 1.0
    return image, y


@pytest.mark.parametrize("kind", ["nn4", "nn8"])
def test_collision_divergence_gradient_matches_autograd(kind):
    image, y = _inputs()
    valid = torch.ones(y.shape[0], *y.shape[2:], dtype=torch.bool)
    valid[1, 4:, 7:] = False
    nb = grid_neighbourhood(image, kind, valid=valid)
    e, g = nb.collision_divergence_with_gradient(y)
    yy = y.clone().requires_grad_(True)
    e_ref = nb.pair_terms(yy, collision_divergence)
    (g_ref,) = torch.autograd.grad(e_ref.sum(), yy)
    assert torch.allclose(e, e_ref.detach(), rtol=1e-12, atol=1e-10)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-10)


def test_collision_ce_gradient_matches_autograd():
    _, y = _inputs(one_hot_rows=False)
    log_sigma = torch.log_softmax(torch.randn_like(y), 1)
    yy = y.clone().requires_grad_(True)
    ref = collision(torch.log(yy), log_sigma)
    (g_ref,) = torch.autograd.grad(ref.sum(), yy)
    value, g = collision_with_gradient(y, log_sigma.exp())
    assert torch.allclose(value, ref.detach(), rtol=1e-12, atol=1e-12)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eta", [0.3, 0.0])
def test_solver_with_closed_form_gradient_matches_autograd_path(eta):
    image, _ = _inputs(seed=1, h=24, w=20)
    image = 100 + 0.1 * image  # colour steps of a few units: every pixel connected to a seed
    b, _, h, w = image.shape
    g = torch.Generator().manual_seed(2)
    logits = 2 * torch.randn(b, 4, h, w, generator=g, dtype=torch.float64)
    seeds = torch.full((b, h, w), 255, dtype=torch.int64)
    seeds[:, 3, 2:9] = 0
    seeds[:, 15, 5:14] = 1
    seeds[0, 20, 1:6] = 2
    cfg = SolverConfig(steps=15, eta=eta)
    y_fast = solve_pseudolabels(logits, seeds, image, cfg)
    y_auto = solve_pseudolabels(logits, seeds, image, replace(cfg, closed_form=False))
    assert bool(torch.isfinite(y_fast).all())
    assert float(soft_jaccard(y_fast, y_auto).min()) > 1 - 1e-9
    assert torch.allclose(y_fast, y_auto, atol=1e-9)
