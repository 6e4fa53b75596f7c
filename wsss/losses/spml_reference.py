"""Dense-mask reference of the SPML per-pixel loss (Ke et al. 2021, eq. (3); docs/methods.md §10), for tests
and ``benchmarks/spml_step.py``: the formula of :func:`wsss.losses.spml.contrastive_losses` written with
``N×S`` boolean masks and two masked log-sum-exps, differentiated by autograd. Training uses
:func:`~wsss.losses.spml.contrastive_losses` (grouped positives, one exponential pass, its own backward).
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_contrastive_losses(features: Tensor, prototypes: Tensor, own: Tensor, positive: Tensor, negative: Tensor,
                             kappa: float) -> Tensor:
    """Per-pixel ``L_i`` with the own-segment exclusion and its fallback, by masked log-sum-exps.

    Args:
        features: ``N×D`` float unit pixel features; prototypes: ``S×D`` float unit prototypes.
        own: ``N`` int64 own segment in ``[0, S)``.
        positive, negative: ``N×S`` bool (own may be marked either way; never counted as a negative).
        kappa: concentration κ.

    Returns:
        ``N`` float losses, differentiable (autograd) in ``features`` and ``prototypes``.
    """
    n, s = positive.shape
    logits = kappa * features @ prototypes.transpose(0, 1)
    own_mask = torch.zeros(n, s, dtype=torch.bool, device=features.device)
    own_mask[torch.arange(n, device=features.device), own] = True
    others = positive & ~own_mask
    pos = torch.where(others.any(1, keepdim=True), others, own_mask)
    denominator = pos | (negative & ~own_mask)
    neg_inf = torch.finfo(logits.dtype).min
    return (torch.logsumexp(logits.masked_fill(~denominator, neg_inf), 1)
            - torch.logsumexp(logits.masked_fill(~pos, neg_inf), 1))


__all__ = ["dense_contrastive_losses"]
