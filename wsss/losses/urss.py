"""URSS losses (Pan et al., "Scribble-supervised semantic segmentation by uncertainty reduction on neural
representation and self-supervision on neural eigenspace", ICCV 2021; docs/methods.md, "URSS").

- :func:`soft_entropy_term`: the soft entropy ``E_{Ω−B}`` (their eq. 3), the mean over the batch's valid
  non-boundary pixels of ``H(σ_p) = −Σ_c σ_p^c ln σ_p^c`` (one mean over all such pixels of the batch, as
  the public code computes it, not a mean of per-image means).
- :func:`eigenspace_term`: the soft eigenspace self-supervision ``ss_P`` (their eq. 9, in the public code's
  form): per image the KL divergence ``KL(Q̂ ‖ Q)`` of the softmaxed random-walk energies of the
  transformed crop ``Q̂`` (target, no gradient) and of the crop ``Q`` (prediction), summed over all
  ``M×M`` entries and divided by ``M²``, plus ``γ |tr Q̂ − tr Q|``; both averaged over the batch's images.
- :func:`flip_permutation`, :func:`translation_slice`: the grid transforms ``T_φ`` applied as index
  operations on ``B×N×N`` energies (positions in row-major order ``r·w + c``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.errors import UserError
from wsss.losses import urss_defaults
from wsss.losses.base import LossOption, TrainingLoss
from wsss.losses.partial_ce import partial_ce_term
from wsss.losses.term import Term

#: Softmax axes of the eigenspace loss: ``columns`` (each column sums to 1, the public code) or ``rows``
#: (the row-stochastic random-walk matrix P of the paper).
SOFTMAX_AXES = ("columns", "rows")


def _real(t: Tensor) -> Tensor:
    """float64 stays float64 (gradient checks); anything else becomes float32."""
    return t if t.dtype == torch.float64 else t.float()


def entropy_mask(valid: Tensor, boundary: Tensor | None) -> Tensor:
    """Pixels of the soft entropy: valid and not a pseudo-boundary. valid, boundary: ``B×H×W`` bool
    (boundary None = no boundaries). Returns ``B×H×W`` bool."""
    mask = valid.bool()
    if boundary is not None:
        mask = mask & ~boundary.bool()
    return mask


def soft_entropy_sum(logits: Tensor, mask: Tensor) -> Tensor:
    """``Σ_{p∈mask} −Σ_c σ_p^c ln σ_p^c`` over the batch, computed from log-softmax (safe at σ = 0).

    Args:
        logits: ``B×K×H×W`` float.
        mask: ``B×H×W`` bool pixels that count.

    Returns:
        0-d float32 (float64 for float64 logits) tensor with gradient.
    """
    logp = F.log_softmax(_real(logits), dim=1)
    per_pixel = -(logp.exp() * logp).sum(1)
    return (per_pixel * mask.to(per_pixel.dtype)).sum()


def soft_entropy_term(logits: Tensor, valid: Tensor, boundary: Tensor | None = None, weight: float = 1.0) -> Term:
    """The soft entropy ``ω₁ · E_{Ω−B}`` as a :class:`~wsss.losses.term.Term`: ``weight`` × the sum of
    :func:`soft_entropy_sum` over the valid non-boundary pixels, counted by those pixels, i.e. reduced to
    their mean over the (global) batch.

    Args:
        logits: ``B×K×H×W`` float (at crop size).
        valid: ``B×H×W`` bool validity mask (False on crop padding and rotated-in pixels).
        boundary: ``B×H×W`` bool pseudo-boundaries ``B`` or None.
        weight: ω₁.
    """
    mask = entropy_mask(valid, boundary)
    return Term.of(weight * soft_entropy_sum(logits, mask), mask.sum())


def flip_permutation(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Index permutation of ``T_φ`` for a horizontal flip of an ``h×w`` grid: position ``r·w + c`` ↦
    ``r·w + (w − 1 − c)``. ``(T E T)_{ij} = E[perm[i], perm[j]]`` for the permutation matrix ``T``
    (symmetric, ``T T = I``). Returns ``h·w`` int64."""
    idx = torch.arange(h * w, device=device).view(h, w)
    return idx.flip(1).reshape(-1)


def translation_slice(h: int, rows: int, w: int, first: bool) -> slice:
    """Positions of ``x``'s ``h×w`` grid that a vertical crop of ``rows`` grid rows covers: the first
    ``rows`` rows (``first``) or the last ones. Returns a slice of the row-major position index."""
    if not 0 < rows <= h:
        raise ValueError(f"translation of {rows} rows on a grid of {h} rows")
    start = 0 if first else (h - rows) * w
    return slice(start, start + rows * w)


