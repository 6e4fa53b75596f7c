"""Partial cross-entropy on seeds, dense CE and soft-target CE.

Reductions (:mod:`wsss.losses.term`): :func:`partial_ce_term` is the **mean over the labelled valid
pixels** of the batch (PyTorch's mean CE with ``ignore_index=255``, as the rloss code computes pCE; 0 for a
batch without seeds; with dense masks the usual mean CE over the non-void pixels); :func:`soft_ce_term` is
the mean over the pixels of its mask. The ``*_sum`` functions are the sums these terms divide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX
from wsss.losses.term import Term


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


def partial_ce_term(logits: Tensor, labels: Tensor, valid: Tensor | None = None) -> Term:
    """pCE as a :class:`~wsss.losses.term.Term`: :func:`partial_ce_sum` over the count of labelled valid
    pixels, i.e. reduced to the mean of ``−ln σ_p^{ȳ_p}`` over ``S ∩ V`` of the (global) batch.

    Args: as :func:`partial_ce_sum`.
    """
    target = masked_labels(labels, valid)
    return Term.of(partial_ce_sum(logits, labels, valid), (target != IGNORE_INDEX).sum())


def soft_ce_term(logits: Tensor, probs: Tensor, mask: Tensor) -> Term:
    """Soft-target CE as a :class:`~wsss.losses.term.Term`: the mean of ``H(y_p, σ_p)`` over the pixels of
    ``mask`` (``B×H×W`` bool). Args: as :func:`soft_ce_sum`."""
    return Term.of(soft_ce_sum(logits, probs, mask), mask.bool().sum())


def weighted_ce_term(logits: Tensor, labels: Tensor, valid: Tensor | None, weight: Tensor) -> Term:
    """Class-weighted CE as a :class:`~wsss.losses.term.Term`: ``Σ_p w_{ȳ_p} (−ln σ_p^{ȳ_p}) / Σ_p w_{ȳ_p}`` over the
    labelled valid pixels of the (global) batch — the weighted mean, as ``torch.nn.functional.cross_entropy``
    with ``weight`` reduces.

    Args:
        logits: ``B×K×H×W`` float.
        labels: ``B×H×W`` int64, 255 = unlabelled.
        valid: ``B×H×W`` bool validity mask (padding False) or None.
        weight: ``K`` float class weights ``w`` (on the logits' device).
    """
    target = masked_labels(labels, valid)
    w = weight.to(device=logits.device, dtype=torch.float32)
    total = F.cross_entropy(logits.float(), target, weight=w, ignore_index=IGNORE_INDEX, reduction="sum")
    labelled = target != IGNORE_INDEX
    return Term.of(total, w[target[labelled]].sum())
