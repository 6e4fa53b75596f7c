"""The interface every ``wsss train`` loss implements: :class:`LossBatch` (what a loss sees of a batch),
:class:`LossOption` (one declared option) and :class:`TrainingLoss` (the base class). The losses and
:func:`~wsss.losses.registry.make_loss` live in :mod:`wsss.losses.registry`; a loss defined in a module of its
own (:mod:`wsss.losses.urss`) subclasses :class:`TrainingLoss` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from wsss.losses.partial_ce import partial_ce_term
from wsss.losses.term import Term


@dataclass
class LossBatch:
    """One training batch as the losses see it.

    Attributes:
        image: ``B×3×H×W`` float RGB 0–255.
        labels: ``B×H×W`` int64: seeds, dense masks or hard pseudo-labels (255 = unlabelled).
        valid: ``B×H×W`` bool validity mask (False on crop padding).
        probs: ``B×K×H×W`` float soft targets (``pseudo`` with soft targets) or None.
    """

    image: Tensor
    labels: Tensor
    valid: Tensor
    probs: Tensor | None = None


@dataclass(frozen=True)
class LossOption:
    """One option of a loss, declared once on its class (:attr:`TrainingLoss.OPTIONS`).

    Attributes:
        flag: the ``wsss train`` flag (``--lambda``); losses with a same-named option share the flag.
            ``None``: a library option without a flag.
        key: where the options dict of :func:`make_loss` holds the value: ``("lam",)``, or nested
            ``("solver", "lam")`` (a field of the solver configuration).
        help: what the option sets for this loss, its default and the default's source.
        default: the value used when the option is not given (``None``: computed, see ``help``).
        kind: ``value`` (recorded when given), ``switch`` (a boolean flag, always recorded; ``False`` counts
            as not given), ``pairs`` (repeatable ``KEY=VALUE`` items: a dict at ``key``, always recorded;
            the nested values of other options are merged into it).
    """

    flag: str | None
    key: tuple[str, ...]
    help: str
    default: Any = None
    kind: str = "value"


class TrainingLoss:
    """Base class. ``target`` says what the loss trains on: ``seeds``, ``masks`` or ``pseudolabels``.

    A loss declares its options in :attr:`OPTIONS`; :meth:`from_options` builds it from an options
    dict whose keys are the first elements of the declared keys (checked by :func:`make_loss`).
    """

    name = "base"
    target = "seeds"
    #: default number of pCE-only warm-up epochs as a fraction of --epochs (0: none)
    default_warmup_fraction = 0.0
    #: the loss's options (see :class:`LossOption`); none by default
    OPTIONS: ClassVar[tuple[LossOption, ...]] = ()

    @classmethod
    def option_keys(cls) -> set[str]:
        """The top-level keys of the options dict this loss accepts."""
        return {o.key[0] for o in cls.OPTIONS}

    @classmethod
    def option_default(cls, key: str) -> Any:
        """The declared default of the top-level option ``key``."""
        return next(o.default for o in cls.OPTIONS if o.key == (key,))

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "TrainingLoss":
        """The loss built from an options dict (keys checked against :attr:`OPTIONS`)."""
        return cls(**options)

    def terms(self, logits: Tensor, batch: LossBatch) -> dict[str, Term]:
        """Named terms (weighted batch sums and their counts). logits: ``B×K×H×W`` float."""
        raise NotImplementedError

    def warmup_terms(self, logits: Tensor, batch: LossBatch) -> dict[str, Term]:
        """Terms used during the pCE warm-up (partial CE only)."""
        return {"pce": partial_ce_term(logits, batch.labels, batch.valid)}

    @property
    def uses_soft_targets(self) -> bool:
        return False

    def options(self) -> dict[str, Any]:
        """The loss's resolved options (recorded in config.json)."""
        return {}

    def prepare(self, targets) -> None:
        """Called once by the training task with the training targets (a
        :class:`~wsss.training.data.TargetSource`) before the first step: statistics of the training set a
        loss needs (none by default)."""


__all__ = ["LossBatch", "LossOption", "TrainingLoss"]
