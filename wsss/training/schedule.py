"""The learning-rate schedule of every network the toolkit trains, as a torch scheduler: poly decay, with
an optional linear warm-up.

``lr_t = lr_g · f(t)`` for each parameter group ``g`` (``lr_g``: the group's ``lr`` when the schedule is
created), ``t`` = optimizer steps done, ``T`` = all steps of the run (``epochs · steps_per_epoch``):

- poly decay ``p(t) = max(1 − t / T, 0)^power``: the "poly" schedule of the DeepLabV3+ reference
  implementations (rloss, torchvision's ``references/segmentation``; docs/methods.md §11.2);
- warm-up over the first ``W`` steps (``W = 0``: none, the toolkit default): with ``α = t / W``,
  ``f(t) = min(s·(1 − α) + α, p(t))`` for ``t < W``, then ``f(t) = p(t)``: linear from ``s`` (the start
  factor) to 1, capped by the poly decay, and the poly decay counted from step 0, not from the end of the
  warm-up. This is the SPML code's policy (Ke et al. 2021: ``W`` = 100, ``s`` = 0.1; docs/methods.md §10.4).

Each task's configuration holds its ``lr`` and ``lr_power`` (and, for ``wsss train``, ``lr_warmup_steps``,
``lr_warmup_start``), the task its parameter groups. The schedule's state (``last_epoch`` = ``t``,
``base_lrs``, ``total_steps``, ``power``, ``warmup_steps``, ``warmup_start``) is part of every checkpoint,
so ``--resume`` continues it exactly.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

#: start factor of the linear warm-up: the SPML code's 0.1 (Ke et al. 2021; ``lr_poly`` of its training utilities)
WARMUP_START = 0.1


def poly_factor(step: int, total_steps: int, power: float) -> float:
    """``max(1 − step / T, 0)^power`` with ``T = max(total_steps, 1)``."""
    return max(1.0 - step / max(total_steps, 1), 0.0) ** power


def lr_factor(step: int, total_steps: int, power: float, warmup_steps: int = 0,
              warmup_start: float = WARMUP_START) -> float:
    """The schedule's factor ``f(step)`` (module docstring): the poly factor, during the first ``warmup_steps``
    steps capped by the linear ramp ``warmup_start·(1 − α) + α``, ``α = step / warmup_steps``."""
    poly = poly_factor(step, total_steps, power)
    if step < warmup_steps:
        alpha = step / warmup_steps
        return min(warmup_start * (1.0 - alpha) + alpha, poly)
    return poly


class PolyLR(LRScheduler):
    """Poly decay over ``total_steps`` optimizer steps after an optional linear warm-up of ``warmup_steps``
    steps from ``warmup_start · lr``; call :meth:`step` after every ``optimizer.step()``.

    ``last_epoch`` counts optimizer steps (torch's name); after ``t`` calls of :meth:`step` every group's
    ``lr`` is ``base_lr · lr_factor(t, total_steps, power, warmup_steps, warmup_start)``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, power: float, last_epoch: int = -1,
                 warmup_steps: int = 0, warmup_start: float = WARMUP_START):
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start = float(warmup_start)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = lr_factor(self.last_epoch, self.total_steps, self.power, self.warmup_steps, self.warmup_start)
        return [base * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


__all__ = ["PolyLR", "WARMUP_START", "lr_factor", "poly_factor"]
