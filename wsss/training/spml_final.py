"""The SPML final classifier task: ``wsss train --loss pseudo --pseudolabels PL --init-from SPML_RUN``
(Ke et al. 2021, "Inference and testing"; docs/methods.md §10.5). Trained by the one loop
:func:`wsss.training.engine.run_task`.

- Model: :class:`wsss.models.spml_final.SPMLFinal`: the embedding of the SPML run ``init_from``
  (``wsss train --loss spml``), frozen, and a fresh classifier (dropout 0.65) on it.
- Targets and loss: the segmentation task's ``pseudo`` loss on a ``pseudolabels`` artifact (``wsss
  spml-labels``; ``--hard`` for the arg-max labels, as the SPML code).
- Optimizer: the classifier only, the SPML code's learning-rate policy for its head: weights at
  ``lr · head_lr_mult``, biases at twice that without weight decay; poly decay of the loop.
- Data, validation, checkpoints: those of :class:`~wsss.training.segmentation.SegmentationTask`; the
  checkpoint's task is :data:`wsss.spml.runs.FINAL_TASK` and its ``model_config`` a
  :class:`~wsss.models.spml_final.SPMLFinalConfig`, so ``wsss predict`` rebuilds the model
  (:func:`final_model_from_state`).

A run that is not an SPML embedding run as ``init_from`` (a segmentation or CAM run, another final
classifier) is refused with one line, as is a class list that differs from the pseudo-labels'.
"""

from __future__ import annotations

from typing import Any

import torch

from wsss.errors import UserError
from wsss.models.spml_final import FINAL_DROPOUT, SPMLFinal, SPMLFinalConfig
from wsss.models.spml_net import SPMLModelConfig
from wsss.parallel import DistributedContext
from wsss.spml.runs import FINAL_TASK, check_embedding_run
from wsss.training.run import load_checkpoint
from wsss.training.segmentation import SegmentationTask


def final_model_from_state(state: dict[str, Any], device: torch.device | str = "cpu") -> SPMLFinal:
    """The :class:`SPMLFinal` of a final classifier checkpoint dict (eval mode, on ``device``)."""
    model = SPMLFinal(SPMLFinalConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


class SPMLFinalTask(SegmentationTask):
    """The final classifier on a frozen SPML embedding (module docstring)."""

    name = FINAL_TASK

    def setup(self, ctx: DistributedContext) -> None:
        super().setup(ctx)
        cfg = self.cfg
        state = load_checkpoint(cfg.init_from)
        check_embedding_run(cfg.init_from, state, "--init-from of the SPML final classifier (--loss pseudo)")
        classes = list(state.get("classes") or [])
        if classes != list(self.dataset.classes):
            raise UserError(f"{cfg.init_from}: was trained on the classes {classes}, the pseudo-labels "
                            f"{cfg.pseudolabels} on {list(self.dataset.classes)}. Pass the pseudo-labels made from this run.")
        self.final_config = SPMLFinalConfig(SPMLModelConfig(**state["model_config"]), dropout=FINAL_DROPOUT)
        self.embedding_state = state["model"]
        self.inputs = list(self.inputs) + [{"path": str(cfg.init_from), "kind": "run", "task": state.get("task"),
                                            "epoch": int(state.get("epoch", 0))}]
        self.label = "train spml final classifier"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "model": self.final_config.to_dict()}

    def build_model(self) -> torch.nn.Module:
        model = SPMLFinal(self.final_config)
        model.net.load_state_dict(self.embedding_state)
        return model

    def empty_model(self) -> torch.nn.Module:
        return SPMLFinal(self.final_config)

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        lr = self.cfg.lr * self.cfg.head_lr_mult
        named = list(model.classifier.named_parameters())
        weights = [p for n, p in named if not n.endswith("bias")]
        biases = [p for n, p in named if n.endswith("bias")]
        return [{"params": weights, "lr": lr}, {"params": biases, "lr": 2 * lr, "weight_decay": 0.0}]

    def checkpoint_fields(self) -> dict[str, Any]:
        return {**super().checkpoint_fields(), "model_config": self.final_config.to_dict()}


__all__ = ["SPMLFinalTask", "final_model_from_state"]
