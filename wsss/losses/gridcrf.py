"""Grid CRF loss: a Potts relaxation applied directly to the network output on NN4 / NN8
(regularized-losses.md, "Grid CRF loss"; a toolkit baseline with no published number).

    R(σ) = Σ_{pq∈N} w_pq · P(σ_p, σ_q),   w_pq = exp(−‖I_p − I_q‖² / (2 s²))   (notation.md)

optimized by SGD together with pCE (loss (4) of self-labeling.md without the entropy term). The
relaxations and neighbourhoods are those of :mod:`wsss.potts`. Pairs with an endpoint outside the
validity mask are dropped; seed–seed pairs are kept (they are not constant in σ).

Normalization: returns the **batch sum**; the caller divides by the shared Z (notation.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsss.potts.neighbourhoods import DEFAULT_BANDWIDTH, grid_neighbourhood
from wsss.potts.relaxations import get_relaxation


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
