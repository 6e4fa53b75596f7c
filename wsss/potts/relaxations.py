"""Second-order relaxations ``P(a, b)`` of the Potts indicator ``[a ≠ b]`` (docs/methods.md §4.2).

Each function takes two tensors of label distributions with the class axis at ``dim`` (default 1,
i.e. ``B×K×H×W`` or ``N×K``), both of the same shape, float32 or float64, on any device, and returns
``P`` per pair with the class axis removed (``B×H×W`` or ``N``), same dtype and device.

| CLI name               | formula                              | paper      |
|------------------------|--------------------------------------|------------|
| ``bilinear``           | ``1 − aᵀb``                          | Table 1    |
| ``quadratic``          | ``½‖a − b‖²``                        | Table 1    |
| ``normalized-quadratic`` | ``1 − aᵀb / (‖a‖‖b‖)``             | Table 1    |
| ``collision-ce``       | ``−ln(aᵀb)``                         | Table 2    |
| ``collision-divergence`` | ``−ln(aᵀb / (‖a‖‖b‖))``            | Table 2    |
| ``log-quadratic``      | ``−ln(1 − ½‖a − b‖²)``               | Table 2    |

Numerical safety (docs/methods.md §4.2): the argument of every ``ln`` is clamped at
:data:`LOG_EPS` = 1e-8, so two different one-hot vectors give a finite value (``−ln 1e-8 ≈ 18.4``) and a
zero (finite) gradient; the norms in the normalized forms are clamped at :data:`NORM_EPS` (``‖a‖ ≥ 1/√K``
on the simplex, so the clamp only matters off the simplex, e.g. all-zero inputs). The plain forms are
exactly ``[a ≠ b]`` on one-hot inputs; all six are symmetric in ``(a, b)``. Pairs with both pixels
seeds are dropped by the callers (:mod:`wsss.potts.neighbourhoods`), not here.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from wsss.potts.errors import PottsError

#: Clamp of the argument of ``ln`` in the log relaxations (docs/methods.md §4.2).
LOG_EPS = 1e-8
#: Lower bound of ``‖a‖`` in the normalized relaxations (only reached off the simplex).
NORM_EPS = 1e-12

Relaxation = Callable[..., Tensor]


def _dot(a: Tensor, b: Tensor, dim: int) -> Tensor:
    return (a * b).sum(dim)


def _cosine(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """``aᵀb / (‖a‖‖b‖)`` with the class axis ``dim`` reduced; norms clamped at :data:`NORM_EPS`."""
    na = (a * a).sum(dim).clamp_min(NORM_EPS**2).sqrt()
    nb = (b * b).sum(dim).clamp_min(NORM_EPS**2).sqrt()
    return _dot(a, b, dim) / (na * nb)


def _safe_neg_log(x: Tensor) -> Tensor:
    """``−ln(max(x, LOG_EPS))``: finite value and finite (zero below the clamp) gradient."""
    return -torch.log(x.clamp_min(LOG_EPS))


def bilinear(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Bilinear ("graph cut") relaxation ``1 − aᵀb`` (Table 1; non-convex, tight).

    a, b: ``…×K×…`` float (class axis ``dim``), same shape. Returns the input shape without ``dim``.
    """
    return 1.0 - _dot(a, b, dim)


def quadratic(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Quadratic ("random walker") relaxation ``½‖a − b‖²`` (Table 1; convex).

    a, b: ``…×K×…`` float (class axis ``dim``), same shape. Returns the input shape without ``dim``.
    """
    d = a - b
    return 0.5 * (d * d).sum(dim)


def normalized_quadratic(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Normalized quadratic relaxation ``1 − aᵀb / (‖a‖‖b‖)`` (Table 1, new in the paper).

    Equals ``½‖a/‖a‖ − b/‖b‖‖²``. a, b: ``…×K×…`` float (class axis ``dim``), same shape. Returns the input
    shape without ``dim``.
    """
    return 1.0 - _cosine(a, b, dim)


def collision_ce(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Collision cross-entropy as a pairwise term, ``−ln(aᵀb)`` (Table 2; log of bilinear).

    The argument of ``ln`` is clamped at :data:`LOG_EPS`. a, b: ``…×K×…`` float (class axis ``dim``).
    Returns the input shape without ``dim``.
    """
    return _safe_neg_log(_dot(a, b, dim))


def collision_divergence(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Collision divergence ``−ln(aᵀb / (‖a‖‖b‖))`` (Table 2; log of normalized quadratic).

    The paper's recommendation. The argument of ``ln`` is clamped at :data:`LOG_EPS`.
    a, b: ``…×K×…`` float (class axis ``dim``). Returns the input shape without ``dim``.
    """
    return _safe_neg_log(_cosine(a, b, dim))


def log_quadratic(a: Tensor, b: Tensor, dim: int = 1) -> Tensor:
    """Log-quadratic ``−ln(1 − ½‖a − b‖²)`` (Table 2; log of quadratic, convex on its domain).

    The argument is exactly 0 for two different one-hot vectors; it is clamped at :data:`LOG_EPS`.
    a, b: ``…×K×…`` float (class axis ``dim``). Returns the input shape without ``dim``.
    """
    return _safe_neg_log(1.0 - quadratic(a, b, dim))


def collision_divergence_pieces(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`collision_divergence` with the pieces of its gradient, for solvers that skip autograd.

    With ``live = [aᵀb/(‖a‖‖b‖) > LOG_EPS]`` (below the clamp the value is constant), the gradient is

        ∂P/∂a = live · (a/‖a‖² − b/(aᵀb)),     ∂P/∂b = live · (b/‖b‖² − a/(aᵀb)),

    norms clamped at :data:`NORM_EPS` as in the value (a clamped norm contributes no gradient).
    a, b: ``B×K×…`` float (class axis 1); a_sq, b_sq: ``B×…`` their squared norms ``Σ_k a_k²``.
    Returns ``(P, live / aᵀb, live)``, each ``B×…`` of the input dtype (``P`` equals
    :func:`collision_divergence`).
    """
    dot = (a * b).sum(1)
    cos = dot / (a_sq.clamp_min(NORM_EPS**2) * b_sq.clamp_min(NORM_EPS**2)).sqrt()
    live = cos > LOG_EPS
    inv_dot = torch.where(live, 1.0 / torch.where(live, dot, torch.ones_like(dot)), torch.zeros_like(dot))
    return _safe_neg_log(cos), inv_dot, live.to(a.dtype)


#: CLI name -> relaxation function ``P(a, b, dim=1)``.
RELAXATIONS: dict[str, Relaxation] = {
    "bilinear": bilinear,
    "quadratic": quadratic,
    "normalized-quadratic": normalized_quadratic,
    "collision-ce": collision_ce,
    "collision-divergence": collision_divergence,
    "log-quadratic": log_quadratic,
}

#: Relaxations that are second-order in (a, b), the only ones usable with the dense (DN) neighbourhood.
SECOND_ORDER = ("bilinear", "quadratic")


def get_relaxation(name: str) -> Relaxation:
    """Return the relaxation registered under the CLI ``name``; ``PottsError`` (a ``ValueError``) naming the choices."""
    try:
        return RELAXATIONS[name]
    except KeyError:
        raise PottsError(
            f"--relaxation: unknown Potts relaxation {name!r}. Choose one of {', '.join(RELAXATIONS)}."
        ) from None
