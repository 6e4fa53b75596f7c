"""DenseCRF / normalized-cut / kernel-cut losses: exact path vs explicit dense W, lattice vs exact."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from wsss.filters import BilateralFilter, dense_kernel_matrix
from wsss.losses import densecrf as D
from wsss.losses.densecrf import densecrf_loss, downscale_inputs, kernelcut_loss, ncut_loss


def _image(n: int, dtype=torch.float32) -> torch.Tensor:
    a = data.astronaut()[120 : 120 + n, 170 : 170 + n]
    return torch.tensor(a).permute(2, 0, 1)[None].to(dtype)


def _logits(b, k, h, w, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, max(2, h // 6), max(2, w // 6), generator=g) * 3.0
    return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False).to(dtype)


def _reference(probs, image, valid, sxy, srgb, scale, gamma=None, nc_only=False, eps=D.NCUT_EPS):
    """Per-image losses from the explicit matrix W (float64 autograd), after the same resizing."""
    s, img, vm = downscale_inputs(probs, image, valid, scale)
    b, k, h, w = s.shape
    wm = dense_kernel_matrix(img, sxy * scale, srgb, vm, dtype=s.dtype)  # B×N×N
    sv = s.reshape(b, k, h * w)
    m = vm.reshape(b, 1, h * w).to(s.dtype)
    sv = sv * m
    ws = torch.einsum("bpq,bkq->bkp", wm, sv)
    d = wm.sum(2)[:, None, :]  # B×1×N
    crf = (sv * (d * m - ws)).sum((1, 2))
    num = (sv * (d - ws)).sum(2)
    den = (sv * d).sum(2).clamp_min(eps)
    nc = (num / den).sum(1)
    if nc_only:
        return nc
    return crf if gamma is None else crf + gamma * nc


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_exact_losses_equal_explicit_matrix(scale):
    img = torch.cat([_image(12, torch.float64), _image(12, torch.float64).flip(-1)])
    z = _logits(2, 4, 12, 12, dtype=torch.float64)
    valid = torch.ones(2, 1, 12, 12, dtype=torch.bool)
    valid[1, :, :, 9:] = False  # crop padding on the right
    p = torch.softmax(z, 1)
    kw = dict(sigma_xy=8.0, sigma_rgb=20.0, scale=scale, exact=True, reduction="none")
    ref_crf = _reference(p, img, valid, 8.0, 20.0, scale)
    torch.testing.assert_close(densecrf_loss(p, img, valid, **kw), ref_crf)
    torch.testing.assert_close(ncut_loss(p, img, valid, **kw),
                               _reference(p, img, valid, 8.0, 20.0, scale, nc_only=True))
    torch.testing.assert_close(kernelcut_loss(p, img, valid, gamma=3.0, **kw),
                               _reference(p, img, valid, 8.0, 20.0, scale, gamma=3.0))
    # formula (4) equals its pair/self decomposition Σ_p W_pp(1-‖S_p‖²) + 2Σ_{p<q} W_pq(1-S_pᵀS_q)
    s, im, vm = downscale_inputs(p, img, valid, scale)
    wm = dense_kernel_matrix(im, 8.0 * scale, 20.0, vm)
    sv = s.reshape(2, 4, -1) * vm.reshape(2, 1, -1)
    gram = torch.einsum("bkp,bkq->bpq", sv, sv)
    mm = vm.reshape(2, -1).double()
    decomp = (wm * (mm[:, :, None] * mm[:, None, :] - gram)).sum((1, 2))
    torch.testing.assert_close(ref_crf, decomp)


def test_exact_losses_gradcheck_float64():
    img = _image(5, torch.float64)
    valid = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    valid[..., 0, :] = False
    z = _logits(1, 3, 5, 5, seed=1, dtype=torch.float64)
    p = torch.softmax(z, 1).requires_grad_(True)
    kw = dict(sigma_xy=4.0, sigma_rgb=30.0, scale=1.0, exact=True)
    assert torch.autograd.gradcheck(lambda s: densecrf_loss(s, img, valid, **kw), (p,))
    assert torch.autograd.gradcheck(lambda s: ncut_loss(s, img, valid, **kw), (p,))
    assert torch.autograd.gradcheck(
        lambda s: kernelcut_loss(s, img, valid, gamma=2.0, ncut_sigma_xy=2.0, **kw), (p,))
    # through the down-scaling (bilinear probs) as well
    img8 = _image(6, torch.float64)
    p8 = torch.softmax(_logits(1, 2, 6, 6, seed=2, dtype=torch.float64), 1).requires_grad_(True)
    kw["scale"] = 0.5
    assert torch.autograd.gradcheck(lambda s: kernelcut_loss(s, img8, None, **kw), (p8,))


# Lattice vs exact, K = 21, 40×40, scale 1 and the default 0.5 (σ_xy 100 -> 50).
# Measured: value rel. error 0.008 / 0.10 (CRF, kernel cut), ≤ 0.003 (ncut); gradient w.r.t. the
# logits rel. error ≤ 0.13. Asserted: 0.15 (values), 0.2 (gradients).
@pytest.mark.parametrize("scale,sxy,srgb", [(1.0, 20.0, 10.0), (0.5, 100.0, 15.0)])
def test_lattice_losses_match_exact(scale, sxy, srgb):
    img = _image(40)
    z = _logits(1, 21, 40, 40, seed=3)
    valid = torch.ones(1, 1, 40, 40, dtype=torch.bool)
    valid[..., 34:, :] = False
    for fn, tol_v, tol_g in [(densecrf_loss, 0.15, 0.2), (ncut_loss, 0.15, 0.2),
                             (kernelcut_loss, 0.15, 0.2)]:
        grads, vals = [], []
        for exact in (False, True):
            zz = z.clone().requires_grad_(True)
            val = fn(torch.softmax(zz, 1), img, valid, sigma_xy=sxy, sigma_rgb=srgb,
                     scale=scale, exact=exact)
            val.backward()
            vals.append(val.item())
            grads.append(zz.grad)
        assert abs(vals[0] - vals[1]) <= tol_v * abs(vals[1]), (fn.__name__, vals)
        rel_g = ((grads[0] - grads[1]).norm() / grads[1].norm()).item()
        assert rel_g <= tol_g, (fn.__name__, rel_g)


def test_fast_crf_backward_is_minus_two_filter():
    img = _image(20)
    p = torch.softmax(_logits(1, 5, 20, 20), 1).requires_grad_(True)
    densecrf_loss(p, img, None, sigma_xy=10.0, sigma_rgb=15.0, scale=1.0).backward()
    filt = BilateralFilter(img, 10.0, 15.0)
    torch.testing.assert_close(p.grad, -2.0 * filt(p.detach()), rtol=1e-5, atol=1e-5)
    # exact path: true gradient d - 2 W S (differs by the class-independent d_p)
    q = p.detach().clone().requires_grad_(True)
    densecrf_loss(q, img, None, sigma_xy=10.0, sigma_rgb=15.0, scale=1.0, exact=True).backward()
    diff = q.grad - p.grad  # ≈ d_p (same for all k) up to the lattice error
    spread = (diff - diff.mean(1, keepdim=True)).norm() / diff.norm()
    assert spread.item() < 0.2


def test_invalid_pixels_do_not_matter_and_sum_reduction():
    img = torch.cat([_image(16), _image(16).flip(-2)])
    valid = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    valid[:, :, :, 12:] = False
    p = torch.softmax(_logits(2, 4, 16, 16), 1)
    p2 = p.clone()
    p2[:, :, :, 12:] = torch.softmax(torch.randn(2, 4, 16, 4), 1)
    img2 = img.clone()
    img2[:, :, :, 12:] = 0.0
    for fn in (densecrf_loss, ncut_loss, kernelcut_loss):
        for exact in (False, True):
            kw = dict(sigma_xy=10.0, sigma_rgb=15.0, scale=1.0, exact=exact)
            a = fn(p, img, valid, reduction="none", **kw)
            b = fn(p2, img2, valid, reduction="none", **kw)
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(fn(p, img, valid, **kw), a.sum())


def test_edge_cases_finite():
    img = _image(10)
    # a single class: CRF and ncut are 0
    one = torch.ones(1, 1, 10, 10)
    assert abs(densecrf_loss(one, img, None, scale=1.0, exact=True).item()) < 1e-3
    assert abs(ncut_loss(one, img, None, scale=1.0).item()) < 1e-5
    # an absent class (exact zeros) and near-zero affinities stay finite
    p = torch.zeros(1, 3, 10, 10)
    p[:, 0] = 1.0
    p = p.requires_grad_(True)
    for fn in (densecrf_loss, ncut_loss, kernelcut_loss):
        for exact in (False, True):
            val = fn(p, img, None, sigma_xy=0.01, sigma_rgb=0.01, scale=1.0, exact=exact)
            (g,) = torch.autograd.grad(val, p)
            assert math.isfinite(val.item()) and torch.isfinite(g).all()
    # all pixels invalid: 0, finite
    none = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    for fn in (densecrf_loss, ncut_loss, kernelcut_loss):
        for exact in (False, True):
            assert fn(p, img, none, scale=1.0, exact=exact).item() == 0.0


def test_default_weight_formula():
    # rloss's calibration: λ = N_rl · w · (c_rl / c_tk) · (s_rl / s_tk)⁴ with N_rl 12, w 2e-9, c_rl 0.56, scale 0.5
    expect = 12 * 2e-9 * (0.56 / D.C_TK) * (0.5 / 0.5) ** 4
    assert math.isclose(D.DENSECRF_WEIGHT, expect)
    assert D.C_TK == 0.968 and math.isclose(D.DENSECRF_WEIGHT, 1.3884e-8, rel_tol=1e-4)
    assert math.isclose(D.LR_RL / D.N_RL, 5.833e-4, rel_tol=1e-3)
