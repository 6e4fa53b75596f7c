"""SPML random walk (wsss.spml.random_walk): affinity against a loop over pairs, T's columns sum to 1,
T^64 by squaring and by steps against a dense matrix power, the whole pipeline on a stand-in network against
a NumPy reference (flip average, max normalisation, absent classes), and the cluster-mean limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.errors import UserError
from wsss.spml.random_walk import (RandomWalkConfig, affinity, random_walk_scores, seeded_scores, transition, walk,
                                   walk_probabilities)


def unit_embedding(b=2, d=3, n=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, n, generator=g, dtype=dtype), dim=1)


def test_affinity_against_a_loop_over_pairs():
    e = unit_embedding(b=1, d=4, n=7)
    a = affinity(e, beta=3.0)[0].numpy()
    x = e[0].numpy()
    for i in range(7):
        for j in range(7):
            assert a[i, j] == pytest.approx(np.exp(3.0 * (x[:, i] @ x[:, j] - 1.0)), rel=1e-12)
    assert np.allclose(a, a.T) and np.allclose(np.diag(a), 1.0)


def test_transition_columns_sum_to_one():
    t = transition(affinity(unit_embedding(), beta=2.0))
    assert torch.all(t > 0)
    assert torch.allclose(t.sum(dim=1), torch.ones(2, 12, dtype=t.dtype))
    # A is symmetric, so Tᵀ is row-stochastic: rows of Tᵀ sum to 1
    assert torch.allclose(t.transpose(1, 2).sum(dim=2), torch.ones(2, 12, dtype=t.dtype))


@pytest.mark.parametrize("method", ["squaring", "steps", "auto"])
def test_walk_is_v_times_t_to_the_64_against_a_dense_matrix_power(method):
    # a 3×4 grid (n = 12) of embeddings, weak affinities (β = 2) so that T^64 is not yet the stationary limit
    e = unit_embedding(b=2, d=3, n=12, seed=1)
    t = transition(affinity(e, beta=2.0))
    v = torch.rand(2, 5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = walk(v, t, squarings=6, method=method)
    for b in range(2):
        dense = torch.linalg.matrix_power(t[b], 64)
        assert torch.allclose(got[b], v[b] @ dense, rtol=1e-9, atol=1e-12)
    # fewer steps are really different (the test can fail)
    assert not torch.allclose(walk(v, t, squarings=5, method=method), got, rtol=1e-6)


def test_seeded_scores_divide_by_the_max_and_zero_absent_classes():
    p = torch.softmax(torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    present = torch.tensor([[True, False, True], [False, True, True]])
    s = seeded_scores(p, present)
    for b in range(2):
        for k in range(3):
            if present[b, k]:
                assert s[b, k].max().item() == pytest.approx(1.0)
                assert torch.allclose(s[b, k], p[b, k] / p[b, k].max())
            else:
                assert torch.all(s[b, k] == 0)


class StandIn:
    """A network stand-in: RGB image → (embedding B×3×h×w at stride 4, logits B×K×h×w), not flip-equivariant."""

    def __init__(self, k=3):
        g = torch.Generator().manual_seed(5)
        self.w_emb = torch.randn(3, 3, generator=g)
        self.w_log = torch.randn(k, 3, generator=g)

    def __call__(self, image):
        small = F.avg_pool2d(image / 255.0, 4)
        b, _, h, w = small.shape
        ramp = torch.linspace(0, 1, w)[None, None, None, :].expand(b, 1, h, w)
        emb = torch.einsum("dc,bchw->bdhw", self.w_emb, small) + 2.0 * ramp  # position-dependent: mirror differs
        logits = 3.0 * torch.einsum("kc,bchw->bkhw", self.w_log, small) + ramp
        return emb, logits


def numpy_reference(net, image, present, beta, steps, grid, scores=None):
    """The pipeline written out with NumPy loops over cells and pairs (``scores``: the given start, else the softmax)."""
    views = []
    for mirrored in (False, True):
        x = image.flip(-1) if mirrored else image
        emb, logits = net(x)
        emb = F.interpolate(emb, size=grid, mode="bilinear", align_corners=True)[0].numpy().astype(np.float64)
        logits = F.interpolate(logits, size=grid, mode="bilinear", align_corners=True)[0].numpy().astype(np.float64)
        if mirrored:
            emb, logits = emb[:, :, ::-1], logits[:, :, ::-1]
        emb = emb / np.linalg.norm(emb, axis=0, keepdims=True)
        p = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
        cells = emb.reshape(emb.shape[0], -1)
        n = cells.shape[1]
        a = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                a[i, j] = np.exp(beta * (cells[:, i] @ cells[:, j] - 1.0))
        views.append((a, p))
    a = (views[0][0] + views[1][0]) / 2
    p = (views[0][1] + views[1][1]) / 2
    if scores is not None:
        p = F.interpolate(scores, size=grid, mode="bilinear", align_corners=True)[0].numpy().astype(np.float64)
    v = np.stack([p[k] / p[k].max() * float(present[k]) for k in range(p.shape[0])]).reshape(p.shape[0], -1)
    t = a / a.sum(axis=0, keepdims=True)
    return (v @ np.linalg.matrix_power(t, steps)).reshape(p.shape[0], *grid)


def test_random_walk_scores_against_a_numpy_reference():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 48, 40, generator=g) * 255
    present = torch.tensor([[True, False, True]])
    net = StandIn()
    cfg = RandomWalkConfig(power=2.0, concentration=1.0, squarings=3)
    got = random_walk_scores(net, image, present, cfg)
    assert got.shape == (1, 3, 6, 5)
    ref = numpy_reference(net, image, present[0].tolist(), beta=2.0, steps=8, grid=(6, 5))
    assert np.allclose(got[0].numpy(), ref, rtol=1e-4, atol=1e-6)
    assert torch.all(got[0, 1] == 0)


def test_random_walk_of_given_scores_against_the_numpy_reference():
    """The tag pipeline's start (CAMs with a background) instead of the softmax: same walk, same normalisation."""
    g = torch.Generator().manual_seed(4)
    image = torch.rand(1, 3, 48, 40, generator=g) * 255
    scores = torch.rand(1, 3, 48, 40, generator=g, dtype=torch.float64)
    present = torch.tensor([[True, True, False]])
    net = StandIn()
    cfg = RandomWalkConfig(power=2.0, concentration=1.0, squarings=2)
    got = random_walk_scores(net, image, present, cfg, scores=scores)
    ref = numpy_reference(net, image, present[0].tolist(), beta=2.0, steps=4, grid=(6, 5), scores=scores)
    assert np.allclose(got[0].numpy(), ref, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got[0].numpy(), numpy_reference(net, image, present[0].tolist(), 2.0, 4, (6, 5)), atol=1e-3)


