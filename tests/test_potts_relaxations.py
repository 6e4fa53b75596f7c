"""Potts relaxations (self-labeling.md §3) and neighbourhood energies (§5, notation.md)."""

from __future__ import annotations

import math

import pytest
import torch

from wsss.potts.neighbourhoods import DenseNeighbourhood, grid_neighbourhood
from wsss.potts.relaxations import RELAXATIONS, get_relaxation
from wsss.potts.solver import SolverConfig

PLAIN = ("bilinear", "quadratic", "normalized-quadratic")
LOGS = ("collision-ce", "collision-divergence", "log-quadratic")
D = torch.float64


def simplex(*shape, seed=0, dim=1):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=D) * 2, dim)


def onehots(k):
    return torch.eye(k, dtype=D)


# ---------------------------------------------------------------- pointwise properties


@pytest.mark.parametrize("name", PLAIN)
def test_plain_relaxations_equal_potts_on_one_hot(name):
    p = get_relaxation(name)
    e = onehots(4)
    a = e[:, None, :].expand(4, 4, 4).reshape(16, 4)
    b = e[None, :, :].expand(4, 4, 4).reshape(16, 4)
    expected = (~torch.eye(4, dtype=torch.bool)).reshape(16).to(D)
    assert torch.allclose(p(a, b), expected, atol=1e-12)


@pytest.mark.parametrize("name", list(RELAXATIONS))
def test_symmetric(name):
    p = get_relaxation(name)
    a, b = simplex(7, 5, seed=1), simplex(7, 5, seed=2)
    e = onehots(5)
    a = torch.cat([a, e, e[[1, 2, 3, 4, 0]]])
    b = torch.cat([b, e[[1, 2, 3, 4, 0]], simplex(5, 5, seed=3)])
    assert torch.allclose(p(a, b), p(b, a), atol=1e-12)
    # zero at identical arguments except bilinear (1 − ‖a‖²) and collision-ce (−ln ‖a‖²)
    same = p(a, a)
    if name in ("quadratic", "normalized-quadratic", "collision-divergence", "log-quadratic"):
        assert torch.allclose(same, torch.zeros_like(same), atol=1e-7)
    else:
        assert (same[:7] > 0).all()


@pytest.mark.parametrize("name", LOGS)
def test_log_relaxations_finite_at_distinct_vertices(name):
    p = get_relaxation(name)
    e = onehots(3)
    a = e[[0, 0, 1]].clone().requires_grad_(True)
    b = e[[1, 2, 2]].clone().requires_grad_(True)
    v = p(a, b)
    assert torch.isfinite(v).all() and (v > 10).all()  # −ln 1e-8 ≈ 18.4
    v.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_formulas():
    a, b = simplex(6, 3, seed=4), simplex(6, 3, seed=5)
    dot = (a * b).sum(1)
    cos = dot / (a.norm(dim=1) * b.norm(dim=1))
    q = 0.5 * ((a - b) ** 2).sum(1)
    ref = {"bilinear": 1 - dot, "quadratic": q, "normalized-quadratic": 1 - cos,
           "collision-ce": -dot.log(), "collision-divergence": -cos.log(), "log-quadratic": -(1 - q).log()}
    for name, val in ref.items():
        assert torch.allclose(RELAXATIONS[name](a, b), val, atol=1e-12), name


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="relaxation"):
        get_relaxation("cubic")
    with pytest.raises(ValueError):
        SolverConfig(relaxation="nope").resolved()


# ---------------------------------------------------------------- Figure 1 of the paper


def _path(a, b, n=21):
    t = torch.linspace(0, 1, n, dtype=D)[:, None]
    return (1 - t) * a + t * b


def test_figure1a_joint_move_a_to_b():
    """Two neighbours jointly change class A → B (reclassifying a whole object): Potts cost stays 0.
    Bilinear rises above its endpoints; quadratic (and normalized quadratic) stay flat."""
    A, B, _ = onehots(3)
    y = _path(A, B)  # both pixels follow the same path
    bil = RELAXATIONS["bilinear"](y, y)
    quad = RELAXATIONS["quadratic"](y, y)
    nq = RELAXATIONS["normalized-quadratic"](y, y)
    assert bil[0] == 0 and bil[-1] == 0 and bil[10] == pytest.approx(0.5)
    assert (bil[1:-1] > 1e-3).all()  # a barrier: a local minimum at the start for gradient descent
    assert torch.allclose(quad, torch.zeros_like(quad))
    assert torch.allclose(nq, torch.zeros_like(nq), atol=1e-12)


