"""Soft (and hard) self-labeling network loss (docs/methods.md §4.1, eq. 13).

Per mini-batch:

1. **pseudo-label step**: with the network fixed, ``y = solve_pseudolabels(z.detach(), seeds, image,
   config, valid)`` (:mod:`wsss.potts.solver`, all of :class:`~wsss.potts.solver.SolverConfig`:
   relaxation, CE term, neighbourhood, η, λ, steps, lr, optimizer, ...). ``--hard``: ``y`` becomes the
   one-hot arg-max of the soft solution (toolkit extension, no published number).
2. **network step** on the first two terms of (8) with ``y`` a constant, each reduced to a mean
   (:mod:`wsss.losses.term`):

       mean_{p∈S∩V} −ln σ_p^{ȳ_p}  +  η_net · mean_{p∈V∖S} CE(y_p, σ_p)

   with the same CE term (``config.ce``) as the solver. The solver minimizes the per-image **sum**
   energy (its η and λ keep their meaning); the network step's weight ``η_net`` is its own, default
   ``η · SL_WEIGHT_PER_ETA`` (:data:`wsss.losses.registry.SL_WEIGHT_PER_ETA`: the conversion of the
   earlier shared-normalizer rule at the demo tuning run's counts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX
from wsss.losses.partial_ce import partial_ce_term
from wsss.losses.term import Term
from wsss.potts.crossentropy import get_cross_entropy, safe_log
from wsss.potts.solver import SolverConfig, solve_pseudolabels


def hard_labels(y: Tensor) -> Tensor:
    """One-hot arg-max of soft labels. y: ``B×K×H×W`` float → same shape and dtype."""
    return F.one_hot(y.argmax(1), y.shape[1]).permute(0, 3, 1, 2).to(y.dtype)


def pseudo_labels(logits: Tensor, seeds: Tensor, image: Tensor, valid: Tensor | None,
                  config: SolverConfig, hard: bool = False) -> Tensor:
    """The pseudo-label step: ``B×K×H×W`` float probabilities, no gradient (``requires_grad`` False).

    logits: ``B×K×H×W`` float (detached here); seeds: ``B×H×W`` int64 (255 = unlabelled);
    image: ``B×3×H×W`` float RGB 0–255; valid: ``B×H×W`` bool or None.
    """
    with torch.no_grad():
        y = solve_pseudolabels(logits.detach().float(), seeds, image.float(), config, valid)
        y = y.detach()
        if hard:
            y = hard_labels(y)
    return y


def self_labeling_ce_term(logits: Tensor, y: Tensor, seeds: Tensor, valid: Tensor | None, ce: str = "collision") -> Term:
    """``Σ_{p∈V∖S} CE(y_p, σ_p)`` over the count ``|V∖S|``: reduced to the mean over the batch's unlabelled
    valid pixels; ``y`` a constant (detached).

    logits: ``B×K×H×W`` float; y: ``B×K×H×W`` float pseudo-labels; seeds: ``B×H×W`` int64;
    valid: ``B×H×W`` bool or None; ce: a name of :data:`wsss.potts.crossentropy.CROSS_ENTROPIES`.
    """
    term = get_cross_entropy(ce)
    log_sigma = F.log_softmax(logits.float(), dim=1)
    log_y = safe_log(y.detach().float())
    mask = seeds == IGNORE_INDEX
    if valid is not None:
        mask = mask & valid.bool()
    return Term.of((term(log_y, log_sigma, dim=1) * mask.float()).sum(), mask.sum())


def self_labeling_terms(logits: Tensor, seeds: Tensor, image: Tensor, valid: Tensor | None,
                        config: SolverConfig, hard: bool = False, weight: float | None = None) -> tuple[dict[str, Term], Tensor]:
    """Both steps for one batch: ``({"pce": pCE term, "sl": η_net · CE(y, σ) term}, y)``.

    ``weight`` is ``η_net``, the network step's weight of the mean CE(y, σ) (None: ``config.eta``).
    """
    y = pseudo_labels(logits, seeds, image, valid, config, hard)
    sl = self_labeling_ce_term(logits, y, seeds, valid, config.ce)
    w = config.eta if weight is None else float(weight)
    return {"pce": partial_ce_term(logits, seeds, valid), "sl": Term(w * sl.total, sl.count)}, y
