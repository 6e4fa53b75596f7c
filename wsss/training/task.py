"""What a training task gives the generic loop :func:`wsss.training.engine.run_task`.

The loop owns everything common to every network the toolkit trains: devices, ``torchrun`` DDP,
the run directory, checkpoints and ``--resume``, SGD with the poly schedule
(:class:`~wsss.training.schedule.PolyLR`), the data order (:class:`~wsss.training.data.EpochSampler`),
progress and metrics. A task owns what differs:

- the data: :meth:`setup` opens inputs, :meth:`trainset` returns a torch ``Dataset`` indexed by
  ``(epoch, index)`` whose samples are dicts of tensors with at least ``image`` (``3×H×W``);
- the model: :meth:`build_model` (pretrained weights, or the weights of an earlier run for a second
  training phase) and :meth:`empty_model` (same architecture, for ``--resume``); :meth:`param_groups`
  (each group with its ``lr`` at step 0, optionally its own ``weight_decay``; the schedule scales ``lr``);
- the loss: :meth:`batch_terms` returns named :class:`~wsss.losses.term.Term` s (a batch sum and the
  local count it is averaged over: seed pixels, pairs, images; the loop sums the counts over ranks,
  docs/methods.md §2), or plain 0-dim batch sums that share :meth:`normalizer`'s local count (the CAM
  classifier: images, for its per-image means). ``batch_terms`` gets the (DDP-wrapped) model and may
  run it more than once per batch (e.g. a loss on a second, augmented view);
- what goes into ``config.json`` (:meth:`record`), checkpoints (:meth:`checkpoint_fields`),
  per-epoch validation (:meth:`prepare_validation`, :meth:`validate`) and extra keys of the metric
  records (:meth:`epoch_info`).

Tasks: :class:`wsss.training.segmentation.SegmentationTask` (``wsss train``),
:class:`wsss.cam.training.CamTask` (``wsss cam train``). A new task subclasses :class:`TrainingTask`, gets a
configuration dataclass with the loop's common fields (listed in :mod:`wsss.training.engine`) and calls
``run_task(task, cfg)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from wsss.parallel import DistributedContext


class TrainingTask:
    """Base class; see the module docstring. ``name`` (each task sets its own) is stored in checkpoints
    (``task``) and checked by ``--resume``; ``label`` is the progress-bar text."""

    name: str
    label = "train"

    def setup(self, ctx: DistributedContext) -> None:
        """Open inputs (called once, on every rank, before anything is written)."""

    def record(self) -> dict[str, Any]:
        """Entries of ``config.json`` besides ``train`` (the config) and ``world_size``."""
        return {}

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def empty_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        raise NotImplementedError

    def trainset(self) -> torch.utils.data.Dataset:
        raise NotImplementedError

    def prepare_validation(self, ctx: DistributedContext) -> None:
        """Open validation data (after the model and data are set up)."""

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any] | None:
        """Per-epoch validation record, or None."""
        return None

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        """Extra keys of the step and epoch records of 0-based ``epoch``."""
        return {}

    def normalizer(self, batch: dict[str, Tensor], device: torch.device) -> Tensor:
        """Local count (0-dim float64 on ``device``) the plain batch sums of :meth:`batch_terms` are
        averaged over (not used for :class:`~wsss.losses.term.Term` s, which carry their own)."""
        raise NotImplementedError

    def batch_terms(self, model: torch.nn.Module, batch: dict[str, Tensor], device: torch.device, epoch: int,
                    step: int, use_amp: bool) -> dict[str, Any]:
        """Named terms of one batch: :class:`~wsss.losses.term.Term` s, or batch sums (0-dim float tensors
        with gradient) over :meth:`normalizer`; ``step`` counts the optimizer steps done before this one
        (for per-step random streams)."""
        raise NotImplementedError

    def checkpoint_fields(self) -> dict[str, Any]:
        """Checkpoint entries needed to rebuild and use the model (``model_config``, ``classes``,
        ``dataset``)."""
        return {}


__all__ = ["TrainingTask"]
