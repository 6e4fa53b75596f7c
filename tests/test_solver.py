"""Soft pseudo-label solver (self-labeling.md §6) against exact references:
``skimage.segmentation.random_walker`` (η = 0) and a scipy.sparse solve (η > 0)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
from scipy import ndimage as ndi
from skimage import data
from skimage.segmentation import random_walker, slic

from wsss.potts.neighbourhoods import grid_neighbourhood
from wsss.potts.solver import EXACT_CG_MAX_ITER, SolverConfig, paper_config, soft_jaccard, solve_pseudolabels

S = 9.0  # colour bandwidth (paper, VOC)
CROPS = {  # name: (rows, cols) of 64–96 px crops of real photographs
    "astronaut": (slice(20, 116), slice(150, 246)),
    "coffee": (slice(100, 180), slice(250, 330)),
    "chelsea": (slice(60, 140), slice(150, 230)),
}


def crop(name):
    rows, cols = CROPS[name]
    return np.ascontiguousarray(getattr(data, name)()[rows, cols])


def strokes(img, n_segments=8, n_classes=3):
    """Deterministic scribbles: a 3-px horizontal stroke through the innermost point of each SLIC
    segment (pixels at ≥ half the segment's maximal inner distance); class = segment index mod 3."""
    seg = slic(img, n_segments=n_segments, compactness=10, start_label=0)
    seeds = np.full(seg.shape, 255, np.int64)
    for k, s in enumerate(np.unique(seg)):
        m = seg == s
        d = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        r = np.unravel_index(np.argmax(d), d.shape)[0]
        band = np.abs(np.arange(seg.shape[0])[:, None] - r) <= 1
        seeds[band & m & (d >= 0.5 * d.max())] = k % n_classes
    assert len(np.unique(seeds)) == n_classes + 1
    return seeds


def torch_inputs(img, seeds, dtype=torch.float64):
    return (torch.from_numpy(img).permute(2, 0, 1)[None].to(dtype), torch.from_numpy(seeds)[None])


def sj(a, b):
    return float(soft_jaccard(torch.as_tensor(a)[None], torch.as_tensor(b)[None]))


def rw_reference(img, seeds, k):
    """random_walker with inputs matched to w = exp(−‖ΔI‖²/(2 s²)) + 1e-10 (self-labeling.md §6)."""
    x = img.astype(np.float64)
    beta = 10 * x.std() * np.sqrt(3) / (2 * S**2)
    markers = np.where(seeds == 255, 0, seeds + 1)
    prob = random_walker(x, markers, beta=beta, mode="bf", channel_axis=-1, return_full_prob=True)
    assert prob.shape[0] == k
    return prob


# the default optimizer at a tight tolerance (CG to 1e-6 within EXACT_CG_MAX_ITER iterations)
RW_CONFIG = dict(eta=0.0, lam=1.0, relaxation="quadratic", neighbourhood="nn4", bandwidth=S, weight_offset=1e-10,
                 cg_max_iter=EXACT_CG_MAX_ITER)


@pytest.mark.parametrize("name", list(CROPS))
def test_default_matches_random_walker_from_uniform(name):
    img = crop(name)
    seeds = strokes(img)
    ref = rw_reference(img, seeds, 3)
    im, sd = torch_inputs(img, seeds)
    y = solve_pseudolabels(torch.zeros(1, 3, *seeds.shape, dtype=torch.float64), sd, im,
                           SolverConfig(init="uniform", **RW_CONFIG))
    assert sj(y[0], ref) >= 0.995
    # without logits too (uniform init, no CE term), in float32
    y32 = solve_pseudolabels(None, sd, im.float(), SolverConfig(**RW_CONFIG), num_classes=3)
    assert y32.dtype == torch.float32
    assert sj(y32[0].double(), ref) >= 0.995
    # the paper's setting (plain GD, 200 steps, lr 0.075) from uniform is far from it, and the default
    # CG budget (DEFAULT_CG_MAX_ITER, the fast training-time setting) is well above the paper's agreement
    if name == "astronaut":
        zeros = torch.zeros(1, 3, *seeds.shape, dtype=torch.float64)
        paper = sj(solve_pseudolabels(zeros, sd, im, paper_config(**RW_CONFIG))[0], ref)
        fast_cfg = SolverConfig(init="uniform", **{**RW_CONFIG, "cg_max_iter": SolverConfig().cg_max_iter})
        fast = sj(solve_pseudolabels(zeros, sd, im, fast_cfg)[0], ref)
        assert paper < 0.99 and fast > paper + 0.02


def sparse_reference(img, seeds, k, eta, lam, sigma):
    """(λ L_UU + η I) y_U = η σ_U − λ L_US ȳ_S with an independently built NN4 Laplacian."""
    x = img.astype(np.float64)
    h, w = seeds.shape
    idx = np.arange(h * w).reshape(h, w)
    wh = np.exp(-((x[:, 1:] - x[:, :-1]) ** 2).sum(-1) / (2 * S**2))
    wv = np.exp(-((x[1:] - x[:-1]) ** 2).sum(-1) / (2 * S**2))
    i = np.r_[idx[:, :-1].ravel(), idx[:-1].ravel()]
    j = np.r_[idx[:, 1:].ravel(), idx[1:].ravel()]
    v = np.r_[wh.ravel(), wv.ravel()]
    W = sp.coo_matrix((np.r_[v, v], (np.r_[i, j], np.r_[j, i])), shape=(h * w,) * 2).tocsr()
    L = (sp.diags(np.asarray(W.sum(1)).ravel()) - W).tocsr()
    s = seeds.ravel() != 255
    u = ~s
    ys = np.eye(k)[seeds.ravel()[s]]
    A = lam * L[u][:, u] + eta * sp.eye(int(u.sum()))
    rhs = eta * sigma.reshape(k, -1).T[u] - lam * (L[u][:, s] @ ys)
    y = np.zeros((h * w, k))
    y[s], y[u] = ys, spl.spsolve(A.tocsc(), rhs)
    return y.T.reshape(k, h, w)


@pytest.mark.parametrize("init", ["logits", "uniform"])
def test_eta_positive_matches_sparse_solve(init):
    img = crop("coffee")
    seeds = strokes(img)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, *seeds.shape, generator=g, dtype=torch.float64) * 2
    sigma = torch.softmax(logits, 1)[0].numpy()
    eta, lam = 0.3, 6.0
    ref = sparse_reference(img, seeds, 3, eta, lam, sigma)
    assert ref.min() > -1e-9 and np.allclose(ref.sum(0), 1)
    im, sd = torch_inputs(img, seeds)
    cfg = SolverConfig(eta=eta, lam=lam, relaxation="quadratic", ce="quadratic", bandwidth=S, init=init,
                       cg_max_iter=EXACT_CG_MAX_ITER)
    y = solve_pseudolabels(logits, sd, im, cfg)
    assert sj(y[0], ref) >= 0.995