def test_figure1b_one_pixel_c_to_b_next_to_a():
    """Pixel p has class A; its neighbour q moves C → B: the Potts cost is 1 throughout.
    Quadratic has an interior minimum (prefers the soft middle); bilinear and normalized quadratic are flat."""
    A, B, C = onehots(3)
    q = _path(C, B)
    p = A.expand_as(q)
    quad = RELAXATIONS["quadratic"](p, q)
    bil = RELAXATIONS["bilinear"](p, q)
    nq = RELAXATIONS["normalized-quadratic"](p, q)
    assert quad[0] == pytest.approx(1.0) and quad[-1] == pytest.approx(1.0)
    assert quad.argmin() == 10 and quad[10] == pytest.approx(0.75)
    assert torch.allclose(bil, torch.ones_like(bil))
    assert torch.allclose(nq, torch.ones_like(nq), atol=1e-12)


# ---------------------------------------------------------------- grid neighbourhoods


def _brute_pairs(h, w, kind):
    offs = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if kind == "nn8" else [])
    for y in range(h):
        for x in range(w):
            for dy, dx in offs:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    yield (y, x), (yy, xx), (dy != 0 and dx != 0)


@pytest.mark.parametrize("kind", ["nn4", "nn8"])
@pytest.mark.parametrize("name", list(RELAXATIONS))
def test_grid_energy_matches_brute_force(kind, name):
    g = torch.Generator().manual_seed(7)
    img = torch.rand(2, 3, 5, 6, generator=g, dtype=D) * 60
    valid = torch.ones(2, 5, 6, dtype=torch.bool)
    valid[1, :, 4:] = False
    y = simplex(2, 3, 5, 6, seed=8)
    nb = grid_neighbourhood(img, kind, bandwidth=9.0, valid=valid)
    p = RELAXATIONS[name]
    for b in range(2):
        total = 0.0
        for (py, px), (qy, qx), diag in _brute_pairs(5, 6, kind):
            if not (valid[b, py, px] and valid[b, qy, qx]):
                continue
            d2 = ((img[b, :, py, px] - img[b, :, qy, qx]) ** 2).sum()
            wt = math.exp(-d2 / (2 * 81.0)) / (math.sqrt(2) if diag else 1.0)
            total += wt * float(p(y[b, :, py, px][None], y[b, :, qy, qx][None])[0])
        assert float(nb.energy(y, p)[b]) == pytest.approx(total, rel=1e-10)


def test_nn8_diagonal_weighting_option():
    img = torch.zeros(1, 3, 3, 3, dtype=D)
    on = grid_neighbourhood(img, "nn8")
    off = grid_neighbourhood(img, "nn8", diagonal_weighting=False)
    assert float(on.weights[2][0, 0, 0]) == pytest.approx(1 / math.sqrt(2))
    assert float(off.weights[2][0, 0, 0]) == pytest.approx(1.0)
    assert float(on.weights[0][0, 0, 0]) == 1.0


@pytest.mark.parametrize("kind", ["nn4", "nn8"])
@pytest.mark.parametrize("name", list(RELAXATIONS))
def test_energy_gradcheck(kind, name):
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 3, 4, 5, generator=g, dtype=D) * 40
    nb = grid_neighbourhood(img, kind)
    v = torch.randn(1, 3, 4, 5, generator=g, dtype=D, requires_grad=True)
    p = RELAXATIONS[name]
    assert torch.autograd.gradcheck(lambda v: nb.energy(torch.softmax(v, 1), p), (v,))


def test_laplacian_and_degree_against_dense_matrix():
    g = torch.Generator().manual_seed(4)
    img = torch.rand(1, 3, 4, 5, generator=g, dtype=D) * 40
    nb = grid_neighbourhood(img, "nn8")
    n = 20
    W = torch.zeros(n, n, dtype=D)
    for (py, px), (qy, qx), diag in _brute_pairs(4, 5, "nn8"):
        d2 = ((img[0, :, py, px] - img[0, :, qy, qx]) ** 2).sum()
        wt = math.exp(-d2 / 162.0) / (math.sqrt(2) if diag else 1.0)
        W[py * 5 + px, qy * 5 + qx] = W[qy * 5 + qx, py * 5 + px] = wt
    L = torch.diag(W.sum(1)) - W
    y = simplex(1, 3, 4, 5, seed=9)
    ly = (L @ y.reshape(3, n).T).T.reshape(1, 3, 4, 5)
    assert torch.allclose(nb.laplacian(y), ly, atol=1e-12)
    assert torch.allclose(nb.degree().reshape(n), W.sum(1), atol=1e-12)
    # ½ Σ_k yᵀ L y equals the quadratic energy (notation.md)
    assert float(nb.energy(y, RELAXATIONS["quadratic"])) == pytest.approx(0.5 * float((y.reshape(3, n) * (L @ y.reshape(3, n).T).T).sum()))


@pytest.mark.parametrize("kind", ["nn4", "nn8"])
def test_coarsen_preserves_piecewise_constant_energy(kind):
    g = torch.Generator().manual_seed(5)
    img = torch.rand(2, 3, 7, 9, generator=g, dtype=D) * 50
    nb = grid_neighbourhood(img, kind)
    cb = nb.coarsen()
    assert cb.shape == (2, 4, 5)
    yc = simplex(2, 3, 4, 5, seed=6)
    yf = yc.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :7, :9]
    for name in ("quadratic", "normalized-quadratic", "collision-divergence", "log-quadratic"):
        p = RELAXATIONS[name]
        assert torch.allclose(nb.energy(yf, p), cb.energy(yc, p), atol=1e-10)


