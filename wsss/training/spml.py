"""The SPML training task (``wsss train --loss spml``; Ke et al. 2021, docs/methods.md §10) and the
loader of its runs (:func:`load_spml_model`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from wsss.errors import UserError
from wsss.models.spml_net import SPMLModelConfig, SPMLNet
from wsss.training.run import checkpoint_task, load_checkpoint

#: the task name stored in the checkpoints of ``wsss train --loss spml``
TASK_NAME = "spml"


def load_spml_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[SPMLNet, dict[str, Any]]:
    """The :class:`~wsss.models.spml_net.SPMLNet` of an SPML run (eval mode, on ``device``) and its checkpoint
    dict without the weights and optimizer state (``classes``, ``dataset``, ``model_config``, ``config``,
    ``epoch``, ...).

    Args:
        path: a run directory of ``wsss train --loss spml`` (its ``last.pt``) or a checkpoint file.
        device: where the model goes.

    Raises:
        UserError: the path holds no checkpoint, or one of another kind of run.
    """
    state = load_checkpoint(path)
    task = checkpoint_task(state)
    if task != TASK_NAME:
        raise UserError(f"{path}: holds a '{task}' run, not an SPML embedding run. "
                        "Pass the run directory of 'wsss train --loss spml'.")
    model = SPMLNet(SPMLModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "scaler", "rng", "scheduler")}
    return model, meta


__all__ = ["TASK_NAME", "load_spml_model"]
