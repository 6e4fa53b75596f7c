"""Loss terms and their reduction: each term is a batch sum and the count it is averaged over.

Normalization of the network losses (a weight means the same whatever the annotation density, so one
default serves scribbles, shortened scribbles, clicks and blocks; Tang et al., ECCV 2018 and its public
rloss code normalize each term on its own in the same way):

- **pCE** (and full CE, hard pseudo-label CE): the mean of −ln σ^ȳ over the labelled valid pixels of the
  batch (PyTorch's mean CE with an ignore index); 0 for a batch without seeds;
- **DenseCRF, normalized cut, kernel cut**: the per-image sum R_b (at the loss's ``scale``, on valid
  pixels) averaged over the images of the batch, times λ (rloss's convention);
- **other unsupervised terms** (grid CRF, the self-labeling η-term, soft pseudo-label CE): the mean over
  the valid pixels, or valid pairs, that the term sums over, times its weight.

A loss returns each term as a :class:`Term`: ``total`` = weight × the term's sum over this process's
batch and ``count`` = how many units (pixels, pairs, images) that sum runs over. :func:`reduce_terms`
turns them into the objective ``Σ_t total_t / count_t``, with the counts (and the logged values) summed
over every ``torchrun`` rank first, so the mean is over the global batch. Under DDP each rank
back-propagates ``Σ_t total_t · world_size / count_t``, and DDP's gradient average is then the gradient
of ``Σ_t (Σ_ranks total_t) / (Σ_ranks count_t)``, the single-process loss of the global batch. A term
with count 0 on every rank (no seeds anywhere) has total 0 and contributes 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Term:
    """One loss term of a batch.

    Attributes:
        total: 0-d float tensor (with gradient): the term's weight × its sum over this process's batch.
        count: 0-d float64 tensor (no gradient) on the same device: the number of units the sum runs over
            (pixels, pairs or images) in this process's batch.
    """

    total: Tensor
    count: Tensor

    @staticmethod
    def of(total: Tensor, count: Tensor | float) -> "Term":
        """A term from a sum and a count (a number or a tensor; stored as float64 on ``total``'s device)."""
        return Term(total, torch.as_tensor(count, dtype=torch.float64, device=total.device).detach().reshape(()))

    def value(self) -> Tensor:
        """``total / max(count, 1)`` of this batch alone (single process)."""
        return self.total / self.count.clamp_min(1.0).to(self.total.dtype)


def as_terms(terms: Mapping[str, Term | Tensor], normalizer: Callable[[], Tensor]) -> dict[str, Term]:
    """Terms of a task; a plain 0-d tensor (a batch sum of a task with one shared normalizer, e.g. the
    CAM classifier's per-image means × images) becomes ``Term(t, normalizer())``."""
    out: dict[str, Term] = {}
    shared = None
    for name, t in terms.items():
        if isinstance(t, Term):
            out[name] = t
        else:
            shared = normalizer() if shared is None else shared
            out[name] = Term.of(t, shared)
    return out


def reduce_terms(terms: Mapping[str, Term], world_size: int = 1,
                 all_reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, dict[str, float]]:
    """The objective to back-propagate on this rank and the logged value of every term.

    Args:
        terms: named :class:`Term` s of this rank's batch.
        world_size: number of ranks (1 without DDP).
        all_reduce: sums a float64 tensor over the ranks (None or identity without DDP).

    Returns:
        ``(objective, values)``: ``objective = Σ_t total_t · world_size / C_t`` with ``C_t`` the count summed
        over ranks (at least 1), a 0-d tensor with gradient; ``values[t] = (Σ_ranks total_t) / C_t``, the
        term's mean over the global batch (floats, same on every rank).
    """
    names = sorted(terms)
    if not names:
        raise ValueError("no loss terms")
    totals = torch.stack([terms[n].total.detach().double().reshape(()) for n in names])
    counts = torch.stack([terms[n].count.double().reshape(()).to(totals.device) for n in names])
    both = torch.cat([counts, totals])
    if all_reduce is not None and world_size > 1:
        both = all_reduce(both)
    counts, totals = both[: len(names)].clamp_min(1.0), both[len(names):]
    objective = sum(terms[n].total * (world_size / counts[i]).to(terms[n].total.dtype) for i, n in enumerate(names))
    values = (totals / counts).tolist()
    return objective, dict(zip(names, values))


__all__ = ["Term", "as_terms", "reduce_terms"]
