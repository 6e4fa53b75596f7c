"""The SPML training task (``wsss train --loss spml``; Ke et al. 2021, docs/methods.md §10) and the
loader of its runs (:func:`load_spml_model`). Trained by the one loop :func:`wsss.training.engine.run_task`.

- Model: :class:`wsss.models.spml_net.SPMLNet` (backbone at output stride 8, embedding of
  ``--embedding-dim`` at stride 4, the initial classifier on the detached embedding). The backbone's stem
  (input → stride 4: ResNet conv1 + res2) is frozen, as in the SPML code.
- Parameter groups (SPML code): backbone weights at ``lr``, backbone biases at ``2·lr`` without weight
  decay; embedding head and classifier weights at ``lr · head_lr_mult`` (10), their biases at twice that
  without weight decay.
- Data: the augmented samples of :mod:`wsss.training.data` plus ``regions``, the superpixel map of a
  ``superpixels`` artifact (the toolkit's stand-in for the paper's HED-owt-ucm regions), transformed with
  the image (:class:`~wsss.training.superpixel_data.SuperpixelTrainSet`).
- Terms: :meth:`wsss.losses.spml.SPMLLoss.spml_terms` per batch (k-means segments of the batch, the
  relations and the classifier CE; then the batch's segments enter the memory bank). The memory bank is
  saved in every checkpoint (``spml_memory``), so ``--resume`` continues with it (exactly on CPU in one
  process; under torchrun every rank restores rank 0's bank).
- Bad input: no or mismatched superpixels, a training image whose seed map labels no pixel (the ``ann``
  relation and the classifier need seeds in every image): :class:`~wsss.errors.UserError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.errors import UserError
from wsss.models.backbones import load_backbone_weights
from wsss.models.spml_final import SPMLInitial
from wsss.models.spml_net import OUTPUT_STRIDE, SPMLModelConfig, SPMLNet
from wsss.parallel import DistributedContext
from wsss.training.data import AugmentConfig
from wsss.training.run import RunDir, checkpoint_task, load_checkpoint
from wsss.training.segmentation import SegmentationTask
from wsss.training.superpixel_data import SuperpixelTrainSet, open_superpixels
from wsss.training.validate import evaluate

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
    return spml_model_from_state(state, device)


def spml_model_from_state(state: dict[str, Any], device: torch.device | str = "cpu") -> tuple[SPMLNet, dict[str, Any]]:
    """:func:`load_spml_model` of a checkpoint dict already read (and checked to be an SPML run)."""
    model = SPMLNet(SPMLModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items()
            if k not in ("model", "optimizer", "scaler", "rng", "scheduler", "spml_memory")}
    return model, meta


def check_every_image_seeded(seeds, ids) -> None:
    """Refuse a seeds artifact with a training image whose seed map labels no pixel (:class:`UserError`
    naming the first such image). seeds: the seeds :class:`~wsss.artifacts.Artifact`; ids: the training ids."""
    k, ignore = len(seeds.classes), seeds.ignore_index
    for image_id in ids:
        label = seeds.read(image_id, "label")
        if not np.any((label != ignore) & (label < k)):
            raise UserError(f"{seeds.path}: image '{image_id}' has no seed pixel, and --loss spml needs seeds in every "
                            "image (relation ann, classifier). Recreate the seeds so that every image has some, "
                            "or leave such images out of the split.")


def freeze_stem(model: SPMLNet) -> SPMLNet:
    """Freeze the backbone's stem (input → stride 4; SPML code: conv1 and res2 are trained by no group)."""
    model.backbone.stem.requires_grad_(False)
    return model


class SPMLTask(SegmentationTask):
    """``wsss train --loss spml`` (module docstring)."""

    name = TASK_NAME

    def setup(self, ctx: DistributedContext) -> None:
        from wsss.annotations.objects import find_background

        cfg, loss = self.cfg, self.loss
        if cfg.warmup_epochs:
            raise UserError("--warmup-epochs: does not apply to --loss spml (it has no pCE warm-up). Remove it.")
        super().setup(ctx)
        self.superpixels = open_superpixels(cfg.superpixels, self.targets.ids, "spml", "the low-level regions")
        self.inputs = list(self.inputs) + [self.superpixels.provenance()]
        if loss.w_ann > 0:
            check_every_image_seeded(self.targets.artifact, self.targets.ids)
        self.background = find_background(list(self.dataset.classes))
        self.model_config = SPMLModelConfig(num_classes=self.dataset.num_classes, backbone=cfg.backbone,
                                            output_stride=OUTPUT_STRIDE, width_mult=cfg.width_mult,
                                            embedding_dim=loss.embedding_dim)
        last = RunDir(cfg.out).last
        if cfg.resume and last.exists():
            state = load_checkpoint(last)
            if checkpoint_task(state) == TASK_NAME:  # other runs are refused by the loop
                loss.memory.load_state_dict(state.get("spml_memory", {}))

    def build_model(self) -> torch.nn.Module:
        c = self.model_config
        return freeze_stem(SPMLNet(c, load_backbone_weights(c.backbone, self.cfg.weights, c.output_stride, c.width_mult)))

    def empty_model(self) -> torch.nn.Module:
        return freeze_stem(SPMLNet(self.model_config))

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        cfg = self.cfg
        groups = []
        for prefix_is_backbone, lr in ((True, cfg.lr), (False, cfg.lr * cfg.head_lr_mult)):
            named = [(n, p) for n, p in model.named_parameters()
                     if p.requires_grad and n.startswith("backbone.") == prefix_is_backbone]
            weights = [p for n, p in named if not n.endswith(".bias")]
            biases = [p for n, p in named if n.endswith(".bias")]
            groups.append({"params": weights, "lr": lr})
            groups.append({"params": biases, "lr": 2 * lr, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def trainset(self) -> SuperpixelTrainSet:
        cfg = self.cfg
        return SuperpixelTrainSet(self.dataset, self.targets, AugmentConfig.of(cfg), cfg.seed, self.superpixels, regions=True)

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any] | None:
        if self.val_loader is None:
            return None
        return evaluate(SPMLInitial(model), self.val_loader, self.dataset.num_classes, device)

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        return {}

    def batch_terms(self, model, batch, device, epoch, step, use_amp):
        image, labels, valid, regions = (batch[k].to(device, non_blocking=True)
                                         for k in ("image", "labels", "valid", "regions"))
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            out = model(image)
        return self.loss.spml_terms(out["embedding"].float(), out["logits"].float(), labels, valid, regions,
                                    self.background)

    def checkpoint_fields(self) -> dict[str, Any]:
        return {**super().checkpoint_fields(), "spml_memory": self.loss.memory.state_dict()}


__all__ = ["SPMLTask", "TASK_NAME", "check_every_image_seeded", "freeze_stem", "load_spml_model", "spml_model_from_state"]