@dataclass(frozen=True)
class GridTransform:
    """The transform ``t_φ`` of one iteration on the feature grid.

    Attributes:
        kind: ``flip`` or ``translation``.
        first: translation only: the crop keeps the first rows of the image (else the last).
        rows: translation only: grid rows of the transformed crop's grid (its energy is ``rows·w`` square).
    """

    kind: str
    first: bool = True
    rows: int = 0


def _softmax_log(energy: Tensor, axis: str) -> Tensor:
    """Log-softmax of ``B×M×M`` energies over ``columns`` (dim −2: each column sums to 1) or ``rows``."""
    if axis not in SOFTMAX_AXES:
        raise UserError(f"--urss-softmax {axis}: unknown axis. Choose one of: {', '.join(SOFTMAX_AXES)}.")
    return F.log_softmax(_real(energy), dim=-2 if axis == "columns" else -1)


def aligned_energies(energy: Tensor, energy_t: Tensor, grid: tuple[int, int], transform: GridTransform) -> tuple[Tensor, Tensor]:
    """The prediction's and the target's energies on the same positions, before the softmax.

    Args:
        energy: ``B×N×N`` energy ``E(x)`` of the crop, ``N = h·w``.
        energy_t: energy ``E(t_φ x)`` of the transformed crop: ``B×N×N`` (flip) or ``B×M×M`` with
            ``M = rows·w`` (translation).
        grid: ``(h, w)`` of ``x``'s feature grid.
        transform: the transform.

    Returns:
        ``(E_pred, E_target)``, both ``B×M×M`` (``M = N`` for a flip): flip: ``E(x)`` and ``T E(t_φ x) T``
        (index permutation); translation: ``E(x)`` cut to the overlapping positions and ``E(t_φ x)``.
    """
    h, w = grid
    n = h * w
    if energy.shape[-2:] != (n, n):
        raise ValueError(f"energy {tuple(energy.shape)} does not match a {h}×{w} grid")
    if transform.kind == "flip":
        perm = flip_permutation(h, w, energy.device)
        return energy, energy_t[:, perm][:, :, perm]
    if transform.kind == "translation":
        cut = translation_slice(h, transform.rows, w, transform.first)
        pred = energy[:, cut, cut]
        if energy_t.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"transformed energy {tuple(energy_t.shape)} vs overlap {tuple(pred.shape)}")
        return pred, energy_t
    raise ValueError(f"unknown transform {transform.kind!r}")


def eigenspace_sums(energy_pred: Tensor, energy_target: Tensor, axis: str = "columns", gamma: float = 0.01) -> Tensor:
    """Per-image ``(1/M²) Σ_{i,j} Q̂_ij (ln Q̂_ij − ln Q_ij) + γ |tr Q̂ − tr Q|`` on aligned energies.

    Args:
        energy_pred: ``B×M×M`` float energies of the prediction (gradient flows).
        energy_target: ``B×M×M`` float energies of the target (detached here: no gradient reaches it).
        axis: softmax axis, ``columns`` (the public code) or ``rows``.
        gamma: weight γ of the trace term.

    Returns:
        ``B`` per-image values (float32; float64 for float64 energies).
    """
    m = energy_pred.shape[-1]
    logq = _softmax_log(energy_pred, axis)
    logt = _softmax_log(energy_target.detach(), axis)
    target = logt.exp()
    kl = (target * (logt - logq)).sum((-2, -1)) / float(m * m)
    trace = (target.diagonal(dim1=-2, dim2=-1).sum(-1) - logq.exp().diagonal(dim1=-2, dim2=-1).sum(-1)).abs()
    return kl + gamma * trace


def eigenspace_term(energy: Tensor, energy_t: Tensor, grid: tuple[int, int], transform: GridTransform,
                    axis: str = "columns", gamma: float = 0.01, weight: float = 1.0) -> Term:
    """``ω₂ · ss_P`` as a :class:`~wsss.losses.term.Term` over the batch's images (their eq. 9 in the public
    code's form): ``weight`` × the sum over images of :func:`eigenspace_sums`, counted by images, i.e.

        ss_P = (1/(n·M²)) Σ_b Σ_{i,j} Q̂_ij (ln Q̂_ij − ln Q_ij) + γ · mean_b |tr Q̂ − tr Q|

    with ``Q = softmax(E(x))`` (aligned by :func:`aligned_energies`) and ``Q̂ = sg[softmax(T E(t_φ x) T)]``.

    Args: as :func:`aligned_energies` and :func:`eigenspace_sums`; ``weight``: ω₂.
    """
    pred, target = aligned_energies(energy, energy_t, grid, transform)
    per_image = eigenspace_sums(pred, target, axis=axis, gamma=gamma)
    return Term.of(weight * per_image.sum(), per_image.shape[0])


