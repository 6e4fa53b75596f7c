"""CAM losses (cam.md): GAP, ISL sampling and gradients, FSL against a brute-force pair loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from wsss.cam.losses import (classification_loss, feature_similarity_loss, fsl_dissimilarity, fsl_gate, fsl_image,
                             fsl_window_bound, fsl_window_tail, gap_loss, isl_loss, max_normalized_cam,
                             sample_positions, tags_to_targets)
from wsss.errors import UserError

D = torch.float64


def _scores(b=2, k=3, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, h, w, generator=g, dtype=D)


# -- GAP ------------------------------------------------------------------------------------

def test_gap_loss_matches_formula():
    s = _scores()
    y = torch.tensor([[1.0, 0, 1], [0, 0, 1]], dtype=D)
    B = torch.sigmoid(s.mean(dim=(2, 3)))
    ref = -(y * torch.log(B) + (1 - y) * torch.log(1 - B)).mean()
    assert torch.allclose(gap_loss(s, y), ref)
    # multinomial layout: background channel 0 is ignored
    s_m = torch.cat([torch.full_like(s[:, :1], 7.0), s], dim=1)
    assert torch.allclose(gap_loss(s_m, y, posterior="multinomial"), ref)


def test_tags_to_targets():
    y = tags_to_targets([[1, 3], [], [2]], 3)
    assert y.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(UserError):
        tags_to_targets([[0]], 3)


def test_max_normalized_cam():
    s = _scores()
    r = max_normalized_cam(s)
    pos = s.clamp(min=0)
    M, m = pos.amax(dim=(2, 3), keepdim=True), pos.amin(dim=(2, 3), keepdim=True)
    assert torch.allclose(r, (pos - m - 1e-5).clamp(min=0) / (M - m + 1e-5))
    r4 = max_normalized_cam(s, subtract_min=False)
    assert torch.allclose(r4, (pos - 1e-5).clamp(min=0) / (M + 1e-5))
    assert r.min() >= 0 and r.max() < 1


# -- ISL ------------------------------------------------------------------------------------

def test_isl_samples_follow_posterior():
    """Counts of 20 000 draws on a 3×4 grid fit p_c ∝ b_c + 1e-5 (χ², p > 1e-3, fixed seed), and
    clearly reject the uniform distribution (the test can fail)."""
    s = _scores(b=1, k=2, h=3, w=4, seed=3) * 2
    b = torch.sigmoid(s)
    n = 20000
    idx = sample_positions(b, n, torch.Generator().manual_seed(0))
    assert idx.shape == (1, 2, n)
    for c in range(2):
        counts = np.bincount(idx[0, c].numpy(), minlength=12)
        p = (b[0, c].flatten() + 1e-5).numpy()
        expected = n * p / p.sum()
        assert chisquare(counts, expected).pvalue > 1e-3
        assert chisquare(counts, np.full(12, n / 12)).pvalue < 1e-6


def test_isl_sampling_reproducible():
    s = _scores()
    a = isl_loss(s, torch.ones(2, 3, dtype=D), generator=torch.Generator().manual_seed(5))
    b = isl_loss(s, torch.ones(2, 3, dtype=D), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("posterior", ["binomial", "multinomial"])
def test_isl_value_and_gradient_only_at_samples(posterior):
    b_, c_, h, w, n = 2, 3, 4, 5, 4
    k = c_ + (posterior == "multinomial")
    s = _scores(b_, k, h, w, seed=1).requires_grad_(True)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]], dtype=D)
    idx = sample_positions(torch.rand(b_, c_, h, w, dtype=D), n, torch.Generator().manual_seed(2))
    loss = isl_loss(s, y, n, posterior, indices=idx)
    loss.backward()
    # reference: explicit posterior and its log at every sampled cell
    flat = s.detach().reshape(b_, k, h * w)
    ref = 0.0
    for bi in range(b_):
        for c in range(c_):
            for j in idx[bi, c].tolist():
                if posterior == "binomial":
                    p = torch.sigmoid(flat[bi, c, j])
                else:
                    p = torch.softmax(flat[bi, :, j], dim=0)[c + 1]
                ref -= float(y[bi, c] * torch.log(p) + (1 - y[bi, c]) * torch.log(1 - p))
    assert loss.item() == pytest.approx(ref / (b_ * c_ * n), rel=1e-10)
    # gradient: nonzero exactly at the sampled cells (all channels there for the softmax)
    hit = torch.zeros(b_, k, h * w, dtype=torch.bool)
    for bi in range(b_):
        for c in range(c_):
            if posterior == "binomial":
                hit[bi, c, idx[bi, c]] = True
            else:
                hit[bi, :, idx[bi, c]] = True
    g = s.grad.reshape(b_, k, h * w)
    assert torch.all(g[~hit] == 0)
    assert torch.all(g[hit] != 0)
    if posterior == "binomial":
        # d/ds of the mean BCE: (sigmoid(s) − y) / (B·C·N) per occurrence
        exp = torch.zeros_like(g)
        for bi in range(b_):
            for c in range(c_):
                for j in idx[bi, c].tolist():
                    exp[bi, c, j] += (torch.sigmoid(flat[bi, c, j]) - y[bi, c]) / (b_ * c_ * n)
        assert torch.allclose(g, exp)


def test_isl_multinomial_log_is_stable():
    """ln(1 − a_c) from logits stays finite where a_c rounds to 1."""
    s = torch.zeros(1, 3, 2, 2, dtype=torch.float32)
    s[0, 1] = 200.0
    loss = isl_loss(s, torch.tensor([[0.0, 1.0]]), 5, "multinomial", generator=torch.Generator().manual_seed(0))
    # class 0 absent: −ln(1 − a_0) = 200 − ln 2; class 1 present: −ln a_1 = ln(e^200 + 2) ≈ 200
    assert torch.isfinite(loss) and loss.item() == pytest.approx((400 - math.log(2)) / 2, rel=1e-5)


def test_classification_loss_weight_zero_is_gap_exactly():
    s = _scores()
    y = torch.tensor([[1.0, 0, 1], [0, 0, 1]], dtype=D)
    assert torch.equal(classification_loss(s, y, weight=0.0), gap_loss(s, y))
    lam = 0.2
    g = torch.Generator().manual_seed(4)
    mixed = classification_loss(s, y, generator=g)                     # λ default 0.2 (binomial)
    ref = (1 - lam) * gap_loss(s, y) + lam * isl_loss(s, y, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(mixed, ref)
    with pytest.raises(UserError):
        classification_loss(s, y, weight=1.5)


# -- FSL ------------------------------------------------------------------------------------

def _brute_fsl(r, x, mu=2.5, sigma=5.0):
    """Double Python loop over all ordered pairs of every image, eqs. (9)–(13)."""
    b, k, h, w = r.shape
    total = 0.0
    for bi in range(b):
        for i in range(h * w):
            for j in range(h * w):
                pi, pj = divmod(i, w), divmod(j, w)
                wij = math.exp(-((pi[0] - pj[0]) ** 2 + (pi[1] - pj[1]) ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
                d = float((x[bi, :, pi[0], pi[1]] - x[bi, :, pj[0], pj[1]]).abs().sum()) / 3
                d = min(max(d, 0.0), 1.0)
                f = math.tanh(mu + math.log((d + 1e-5) / (1 - d + 1e-5)))
                g = 0.5 * ((r[bi, :, pi[0], pi[1]] - r[bi, :, pj[0], pj[1]]) ** 2).sum()
                total = total + wij * f * g
    return -total / (b * h * w)


def _fsl_inputs(b=2, k=3, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(b, k, h, w, generator=g, dtype=D)
    x = torch.rand(b, 3, h, w, generator=g, dtype=D)
    x[:, :, :, : w // 2] *= 0.1                                       # mix of similar / dissimilar pairs
    return r, x


@pytest.mark.parametrize("window", [None, 2, 10])
def test_fsl_matches_brute_force(window):
    r, x = _fsl_inputs()
    r1 = r.clone().requires_grad_(True)
    loss = feature_similarity_loss(r1, x, window=window)
    loss.backward()
    r2 = r.clone().requires_grad_(True)
    if window is None or window >= 5:
        ref = _brute_fsl(r2, x)
    else:                                                             # brute force on the window only
        ref = _brute_window(r2, x, window)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(r1.grad, r2.grad, rtol=1e-10, atol=1e-14)


def _brute_window(r, x, radius, mu=2.5, sigma=5.0):
    b, k, h, w = r.shape
    total = 0.0
    for bi in range(b):
        for y0 in range(h):
            for x0 in range(w):
                for y1 in range(h):
                    for x1 in range(w):
                        if abs(y0 - y1) > radius or abs(x0 - x1) > radius:
                            continue
                        wij = math.exp(-((y0 - y1) ** 2 + (x0 - x1) ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
                        d = min(max(float((x[bi, :, y0, x0] - x[bi, :, y1, x1]).abs().sum()) / 3, 0.0), 1.0)
                        f = math.tanh(mu + math.log((d + 1e-5) / (1 - d + 1e-5)))
                        total = total + wij * f * 0.5 * ((r[bi, :, y0, x0] - r[bi, :, y1, x1]) ** 2).sum()
    return -total / (b * h * w)


def test_fsl_valid_mask_drops_pairs():
    r, x = _fsl_inputs(b=1, h=4, w=4)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, :, 3] = False
    a = feature_similarity_loss(r, x, valid=valid)
    # the same as zeroing every pair weight touching column 3: loss on the 4×3 crop, renormalised
    ref = feature_similarity_loss(r[..., :3], x[..., :3]) * (12 / 16)
    assert a.item() == pytest.approx(ref.item(), rel=1e-12)
    assert feature_similarity_loss(r, x, window=1, valid=valid).item() == pytest.approx(
        feature_similarity_loss(r[..., :3], x[..., :3], window=1).item() * 12 / 16, rel=1e-12)


def test_fsl_window_within_bound_on_56x56():
    """Windowed (R = 15) vs exact on a 56×56 grid: inside the stated bound τ·g_max, and within 1 %
    on a CAM-like map (structure at a few cells, colours following the maps' edges). Very smooth
    maps can exceed 1 % relative (the dropped far pairs have the largest g); the bound still holds."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    h = w = 56
    r = np.stack([gaussian_filter(rng.random((h, w)), 2) for _ in range(3)])
    r = (r - r.min(axis=(1, 2), keepdims=True)) / np.ptp(r, axis=(1, 2), keepdims=True)
    x = (r > 0.5) * 0.7 + 0.1 + 0.05 * rng.random((3, h, w))
    r, x = torch.tensor(r)[None], torch.tensor(x)[None]
    exact = feature_similarity_loss(r, x).item()
    win = feature_similarity_loss(r, x, window=15).item()
    assert exact != win
    assert abs(exact - win) <= fsl_window_bound(r, 15)
    assert abs(exact - win) <= 0.01 * abs(exact)
    assert 0.0035 < fsl_window_tail(15, 5.0) < 0.0045                  # cam.md: ≈ 0.4 %


def test_fsl_window_equals_exact_when_covering_grid():
    r, x = _fsl_inputs(b=1, h=7, w=9, seed=3)
    assert feature_similarity_loss(r, x, window=8).item() == pytest.approx(feature_similarity_loss(r, x).item(), rel=1e-12)
    assert feature_similarity_loss(r, x, window=6).item() != pytest.approx(feature_similarity_loss(r, x).item(), rel=1e-12)


def test_fsl_gradient_only_through_gate():
    r, x = _fsl_inputs(b=1)
    r.requires_grad_(True)
    x.requires_grad_(True)
    feature_similarity_loss(r, x).backward()
    assert x.grad is None
    assert r.grad is not None and r.grad.abs().sum() > 0
    # fsl_image detaches the input crop too
    img = torch.randn(1, 3, 20, 24, requires_grad=True)
    assert not fsl_image(img, (5, 6)).requires_grad


def test_fsl_pulls_similar_pushes_dissimilar():
    """Left half dark, right half bright. One descent step shrinks the prediction gap between two
    same-colour neighbours and widens it across the colour edge."""
    h, w = 6, 8
    x = torch.zeros(1, 3, h, w, dtype=D)
    x[..., w // 2:] = 1.0
    r = torch.full((1, 1, h, w), 0.5, dtype=D)
    r[0, 0, 2, 1] = 0.6                                              # odd one out inside the dark half
    r[0, 0, :, w // 2 - 1] = 0.45                                    # slightly different across the edge
    r[0, 0, :, w // 2] = 0.55
    r.requires_grad_(True)
    feature_similarity_loss(r, x).backward()
    step = (r - 5.0 * r.grad).detach()
    d0 = lambda t: abs(float(t[0, 0, 2, 1] - t[0, 0, 2, 0]))          # similar neighbours
    d1 = lambda t: abs(float(t[0, 0, 2, w // 2] - t[0, 0, 2, w // 2 - 1]))  # across the edge
    assert d0(step) < d0(r.detach())
    assert d1(step) > d1(r.detach())
    assert fsl_dissimilarity(torch.tensor(0.0)) < 0 < fsl_dissimilarity(torch.tensor(1.0))


def test_fsl_gate_background_channel():
    s = _scores(b=1, k=3)
    y = torch.tensor([[1.0, 0, 1]], dtype=D)
    g = fsl_gate(s, y)
    r = max_normalized_cam(s) * y[:, :, None, None]
    assert g.shape == (1, 4, 4, 5)
    assert torch.allclose(g[:, 1:], r)
    assert torch.all(g[:, 2] == 0)
    assert torch.allclose(g[:, 0], 1 - r.amax(dim=1))
    assert fsl_gate(s, y, bg_channel=False).shape == (1, 3, 4, 5)
    s.requires_grad_(True)
    fsl_gate(s, y)[:, 0].sum().backward()                             # background channel has gradient
    assert s.grad.abs().sum() > 0
    gb = fsl_gate(s.detach(), y, gate="b")
    b = torch.sigmoid(s.detach()) * y[:, :, None, None]
    assert torch.allclose(gb[:, 1:], b) and torch.allclose(gb[:, 0], 1 - b.amax(dim=1))
    sm = _scores(b=1, k=4)
    assert torch.allclose(fsl_gate(sm, y, gate="a", posterior="multinomial"), torch.softmax(sm, 1))
    with pytest.raises(UserError):
        fsl_gate(s, y, gate="a")


def test_fsl_no_nan_on_degenerate_input():
    r = torch.zeros(1, 2, 3, 3)
    x = torch.ones(1, 3, 3, 3)
    for window in (None, 1):
        loss = feature_similarity_loss(r, x, window=window)
        assert torch.isfinite(loss) and loss.item() == 0.0


def test_fsl_exact_chunking_and_rational_f(monkeypatch):
    import wsss.cam.losses as L

    r, x = _fsl_inputs(b=2, h=7, w=5, seed=4)
    full = feature_similarity_loss(r, x).item()
    monkeypatch.setattr(L, "_FSL_CHUNK_ELEMENTS", 2 * 35 * 5 * 2)      # blocks of 2 grid rows
    assert feature_similarity_loss(r, x).item() == pytest.approx(full, rel=1e-13)
    d = torch.linspace(0, 1, 101, dtype=D)
    ref = torch.tanh(2.5 + torch.log((d + 1e-5) / (1 - d + 1e-5)))
    assert torch.allclose(fsl_dissimilarity(d), ref, atol=1e-12)