def _energy(y, logits, seeds, img, cfg):
    from wsss.potts.crossentropy import get_cross_entropy
    from wsss.potts.relaxations import get_relaxation

    seed_mask = seeds != 255
    nb = grid_neighbourhood(img, cfg.neighbourhood, cfg.bandwidth).drop_pairs_within(seed_mask)
    ce = get_cross_entropy(cfg.ce)(torch.log(y.clamp_min(1e-12)), torch.log_softmax(logits, 1))
    return float(cfg.lam * nb.energy(y, get_relaxation(cfg.relaxation)).sum() + cfg.eta * (ce * ~seed_mask).sum())


@pytest.mark.parametrize("relaxation", ["collision-divergence", "normalized-quadratic", "bilinear"])
def test_default_beats_paper_setting_on_nonconvex_energies(relaxation):
    img = crop("chelsea")[:64, :64].copy()
    seeds = strokes(img, n_segments=6)
    im, sd = torch_inputs(img, seeds)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 64, 64, generator=g, dtype=torch.float64)
    cfg = SolverConfig(relaxation=relaxation, ce="collision", eta=0.3, lam=6.0)
    y_def = solve_pseudolabels(logits, sd, im, cfg)
    y_pap = solve_pseudolabels(logits, sd, im, paper_config(relaxation=relaxation, ce="collision"))
    e_def, e_pap = _energy(y_def, logits, sd, im, cfg), _energy(y_pap, logits, sd, im, cfg)
    assert np.isfinite(e_def) and e_def < e_pap
    assert torch.equal(y_def[0].argmax(0)[seeds != 255], torch.from_numpy(seeds[seeds != 255]))


