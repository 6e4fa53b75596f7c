"""Neighbourhood systems ``N`` and their Potts energies ``Σ_{pq∈N} w_pq P(y_p, y_q)`` (docs/methods.md §1,
docs/methods.md §4.4).

- **NN4 / NN8** (:class:`GridNeighbourhood`): 4- or 8-connected grids. Each unordered pair
  ``{p, q = p + o}`` is stored once, for the offsets ``o`` in :data:`GRID_OFFSETS` (all with ``o_y > 0`` or
  ``o_y = 0, o_x > 0``), as a full-size weight map ``B×H×W`` indexed by ``p`` (zero where ``q`` leaves the
  image or the pair is dropped). Energies, degrees and Laplacian products are sums of products of
  shifted tensors, no loops over pixels. Weights are computed once per image
  (:func:`grid_neighbourhood`) and reused across solver steps.
- **DN** (:class:`DenseNeighbourhood`): all pairs ``p ≠ q`` weighted by the RGBXY Gaussian of
  docs/methods.md §3, through :class:`wsss.filters.BilateralFilter`; only for the second-order
  relaxations ``bilinear`` and ``quadratic``.

Edge weights (docs/methods.md §1): ``w_pq = exp(−‖I_p − I_q‖² / (2 s²))`` with ``I`` RGB in 0–255 and the
squared distance summed over channels; ``s`` = colour bandwidth (paper: 9 on VOC, 3 on Cityscapes /
ADE20k). NN8 diagonal pairs are multiplied by ``1/√2`` (Boykov–Jolly 1/distance; toolkit option, default
on). Pairs with an endpoint outside the validity mask are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.potts.errors import PottsError
from wsss.potts.relaxations import NORM_EPS, Relaxation, bilinear, collision_divergence_pieces, quadratic

#: Pair offsets ``(dy, dx)`` of each grid; every unordered pair appears once.
GRID_OFFSETS: dict[str, tuple[tuple[int, int], ...]] = {
    "nn4": ((0, 1), (1, 0)),
    "nn8": ((0, 1), (1, 0), (1, 1), (1, -1)),
}
#: Names accepted by :func:`make_neighbourhood` (CLI ``--neighbourhood``).
NEIGHBOURHOODS = ("nn4", "nn8", "dn")
#: Default colour bandwidth ``s`` of the grid weights (paper, VOC).
DEFAULT_BANDWIDTH = 9.0
#: DN spatial bandwidth: the paper's "bandwidth 100" (docs/methods.md §4.4).
DEFAULT_DN_SIGMA_XY = 100.0
#: DN colour bandwidth: not given by the paper; toolkit default = rloss's 15 (docs/methods.md §3),
#: not re-tuned for DN self-labeling.
DEFAULT_DN_SIGMA_RGB = 15.0


def _slices(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Row/column slices of the ``p`` and ``q = p + (dy, dx)`` regions of an ``H×W`` grid (``dy ≥ 0``)."""
    rp, rq = slice(0, h - dy), slice(dy, h)
    if dx >= 0:
        cp, cq = slice(0, w - dx), slice(dx, w)
    else:
        cp, cq = slice(-dx, w), slice(0, w + dx)
    return (rp, cp), (rq, cq)


def _check_image(image: Tensor) -> None:
    if image.dim() != 4 or image.shape[1] < 1:
        raise PottsError(f"image: expected a B×C×H×W tensor, got shape {tuple(image.shape)}. "
                         "Pass RGB images as B×3×H×W floats in 0–255.")


def _check_valid(valid: Tensor | None, b: int, h: int, w: int) -> Tensor | None:
    if valid is None:
        return None
    if valid.dim() == 4 and valid.shape[1] == 1:
        valid = valid[:, 0]
    if tuple(valid.shape) != (b, h, w):
        raise PottsError(f"valid: expected a B×H×W mask of shape {(b, h, w)}, got {tuple(valid.shape)}. "
                         "Pass one mask per image, at image size.")
    return valid.bool()