class URSSLoss(TrainingLoss):
    """``--loss urss``: pCE + ω₁ · soft entropy (phase 1) and, in phase 2, + ω₂ · eigenspace self-supervision.

    Terms (each a mean over its own count, :mod:`wsss.losses.term`): ``pce`` (mean over the seed pixels),
    ``entropy`` (ω₁ × mean over the valid non-boundary pixels), ``ss`` (ω₂ × :func:`eigenspace_term`, a mean
    over the batch's images). Built by :func:`wsss.losses.registry.make_loss`; the second forward pass is run
    by the URSS training task (:mod:`wsss.training.urss`).
    """

    name = "urss"
    target = "seeds"
    default_warmup_fraction = 0.0
    _SRC = "URSS code, Pan et al. ICCV 2021; docs/methods.md §9"
    OPTIONS = (
        LossOption("--urss-phase", ("phase",), "1 = pCE + ω₁·entropy, 2 = + ω₂·eigenspace term (needs --init-from) [1]", 1),
        LossOption("--omega1", ("omega1",), f"ω₁ of the soft entropy, mean over valid non-boundary pixels [1, {_SRC}]", 1.0),
        LossOption("--omega2", ("omega2",), f"ω₂ of the eigenspace term, KL over the n·M² entries [30, {_SRC}]", 30.0),
        LossOption("--gamma", ("gamma",), f"γ of the trace term [0.01, {_SRC}]", 0.01),
        LossOption("--urss-softmax", ("softmax",), "columns (URSS code) or rows (the paper's P) [columns]", "columns"),
        LossOption("--urss-transform", ("transform",), "random (flip or translation 50/50, URSS code), flip, translation [random]", "random"),
        LossOption("--boundary-width", ("boundary_width",), "pseudo-boundary width in pixels [1: toolkit]", 1),
        LossOption("--walk", ("walk",), "code (query/key/value, α from 0; URSS code) or paper (parameter-free) [code]", "code"),
    )

    def __init__(self, phase: int = 1, omega1: float | None = None, omega2: float | None = None,
                 gamma: float | None = None, softmax: str | None = None, transform: str | None = None,
                 boundary_width: int | None = None, walk: str = "code"):
        if phase not in (1, 2):
            raise UserError(f"--urss-phase {phase}: must be 1 (pCE + entropy) or 2 (+ eigenspace term).")
        self.phase = int(phase)
        self.omega1 = urss_defaults.OMEGA1 if omega1 is None else float(omega1)
        self.omega2 = urss_defaults.OMEGA2 if omega2 is None else float(omega2)
        self.gamma = urss_defaults.GAMMA if gamma is None else float(gamma)
        self.softmax = urss_defaults.SOFTMAX_AXIS if softmax is None else str(softmax)
        if self.softmax not in SOFTMAX_AXES:
            raise UserError(f"--urss-softmax {self.softmax}: choose one of: {', '.join(SOFTMAX_AXES)}.")
        self.transform = urss_defaults.TRANSFORM if transform is None else str(transform)
        if self.transform not in urss_defaults.TRANSFORMS:
            raise UserError(f"--urss-transform {self.transform}: choose one of: {', '.join(urss_defaults.TRANSFORMS)}.")
        self.boundary_width = urss_defaults.BOUNDARY_WIDTH if boundary_width is None else int(boundary_width)
        if self.boundary_width < 1:
            raise UserError(f"--boundary-width {self.boundary_width}: must be at least 1.")
        self.walk = walk

    def base_terms(self, logits: Tensor, labels: Tensor, valid: Tensor, boundary: Tensor | None) -> dict[str, Term]:
        """Phase-1 terms. logits ``B×K×H×W``; labels ``B×H×W`` int64; valid, boundary ``B×H×W`` bool."""
        return {"pce": partial_ce_term(logits, labels, valid),
                "entropy": soft_entropy_term(logits, valid, boundary, weight=self.omega1)}

    def terms(self, logits, batch):
        return self.base_terms(logits, batch.labels, batch.valid, getattr(batch, "boundary", None))

    def warmup_terms(self, logits, batch):
        return {"pce": partial_ce_term(logits, batch.labels, batch.valid)}

    def ss_term(self, energy: Tensor, energy_t: Tensor, grid: tuple[int, int], transform: GridTransform) -> Term:
        """ω₂ · ss_P (:func:`eigenspace_term` with this loss's axis and γ)."""
        return eigenspace_term(energy, energy_t, grid, transform, axis=self.softmax, gamma=self.gamma, weight=self.omega2)

    def options(self):
        return {"phase": self.phase, "omega1": self.omega1, "omega2": self.omega2, "gamma": self.gamma,
                "softmax": self.softmax, "transform": self.transform, "boundary_width": self.boundary_width,
                "walk": self.walk}


__all__ = [
    "SOFTMAX_AXES", "GridTransform", "URSSLoss", "aligned_energies", "eigenspace_sums", "eigenspace_term", "entropy_mask",
    "flip_permutation", "soft_entropy_sum", "soft_entropy_term", "translation_slice",
]