def test_seeds_are_exact_and_outputs_are_distributions():
    img = crop("chelsea")[:40, :40].copy()
    seeds = strokes(img, n_segments=4)
    im, sd = torch_inputs(img, seeds, torch.float32)
    for opt in ("mirror", "sgd", "adam"):
        y = solve_pseudolabels(torch.randn(1, 3, 40, 40), sd, im, SolverConfig(optimizer=opt, steps=5))
        assert y.shape == (1, 3, 40, 40) and y.dtype == torch.float32 and not y.requires_grad
        assert torch.allclose(y.sum(1), torch.ones(1, 40, 40), atol=1e-5) and (y >= 0).all()
        m = sd[0] != 255
        assert torch.equal(y[0][:, m], torch.nn.functional.one_hot(sd[0][m], 3).T.float())


def test_batched_equals_single_and_valid_mask():
    a, b = crop("chelsea")[:32, :40].copy(), crop("coffee")[:32, :40].copy()
    sa, sb = strokes(a, 4), strokes(b, 4)
    im = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).double()
    sd = torch.from_numpy(np.stack([sa, sb]))
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 3, 32, 40, generator=g, dtype=torch.float64)
    valid = torch.ones(2, 32, 40, dtype=torch.bool)
    valid[:, :, 34:] = False
    cfg = SolverConfig(steps=10)
    both = solve_pseudolabels(z, sd, im, cfg, valid)
    one = solve_pseudolabels(z[1:], sd[1:], im[1:], cfg, valid[1:])
    assert torch.allclose(both[1], one[0], atol=1e-5)  # CG stops when all images converge
    # pixels outside the valid mask do not influence the others
    im2 = im.clone()
    im2[:, :, :, 34:] = torch.rand(2, 3, 32, 6, generator=g, dtype=torch.float64) * 255
    sd2 = sd.clone()
    sd2[:, :, 36] = 1
    other = solve_pseudolabels(z, sd2, im2, cfg, valid)
    assert torch.allclose(other[..., :34], both[..., :34], atol=1e-5)


def test_degenerate_inputs():
    im = torch.zeros(1, 3, 12, 12)
    none = torch.full((1, 12, 12), 255)
    for cfg in (SolverConfig(), SolverConfig(relaxation="log-quadratic"), paper_config(steps=3)):
        y = solve_pseudolabels(torch.randn(1, 4, 12, 12), none, im, cfg)  # no seeds at all
        assert torch.isfinite(y).all()
        y1 = solve_pseudolabels(torch.randn(1, 1, 12, 12), torch.zeros(1, 12, 12, dtype=torch.long), im, cfg)
        assert torch.allclose(y1, torch.ones_like(y1))  # K = 1
    stripes = torch.zeros(1, 3, 12, 12)
    stripes[..., ::2] = 255  # zero affinities along rows
    seeds = none.clone()
    seeds[0, 0, 0], seeds[0, 0, 1] = 0, 1  # touching seeds of different classes
    for rel in ("collision-ce", "collision-divergence", "log-quadratic"):
        y = solve_pseudolabels(torch.zeros(1, 2, 12, 12), seeds, stripes, SolverConfig(relaxation=rel))
        assert torch.isfinite(y).all()


