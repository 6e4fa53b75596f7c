"""Cross-entropy terms ``CE(y, σ)`` between a pseudo-label ``y`` and a prediction ``σ``
(docs/methods.md §4.3, the paper's Sec. 2.2).

All terms share one signature and one argument order, the slot ``CE(y_p, σ_p)`` of loss (8):
``term(log_y, log_sigma, dim=1)``, where ``log_y`` are log-probabilities of the **pseudo-label** and
``log_sigma`` log-probabilities of the **prediction**, both ``…×K×…`` float32/float64 with the class
axis at ``dim`` (e.g. ``B×K×H×W``). Each returns the per-pixel value with ``dim`` removed (``B×H×W``);
masking and summation over pixels are the caller's.

| CLI name     | value                          | note                                           |
|--------------|--------------------------------|------------------------------------------------|
| ``standard`` | ``H(y, σ) = −Σ_k y^k ln σ^k``  | network copies the uncertainty of y            |
| ``reverse``  | ``H(σ, y) = −Σ_k σ^k ln y^k``  | the ADM derivation; y copies σ's uncertainty   |
| ``collision``| ``H₂(y, σ) = −ln Σ_k y^k σ^k`` | symmetric; the paper's best and the default    |
| ``quadratic``| ``½‖y − σ‖²``                  | not a paper variant: §6's closed-form reference |

Log-probabilities keep every ``ln`` safe (docs/methods.md §1): pass ``log_softmax`` of logits (the solver
passes the log-softmax of its variables ``v``, as §4 asks for ``reverse``), or :func:`safe_log` of
probabilities (one-hot labels become ``ln 1e-8`` off their class). ``collision`` uses ``logsumexp``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from wsss.potts.errors import PottsError

#: Clamp used by :func:`safe_log` for probabilities that can be 0 (one-hot seeds, hard labels).
PROB_EPS = 1e-8

CrossEntropy = Callable[..., Tensor]


def safe_log(p: Tensor, eps: float = PROB_EPS) -> Tensor:
    """``ln(max(p, eps))`` for probabilities ``p`` (any shape, float); finite for one-hot inputs."""
    return torch.log(p.clamp_min(eps))


def standard(log_y: Tensor, log_sigma: Tensor, dim: int = 1) -> Tensor:
    """Standard cross-entropy ``H(y, σ) = −Σ_k y^k ln σ^k`` (paper eq. 9; target y first).

    log_y, log_sigma: ``…×K×…`` float log-probabilities (class axis ``dim``), same shape.
    Returns the per-pixel value, the input shape without ``dim``.
    """
    return -(log_y.exp() * log_sigma).sum(dim)


def reverse(log_y: Tensor, log_sigma: Tensor, dim: int = 1) -> Tensor:
    """Reverse cross-entropy ``H(σ, y) = −Σ_k σ^k ln y^k`` (paper eq. 10; arguments still (y, σ)).

    ``ln y`` must be finite: pass the log-softmax of the solver's variables (or :func:`safe_log`
    of a one-hot). log_y, log_sigma: ``…×K×…`` float log-probabilities (class axis ``dim``).
    Returns the per-pixel value, the input shape without ``dim``.
    """
    return -(log_sigma.exp() * log_y).sum(dim)


def collision(log_y: Tensor, log_sigma: Tensor, dim: int = 1) -> Tensor:
    """Collision cross-entropy ``H₂(y, σ) = −ln Σ_k y^k σ^k`` (paper eq. 11), via ``logsumexp``.

    log_y, log_sigma: ``…×K×…`` float log-probabilities (class axis ``dim``), same shape.
    Returns the per-pixel value, the input shape without ``dim``.
    """
    return -torch.logsumexp(log_y + log_sigma, dim)


def collision_with_gradient(y: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`collision` (class axis 1) from probabilities, with its gradient with respect to ``y`` (not
    ``ln y``): ``H₂ = −ln s``, ``∂H₂/∂y = −σ / s``, ``s = Σ_k y^k σ^k`` (clamped at the dtype's smallest
    normal number), for solvers that skip autograd.

    y, sigma: ``B×K×H×W`` float probabilities, same shape. Returns ``(H₂ B×H×W, ∂H₂/∂y B×K×H×W)``, of
    the input dtype.
    """
    s = (y * sigma).sum(1).clamp_min(torch.finfo(y.dtype).tiny)
    return -torch.log(s), sigma * (-1.0 / s)[:, None]


def quadratic(log_y: Tensor, log_sigma: Tensor, dim: int = 1) -> Tensor:
    """Quadratic unary ``½‖y − σ‖²``: the closed-form reference of docs/methods.md §4.5 (tests only).

    log_y, log_sigma: ``…×K×…`` float log-probabilities (class axis ``dim``), same shape.
    Returns the per-pixel value, the input shape without ``dim``.
    """
    d = log_y.exp() - log_sigma.exp()
    return 0.5 * (d * d).sum(dim)


#: CLI name -> cross-entropy term ``CE(log_y, log_sigma, dim=1)``.
CROSS_ENTROPIES: dict[str, CrossEntropy] = {
    "standard": standard,
    "reverse": reverse,
    "collision": collision,
    "quadratic": quadratic,
}


def get_cross_entropy(name: str) -> CrossEntropy:
    """Return the cross-entropy term registered under the CLI ``name``; ``PottsError`` otherwise."""
    try:
        return CROSS_ENTROPIES[name]
    except KeyError:
        raise PottsError(
            f"--ce: unknown cross-entropy term {name!r}. Choose one of {', '.join(CROSS_ENTROPIES)}."
        ) from None
