"""Reduced solves against the exact solution (docs/methods.md §4.5): the convex start at half resolution
against the full-resolution optimum of the convex problem, and the training budget of ``--loss
collision`` against a long solve of the actual energy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_solver import S, crop, sparse_reference, strokes, torch_inputs
from wsss.losses.registry import solver_config
from wsss.potts.solver import EXACT_CG_MAX_ITER, SolverConfig, soft_jaccard, solution_energy, solve_pseudolabels
from wsss.training.toy import _image


def smooth_logits(shape, k, seed, scale=3.0, stride=8, dtype=torch.float64):
    """Network-like logits: Gaussian noise at 1/stride resolution, upsampled bilinearly (B×K×H×W)."""
    b, h, w = shape
    g = torch.Generator().manual_seed(seed)
    low = scale * torch.randn(b, k, -(-h // stride), -(-w // stride), generator=g, dtype=dtype)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def test_half_resolution_convex_start_against_full_optimum():
    # quadratic Potts + quadratic CE: the convex start is the energy's optimum, known exactly (sparse solve)
    img = crop("coffee")
    seeds = strokes(img)
    logits = smooth_logits((1, *seeds.shape), 3, seed=0)
    eta, lam = 0.3, 6.0
    ref = sparse_reference(img, seeds, 3, eta, lam, torch.softmax(logits, 1)[0].numpy())
    im, sd = torch_inputs(img, seeds)
    cfg = SolverConfig(eta=eta, lam=lam, relaxation="quadratic", ce="quadratic", bandwidth=S,
                       cg_max_iter=EXACT_CG_MAX_ITER)
    full = solve_pseudolabels(logits, sd, im, cfg)
    half = solve_pseudolabels(logits, sd, im, replace(cfg, start_downsample=2))
    ref_t = torch.from_numpy(ref)[None]
    j_full, j_half = float(soft_jaccard(full, ref_t)), float(soft_jaccard(half, ref_t))
    # measured: half 0.9415, full 0.99999 (the half-resolution start is a start: mirror steps follow)
    assert j_full >= 0.995
    assert j_half >= 0.93
    assert torch.equal(half[sd[:, None].expand_as(half) != 255].round(), half[sd[:, None].expand_as(half) != 255])
    assert torch.allclose(half.sum(1), torch.ones_like(half[:, 0]))


def toy_batch(seed, size=64, k=3):
    rng = np.random.default_rng(seed)
    images, masks, seeds = zip(*(_image(rng, size) for _ in range(2)))
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double()
    mask = torch.from_numpy(np.stack(masks)).long()
    # predictions after a pCE warm-up: right on the whole of most shapes, blurred, noisy
    onehot = F.one_hot(mask, k).permute(0, 3, 1, 2).double()
    logits = 2.0 * F.avg_pool2d(onehot, 9, 1, 4, count_include_pad=False) + smooth_logits(mask.shape, k, seed, 1.5)
    return image, torch.from_numpy(np.stack(seeds)).long(), logits


def test_training_budget_against_a_long_solve():
    """The training budget (half-resolution start, 15 steps at lr 3) agrees with the exact reference at
    least as well as the previous one (full-resolution start, 20 steps at lr 1), within 1 point of soft
    Jaccard, at a comparable energy. Measured (seeds 0 / 1): soft Jaccard 71.3 / 74.9 % vs 66.3 / 68.0 %,
    energy +3.8 / +0.5 %."""
    before_cfg = solver_config({"steps": 20, "lr": 1.0, "start_downsample": 1}, training=True)
    new_cfg = solver_config({}, training=True)
    ref_cfg = replace(new_cfg.resolved(), steps=1000, lr=1.0, start_downsample=1, cg_max_iter=EXACT_CG_MAX_ITER,
                      cg_dtype="float64")
    for seed in (0, 1):
        image, seeds, logits = toy_batch(seed)
        ref = solve_pseudolabels(logits, seeds, image, ref_cfg)
        out = {}
        for name, cfg in (("before", before_cfg), ("new", new_cfg)):
            y = solve_pseudolabels(logits.float(), seeds, image.float(), cfg).double()
            out[name] = (float(soft_jaccard(y, ref).mean()), float(solution_energy(y, logits, seeds, image, ref_cfg).sum()))
        assert out["new"][0] >= out["before"][0] - 0.01, (seed, out)
        assert out["new"][1] <= 1.06 * out["before"][1], (seed, out)
        assert float(solution_energy(ref, logits, seeds, image, ref_cfg).sum()) < out["new"][1]


def test_half_resolution_start_odd_sizes_and_valid_mask():
    image, seeds, logits = toy_batch(2, size=37)
    image, seeds, logits = image[..., :29], seeds[..., :29], logits[..., :29]
    valid = torch.ones_like(seeds, dtype=torch.bool)
    valid[:, 30:] = False
    seeds = torch.where(valid, seeds, torch.full_like(seeds, 255))
    y = solve_pseudolabels(logits, seeds, image, solver_config({}, training=True), valid)
    assert y.shape == logits.shape and bool(torch.isfinite(y).all())
    assert torch.allclose(y.sum(1), torch.ones_like(y[:, 0]), atol=1e-9)
    on = seeds != 255
    assert torch.equal(y.argmax(1)[on], seeds[on]) and bool((y.amax(1)[on] == 1).all())
    with pytest.raises(ValueError, match="start_downsample"):
        solve_pseudolabels(logits, seeds, image, SolverConfig(start_downsample=0))