def test_bad_inputs_raise():
    im = torch.zeros(1, 3, 8, 8)
    seeds = torch.full((1, 8, 8), 255)
    seeds[0, 0, 0] = 3
    with pytest.raises(ValueError, match="outside 0..2"):
        solve_pseudolabels(torch.zeros(1, 3, 8, 8), seeds, im)
    seeds[0, 0, 0] = -1
    with pytest.raises(ValueError, match="outside"):
        solve_pseudolabels(torch.zeros(1, 3, 8, 8), seeds, im)
    with pytest.raises(ValueError, match="num_classes"):
        solve_pseudolabels(None, torch.full((1, 8, 8), 255), im)
    with pytest.raises(ValueError, match="shape"):
        solve_pseudolabels(torch.zeros(1, 3, 8, 8), torch.full((1, 8, 7), 255), im)
    with pytest.raises(ValueError, match="optimizer"):
        solve_pseudolabels(torch.zeros(1, 3, 8, 8), torch.full((1, 8, 8), 255), im, SolverConfig(optimizer="lbfgs"))


def test_runs_inside_no_grad_and_inference_mode():
    im = torch.rand(1, 3, 10, 10) * 255
    seeds = torch.full((1, 10, 10), 255)
    seeds[0, 1, 1], seeds[0, 8, 8] = 0, 1
    z = torch.randn(1, 2, 10, 10, requires_grad=True)
    ref = solve_pseudolabels(z, seeds, im, SolverConfig(steps=5))
    with torch.no_grad():
        a = solve_pseudolabels(z, seeds, im, SolverConfig(steps=5))
    with torch.inference_mode():
        b = solve_pseudolabels(z.detach(), seeds, im, SolverConfig(steps=5))
    assert torch.allclose(a, ref) and torch.allclose(b, ref) and z.grad is None


def test_dense_neighbourhood_solver():
    from wsss.filters import DenseGaussianFilter  # noqa: F401  (DN goes through wsss.filters)

    img = crop("chelsea")[:24, :24].copy()
    seeds = strokes(img, 4)
    im, sd = torch_inputs(img, seeds, torch.float32)
    for rel in ("quadratic", "bilinear"):
        y = solve_pseudolabels(torch.zeros(1, 3, 24, 24), sd, im, SolverConfig(neighbourhood="dn", relaxation=rel, steps=20))
        assert torch.isfinite(y).all()
        # seeds propagate: the arg-max agrees with the seeds' class on most of the image next to them
        assert (y[0].max(0).values > 0.34).float().mean() > 0.5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    img = crop("coffee")
    seeds = strokes(img)
    im, sd = torch_inputs(img, seeds, torch.float32)
    z = torch.randn(1, 3, *seeds.shape)
    for cfg in (SolverConfig(), paper_config(steps=20)):
        cpu = solve_pseudolabels(z, sd, im, cfg)
        gpu = solve_pseudolabels(z.cuda(), sd.cuda(), im.cuda(), cfg)
        assert gpu.device.type == "cuda"
        assert sj(gpu[0].cpu().double(), cpu[0].double()) > 0.999


def test_float32_cg_matches_float64():
    img = crop("coffee")
    seeds = strokes(img)
    im, sd = torch_inputs(img, seeds, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, *seeds.shape, generator=g)
    y64 = solve_pseudolabels(logits, sd, im, SolverConfig(steps=5))
    y32 = solve_pseudolabels(logits, sd, im, SolverConfig(steps=5, cg_dtype="float32"))
    assert y32.dtype == torch.float32 and float((y32 - y64).abs().max()) < 1e-2
    assert sj(y32[0].double(), y64[0].double()) > 0.999
    with pytest.raises(ValueError, match="cg_dtype"):
        solve_pseudolabels(logits, sd, im, SolverConfig(cg_dtype="float16"))


