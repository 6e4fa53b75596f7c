"""The segmentation task of ``wsss train``: DeepLabV3+ on seeds, dense masks or pseudo-labels, trained
by the generic loop :func:`wsss.training.engine.run_task`.

- Model: DeepLabV3+ (:mod:`wsss.models`), logits at crop size.
- Loss: :mod:`wsss.losses.registry`; every term is a batch sum with its own count (seed pixels for pCE,
  images for the rloss family, valid pairs or pixels for the other terms) and the loss is the sum of the
  terms' means over the **global** batch (counts summed over all ranks; :mod:`wsss.losses.term`,
  docs/methods.md §2).
- pCE warm-up: the first ``warmup_epochs`` epochs use the ``pce`` term only (docs/methods.md, soft self-labeling).
- Optimizer: SGD, momentum 0.9 and weight decay 5e-4 (rloss public code), two parameter groups:
  backbone at ``lr``, ASPP + decoder at ``lr · head_lr_mult`` (10, rloss); poly decay
  ``lr_t = lr (1 − t/T)^0.9`` over ``T = epochs · steps_per_epoch`` optimizer steps
  (:class:`~wsss.training.schedule.PolyLR`; paper: lr 0.0007, power 0.9), optionally after a linear
  warm-up of ``lr_warmup_steps`` steps (the SPML code's 100, off by default).
- Data: :mod:`wsss.training.data` (augmentation and validity mask, order from ``(seed, epoch, index)``;
  ``rotation`` and ``blur``: the URSS code's extra augmentations; ``grayscale`` and ``blur_kernel="spml"``:
  the SPML final classifier's; all off by default).
- Validation (``--val-data``): single-scale mIoU after each epoch on rank 0 (:mod:`wsss.training.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from wsss.artifacts import Artifact
from wsss.data import open_dataset, open_recorded_dataset
from wsss.errors import UserError
from wsss.losses.registry import LossBatch, TrainingLoss, make_loss
from wsss.models import DEFAULT_BACKBONE, DEFAULT_WEIGHTS, DeepLabV3Plus, ModelConfig, build_model, empty_model
from wsss.parallel import DistributedContext
from wsss.training.data import AugmentConfig, EvalSet, TargetSource, TrainSet
from wsss.training.photometric import check_blur_kernel
from wsss.training.schedule import WARMUP_START
from wsss.training.engine import EpochHook, StepHook, check_crop_memory, check_schedule, run_task
from wsss.training.task import TrainingTask
from wsss.training.validate import evaluate
from wsss.validation import check_numbers


@dataclass
class TrainConfig:
    """All options of ``wsss train`` (defaults and their sources in the field comments).

    Inputs: ``seeds`` (seeds artifact) for every loss but ``full`` (dense masks of ``data``) and
    ``pseudo`` (``pseudolabels`` artifact). ``data``/``layout``/``split``: the images; default the
    dataset recorded in the seeds / pseudolabels artifact.
    """

    out: str
    loss: str = "pce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    seeds: str | None = None
    pseudolabels: str | None = None
    superpixels: str | None = None  # --loss urss / spml: superpixels artifact (pseudo-boundaries / regions)
    init_from: str | None = None  # --loss urss phase 2: the phase-1 run; --loss pseudo: the SPML embedding run (final classifier)
    data: str | None = None
    layout: str = "auto"
    split: str | None = None
    # model (paper: DeepLabV3+ on ResNet-101, ablations on MobileNetV2; rloss: MobileNet, OS 16;
    # toolkit default: EfficientNet-Lite0, whose ImageNet weights ship as a pip package)
    backbone: str = DEFAULT_BACKBONE
    output_stride: int = 16
    width_mult: float = 1.0
    head_channels: int = 256
    weights: str | None = DEFAULT_WEIGHTS  # packaged | imagenet | none | PATH (wsss.models.load_backbone_weights)
    # schedule (paper §7: batch 12, 60 epochs, SGD lr 0.0007, poly 0.9)
    epochs: int = 60
    batch_size: int = 12  # per process
    lr: float = 0.0007
    lr_power: float = 0.9
    momentum: float = 0.9  # rloss
    weight_decay: float = 5e-4  # rloss
    head_lr_mult: float = 10.0  # rloss
    warmup_epochs: int | None = None  # None: the loss's default (collision: 20 % of epochs, others 0)
    lr_warmup_steps: int = 0  # off; SPML code: 100 linear lr warm-up steps (wsss.training.schedule)
    lr_warmup_start: float = WARMUP_START  # the warm-up's start factor of lr: SPML code 0.1
    # augmentation (rloss / torchvision reference): crop 513, scale 0.5–2, flip
    crop_size: int = 513
    scale_min: float = 0.5
    scale_max: float = 2.0
    flip: bool = True
    rotation: float = 0.0  # off; URSS code: ±10° with p 0.5 (wsss.training.rotation_blur)
    blur: bool = False  # off; URSS code: 5×5 Gaussian σ 1.1 with p 0.5
    grayscale: float = 0.0  # off; SPML code (final classifier): p 0.3 (wsss.training.photometric)
    blur_kernel: str = "urss"  # the blur of --blur: urss (σ 1.1) or spml (SPML final classifier: s ~ U[0.1, 5])
    # run
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only
    workers: int = 0  # DataLoader worker processes
    log_every: int = 10
    val_data: str | None = None
    val_layout: str = "auto"
    val_split: str = "val"
    resume: bool = False
    stop_after_epoch: int | None = None  # stop (as if interrupted) after this many finished epochs
    progress: bool = True
    command: str = ""


def check_train_config(cfg: TrainConfig) -> None:
    """Option values ``wsss train`` cannot run with raise :class:`UserError` (range and reason)."""
    check_schedule(cfg)
    check_numbers([
        ("--head-channels", cfg.head_channels, 1, None, {"integer": True}),
        ("--scale-min", cfg.scale_min, 0, None, {"low_open": True}),
        ("--scale-max", cfg.scale_max, cfg.scale_min, None, {"reason": "at least --scale-min"}),
        ("--rotate", cfg.rotation, 0, 180),
        ("--warmup-epochs", cfg.warmup_epochs, 0, cfg.epochs, {"integer": True, "reason": "part of --epochs"}),
        ("--lr-warmup-steps", cfg.lr_warmup_steps, 0, None, {"integer": True}),
        ("--lr-warmup-start", cfg.lr_warmup_start, 0, 1),
        ("--grayscale", cfg.grayscale, 0, 1),
    ])
    check_blur_kernel(cfg.blur_kernel)
    check_crop_memory(cfg, 2)


def loss_record(cfg: TrainConfig, loss: TrainingLoss) -> dict[str, Any]:
    """What a run trains with, library defaults filled in (its config.json's ``loss``): name, target, the pCE
    warm-up in epochs (``cfg.warmup_epochs``, or the loss's default fraction of ``cfg.epochs``) and the loss's
    resolved options."""
    warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else int(round(loss.default_warmup_fraction * cfg.epochs))
    return {"name": loss.name, "target": loss.target, "warmup_epochs": warmup, **loss.options()}


def open_training_data(cfg: TrainConfig, loss: TrainingLoss):
    """``(dataset, TargetSource, input provenance list)`` for the loss's target kind."""
    artifact = None
    if loss.target == "seeds":
        if cfg.seeds is None:
            raise UserError(f"--loss {loss.name}: needs a seeds artifact. Pass --seeds SEEDS.h5 (from wsss prepare-*).")
        artifact = Artifact(cfg.seeds, "seeds")
    elif loss.target == "pseudolabels":
        if cfg.pseudolabels is None:
            raise UserError("--loss pseudo: needs a pseudolabels artifact. Pass --pseudolabels PSEUDO.h5 (from wsss solve).")
        artifact = Artifact(cfg.pseudolabels, "pseudolabels")
    elif cfg.seeds is not None:
        artifact = None  # 'full' ignores seeds but may use their recorded dataset
    if cfg.data is not None:
        dataset = open_dataset(cfg.data, layout=cfg.layout, split=cfg.split or "train")
    else:
        source = artifact if artifact is not None else (Artifact(cfg.seeds, "seeds") if cfg.seeds else None)
        if source is None or not source.dataset:
            raise UserError(f"--loss {loss.name}: no images. Pass --data DATASET (and --split).")
        record = dict(source.dataset)
        if cfg.split:
            record["split"] = cfg.split
        dataset = open_recorded_dataset(record)
    targets = TargetSource(loss.target, dataset, artifact, soft=loss.uses_soft_targets)
    inputs = [artifact.provenance()] if artifact is not None else []
    return dataset, targets, inputs


class SegmentationTask(TrainingTask):
    """``wsss train``: DeepLabV3+ on seeds / dense masks / pseudo-labels with a registry loss.

    Terms are :class:`~wsss.losses.term.Term` s, each averaged over its own count in the global batch;
    the first ``warmup_epochs`` epochs use the loss's pCE warm-up terms.
    """

    name = "segmentation"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.loss = make_loss(cfg.loss, cfg.loss_options)
        self.label = f"train {self.loss.name}"

    def setup(self, ctx: DistributedContext) -> None:
        cfg, loss = self.cfg, self.loss
        self.ctx = ctx
        self.dataset, self.targets, self.inputs = open_training_data(cfg, loss)
        loss.prepare(self.targets)
        self.warmup = loss_record(cfg, loss)["warmup_epochs"]
        self.model_config = ModelConfig(
            num_classes=self.dataset.num_classes, backbone=cfg.backbone, output_stride=cfg.output_stride,
            width_mult=cfg.width_mult, head_channels=cfg.head_channels,
        )

    def record(self) -> dict[str, Any]:
        loss = self.loss
        return {
            "model": self.model_config.to_dict(),
            "loss": loss_record(self.cfg, loss),
            "classes": self.dataset.classes,
            "dataset": self.dataset.describe(),
            "inputs": self.inputs,
        }

    def build_model(self) -> torch.nn.Module:
        return build_model(self.model_config, self.cfg.weights)

    def empty_model(self) -> torch.nn.Module:
        return empty_model(self.model_config)

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        cfg = self.cfg
        return [
            {"params": model.backbone_parameters(), "lr": cfg.lr},
            {"params": model.head_parameters(), "lr": cfg.lr * cfg.head_lr_mult},
        ]

    def trainset(self) -> TrainSet:
        cfg = self.cfg
        return TrainSet(self.dataset, self.targets, AugmentConfig.of(cfg), cfg.seed)

    def prepare_validation(self, ctx: DistributedContext) -> None:
        self.val_loader = None
        if self.cfg.val_data and ctx.is_main:
            val_ds = open_dataset(self.cfg.val_data, layout=self.cfg.val_layout, split=self.cfg.val_split)
            self.val_loader = DataLoader(EvalSet(val_ds), batch_size=1, num_workers=0)

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any] | None:
        if self.val_loader is None:
            return None
        return evaluate(model, self.val_loader, self.dataset.num_classes, device)

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        return {"warmup": epoch < self.warmup}

    def batch_terms(self, model, batch, device, epoch, step, use_amp):
        lb = LossBatch(
            image=batch["image"].to(device, non_blocking=True),
            labels=batch["labels"].to(device, non_blocking=True),
            valid=batch["valid"].to(device, non_blocking=True),
            probs=batch["probs"].to(device, non_blocking=True) if "probs" in batch else None,
        )
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(lb.image)
        logits = logits.float()
        return self.loss.warmup_terms(logits, lb) if epoch < self.warmup else self.loss.terms(logits, lb)

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"model_config": self.model_config.to_dict(), "classes": self.dataset.classes,
                "dataset": self.dataset.describe()}


def train(cfg: TrainConfig, on_step: StepHook | None = None, on_epoch_end: EpochHook | None = None) -> Path:
    """Train a segmentation model (``wsss train``); returns the run directory.

    Args:
        cfg: the configuration.
        on_step: called on every rank with each step's record (tests, monitoring).
        on_epoch_end: called on every rank with (finished epochs, the unwrapped model) after the
            epoch's checkpoint.
    """
    check_train_config(cfg)
    if cfg.loss == "urss":
        from wsss.training.urss import URSSTask

        task: SegmentationTask = URSSTask(cfg)
    elif cfg.loss == "spml":
        from wsss.training.spml import SPMLTask

        task = SPMLTask(cfg)
    elif cfg.loss == "pseudo" and cfg.init_from is not None:
        from wsss.training.spml_final import SPMLFinalTask

        task = SPMLFinalTask(cfg)
    else:
        task = SegmentationTask(cfg)
    return run_task(task, cfg, on_step=on_step, on_epoch_end=on_epoch_end)


__all__ = ["SegmentationTask", "TrainConfig", "check_train_config", "loss_record", "open_training_data", "train"]