@dataclass(frozen=True)
class GridNeighbourhood:
    """A grid neighbourhood (NN4 or NN8) with fixed edge weights, batched over images.

    Attributes:
        kind: ``"nn4"`` or ``"nn8"``.
        offsets: the pair offsets ``(dy, dx)`` (:data:`GRID_OFFSETS`).
        weights: one ``B×H×W`` float map per offset; ``weights[i][b, y, x]`` is ``w_pq`` of the pair
            ``p = (y, x)``, ``q = p + offsets[i]`` of image ``b``, zero where ``q`` is outside the image
            or the pair is dropped.
    """

    kind: str
    offsets: tuple[tuple[int, int], ...]
    weights: tuple[Tensor, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, H, W)``."""
        return tuple(self.weights[0].shape)  # type: ignore[return-value]

    def to(self, *args, **kwargs) -> "GridNeighbourhood":
        """Move / cast the weight maps (``Tensor.to`` arguments)."""
        return replace(self, weights=tuple(w.to(*args, **kwargs) for w in self.weights))

    def pairs(self):
        """Yield ``(w, (rows_p, cols_p), (rows_q, cols_q))`` per offset: the ``B×h×w`` weight view of
        the pairs ``p → q = p + o`` and the slices of their ``p`` and ``q`` regions."""
        _, h, w = self.shape
        for (dy, dx), wt in zip(self.offsets, self.weights):
            (rp, cp), (rq, cq) = _slices(h, w, dy, dx)
            yield wt[:, rp, cp], (rp, cp), (rq, cq)

    def pair_terms(self, y: Tensor, relaxation: Relaxation) -> Tensor:
        """Per-image Potts energy ``Σ_{pq∈N} w_pq P(y_p, y_q)``.

        y: ``B×K×H×W`` float label distributions; relaxation: ``P(a, b, dim=1)``
        (:mod:`wsss.potts.relaxations`). Returns ``B`` (same dtype). Pairs with zero weight contribute
        exactly 0 (their ``P`` is finite by construction of the relaxations).
        """
        total = y.new_zeros(y.shape[0])
        for wt, (rp, cp), (rq, cq) in self.pairs():
            p = relaxation(y[:, :, rp, cp], y[:, :, rq, cq], dim=1)
            total = total + (wt * p).flatten(1).sum(1)
        return total

    energy = pair_terms

    def collision_divergence_with_gradient(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The Potts energy with the collision divergence (:meth:`pair_terms` with
        :func:`~wsss.potts.relaxations.collision_divergence`) and its gradient with respect to ``y``,
        without autograd (:func:`~wsss.potts.relaxations.collision_divergence_pieces`): one product of
        shifted views and two multiply-adds per pair direction, squared norms computed once per pixel.

        y: ``B×K×H×W`` float label distributions. Returns ``(B, B×K×H×W)``, same dtype.
        """
        sq = (y * y).sum(1)  # B×H×W
        total = y.new_zeros(y.shape[0])
        grad = torch.zeros_like(y)
        self_coef = torch.zeros_like(sq)  # Σ_q w_pq live_pq, multiplies y_p / ‖y_p‖²
        for wt, (rp, cp), (rq, cq) in self.pairs():
            a, b = y[:, :, rp, cp], y[:, :, rq, cq]
            p, inv_dot, live = collision_divergence_pieces(a, b, sq[:, rp, cp], sq[:, rq, cq])
            total = total + (wt * p).flatten(1).sum(1)
            c = (wt * inv_dot)[:, None]
            grad[:, :, rp, cp].addcmul_(c, b, value=-1.0)
            grad[:, :, rq, cq].addcmul_(c, a, value=-1.0)
            wl = wt * live
            self_coef[:, rp, cp] += wl
            self_coef[:, rq, cq] += wl
        big = sq > NORM_EPS**2  # a clamped norm has no gradient
        grad.addcmul_(torch.where(big, self_coef / torch.where(big, sq, torch.ones_like(sq)), 0.0)[:, None], y)
        return total, grad

    def degree(self) -> Tensor:
        """Weighted degree ``d_p = Σ_q w_pq``, ``B×1×H×W`` (the diagonal of ``D`` in ``L = D − W``)."""
        b, h, w = self.shape
        d = self.weights[0].new_zeros(b, h, w)
        for wt, (rp, cp), (rq, cq) in self.pairs():
            d[:, rp, cp] += wt
            d[:, rq, cq] += wt
        return d[:, None]

    def apply_weights(self, y: Tensor) -> Tensor:
        """``(W y)_p = Σ_q w_pq y_q`` per class. y: ``B×K×H×W`` float. Returns ``B×K×H×W``.

        Not differentiable through in-place accumulation; for solver gradients and tests.
        """
        return self._accumulate(torch.zeros_like(y), y, 1.0)

    def diagonal_minus_weights(self, diag: Tensor, y: Tensor) -> Tensor:
        """``diag ⊙ y − W y`` per class (e.g. ``L y`` with ``diag = d``), fused: one product and one
        multiply-add per pair direction, no temporaries of size ``B×K×H×W`` beyond the result.

        diag: ``B×1×H×W`` float; y: ``B×K×H×W`` float (same dtype). Returns ``B×K×H×W``. Not
        differentiable (in-place accumulation); for the linear solver.
        """
        return self._accumulate(diag * y, y, -1.0)

    def _accumulate(self, out: Tensor, y: Tensor, sign: float) -> Tensor:
        # out += sign · W y, in place, by multiply-adds on the shifted views of each pair direction
        for wt, (rp, cp), (rq, cq) in self.pairs():
            wt = wt[:, None]
            out[:, :, rp, cp].addcmul_(wt, y[:, :, rq, cq], value=sign)
            out[:, :, rq, cq].addcmul_(wt, y[:, :, rp, cp], value=sign)
        return out

    def laplacian(self, y: Tensor) -> Tensor:
        """``(L y)_p = d_p y_p − (W y)_p`` per class (docs/methods.md §1), the gradient of
        ``Σ_{pq} w_pq ½‖y_p − y_q‖²``. y: ``B×K×H×W`` float. Returns ``B×K×H×W``."""
        return self.diagonal_minus_weights(self.degree(), y)

    def drop_pairs_within(self, mask: Tensor) -> "GridNeighbourhood":
        """Drop (zero the weight of) every pair with **both** endpoints in ``mask`` (``B×H×W`` bool),
        e.g. seed–seed pairs (docs/methods.md §4.2)."""
        b, h, w = self.shape
        mask = mask.bool()
        new = []
        for (dy, dx), wt in zip(self.offsets, self.weights):
            (rp, cp), (rq, cq) = _slices(h, w, dy, dx)
            both = torch.zeros_like(mask)
            both[:, rp, cp] = mask[:, rp, cp] & mask[:, rq, cq]
            new.append(wt.masked_fill(both, 0.0))
        return replace(self, weights=tuple(new))

    def drop_pairs_outside(self, valid: Tensor) -> "GridNeighbourhood":
        """Drop every pair with **an** endpoint outside ``valid`` (``B×H×W`` bool)."""
        b, h, w = self.shape
        valid = valid.bool()
        new = []
        for (dy, dx), wt in zip(self.offsets, self.weights):
            (rp, cp), (rq, cq) = _slices(h, w, dy, dx)
            keep = torch.zeros_like(valid)
            keep[:, rp, cp] = valid[:, rp, cp] & valid[:, rq, cq]
            new.append(wt * keep)
        return replace(self, weights=tuple(new))

    def coarsen(self) -> "GridNeighbourhood":
        """Aggregate 2×2 pixel blocks into one node (Galerkin coarsening with piecewise-constant
        interpolation): the weight between two adjacent blocks is the sum of the fine weights crossing
        between them; pairs inside a block vanish. For a piecewise-constant labeling the coarse energy
        of any relaxation equals the fine one up to the within-block terms (0 for all but bilinear).

        Returns a neighbourhood of the same kind on the ``⌈H/2⌉×⌈W/2⌉`` grid.
        """
        b, h, w = self.shape
        hc, wc = (h + 1) // 2, (w + 1) // 2
        index = {o: i for i, o in enumerate(self.offsets)}
        coarse = [self.weights[0].new_zeros(b, hc, wc) for _ in self.offsets]
        for (dy, dx), wt in zip(self.offsets, self.weights):
            wt = F.pad(wt, (0, 2 * wc - w, 0, 2 * hc - h))
            for a in (0, 1):
                for c in (0, 1):
                    co = ((a + dy) // 2, (c + dx) // 2)
                    sub = wt[:, a::2, c::2]
                    if co == (0, 0):
                        continue
                    if co in index:
                        coarse[index[co]] = coarse[index[co]] + sub
                    else:  # (0, -1): the pair (P, P-(0,1)) is stored at P-(0,1) with offset (0, 1)
                        i = index[(-co[0], -co[1])]
                        coarse[i] = coarse[i] + F.pad(sub[:, :, 1:], (0, 1))
        return replace(self, weights=tuple(coarse))


def grid_weights(image: Tensor, offsets, bandwidth: float = DEFAULT_BANDWIDTH,
                 diagonal_weighting: bool = True, weight_offset: float = 0.0) -> tuple[Tensor, ...]:
    """Edge weights ``exp(−‖I_p − I_q‖² / (2 s²))`` (+ ``weight_offset``) of the grid pairs.

    image: ``B×C×H×W`` float (RGB 0–255); offsets: pair offsets ``(dy, dx)`` with ``dy ≥ 0``.
    Diagonal pairs are multiplied by ``1/√2`` when ``diagonal_weighting``. ``weight_offset`` is added
    to every in-image pair (``skimage.segmentation.random_walker`` adds 1e-10; default 0).
    Returns one ``B×H×W`` map per offset, zero where ``q`` leaves the image.
    """
    b, _, h, w = image.shape
    image = image.to(torch.float64 if image.dtype == torch.float64 else torch.float32)
    out = []
    for dy, dx in offsets:
        (rp, cp), (rq, cq) = _slices(h, w, dy, dx)
        diff = image[:, :, rp, cp] - image[:, :, rq, cq]
        wt = torch.exp(-(diff * diff).sum(1) / (2.0 * bandwidth**2)) + weight_offset
        if diagonal_weighting and dy != 0 and dx != 0:
            wt = wt / math.sqrt(2.0)
        full = image.new_zeros(b, h, w)
        full[:, rp, cp] = wt
        out.append(full)
    return tuple(out)


def grid_neighbourhood(image: Tensor, kind: str = "nn4", bandwidth: float = DEFAULT_BANDWIDTH,
                       diagonal_weighting: bool = True, valid: Tensor | None = None,
                       weight_offset: float = 0.0) -> GridNeighbourhood:
    """Build an NN4 / NN8 neighbourhood from images.

    Args:
        image: ``B×3×H×W`` float RGB in 0–255 (any number of channels works).
        kind: ``"nn4"`` (paper) or ``"nn8"`` (toolkit extension).
        bandwidth: colour bandwidth ``s`` (default 9, the paper's VOC value; 3 for Cityscapes/ADE20k).
        diagonal_weighting: multiply NN8 diagonal weights by ``1/√2`` (toolkit default: on).
        valid: optional ``B×H×W`` bool validity mask; pairs with an endpoint outside are dropped.
        weight_offset: constant added to every weight (tests matching skimage use 1e-10).

    Returns a :class:`GridNeighbourhood` on the image's device, float32 (float64 for float64 images).
    """
    _check_image(image)
    kind = kind.lower()
    if kind not in GRID_OFFSETS:
        raise PottsError(f"--neighbourhood: {kind!r} is not a grid neighbourhood. Use nn4 or nn8.")
    offsets = GRID_OFFSETS[kind]
    nb = GridNeighbourhood(kind, offsets, grid_weights(image, offsets, bandwidth, diagonal_weighting,
                                                       weight_offset))
    valid = _check_valid(valid, image.shape[0], image.shape[2], image.shape[3])
    if valid is not None:
        nb = nb.drop_pairs_outside(valid)
    return nb


class DenseNeighbourhood:
    """DN: all unordered pairs ``p ≠ q`` of valid pixels, ``w_pq`` = the RGBXY Gaussian of
    docs/methods.md §3, applied through a dense Gaussian filter (docs/methods.md §4.4).

    Only the second-order relaxations are supported, whose energies need one filtering ``W̃ y``
    (``W̃`` = the filter, self-weights ``s_p = W̃_pp`` included, ``d̃ = W̃ 1``):

    - ``quadratic``: ``Σ_{p<q} w ½‖y_p − y_q‖² = ½ Σ_p y_p·(d̃_p y_p − (W̃y)_p)`` (the self term cancels);
    - ``bilinear``: ``Σ_{p<q} w (1 − y_pᵀy_q) = ½ Σ_p (d̃_p − s_p) − ½ Σ_p y_p·((W̃y)_p − s_p y_p)``
      (the self term is subtracted, so no Gini-type unary is added).

    Gradients flow through the filter's autograd (symmetric: backward = forward filtering).

    Args:
        image: ``B×3×H×W`` float RGB 0–255.
        sigma_xy: spatial bandwidth (default 100, the paper's "bandwidth 100").
        sigma_rgb: colour bandwidth (default 15, rloss's; not given by the paper).
        valid: optional ``B×H×W`` bool mask; pairs with an endpoint outside are dropped.
        filter_cls: ``wsss.filters.BilateralFilter`` (default, permutohedral lattice) or
            ``wsss.filters.DenseGaussianFilter`` (exact, O(N²); tests and small images).
    """

    kind = "dn"

    def __init__(self, image: Tensor, sigma_xy: float = DEFAULT_DN_SIGMA_XY,
                 sigma_rgb: float = DEFAULT_DN_SIGMA_RGB, valid: Tensor | None = None, filter_cls=None):
        from wsss.filters import BilateralFilter

        _check_image(image)
        b, _, h, w = image.shape
        valid = _check_valid(valid, b, h, w)
        self.filter_cls = filter_cls or BilateralFilter
        self.image, self.sigma_xy, self.sigma_rgb = image, float(sigma_xy), float(sigma_rgb)
        self.valid = valid
        self.filter = self.filter_cls(image, self.sigma_xy, self.sigma_rgb,
                                      None if valid is None else valid[:, None])
        self._within: Tensor | None = None
        self._within_energy: dict = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, H, W)``."""
        return tuple(self.filter.shape)  # type: ignore[return-value]

    def degree(self) -> Tensor:
        """``d_p = Σ_{q≠p} w_pq``: ``B×1×H×W`` float32 (0 outside ``valid``)."""
        return self.filter.degree(torch.float32) - self.filter.self_weight()

    def _energy_all(self, y: Tensor, relaxation: Relaxation, filt) -> Tensor:
        wy = filt(y)
        s = filt.self_weight().to(y.dtype)
        d = filt.degree(y.dtype)
        if relaxation is quadratic:
            return 0.5 * (y * (d * y - wy)).flatten(1).sum(1)
        if relaxation is bilinear:
            return 0.5 * (d - s).flatten(1).sum(1) - 0.5 * (y * (wy - s * y)).flatten(1).sum(1)
        raise PottsError("--relaxation: the dense neighbourhood (dn) supports only bilinear and quadratic. "
                         "Use one of those, or --neighbourhood nn4/nn8.")

    def energy(self, y: Tensor, relaxation: Relaxation) -> Tensor:
        """Per-image ``Σ_{p<q} w_pq P(y_p, y_q)``; y: ``B×K×H×W`` float. Returns ``B``.

        After :meth:`drop_pairs_within`, pairs inside the mask are excluded; their (constant) energy is
        computed once, from ``y`` at the first call, assuming ``y`` stays fixed there (seeds).
        """
        e = self._energy_all(y, relaxation, self.filter)
        if self._within is not None:
            key = relaxation.__name__
            if key not in self._within_energy:
                inner_valid = self._within if self.valid is None else self._within & self.valid
                inner = self.filter_cls(self.image, self.sigma_xy, self.sigma_rgb, inner_valid[:, None])
                with torch.no_grad():
                    self._within_energy[key] = self._energy_all(y.detach(), relaxation, inner)
            e = e - self._within_energy[key].to(e.dtype)
        return e

    pair_terms = energy

    def drop_pairs_within(self, mask: Tensor) -> "DenseNeighbourhood":
        """Exclude pairs with both endpoints in ``mask`` (``B×H×W`` bool, e.g. seeds) from
        :meth:`energy` values (they are constant when ``y`` is fixed on the mask). Returns ``self``."""
        self._within = mask.bool()
        self._within_energy = {}
        return self


def make_neighbourhood(image: Tensor, kind: str = "nn4", *, bandwidth: float = DEFAULT_BANDWIDTH,
                       diagonal_weighting: bool = True, valid: Tensor | None = None,
                       weight_offset: float = 0.0, sigma_xy: float = DEFAULT_DN_SIGMA_XY,
                       sigma_rgb: float = DEFAULT_DN_SIGMA_RGB, filter_cls=None):
    """Build the neighbourhood ``kind`` (``nn4``, ``nn8`` or ``dn``) for ``B×3×H×W`` float images
    (RGB 0–255); grid options go to :func:`grid_neighbourhood`, DN options to :class:`DenseNeighbourhood`."""
    kind = kind.lower()
    if kind == "dn":
        return DenseNeighbourhood(image, sigma_xy, sigma_rgb, valid, filter_cls)
    return grid_neighbourhood(image, kind, bandwidth, diagonal_weighting, valid, weight_offset)