def test_float32_smoothing_converges_like_float64():
    """float32 multigrid smoothing keeps float64 CG residuals and a float64 hierarchy, so it follows the
    float64 solve all the way (an all-float32 CG stalls near 82 % on this crop: its weakly enclosed
    region hangs on 1e-10 weights that float32 residuals cannot resolve)."""
    img = crop("astronaut")
    seeds = strokes(img)
    ref = rw_reference(img, seeds, 3)
    im, sd = torch_inputs(img, seeds, torch.float32)
    for it in (6, 30):
        y = {dt: solve_pseudolabels(None, sd, im, SolverConfig(**{**RW_CONFIG, "cg_max_iter": it, "cg_dtype": dt}),
                                    num_classes=3)[0].double() for dt in ("float32", "float64")}
        assert abs(sj(y["float32"], ref) - sj(y["float64"], ref)) < 2e-3
    assert sj(y["float32"], ref) > 0.99


def test_seed_propagation_defaults_and_unseeded_classes():
    """Without logits: the convex start alone (random walker) with SEED_PROPAGATION_* defaults; classes
    without seeds are 0 (up to START_EPS) and the seeded ones match the random walker on them."""
    from wsss.potts.solver import (SEED_PROPAGATION_CG_DTYPE, SEED_PROPAGATION_CG_MAX_ITER, SEED_PROPAGATION_STEPS,
                                   START_EPS)

    res = SolverConfig().resolved(seeds_only=True)
    assert (res.steps, res.cg_max_iter, res.cg_dtype) == (SEED_PROPAGATION_STEPS, SEED_PROPAGATION_CG_MAX_ITER,
                                                          SEED_PROPAGATION_CG_DTYPE)
    assert SolverConfig(steps=7, cg_max_iter=3, cg_dtype="float64").resolved(seeds_only=True).steps == 7
    assert SolverConfig().resolved().steps == 50 and SolverConfig().resolved().cg_dtype == "float64"
    img = crop("chelsea")
    seeds = strokes(img)  # classes 0..2 seeded; solve with K = 5 and the labels moved to 1, 3, 4
    moved = np.where(seeds == 255, 255, np.array([1, 3, 4])[np.minimum(seeds, 2)])
    ref = rw_reference(img, seeds, 3)
    im, sd = torch_inputs(img, moved, torch.float32)
    exact = solve_pseudolabels(None, sd, im, SolverConfig(**{**RW_CONFIG, "relaxation": "collision-divergence"}),
                               num_classes=5)[0].double()
    assert float(exact[[0, 2]].max()) <= 2 * START_EPS
    assert sj(exact[[1, 3, 4]], ref) >= 0.995
    # the default budget (5 CG iterations, no mirror steps; 0.929 measured): stated tolerance 0.9 on this crop
    fast = solve_pseudolabels(None, sd, im, SolverConfig(bandwidth=S, weight_offset=1e-10), num_classes=5)[0].double()
    assert sj(fast[[1, 3, 4]], ref) >= 0.9
    assert torch.allclose(fast.sum(0), torch.ones_like(fast[0]), atol=1e-5) and (fast >= 0).all()


def test_seed_propagation_falls_back_to_float64_when_float32_breaks_down(monkeypatch):
    """A non-finite float32 convex start (seen on a CamVid photograph) is redone in float64."""
    import wsss.potts.solver as solver

    real = solver._convex_start
    dtypes = []

    def flaky(*args):
        cfg = args[-1]
        dtypes.append(cfg.cg_dtype)
        y0 = real(*args)
        return torch.full_like(y0, float("nan")) if cfg.cg_dtype == "float32" else y0

    monkeypatch.setattr(solver, "_convex_start", flaky)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 12, 14) * 255
    seeds = torch.full((1, 12, 14), 255, dtype=torch.int64)
    seeds[0, 2, 2], seeds[0, 9, 11] = 0, 1
    y = solver.solve_pseudolabels(None, seeds, image, solver.SolverConfig(cg_dtype="float32"), num_classes=2)
    assert dtypes == ["float32", "float64"] and bool(torch.isfinite(y).all())
    ref = solver.solve_pseudolabels(None, seeds, image, solver.SolverConfig(cg_dtype="float64"), num_classes=2)
    assert torch.allclose(y, ref, atol=1e-5)
