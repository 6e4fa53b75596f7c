"""The training loop of the toolkit (``wsss train``, ``wsss cam train``): one process, or DistributedDataParallel
under ``torchrun``. :func:`run_task` is the loop for any :class:`~wsss.training.task.TrainingTask`; the
segmentation task of ``wsss train`` is described here.

- Model: DeepLabV3+ (:mod:`wsss.models`), logits at crop size.
- Loss: :mod:`wsss.losses.registry`; the batch sums of all terms are divided by the shared
  ``Z`` = number of valid pixels of the **global** batch (all ranks; notation.md). Under DDP each rank
  scales its loss by ``world_size / Z_global`` so that DDP's gradient average equals the gradient of
  ``Σ_ranks sums / Z_global``.
- pCE warm-up: the first ``warmup_epochs`` epochs use the ``pce`` term only (self-labeling.md §2).
- Optimizer: SGD, momentum 0.9 and weight decay 5e-4 (rloss public code), two parameter groups:
  backbone at ``lr``, ASPP + decoder at ``lr · head_lr_mult`` (10, rloss); poly decay
  ``lr_t = lr (1 − t/T)^0.9`` over ``T = epochs · steps_per_epoch`` optimizer steps (paper: lr 0.0007,
  power 0.9).
- AMP (float16 autocast + grad scaling) on CUDA; losses in float32.
- Determinism: weights initialised from ``seed``; data order and augmentation depend on
  ``(seed, epoch, index)`` only (:mod:`wsss.training.data`); the torch RNG states (dropout) of every
  rank are checkpointed, so ``resume`` continues bit-exactly on CPU.
- Only rank 0 writes the run directory (:mod:`wsss.training.run`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from wsss.artifacts import Artifact
from wsss.data import open_dataset, open_recorded_dataset
from wsss.errors import UserError
from wsss.losses.registry import LossBatch, TrainingLoss, make_loss
from wsss.models import DeepLabV3Plus, ModelConfig, build_model
from wsss.parallel import DistributedContext, init_distributed
from wsss.progress import progress_bar
from wsss.training.data import AugmentConfig, EpochSampler, EvalSet, TargetSource, TrainSet
from wsss.training.run import RunDir, load_checkpoint
from wsss.training.task import TrainingTask
from wsss.training.validate import evaluate

#: options that may differ between an interrupted run and its --resume
RESUME_FREE = ("resume", "stop_after_epoch", "device", "workers", "log_every", "command", "progress")


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
    data: str | None = None
    layout: str = "auto"
    split: str | None = None
    # model (paper: DeepLabV3+ on ResNet-101, ablations on MobileNetV2; rloss: MobileNet, OS 16)
    backbone: str = "mobilenet_v2"
    output_stride: int = 16
    width_mult: float = 1.0
    head_channels: int = 256
    weights: str | None = None
    # schedule (paper §7: batch 12, 60 epochs, SGD lr 0.0007, poly 0.9)
    epochs: int = 60
    batch_size: int = 12  # per process
    lr: float = 0.0007
    lr_power: float = 0.9
    momentum: float = 0.9  # rloss
    weight_decay: float = 5e-4  # rloss
    head_lr_mult: float = 10.0  # rloss
    warmup_epochs: int | None = None  # None: the loss's default (collision: 20 % of epochs, others 0)
    # augmentation (rloss / torchvision reference): crop 513, scale 0.5–2, flip
    crop_size: int = 513
    scale_min: float = 0.5
    scale_max: float = 2.0
    flip: bool = True
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


def resolve_device(name: str, ctx: DistributedContext) -> torch.device:
    """``auto``: CUDA (``cuda:LOCAL_RANK`` under torchrun) if available, else CPU."""
    import os

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine. Use --device cpu.")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(name))
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: not a torch device ({exc}). Use cpu, cuda or cuda:N.") from exc


def _check_config(cfg: TrainConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "--epochs must be at least 1"),
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.crop_size >= 16, "--crop-size must be at least 16"),
        (0 < cfg.scale_min <= cfg.scale_max, "--scale-min/--scale-max must satisfy 0 < min ≤ max"),
        (cfg.lr > 0, "--lr must be positive"),
        (cfg.warmup_epochs is None or 0 <= cfg.warmup_epochs <= cfg.epochs, "--warmup-epochs must be in 0..--epochs"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"{message}. Fix the option.")


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


def _all_reduce(t: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    if ctx.world_size > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
    return t


def _gather_rng(ctx: DistributedContext, device: torch.device) -> list[dict[str, Any]]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if ctx.world_size == 1:
        return [state]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, state)
    return out


def _set_rng(states: list[dict[str, Any]], ctx: DistributedContext, device: torch.device) -> None:
    if len(states) != ctx.world_size:
        raise UserError(f"--resume: the run was trained with {len(states)} processes, now {ctx.world_size}. "
                        "Resume with the same number of processes.")
    state = states[ctx.rank]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_FREE}


class SegmentationTask(TrainingTask):
    """``wsss train``: DeepLabV3+ on seeds / dense masks / pseudo-labels with a registry loss.

    Terms are batch sums divided by the shared ``Z`` = valid pixels of the global batch
    (notation.md); the first ``warmup_epochs`` epochs use the loss's pCE warm-up terms.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.loss = make_loss(cfg.loss, cfg.loss_options)
        self.label = f"train {self.loss.name}"

    def setup(self, ctx: DistributedContext) -> None:
        cfg, loss = self.cfg, self.loss
        self.ctx = ctx
        self.dataset, self.targets, self.inputs = open_training_data(cfg, loss)
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
        return DeepLabV3Plus(self.model_config)

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        cfg = self.cfg
        return [
            {"params": model.backbone_parameters(), "lr": cfg.lr, "base_lr": cfg.lr},
            {"params": model.head_parameters(), "lr": cfg.lr * cfg.head_lr_mult, "base_lr": cfg.lr * cfg.head_lr_mult},
        ]

    def trainset(self) -> TrainSet:
        cfg = self.cfg
        return TrainSet(self.dataset, self.targets, AugmentConfig(cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.flip), cfg.seed)

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

    def normalizer(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        return batch["valid"].to(device, non_blocking=True).sum().to(torch.float64)

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


def train(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None,
          on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None) -> Path:
    """Train a segmentation model (``wsss train``); returns the run directory.

    Args:
        cfg: the configuration.
        on_step: called on every rank with each step's record (tests, monitoring).
        on_epoch_end: called on every rank with (finished epochs, the unwrapped model) after the
            epoch's checkpoint.
    """
    _check_config(cfg)
    return run_task(SegmentationTask(cfg), cfg, on_step=on_step, on_epoch_end=on_epoch_end)


def run_task(task: TrainingTask, cfg: Any, on_step: Callable[[dict[str, Any]], None] | None = None,
             on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None) -> Path:
    """THE training loop of the toolkit, for any :class:`TrainingTask` (segmentation, CAM, ...).

    ``cfg`` is the task's configuration dataclass; the loop reads its common fields (``out``,
    ``epochs``, ``batch_size``, ``lr``, ``lr_power``, ``momentum``, ``weight_decay``, ``seed``,
    ``device``, ``amp``, ``workers``, ``log_every``, ``resume``, ``stop_after_epoch``,
    ``progress``) and records all of it (``config.json`` ``train``; ``--resume`` compares it).
    Per step: ``terms = task.batch_terms(...)`` (batch sums), ``Z`` = the task's normalizer summed
    over ranks, the loss ``Σ terms / Z`` is back-propagated (DDP: each rank scales by
    ``world_size / Z`` so that DDP's gradient average is the gradient of the global loss), and
    the logged terms are divided by ``Z``.
    """
    ctx = init_distributed()
    device = resolve_device(cfg.device, ctx)
    task.setup(ctx)
    train_config = dataclasses.asdict(cfg)
    record = {"train": train_config, **task.record(), "world_size": ctx.world_size}
    run = RunDir(cfg.out, enabled=ctx.is_main)

    torch.manual_seed(cfg.seed)
    state = None
    # --resume of a run stopped before its first checkpoint: nothing to continue, start afresh
    fresh_over_interrupted = cfg.resume and not run.last.exists()
    if fresh_over_interrupted and ctx.is_main:
        warnings.warn(f"{run.root}: no checkpoint to resume from yet; starting the run from the beginning.")
    if cfg.resume and not fresh_over_interrupted:
        state = load_checkpoint(run.last)
        old = state.get("config", {}).get("train", {})
        diff = sorted(k for k in set(_comparable(old)) | set(_comparable(train_config)) if old.get(k) != train_config.get(k))
        if diff:
            raise UserError(f"{run.root}: was started with other options ({', '.join(diff)}). "
                            "Resume with the same options or start a new run with another --out.")
        if state.get("task", "segmentation") != task.name:
            raise UserError(f"{run.root}: holds a '{state.get('task', 'segmentation')}' run, not '{task.name}'. "
                            "Resume it with the command that started it, or choose another --out.")
        model = task.empty_model()
        model.load_state_dict(state["model"])
    else:
        if run.last.exists() or (run.config_path.exists() and not fresh_over_interrupted):
            raise UserError(f"{run.root}: already holds a run. Pass --resume to continue it, or choose another --out.")
        if ctx.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        run.create(record)
        with warnings.catch_warnings():
            if not ctx.is_main:
                warnings.simplefilter("ignore")
            model = task.build_model()
    model.to(device)
    if ctx.world_size > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core = model
    if ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(task.param_groups(core), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    trainset = task.trainset()
    sampler = EpochSampler(trainset, rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed)
    loader = DataLoader(trainset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    start_epoch, step = 0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        _set_rng(state["rng"], ctx, device)
        run.truncate_metrics(start_epoch)
    else:
        torch.manual_seed(cfg.seed + 1 + ctx.rank)  # dropout stream, distinct per rank

    task.prepare_validation(ctx)

    model.train()
    stop = cfg.epochs if cfg.stop_after_epoch is None else min(cfg.epochs, cfg.stop_after_epoch)
    show = ctx.is_main and cfg.progress
    with progress_bar(task.label, total=(stop - start_epoch) * steps_per_epoch, enabled=show) as advance:
        for epoch in range(start_epoch, stop):
            sampler.set_epoch(epoch)
            info = task.epoch_info(epoch)
            sums: dict[str, float] = defaultdict(float)
            images_seen, t_epoch = 0, time.perf_counter()
            for batch in loader:
                t0 = time.perf_counter()
                z = _all_reduce(task.normalizer(batch, device), ctx).clamp_min(1.0)
                frac = 1.0 - step / max(total_steps, 1)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * max(frac, 0.0) ** cfg.lr_power
                terms = task.batch_terms(model, batch, device, epoch, step, use_amp)
                total = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total * (ctx.world_size / z).to(total.dtype)).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                names = sorted(terms)
                values = torch.stack([terms[n].detach().double() for n in names])
                values = (_all_reduce(values, ctx) / z).tolist()
                rec = {"kind": "step", "epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                       "loss": sum(values), "terms": dict(zip(names, values)), **info,
                       "time": time.perf_counter() - t0}
                for n, v in rec["terms"].items():
                    sums[n] += v
                sums["loss"] += rec["loss"]
                images_seen += batch["image"].shape[0] * ctx.world_size
                if not math.isfinite(rec["loss"]):
                    raise FloatingPointError(f"non-finite loss at step {step}: {rec['terms']}")
                if on_step is not None:
                    on_step(rec)
                if cfg.log_every > 0 and (step % cfg.log_every == 0 or step == 1):
                    run.log(rec)
                if show:
                    speed = images_seen / max(time.perf_counter() - t_epoch, 1e-9)
                    text = " ".join(f"{n} {v:.4g}" for n, v in rec["terms"].items())
                    advance(1, info=f"ep {epoch + 1}/{cfg.epochs} loss {rec['loss']:.4g} ({text}) {speed:.1f} img/s")
            n_steps = max(steps_per_epoch, 1)
            epoch_rec: dict[str, Any] = {
                "kind": "epoch", "epoch": epoch + 1, "step": step, **info,
                "loss": sums.pop("loss", 0.0) / n_steps, "terms": {k: v / n_steps for k, v in sums.items()},
                "images_per_s": images_seen / max(time.perf_counter() - t_epoch, 1e-9),
                "seconds": time.perf_counter() - t_epoch,
            }
            val = task.validate(core, device)
            if val is not None:
                epoch_rec["val"] = val
            rng = _gather_rng(ctx, device)
            fields = task.checkpoint_fields()
            if task.name != "segmentation":
                fields = {"task": task.name, **fields}
            run.save_checkpoint({
                **fields, "model": core.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if use_amp else None,
                "epoch": epoch + 1, "step": step, "rng": rng, "config": record,
            }, epoch + 1)
            run.log(epoch_rec)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, core)
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return run.root
