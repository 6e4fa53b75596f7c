"""Fully connected CRF mean-field inference on the toolkit's permutohedral lattice (CPU and CUDA).

The same model as the pydensecrf2 path of :mod:`wsss.crf` (Krähenbühl & Koltun 2011): unary
``U = −ln(clip(p, eps, 1))``, Potts pairwise terms weighted by a Gaussian (smoothness) kernel on
``(row, col)/gauss_sxy`` and a bilateral (appearance) kernel on ``(row, col)/bi_sxy, RGB/bi_srgb``,
``iterations`` mean-field updates::

    Q⁰ = softmax(−U)
    Q^{t+1} = softmax( −U + Σ_m compat_m · K̂_m Q^t ),   K̂_m = D_m^{-1/2} K̃_m D_m^{-1/2},  D_m = diag(K̃_m 1)

with ``K̃_m`` the lattice filter (:class:`wsss.filters.BilateralFilter`, self term included). The
symmetric degree normalization ``K̂`` is what pydensecrf2 applies by default
(``NORMALIZE_SYMMETRIC``); it makes the result independent of the lattice's global scale.

Where it differs from pydensecrf2 (docs/metrics.md, "Lattice engine"):

- the blur is averaged over the two pass orders (symmetric operator); pydensecrf2 blurs in one order
  (``[1/2, 1, 1/2]`` passes, then a constant factor), which is a few percent asymmetric;
- lattice features are elevated in float64 (pydensecrf2: float32); values are filtered in float32;
- everything else (features, Adams' lattice scaling, self term, ``+1e-20`` in the normalization,
  the update order) is the same, so the marginals agree closely but not bit for bit.

Images are batched: ``B`` images of one size are filtered on one lattice (points of different images
never interact), so a GPU processes a whole batch per pass.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from wsss.filters import PermutohedralLattice, image_features
from wsss.filters.lattice_sum import LatticeSum

__all__ = ["lattice_crf", "lattice_crf_numpy", "message_operator"]

#: added to the lattice degree before ``x^{-1/2}``, as pydensecrf2 does
DEGREE_FLOOR = 1e-20


def message_operator(images: torch.Tensor, params) -> Optional[LatticeSum]:
    """``x ↦ Σ_m compat_m · K̂_m x`` (``K̂_m = D_m^{-1/2} K̃_m D_m^{-1/2}``, ``D_m = diag(K̃_m 1 + 1e-20)``)
    for ``N×K`` float32 ``x``, ``N = B·H·W`` pixels (row-major, image by image).

    Both kernels' lattices (:class:`~wsss.filters.PermutohedralLattice`) share one
    :class:`~wsss.filters.lattice_sum.LatticeSum`: the degrees ``K̃_m 1`` come from one pass of it,
    and the degree scalings and weights are folded into its splat and slice weights, so that an
    iteration is one splat, one blur and one slice.

    Args:
        images: ``B×3×H×W`` float RGB 0–255 on the compute device.
        params: :class:`wsss.crf.CRFParams`.

    Returns:
        the operator, or ``None`` when both kernel weights are 0.
    """
    b, _, h, w = images.shape
    batch_id = torch.arange(b, device=images.device).repeat_interleave(h * w)
    lattices, compats = [], []
    for compat, sxy, srgb in ((params.gauss_compat, params.gauss_sxy, None),
                              (params.bi_compat, params.bi_sxy, params.bi_srgb)):
        if compat > 0:
            feats = image_features(images, sxy, srgb)
            lattices.append(PermutohedralLattice(feats.reshape(b * h * w, -1), batch_id))
            compats.append(float(compat))
    if not lattices:
        return None
    op = LatticeSum(lattices, dtype=torch.float32)
    ones = torch.ones(b * h * w, 1, dtype=torch.float32, device=images.device)
    norms = [(deg + DEGREE_FLOOR).rsqrt_() for deg in op.separately(ones)]  # N×1 each
    return op.scaled(norms, [c * nm for c, nm in zip(compats, norms)])


def lattice_crf(images: torch.Tensor, probs: torch.Tensor, params) -> torch.Tensor:
    """Mean-field marginals of the fully connected CRF for a batch of images.

    Args:
        images: ``B×3×H×W`` RGB 0–255 (uint8 or float), on the compute device.
        probs: ``B×K×H×W`` float class probabilities (need not sum exactly to 1), finite, same device.
        params: :class:`wsss.crf.CRFParams` (``engine`` is ignored here).

    Returns:
        ``B×K×H×W`` float32 marginals (each pixel sums to 1), on the input device.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be B×3×H×W, got {tuple(images.shape)}")
    if probs.dim() != 4 or probs.shape[0] != images.shape[0] or probs.shape[2:] != images.shape[2:]:
        raise ValueError(f"probabilities {tuple(probs.shape)} do not match the images {tuple(images.shape)}")
    b, k, h, w = probs.shape
    with torch.no_grad():
        # Pixel-major rows (N×K) throughout: the layout the lattice filters without copies.
        rows = probs.to(torch.float32).permute(0, 2, 3, 1).reshape(b * h * w, k)
        neg_unary = rows.clamp(params.eps, 1.0).log_()  # −U
        q = torch.softmax(neg_unary, dim=1)
        if params.iterations > 0:
            messages = message_operator(images.to(torch.float32), params)
            if messages is not None:
                for _ in range(params.iterations):
                    q = torch.softmax(messages(q).add_(neg_unary), dim=1)
    return q.view(b, h, w, k).permute(0, 3, 1, 2).contiguous()


def lattice_crf_numpy(image: np.ndarray, probs: np.ndarray, params, device: str | torch.device = "cpu") -> np.ndarray:
    """:func:`lattice_crf` for one image in the layout of :func:`wsss.crf.dense_crf`.

    Args:
        image: H×W×3 uint8 RGB.
        probs: K×H×W float probabilities.
        params: :class:`wsss.crf.CRFParams`.
        device: where to compute.

    Returns:
        K×H×W float32 marginals (numpy).
    """
    img = torch.tensor(image, dtype=torch.float32, device=device).permute(2, 0, 1)[None]
    p = torch.tensor(probs, dtype=torch.float32, device=device)[None]
    return lattice_crf(img, p, params)[0].cpu().numpy()
