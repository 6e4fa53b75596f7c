"""Grid CRF loss: a Potts relaxation applied directly to the network output on NN4 / NN8
(docs/methods.md §3.5; a toolkit baseline with no published number).

    R(σ) = Σ_{pq∈N} w_pq · P(σ_p, σ_q),   w_pq = exp(−‖I_p − I_q‖² / (2 s²))   (docs/methods.md §1)

optimized by SGD together with pCE (loss (12) of docs/methods.md §4.1 without the entropy term). The
relaxations and neighbourhoods are those of :mod:`wsss.potts`. Pairs with an endpoint outside the
validity mask are dropped; seed–seed pairs are kept (they are not constant in σ).

Reduction: :func:`gridcrf_sum` is the batch sum; :func:`gridcrf_term` divides it by the number of valid
pairs it sums over (both endpoints valid, :func:`valid_pair_count`): the **mean over valid pairs** of
``w_pq P(σ_p, σ_q)``, times λ (:mod:`wsss.losses.term`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsss.losses.term import Term
from wsss.potts.neighbourhoods import DEFAULT_BANDWIDTH, GRID_OFFSETS, grid_neighbourhood
from wsss.potts.relaxations import get_relaxation


def valid_pair_count(valid: Tensor, neighbourhood: str = "nn4") -> Tensor:
    """Number of unordered NN4 / NN8 pairs with both endpoints valid, over the batch.

    Args:
        valid: ``B×H×W`` bool validity mask.
        neighbourhood: ``nn4`` or ``nn8``.

    Returns:
        0-d int64 tensor.
    """
    v = valid.bool()
    h, w = v.shape[-2:]
    total = torch.zeros((), dtype=torch.int64, device=v.device)
    for dy, dx in GRID_OFFSETS[neighbourhood]:
        c0, c1 = max(0, -dx), w - max(0, dx)
        total = total + (v[:, : h - dy, c0:c1] & v[:, dy:, c0 + dx : c1 + dx]).sum()
    return total


def gridcrf_sum(
    probs: Tensor,
    image: Tensor,
    valid: Tensor | None = None,
    relaxation: str = "collision-divergence",
    neighbourhood: str = "nn4",
    bandwidth: float = DEFAULT_BANDWIDTH,
) -> Tensor:
    """``Σ_b Σ_{pq∈N} w_pq P(σ_p, σ_q)``.

    Args:
        probs: ``B×K×H×W`` float32/float64 softmax output σ (differentiable); the result has its dtype.
        image: ``B×3×H×W`` float RGB 0–255 (weights are constants).
        valid: ``B×H×W`` bool validity mask or None.
        relaxation: a name of :data:`wsss.potts.relaxations.RELAXATIONS` (default: the paper's
            recommended ``collision-divergence``).
        neighbourhood: ``nn4`` (paper) or ``nn8``.
        bandwidth: colour bandwidth ``s`` (9, the paper's VOC value).

    Returns:
        scalar float tensor.
    """
    with torch.no_grad():
        nb = grid_neighbourhood(image.to(probs.dtype), neighbourhood, bandwidth, valid=valid)
    return nb.pair_terms(probs, get_relaxation(relaxation)).sum()


def gridcrf_term(probs: Tensor, image: Tensor, valid: Tensor | None = None, **options) -> Term:
    """:func:`gridcrf_sum` as a :class:`~wsss.losses.term.Term` over its valid pairs (all pairs of the
    grid when ``valid`` is None): reduced to the mean of ``w_pq P(σ_p, σ_q)`` over the batch's valid pairs.
    Arguments and ``options`` (relaxation, neighbourhood, bandwidth) as :func:`gridcrf_sum`."""
    if valid is None:
        valid = torch.ones(probs.shape[0], *probs.shape[2:], dtype=torch.bool, device=probs.device)
    total = gridcrf_sum(probs, image, valid, **options)
    return Term.of(total, valid_pair_count(valid, options.get("neighbourhood", "nn4")))