def test_separated_clusters_converge_to_their_mean_score():
    """Two groups of cells with orthogonal embeddings: after 64 steps at β = 100 each cell holds the mean of
    its group's starting scores (T restricted to a group of identical embeddings is uniform)."""
    h, w = 16, 16

    def net(image):
        b = image.shape[0]
        left = torch.zeros(b, 2, h // 4, w // 4)
        left[:, 0, :, : w // 8] = 1.0
        left[:, 1, :, w // 8:] = 1.0
        logits = image[:, :2, ::4, ::4] / 255.0 * 4.0
        return left, logits

    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255
    cfg = RandomWalkConfig(grid_scale=0.25)  # the 4×4 grid of the stand-in, so no resize mixes the groups
    got = random_walk_scores(net, image, torch.tensor([[True, True]]), cfg)[0]
    _, logits = net(image)
    p = (torch.softmax(logits, 1) + torch.softmax(net(image.flip(-1))[1], 1).flip(-1)) / 2
    v = seeded_scores(p, torch.tensor([[True, True]]))[0]
    for k in range(2):
        assert torch.allclose(got[k, :, :2], v[k, :, :2].mean().expand(4, 2), atol=1e-5)
        assert torch.allclose(got[k, :, 2:], v[k, :, 2:].mean().expand(4, 2), atol=1e-5)


def test_walk_probabilities_sum_to_one_and_keep_absent_classes_zero():
    s = torch.rand(1, 3, 4, 5)
    s[:, 1] = 0
    p = walk_probabilities(s, (32, 40))
    assert p.shape == (1, 3, 32, 40)
    assert torch.allclose(p.sum(1), torch.ones(1, 32, 40))
    assert torch.all(p[:, 1] == 0)


def test_config_checks_its_values():
    with pytest.raises(UserError, match="--rw-squarings"):
        RandomWalkConfig(squarings=-1)
    with pytest.raises(UserError, match="--rw-method"):
        RandomWalkConfig(method="fast")
    assert RandomWalkConfig().beta == 100.0 and RandomWalkConfig().steps == 64
