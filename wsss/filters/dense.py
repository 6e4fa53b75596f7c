"""Exact dense Gaussian filtering (O(N²), chunked): the reference for the permutohedral lattice."""

from __future__ import annotations

from typing import Optional

import torch

from wsss.filters.bilateral import GaussianFilterBase, image_features

__all__ = ["DenseGaussianFilter", "dense_kernel_matrix"]


def _centred(feats: torch.Tensor) -> torch.Tensor:
    """``B×N×D`` features minus their per-image mean (smaller magnitudes, better distances)."""
    return feats - feats.mean(dim=1, keepdim=True)


def dense_kernel_matrix(
    image: torch.Tensor,
    sigma_xy: float,
    sigma_rgb: Optional[float],
    valid: Optional[torch.Tensor] = None,
    *,
    exclude_self: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Explicit kernel matrix ``W`` (small images only: ``B·N²`` entries).

    Args:
        image: ``B×3×H×W`` float RGB 0–255.
        sigma_xy, sigma_rgb: bandwidths (``sigma_rgb=None``: spatial only).
        valid: optional ``B×1×H×W`` bool; rows and columns of invalid pixels are zero.
        exclude_self: zero diagonal instead of ``W_pp = 1`` (for valid p).
        dtype: output dtype (distances are computed in float64).

    Returns:
        ``B×N×N`` with ``N = H·W`` (row-major pixel order), ``W_pq`` as in the module docstring.
    """
    b, _, h, w = image.shape
    f = image_features(image, sigma_xy, sigma_rgb).reshape(b, h * w, -1)
    d2 = (f[:, :, None, :] - f[:, None, :, :]).pow(2).sum(-1)
    wmat = torch.exp(-0.5 * d2)
    if exclude_self:
        wmat = wmat - torch.diag_embed(torch.ones(b, h * w, dtype=wmat.dtype, device=wmat.device))
    if valid is not None:
        m = valid.reshape(b, h * w).to(wmat.dtype)
        wmat = wmat * m[:, :, None] * m[:, None, :]
    return wmat.to(dtype)


class DenseGaussianFilter(GaussianFilterBase):
    """Exact dense product ``W x`` (same interface as :class:`~wsss.filters.BilateralFilter`).

    ``W_pp = 1`` (self term included) unless ``exclude_self``; ``degree()`` is exact ``W 1``;
    ``self_weight()`` is 1 on valid pixels. Memory is bounded by ``chunk`` rows of ``W`` at a time
    (``chunk × N`` entries); time is O(N²·C) per call, so use it for tests and small images.

    Args (beyond :class:`~wsss.filters.bilateral.GaussianFilterBase`):
        chunk: number of output pixels per block (default 2048).
    """

    def __init__(
        self,
        image: torch.Tensor,
        sigma_xy: float,
        sigma_rgb: Optional[float],
        valid: Optional[torch.Tensor] = None,
        *,
        exclude_self: bool = False,
        chunk: int = 2048,
    ) -> None:
        super().__init__(image, sigma_xy, sigma_rgb, valid, exclude_self=exclude_self)
        b, h, w = self.shape
        self.chunk = int(chunk)
        f = image_features(image, self.sigma_xy, self.sigma_rgb).reshape(b, h * w, -1)
        self._feats = _centred(f)  # B×N×D float64
        self._sq = self._feats.pow(2).sum(-1)  # B×N
        self._mask = self.valid.reshape(b, h * w)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        xr = (x.reshape(b, c, n) * self._mask[:, None, :]).transpose(1, 2)  # B×N×C
        out = torch.empty(b, n, c, dtype=x.dtype, device=x.device)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        for i in range(b):  # loop over images and row blocks, not pixels
            f = self._feats[i].to(work)
            sq = self._sq[i].to(work)
            xi = xr[i].to(work)
            for s in range(0, n, self.chunk):
                e = min(n, s + self.chunk)
                d2 = (sq[s:e, None] + sq[None, :] - 2.0 * (f[s:e] @ f.T)).clamp_min_(0.0)
                out[i, s:e] = (torch.exp_(d2.mul_(-0.5)) @ xi).to(x.dtype)
        out = out * self._mask[:, :, None]
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _raw_self_weight(self) -> torch.Tensor:
        return self.valid.to(torch.float32)
