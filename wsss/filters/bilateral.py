"""Dense Gaussian (bilateral) filtering ``W·X`` for batches of multi-channel maps.

Kernel (Tang et al., ECCV 2018, eq. 4; docs/bilateral.md)::

    W_pq = exp( -‖x_p - x_q‖² / (2 σ_xy²) - ‖I_p - I_q‖² / (2 σ_rgb²) )

with ``x_p`` the (row, column) position of pixel ``p`` in pixels and ``I_p`` its RGB colour (0–255).
With ``sigma_rgb=None`` the colour term is dropped (plain spatial Gaussian).

Two implementations share one interface (:class:`GaussianFilterBase`):

- :class:`~wsss.filters.dense.DenseGaussianFilter` — the exact O(N²) product, chunked (tests and
  small images).
- :class:`BilateralFilter` — the permutohedral lattice (Adams et al. 2010) in pure PyTorch; the lattice
  is built once per image batch (constructor) and reused by every call, forward and backward.

Conventions shared by both (see ``docs/bilateral.md``):

- Self term: ``W_pp = 1`` is included (as in Tang et al. and in rloss). ``exclude_self=True`` subtracts
  the filter's own self-weights (``self_weight()``), i.e. ``W_pp = 0`` for the exact filter.
- Validity: pixels outside ``valid`` contribute nothing and receive nothing (their output is 0);
  pairs with an endpoint outside ``valid`` are dropped.
- Symmetry: both filters are symmetric operators, so ``__call__`` supports autograd with
  ``backward(g) = F(g)``, reusing the same precomputed structure.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from wsss.filters.permutohedral import PermutohedralLattice

__all__ = ["GaussianFilterBase", "BilateralFilter", "image_features"]


def image_features(
    image: torch.Tensor, sigma_xy: float, sigma_rgb: Optional[float]
) -> torch.Tensor:
    """Scaled RGBXY features of a batch of images.

    Args:
        image: ``B×3×H×W`` float RGB in 0–255 (any float dtype; integer dtypes are converted).
        sigma_xy: spatial bandwidth in pixels (> 0).
        sigma_rgb: colour bandwidth in RGB units (> 0), or ``None`` for spatial features only.

    Returns:
        ``B×H×W×D`` float64 features ``(row/σ_xy, col/σ_xy[, R/σ_rgb, G/σ_rgb, B/σ_rgb])`` with
        ``D = 5`` (or 2 without colour), so that ``W_pq = exp(-‖f_p - f_q‖² / 2)``.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
    if not sigma_xy > 0:
        raise ValueError(f"sigma_xy must be > 0, got {sigma_xy}")
    if sigma_rgb is not None and not sigma_rgb > 0:
        raise ValueError(f"sigma_rgb must be > 0 or None, got {sigma_rgb}")
    b, _, h, w = image.shape
    dev = image.device
    rows = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1).expand(b, h, w)
    cols = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w).expand(b, h, w)
    feats = [rows / sigma_xy, cols / sigma_xy]
    if sigma_rgb is not None:
        img = image.to(torch.float64) / sigma_rgb
        feats += [img[:, 0], img[:, 1], img[:, 2]]
    return torch.stack(feats, dim=-1)


