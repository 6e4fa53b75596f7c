"""DenseCRF, normalized-cut and kernel-cut regularized losses (Tang et al., ECCV 2018).

Formulas: the paper's (4), (5), (6), gradients (11), (12).

All three take the softmax output ``probs`` (``B×K×H×W``), the image (``B×3×H×W`` float RGB 0–255) and
an optional validity mask (``B×1×H×W`` bool, False on crop padding), and return the per-image regularizer
R_b (a sum over the valid pixels at the loss's ``scale``) summed over the images of the batch
(``reduction="sum"``, a 0-d tensor) or per image (``reduction="none"``, shape ``B``). Reduction in training
(rloss's convention, :mod:`wsss.losses.term`): λ times the **mean over the batch's images** of R_b, beside
pCE as the mean over the seed pixels (:class:`wsss.losses.registry.DenseCRFFamily`).

Resolution (``scale``, default 0.5, as rloss's recommended setting): the image is down-scaled by nearest
neighbour, ``probs`` bilinearly (``align_corners=False``), the mask by nearest neighbour, and the filter
gets ``σ_xy·scale`` (σ_rgb unchanged). Pixel count and kernel mass both scale with ``scale²``, so the
value scales ≈ ``scale⁴``: re-tune λ when changing ``scale``.

Paths: ``exact=False`` (default) uses the permutohedral :class:`~wsss.filters.BilateralFilter`;
``exact=True`` the O(N²) :class:`~wsss.filters.DenseGaussianFilter` (tests, small images). The DenseCRF
term's backward on the fast path is ``-2 F(S)`` (eq. (11), as rloss), which differs from the true
gradient ``d - 2 F(S)`` by the per-pixel constant ``d_p = (F 1)_p``, the same for every class, so it
vanishes through the softmax; the exact path uses plain autograd (true gradient). The normalized-cut
term uses autograd on both paths: both filters are symmetric, so it equals eq. (12).

Default weight of the DenseCRF loss, calibrated to the effective strength of rloss's recommended setting
(w = 2e-9, scale 0.5, σ_rgb 15, σ_xy 100, batch N_rl = 12, lr 0.007). rloss's total is
``(pCE_mean + w Σ_n R_n) / N = (pCE_mean + N·w·mean_n R_n) / N``, so in the toolkit's form
``pCE_mean + λ·mean_n R_n`` the weight is ``N·w`` and the lr ``lr_rl / N``; only the lattice scale and the
``scale`` differ::

    λ_tk = N_rl · w · (c_rl / c_tk) · (s_rl / s_tk)⁴
         = 12 · 2e-9 · (0.56 / 0.968) · (0.5 / 0.5)⁴ = 1.388e-8,     lr_tk = lr_rl / N_rl = 0.007 / 12 = 5.8e-4

with ``c_rl`` = :data:`C_RL` = 0.56 the fitted scale of rloss's lattice and ``c_tk`` = :data:`C_TK` = 0.968 that
of ours, both at σ_rgb 15, σ_xy 50 on CamVid frames (``benchmarks/bilateral.py --calibrate``). The matching
lr 5.8e-4 is close to the self-labeling paper's 0.0007, the ``wsss train`` default. See docs/bilateral.md.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from wsss.filters import BilateralFilter, DenseGaussianFilter
from wsss.filters.bilateral import GaussianFilterBase

__all__ = [
    "densecrf_loss",
    "ncut_loss",
    "kernelcut_loss",
    "downscale_inputs",
    "DENSECRF_SIGMA_RGB",
    "DENSECRF_SIGMA_XY",
    "DENSECRF_SCALE",
    "C_RL",
    "C_TK",
    "N_RL",
    "LR_RL",
    "DENSECRF_WEIGHT",
    "NCUT_EPS",
    "KERNELCUT_GAMMA",
]

from wsss.losses.defaults import (  # noqa: E402  (the defaults' one home, torch-free for the CLI)
    C_RL,
    C_TK,
    DENSECRF_SCALE,
    DENSECRF_SIGMA_RGB,
    DENSECRF_SIGMA_XY,
    DENSECRF_WEIGHT,
    LR_RL,
    N_RL,
)

#: floor of the normalized-cut denominator dᵀS^k (absent classes), eq. (5).
NCUT_EPS = 1e-6
#: kernel-cut γ: not given by the paper (tuned there on validation); 1.0 is an untuned placeholder.
KERNELCUT_GAMMA = 1.0


def downscale_inputs(
    probs: torch.Tensor,
    image: torch.Tensor,
    valid: Optional[torch.Tensor],
    scale: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize to the loss resolution as rloss does (its "scale").

    Args:
        probs: ``B×K×H×W`` float (softmax output).
        image: ``B×3×H×W`` float RGB 0–255.
        valid: ``B×1×H×W`` bool or None (all valid).
        scale: factor in (0, 1]; 1 leaves everything unchanged.

    Returns:
        ``(probs B×K×h×w, image B×3×h×w, valid B×1×h×w bool)`` with ``h = floor(H·scale)``; probs
        bilinear (``align_corners=False``), image and mask nearest.
    """
    if probs.dim() != 4 or image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"probs must be B×K×H×W and image B×3×H×W, got {tuple(probs.shape)}, "
                         f"{tuple(image.shape)}")
    if probs.shape[0] != image.shape[0] or probs.shape[2:] != image.shape[2:]:
        raise ValueError(f"probs {tuple(probs.shape)} and image {tuple(image.shape)} differ in B, H or W")
    b, _, h, w = probs.shape
    if valid is None:
        valid = torch.ones(b, 1, h, w, dtype=torch.bool, device=probs.device)
    if valid.shape != (b, 1, h, w):
        raise ValueError(f"valid must be {(b, 1, h, w)}, got {tuple(valid.shape)}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if scale == 1:
        return probs, image.to(probs.dtype), valid.to(torch.bool)
    img = F.interpolate(image.to(probs.dtype), scale_factor=scale, mode="nearest")
    pr = F.interpolate(probs, scale_factor=scale, mode="bilinear", align_corners=False)
    vm = F.interpolate(valid.to(probs.dtype), scale_factor=scale, mode="nearest") > 0.5
    return pr, img, vm


def _make_filter(image, valid, sigma_xy, sigma_rgb, exclude_self, exact) -> GaussianFilterBase:
    cls = DenseGaussianFilter if exact else BilateralFilter
    return cls(image, sigma_xy, sigma_rgb, valid, exclude_self=exclude_self)


class _CRFFast(torch.autograd.Function):
    """Per-image ``R_b = Σ_k S^kᵀ(d - F S^k)`` with the rloss backward ``-2 F(S)`` (eq. (11))."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, filt: GaussianFilterBase) -> torch.Tensor:  # type: ignore[override]
        fs = filt.apply_raw(s)
        deg = filt.degree(s.dtype)
        ctx.save_for_backward(fs)
        return (s * (deg - fs)).sum(dim=(1, 2, 3))

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (fs,) = ctx.saved_tensors
        return -2.0 * fs * g.view(-1, 1, 1, 1), None


def _crf_term(s: torch.Tensor, filt: GaussianFilterBase, exact: bool) -> torch.Tensor:
    """``B`` per-image DenseCRF values on already-resized ``s`` (``B×K×h×w``)."""
    if exact:
        deg = filt.degree(s.dtype)
        return (s * (deg - filt(s))).sum(dim=(1, 2, 3))
    return _CRFFast.apply(s, filt)


def _ncut_term(s: torch.Tensor, filt: GaussianFilterBase, eps: float) -> torch.Tensor:
    """``B`` per-image normalized-cut values ``Σ_k S^kᵀ Ŵ(1 - S^k) / max(dᵀS^k, eps)``."""
    deg = filt.degree(s.dtype)
    ws = filt(s)
    num = (s * (deg - ws)).sum(dim=(2, 3))  # B×K
    den = (s * deg).sum(dim=(2, 3)).clamp_min(eps)  # B×K
    return (num / den).sum(dim=1)


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return per_image.sum()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")


def densecrf_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    *,
    sigma_rgb: float = DENSECRF_SIGMA_RGB,
    sigma_xy: float = DENSECRF_SIGMA_XY,
    scale: float = DENSECRF_SCALE,
    exclude_self: bool = False,
    exact: bool = False,
    reduction: str = "sum",
) -> torch.Tensor:
    """DenseCRF loss ``R_CRF(S) = Σ_k S^kᵀ W (1 - S^k)`` (eq. (4)), sum form.

    Args:
        probs: ``B×K×H×W`` float32/float64 softmax output (rows on the simplex).
        image: ``B×3×H×W`` float RGB 0–255.
        valid: ``B×1×H×W`` bool (False = crop padding), or None. Pixels outside are dropped, pairs
            with an invalid endpoint too; unlabeled (255) pixels are *included*.
        sigma_rgb, sigma_xy: bandwidths at full resolution (defaults 15 / 100, rloss recommended).
        scale: loss resolution factor (default 0.5); the filter uses ``sigma_xy·scale``.
        exclude_self: ``W_pp = 0`` instead of 1 (option).
        exact: use the exact O(N²) filter (autograd gradient) instead of the lattice (rloss backward
            ``-2 F(S)``).
        reduction: ``"sum"`` (0-d, sum over images) or ``"none"`` (``B``).

    Returns:
        Per-image sums R_b (summed over images for ``"sum"``), dtype of ``probs``. Reduction in training:
        :data:`DENSECRF_WEIGHT` (λ_tk ≈ 1.39e-8 at the defaults) × the mean of R_b over the batch's images.
    """
    s, img, vm = downscale_inputs(probs, image, valid, scale)
    filt = _make_filter(img, vm, sigma_xy * scale, sigma_rgb, exclude_self, exact)
    return _reduce(_crf_term(s, filt, exact), reduction)


def ncut_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    *,
    sigma_rgb: float = DENSECRF_SIGMA_RGB,
    sigma_xy: float = DENSECRF_SIGMA_XY,
    scale: float = DENSECRF_SCALE,
    exclude_self: bool = False,
    exact: bool = False,
    eps: float = NCUT_EPS,
    reduction: str = "sum",
) -> torch.Tensor:
    """Normalized-cut loss ``R_NC = Σ_k S^kᵀ Ŵ (1 - S^k) / max(dᵀS^k, eps)``, ``d = Ŵ 1`` (eq. (5)).

    Arguments as :func:`densecrf_loss` (here the bandwidths are those of ``Ŵ``; the paper tunes them,
    the defaults are rloss's DenseCRF ones, untuned for ncut). ``eps`` floors the denominator for
    absent classes. Value per image lies in ``[0, K]`` and is invariant to the filter's global scale.
    Gradient by autograd (equals the paper's (12) for a symmetric filter). Returns the per-image sums
    (``reduction="sum"``: their sum, 0-d; ``"none"``: ``B``); reduced in training to λ × their mean over
    the batch's images.
    """
    s, img, vm = downscale_inputs(probs, image, valid, scale)
    filt = _make_filter(img, vm, sigma_xy * scale, sigma_rgb, exclude_self, exact)
    return _reduce(_ncut_term(s, filt, eps), reduction)


def kernelcut_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    *,
    gamma: float = KERNELCUT_GAMMA,
    sigma_rgb: float = DENSECRF_SIGMA_RGB,
    sigma_xy: float = DENSECRF_SIGMA_XY,
    ncut_sigma_rgb: Optional[float] = None,
    ncut_sigma_xy: Optional[float] = None,
    scale: float = DENSECRF_SCALE,
    exclude_self: bool = False,
    exact: bool = False,
    eps: float = NCUT_EPS,
    reduction: str = "sum",
) -> torch.Tensor:
    """Kernel-cut loss ``R_KC = R_CRF(W) + γ·R_NC(Ŵ)`` (eq. (6)), sum form; gradient eq. (12).

    Arguments as :func:`densecrf_loss`, plus ``gamma`` (γ; :data:`KERNELCUT_GAMMA`, untuned) and the
    bandwidths of ``Ŵ`` (``ncut_sigma_*``; None = same as ``W``, then one filter serves both terms).
    Returns the per-image sums (their sum, 0-d, or ``B``); reduced in training to λ × their mean over
    the batch's images.
    """
    s, img, vm = downscale_inputs(probs, image, valid, scale)
    filt = _make_filter(img, vm, sigma_xy * scale, sigma_rgb, exclude_self, exact)
    nrgb = sigma_rgb if ncut_sigma_rgb is None else ncut_sigma_rgb
    nxy = sigma_xy if ncut_sigma_xy is None else ncut_sigma_xy
    if nrgb == sigma_rgb and nxy == sigma_xy:
        nfilt = filt
    else:
        nfilt = _make_filter(img, vm, nxy * scale, nrgb, exclude_self, exact)
    per_image = _crf_term(s, filt, exact) + gamma * _ncut_term(s, nfilt, eps)
    return _reduce(per_image, reduction)