def test_drop_pairs_within_mask():
    img = torch.zeros(1, 3, 3, 3, dtype=D)
    nb = grid_neighbourhood(img, "nn4")
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 0, 1] = True
    dropped = nb.drop_pairs_within(mask)
    assert float(dropped.weights[0][0, 0, 0]) == 0.0  # (0,0)-(0,1): both in the mask
    assert float(dropped.weights[1][0, 0, 0]) == 1.0  # (0,0)-(1,0): one endpoint outside
    assert float(sum(w.sum() for w in dropped.weights)) == 11.0


@pytest.mark.parametrize("name", list(RELAXATIONS))
def test_degenerate_inputs_are_finite(name):
    p = RELAXATIONS[name]
    # one-hot labels of different classes on a flat image, zero affinities, K = 1, identical neighbours
    y = torch.zeros(1, 3, 4, 4, dtype=D)
    y[:, 0, :, :2] = 1
    y[:, 1, :, 2:] = 1
    y.requires_grad_(True)
    flat = torch.zeros(1, 3, 4, 4, dtype=D)
    stripes = torch.zeros(1, 3, 4, 4, dtype=D)
    stripes[..., ::2] = 255  # every horizontal edge has weight exp(−3·255²/162) = 0
    for img in (flat, stripes):
        e = grid_neighbourhood(img, "nn8").energy(y, p).sum()
        (gy,) = torch.autograd.grad(e, y)
        assert torch.isfinite(e) and torch.isfinite(gy).all()
    y1 = torch.ones(1, 1, 4, 4, dtype=D, requires_grad=True)
    e = grid_neighbourhood(flat, "nn4").energy(y1, p).sum()
    (gy,) = torch.autograd.grad(e, y1)
    assert torch.isfinite(e) and torch.isfinite(gy).all()
    if name != "bilinear" and name != "collision-ce":
        assert float(e.detach()) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- DN


def _dense_reference(img, y, name, sigma_xy, sigma_rgb):
    b, k, h, w = y.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=D), torch.arange(w, dtype=D), indexing="ij")
    pos = torch.stack([rows, cols], -1).reshape(-1, 2)
    col = img[0].permute(1, 2, 0).reshape(-1, 3)
    W = torch.exp(-torch.cdist(pos, pos) ** 2 / (2 * sigma_xy**2) - torch.cdist(col, col) ** 2 / (2 * sigma_rgb**2))
    W.fill_diagonal_(0)
    yy = y[0].reshape(k, -1).T
    p = RELAXATIONS[name](yy[:, None, :].expand(-1, h * w, -1), yy[None].expand(h * w, -1, -1), dim=2)
    return 0.5 * (W * p).sum()


@pytest.mark.parametrize("name", ["bilinear", "quadratic"])
def test_dense_energy_and_gradient(name):
    from wsss.filters import DenseGaussianFilter

    g = torch.Generator().manual_seed(11)
    img = torch.rand(1, 3, 5, 6, generator=g, dtype=D) * 80
    nb = DenseNeighbourhood(img, sigma_xy=3.0, sigma_rgb=30.0, filter_cls=DenseGaussianFilter)
    y = simplex(1, 3, 5, 6, seed=12)
    ref = _dense_reference(img, y, name, 3.0, 30.0)
    assert float(nb.energy(y, RELAXATIONS[name])[0]) == pytest.approx(float(ref), rel=1e-9)
    v = torch.randn(1, 3, 5, 6, generator=g, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: nb.energy(torch.softmax(v, 1), RELAXATIONS[name]), (v,))
    # seed–seed pairs dropped from the value
    mask = torch.zeros(1, 5, 6, dtype=torch.bool)
    mask[0, :2] = True
    dropped = DenseNeighbourhood(img, 3.0, 30.0, filter_cls=DenseGaussianFilter).drop_pairs_within(mask)
    inner = _dense_reference(img[..., :2, :], y[..., :2, :], name, 3.0, 30.0)
    assert float(dropped.energy(y, RELAXATIONS[name])[0]) == pytest.approx(float(ref - inner), rel=1e-9)


@pytest.mark.parametrize("name", ["normalized-quadratic", "collision-ce", "collision-divergence", "log-quadratic"])
def test_dense_rejects_higher_order_relaxations(name):
    from wsss.filters import DenseGaussianFilter

    img = torch.zeros(1, 3, 4, 4, dtype=D)
    nb = DenseNeighbourhood(img, filter_cls=DenseGaussianFilter)
    with pytest.raises(ValueError, match="dense"):
        nb.energy(simplex(1, 2, 4, 4), RELAXATIONS[name])
    with pytest.raises(ValueError, match="dn"):
        SolverConfig(neighbourhood="dn", relaxation=name).resolved()
