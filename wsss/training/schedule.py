"""The poly learning-rate schedule of every network the toolkit trains, as a torch scheduler.

``lr_t = lr_g · (1 − t / T)^power`` for each parameter group ``g`` (``lr_g``: the group's ``lr`` when
the schedule is created), ``t`` = optimizer steps done, ``T`` = all steps of the run
(``epochs · steps_per_epoch``); clamped at 0 past ``T``. The "poly" schedule of the DeepLabV3+
reference implementations (rloss, torchvision's ``references/segmentation``; docs/methods.md §11.2);
each task's configuration holds its ``lr`` and ``lr_power``, the task its parameter groups. The
schedule's state (``last_epoch`` = ``t``, ``base_lrs``, ``total_steps``, ``power``) is part of every
checkpoint, so ``--resume`` continues it exactly.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def poly_factor(step: int, total_steps: int, power: float) -> float:
    """``max(1 − step / T, 0)^power`` with ``T = max(total_steps, 1)``."""
    return max(1.0 - step / max(total_steps, 1), 0.0) ** power


class PolyLR(LRScheduler):
    """Poly decay over ``total_steps`` optimizer steps; call :meth:`step` after every ``optimizer.step()``.

    ``last_epoch`` counts optimizer steps (torch's name); after ``t`` calls of :meth:`step` every group's
    ``lr`` is ``base_lr · poly_factor(t, total_steps, power)``.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, power: float, last_epoch: int = -1):
        self.total_steps = int(total_steps)
        self.power = float(power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = poly_factor(self.last_epoch, self.total_steps, self.power)
        return [base * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


__all__ = ["PolyLR", "poly_factor"]
