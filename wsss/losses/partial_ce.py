"""Partial cross-entropy on seeds, dense CE and soft-target CE, in sum form.

Normalization (notation.md): every function returns the **batch sum** over pixels; the training loop
divides the whole loss by the shared ``Z`` = number of valid pixels in the batch. With dense masks
(``S = Ω``) ``partial_ce_sum / Z`` is the usual mean cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX


def masked_labels(labels: Tensor, valid: Tensor | None) -> Tensor:
    """Labels with invalid (padding) pixels set to 255. labels: ``B×H×W`` int64; valid: ``B×H×W`` bool."""
    if valid is None:
        return labels
    return labels.masked_fill(~valid.bool(), IGNORE_INDEX)


def partial_ce_sum(logits: Tensor, labels: Tensor, valid: Tensor | None = None) -> Tensor:
    """``Σ_{p∈S∩V} −ln σ_p^{ȳ_p}`` summed over the batch.

    Args:
        logits: ``B×K×H×W`` float.
        labels: ``B×H×W`` int64 seeds (or dense masks), 255 = unlabelled.
        valid: ``B×H×W`` bool validity mask (padding False) or None.

    Returns:
        scalar float tensor (0 for a batch without seeds).
    """
    target = masked_labels(labels, valid)
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")


def soft_ce_sum(logits: Tensor, probs: Tensor, mask: Tensor) -> Tensor:
    """``Σ_{p∈mask} H(y_p, σ_p) = −Σ_p Σ_k y_p^k ln σ_p^k`` (soft targets, target first), batch sum.

    Args:
        logits: ``B×K×H×W`` float.
        probs: ``B×K×H×W`` float target distributions ``y`` (treated as constants: detached).
        mask: ``B×H×W`` bool pixels that count.

    Returns:
        scalar float tensor.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    per_pixel = -(probs.detach().float() * logp).sum(1)
    return (per_pixel * mask.float()).sum()
