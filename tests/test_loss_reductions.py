"""Each network loss's reduction (wsss.losses.term) against brute-force float64 loops, the seed-count
invariance of pCE and of the regularizers, and the DDP scaling of reduce_terms (simulated ranks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss.losses.registry import LossBatch, make_loss
from wsss.losses.term import Term, reduce_terms

K = 3


def _batch(b=2, h=9, w=10, seed=0, n_seeds=30):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, K, h, w, generator=g, dtype=torch.float64)
    image = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64) * 80
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[:, :, -2:] = False  # crop padding on the right
    valid[1, 0, 0] = False
    labels = torch.full((b, h, w), 255, dtype=torch.long)
    flat = torch.randperm(b * h * w, generator=g)[:n_seeds]
    labels.view(-1)[flat] = torch.randint(0, K, (n_seeds,), generator=g)
    return logits, image, labels, valid


def _log_softmax_np(z):
    z = z - z.max()
    return z - math.log(sum(math.exp(v) for v in z))


def brute_pce(logits, labels, valid):
    total, n = 0.0, 0
    lg = logits.numpy()
    for b, y, x in np.ndindex(*labels.shape):
        if valid[b, y, x] and labels[b, y, x] != 255:
            total -= _log_softmax_np(lg[b, :, y, x])[int(labels[b, y, x])]
            n += 1
    return total / n if n else 0.0


def test_pce_is_the_mean_over_labelled_valid_pixels():
    logits, image, labels, valid = _batch()
    labels[0, 3, 9] = 1  # a seed on padding does not count
    term = make_loss("pce").terms(logits, LossBatch(image, labels, valid))["pce"]
    assert term.count.item() == int(((labels != 255) & valid).sum())
    assert float(term.value()) == pytest.approx(brute_pce(logits, labels, valid), rel=1e-6)
    # full CE: the mean over the non-void valid pixels of a dense mask
    dense = torch.randint(0, K, labels.shape, generator=torch.Generator().manual_seed(5))
    dense[0, 0, :4] = 255
    ce = make_loss("full").terms(logits, LossBatch(image, dense, valid))["ce"]
    assert float(ce.value()) == pytest.approx(brute_pce(logits, dense, valid), rel=1e-6)


def test_no_seeds_gives_zero_and_a_finite_gradient():
    logits, image, labels, valid = _batch()
    logits.requires_grad_(True)
    none = torch.full_like(labels, 255)
    terms = make_loss("gridcrf").terms(logits, LossBatch(image, none, valid))
    objective, values = reduce_terms(terms)
    assert values["pce"] == 0.0 and terms["pce"].count.item() == 0
    objective.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0  # the regularizer still acts


def test_ten_times_fewer_seeds_leave_the_pce_scale_unchanged():
    # every pixel has the same per-pixel CE (same logits everywhere, one class): pCE is that CE for
    # 200 seeds and for 20, while a sum over seeds / valid pixels would shrink 10×
    b, h, w = 2, 12, 15
    logits = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64).view(1, K, 1, 1).expand(b, K, h, w).contiguous()
    image = torch.zeros(b, 3, h, w, dtype=torch.float64)
    valid = torch.ones(b, h, w, dtype=torch.bool)
    per_pixel = -float(torch.log_softmax(logits[0, :, 0, 0], 0)[1])
    values = []
    for n in (200, 20):
        labels = torch.full((b, h, w), 255, dtype=torch.long)
        labels.view(-1)[torch.randperm(b * h * w, generator=torch.Generator().manual_seed(n))[:n]] = 1
        term = make_loss("pce").terms(logits, LossBatch(image, labels, valid))["pce"]
        assert term.count.item() == n
        values.append(float(term.value()))
    assert values[0] == pytest.approx(per_pixel, rel=1e-6) and values[1] == pytest.approx(values[0], rel=1e-6)
    # random logits: the 10× sparser seeds are a subset; the mean stays a per-pixel average (≈ same scale)
    logits, image, labels, valid = _batch(n_seeds=150, h=12, w=15)
    sparse = labels.clone()
    keep = torch.nonzero(((labels != 255) & valid).view(-1)).view(-1)[::10]
    sparse.view(-1)[:] = 255
    sparse.view(-1)[keep] = labels.view(-1)[keep]
    dense_term = make_loss("pce").terms(logits, LossBatch(image, labels, valid))["pce"]
    sparse_term = make_loss("pce").terms(logits, LossBatch(image, sparse, valid))["pce"]
    assert dense_term.count.item() >= 9 * sparse_term.count.item()
    assert float(sparse_term.value()) == pytest.approx(brute_pce(logits, sparse, valid), rel=1e-6)
    assert 0.3 < float(sparse_term.value()) / float(dense_term.value()) < 3.0
    # the withdrawn rule (sums over the valid pixels) shrank ≈ 10× instead
    z = float(valid.sum())
    assert (float(sparse_term.total) / z) / (float(dense_term.total) / z) < 0.2


def _weights_dense(image, sigma_xy, sigma_rgb):
    """Exact W (diagonal 1) of one image at full resolution: RGBXY Gaussian, pixels in raster order."""
    _, h, w = image.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float64)
    rgb = image.numpy().reshape(3, -1).T
    d_xy = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    d_rgb = ((rgb[:, None] - rgb[None]) ** 2).sum(-1)
    return np.exp(-d_xy / (2 * sigma_xy**2) - d_rgb / (2 * sigma_rgb**2))


def brute_densecrf(probs, image, valid, sigma_xy, sigma_rgb):
    """Σ_k S^kᵀ W (1 − S^k) per image on valid pixels (pairs with an invalid endpoint dropped), loops."""
    out = []
    for b in range(probs.shape[0]):
        W = _weights_dense(image[b], sigma_xy, sigma_rgb)
        s = probs[b].numpy().reshape(K, -1)
        v = valid[b].numpy().ravel()
        r = 0.0
        for p in np.flatnonzero(v):
            for q in np.flatnonzero(v):
                r += W[p, q] * sum(s[k, p] * (1 - s[k, q]) for k in range(K))
        out.append(r)
    return out


@pytest.mark.parametrize("lam", [2.0, 0.5])
def test_densecrf_is_lambda_times_the_mean_over_images(lam):
    logits, image, labels, valid = _batch(h=6, w=7)
    opts = {"sigma_xy": 3.0, "sigma_rgb": 20.0, "scale": 1.0, "exact": True}
    loss = make_loss("densecrf", {"lam": lam, "dense": opts})
    term = loss.terms(logits, LossBatch(image, labels, valid))["crf"]
    per_image = brute_densecrf(torch.softmax(logits, 1), image, valid, 3.0, 20.0)
    assert term.count.item() == 2
    assert float(term.value()) == pytest.approx(lam * sum(per_image) / 2, rel=1e-5)


def test_regularizers_do_not_depend_on_the_seed_count():
    logits, image, labels, valid = _batch(n_seeds=100)
    fewer = labels.clone()
    idx = torch.nonzero(labels.view(-1) != 255).view(-1)
    fewer.view(-1)[idx[10:]] = 255  # 10× fewer seeds
    opts = {"dense": {"sigma_xy": 3.0, "sigma_rgb": 20.0, "scale": 1.0, "exact": True}}
    for name, options in (("gridcrf", {}), ("densecrf", opts), ("ncut", opts), ("kernelcut", opts)):
        loss = make_loss(name, options)
        a = loss.terms(logits, LossBatch(image, labels, valid))["crf"]
        b = loss.terms(logits, LossBatch(image, fewer, valid))["crf"]
        assert float(a.total) == float(b.total) and a.count.item() == b.count.item(), name


def test_self_labeling_term_is_the_weighted_mean_over_unlabelled_valid_pixels(monkeypatch):
    import wsss.losses.self_labeling as sl

    logits, image, labels, valid = _batch()
    y = torch.softmax(torch.randn(logits.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64), 1)
    monkeypatch.setattr(sl, "solve_pseudolabels", lambda *a, **k: y.clone())
    loss = make_loss("collision", {"weight": 4.0})
    term = loss.terms(logits, LossBatch(image, labels, valid))["sl"]
    total, n = 0.0, 0
    sig = torch.softmax(logits, 1).numpy()
    for b, r, c in np.ndindex(*labels.shape):
        if valid[b, r, c] and labels[b, r, c] == 255:
            total -= math.log(float((y[b, :, r, c].numpy() * sig[b, :, r, c]).sum()))  # collision CE
            n += 1
    assert term.count.item() == n
    assert float(term.value()) == pytest.approx(4.0 * total / n, rel=1e-5)


def test_soft_pseudo_label_ce_is_the_mean_over_valid_pixels():
    logits, image, labels, valid = _batch()
    probs = torch.softmax(torch.randn(logits.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1)
    term = make_loss("pseudo").terms(logits, LossBatch(image, labels, valid, probs))["ce"]
    total, n = 0.0, 0
    for b, r, c in np.ndindex(*labels.shape):
        if valid[b, r, c]:
            logp = _log_softmax_np(logits[b, :, r, c].numpy())
            total -= float((probs[b, :, r, c].numpy() * logp).sum())
            n += 1
    assert term.count.item() == n and float(term.value()) == pytest.approx(total / n, rel=1e-6)


def test_reduce_terms_under_simulated_ranks_matches_one_process():
    """DDP: each rank back-propagates Σ_t total_t · world / C_t with C_t summed over ranks; DDP averages the
    gradients. That average must equal the single-process gradient of the whole batch, also when the
    ranks hold different numbers of seeds (one none at all)."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, K, 3, padding=1).double()
    logits_all, image, labels, valid = _batch(b=4, n_seeds=40)
    labels[2:] = 255  # ranks 1 holds no seed
    labels[0, 0, :5] = 1
    loss = make_loss("gridcrf", {"lam": 3.0})

    def rank_terms(sl):
        return loss.terms(net(image[sl] / 80), LossBatch(image[sl], labels[sl], valid[sl]))

    objective, values = reduce_terms(rank_terms(slice(0, 4)))
    reference = torch.autograd.grad(objective, list(net.parameters()))
    shards = [rank_terms(slice(0, 2)), rank_terms(slice(2, 4))]
    stacks = []
    for terms in shards:
        names = sorted(terms)
        stacks.append(torch.cat([torch.stack([terms[n].count.double() for n in names]),
                                 torch.stack([terms[n].total.detach().double() for n in names])]))
    summed = stacks[0] + stacks[1]
    grads = []
    for terms in shards:
        obj, vals = reduce_terms(terms, world_size=2, all_reduce=lambda t: summed.clone())
        grads.append(torch.autograd.grad(obj, list(net.parameters())))
        assert vals == pytest.approx(values, rel=1e-12)  # logged means of the global batch on every rank
    for ref, g0, g1 in zip(reference, *grads):
        torch.testing.assert_close((g0 + g1) / 2, ref, rtol=1e-10, atol=1e-12)


def test_term_of_counts_and_plain_sums():
    from wsss.losses.term import as_terms

    t = torch.tensor(6.0, requires_grad=True)
    terms = as_terms({"a": t, "b": Term.of(torch.tensor(3.0), 4)}, lambda: torch.tensor(3.0, dtype=torch.float64))
    objective, values = reduce_terms(terms)
    assert values == {"a": 2.0, "b": 0.75} and float(objective.detach()) == pytest.approx(2.75)