class _SymmetricFilterFn(torch.autograd.Function):
    """``y = F(x)`` for a symmetric linear operator F; ``backward(g) = F(g)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, filt: "GaussianFilterBase") -> torch.Tensor:  # type: ignore[override]
        ctx.filt = filt
        return filt.apply_raw(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.filt.apply_raw(grad), None


class GaussianFilterBase:
    """Common interface of the dense Gaussian filters.

    Args:
        image: ``B×3×H×W`` float RGB 0–255 (the colour features; ignored if ``sigma_rgb is None``).
        sigma_xy: spatial bandwidth in pixels.
        sigma_rgb: colour bandwidth (RGB 0–255 units), or ``None`` for a plain spatial Gaussian.
        valid: optional ``B×1×H×W`` bool mask; pixels outside it neither contribute nor receive.
        exclude_self: if True the self term is removed (``W_pp = 0``): ``F(x) - self_weight()·x``.

    Calling ``f(x)`` with ``x`` of shape ``B×C×H×W`` (float32 or float64, same device as ``image``)
    returns ``B×C×H×W`` of the same dtype: ``(W x)_p = Σ_q W_pq x_q`` over valid ``q``, 0 at invalid
    ``p``. Autograd is supported (the operator is symmetric, backward applies the filter to the
    incoming gradient).
    """

    def __init__(
        self,
        image: torch.Tensor,
        sigma_xy: float,
        sigma_rgb: Optional[float],
        valid: Optional[torch.Tensor] = None,
        *,
        exclude_self: bool = False,
    ) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
        b, _, h, w = image.shape
        if valid is None:
            valid = torch.ones(b, 1, h, w, dtype=torch.bool, device=image.device)
        if valid.shape != (b, 1, h, w):
            raise ValueError(f"valid must be {(b, 1, h, w)}, got {tuple(valid.shape)}")
        self.shape = (b, h, w)
        self.device = image.device
        self.sigma_xy = float(sigma_xy)
        self.sigma_rgb = None if sigma_rgb is None else float(sigma_rgb)
        self.valid = valid.to(torch.bool)
        self.exclude_self = bool(exclude_self)
        self._degree: dict = {}
        self._self_weight: Optional[torch.Tensor] = None
        self._raw_sw: Optional[torch.Tensor] = None

    # -- to implement -------------------------------------------------------------------------
    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C×H×W -> B×C×H×W``: the product with the self term included, masked by ``valid``."""
        raise NotImplementedError

    def _raw_self_weight(self) -> torch.Tensor:
        """``B×1×H×W`` float32: self-weights ``W̃_pp`` of ``_filter`` (0 outside ``valid``)."""
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> None:
        b, h, w = self.shape
        if x.dim() != 4 or x.shape[0] != b or x.shape[2:] != (h, w):
            raise ValueError(f"x must be {b}×C×{h}×{w}, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a float tensor, got {x.dtype}")

    def apply_raw(self, x: torch.Tensor) -> torch.Tensor:
        """The filtering without autograd bookkeeping: ``B×C×H×W -> B×C×H×W`` (same dtype)."""
        self._check(x)
        with torch.no_grad():
            y = self._filter(x)
            if self.exclude_self:
                if self._raw_sw is None:
                    self._raw_sw = self._raw_self_weight()
                y = y - self._raw_sw.to(y.dtype) * x
                y = y * self.valid
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` for ``x`` of shape ``B×C×H×W`` (float); differentiable (backward = ``W g``)."""
        self._check(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _SymmetricFilterFn.apply(x, self)
        return self.apply_raw(x)

    def degree(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``d = W 1`` over valid pixels: ``B×1×H×W`` of ``dtype`` (0 outside ``valid``).

        Includes the self term unless ``exclude_self``. Cached per dtype.
        """
        d = self._degree.get(dtype)
        if d is None:
            d = self.apply_raw(self.valid.to(dtype))
            self._degree[dtype] = d
        return d

    def self_weight(self) -> torch.Tensor:
        """Self-weights ``W̃_pp`` of this filter as called: ``B×1×H×W`` float32, 0 outside ``valid``.

        Exact filter: 1 (0 with ``exclude_self``). Lattice: see :meth:`BilateralFilter._raw_self_weight`.
        """
        if self.exclude_self:
            b, h, w = self.shape
            return torch.zeros(b, 1, h, w, device=self.device)
        if self._self_weight is None:
            if self._raw_sw is None:
                self._raw_sw = self._raw_self_weight()
            self._self_weight = self._raw_sw * self.valid
        return self._self_weight


class BilateralFilter(GaussianFilterBase):
    """Fast dense Gaussian filter on a permutohedral lattice (Adams et al. 2010), pure PyTorch.

    Constructor as :class:`GaussianFilterBase`; the lattice (keys, barycentric weights, neighbour
    indices; everything that depends only on the image) is built here once, on ``image.device``,
    and reused by every call (forward, backward, ``degree()``).

    Relation to the exact product ``W x`` (measured, docs/bilateral.md):

    - Scale: the output is multiplied by an analytic normalization (Gaussian mass over lattice cell
      volume, :data:`PermutohedralLattice.norm`) times a fitted factor so that the global scale
      ``c_tk = ⟨F(S), WS⟩/‖WS‖² ≈ 1``.
    - Symmetric: the blur is applied as a symmetric (palindromic) sequence of per-direction passes,
      so ``F = Fᵀ`` up to rounding, and the backward (``F(g)``) is exact for this operator.
    - Self-weights ``W̃_pp`` are not 1; :meth:`self_weight` returns them exactly (computed on demand).
    """

    def __init__(
        self,
        image: torch.Tensor,
        sigma_xy: float,
        sigma_rgb: Optional[float],
        valid: Optional[torch.Tensor] = None,
        *,
        exclude_self: bool = False,
        feature_scale: float = 1.0,
    ) -> None:
        super().__init__(image, sigma_xy, sigma_rgb, valid, exclude_self=exclude_self)
        feats = image_features(image, self.sigma_xy, self.sigma_rgb)  # B×H×W×D float64
        b, h, w = self.shape
        flat_valid = self.valid.reshape(-1)
        self._idx = torch.nonzero(flat_valid, as_tuple=False).squeeze(1)  # (Nv,) into B·H·W
        self._all_valid = self._idx.numel() == flat_valid.numel()
        batch_id = torch.div(self._idx, h * w, rounding_mode="floor")
        pts = feats.reshape(-1, feats.shape[-1])[self._idx]
        self.lattice: Optional[PermutohedralLattice] = None
        if self._idx.numel() > 0:  # no valid pixel: every output is 0
            self.lattice = PermutohedralLattice(pts, batch_id, feature_scale=feature_scale)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.lattice is None:
            return torch.zeros_like(x)
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # (B·H·W, C)
        if self._all_valid:  # no gather / scatter: one layout copy each way
            out = self.lattice.filter(rows)
        else:
            out = torch.zeros(b * h * w, c, dtype=x.dtype, device=x.device)
            out.index_copy_(0, self._idx, self.lattice.filter(rows.index_select(0, self._idx)))
        return out.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()

    def _raw_self_weight(self) -> torch.Tensor:
        """Lattice self-weights ``W̃_pp`` (``B×1×H×W`` float32): the exact diagonal of the lattice
        operator (:meth:`PermutohedralLattice.self_weight`), not 1: it varies with the pixel's position
        in its simplex (≈ 0.65–1.45 at the default scale).
        """
        b, h, w = self.shape
        if self.lattice is None:
            return torch.zeros(b, 1, h, w, device=self.device)
        sw = self.lattice.self_weight()
        out = torch.zeros(b * h * w, dtype=torch.float32, device=self.device)
        out[self._idx] = sw.to(torch.float32)
        return out.view(b, 1, h, w)
