"""The one training loop of the toolkit, for any :class:`~wsss.training.task.TrainingTask`.

:func:`run_task` knows nothing of a particular task (segmentation, CAM, ...): it restores a run or
creates one, trains epoch after epoch and checkpoints after each. Per run:

1. **Restore or create** (:func:`restore_or_create`): ``--resume`` reads ``RUN/last.pt``, checks that the
   options (all but :data:`RESUME_FREE`) and the task equal the interrupted run's and rebuilds the model;
   otherwise the run directory is created (``config.json``) and the task builds a fresh model.
2. **Set up**: the model on its device, wrapped in DistributedDataParallel under ``torchrun`` (SyncBatchNorm
   on CUDA); SGD on the task's parameter groups (``momentum``, ``weight_decay`` of the config; a group may
   set its own ``weight_decay``); the poly schedule :class:`~wsss.training.schedule.PolyLR` over
   ``T = epochs · steps_per_epoch`` steps (after a linear warm-up of ``lr_warmup_steps`` steps where the
   configuration has that field); AMP (float16 autocast + grad scaling) on CUDA; the data order
   :class:`~wsss.training.data.EpochSampler`. On resume the optimizer, scheduler, scaler and the torch
   RNG states of every rank come from the checkpoint, so the run continues bit-exactly on CPU.
3. **One epoch** (:func:`train_one_epoch`), per step: ``terms = task.batch_terms(...)``
   (:class:`~wsss.losses.term.Term` s, each a batch sum with its own count, or plain batch sums over the
   task's normalizer), reduced by :func:`wsss.losses.term.reduce_terms`: each term's mean over the global
   batch (counts summed over ranks), their sum back-propagated (under DDP each rank scales term t by
   ``world_size / C_t`` so that DDP's gradient average is the gradient of the global loss), optimizer and
   scheduler step; the means are logged.
4. **Checkpoint** (:func:`checkpoint_state`) after each epoch: task name and fields, model, optimizer,
   scheduler, scaler, epoch, step, RNG states, the run's configuration; the task's validation record
   joins the epoch's metrics. Only rank 0 writes (:mod:`wsss.training.run`).

The loop reads the common fields of the task's configuration dataclass: ``out``, ``epochs``,
``batch_size``, ``lr``, ``lr_power`` (and ``lr_warmup_steps`` / ``lr_warmup_start`` if present), ``momentum``, ``weight_decay``, ``seed``, ``device``, ``amp``,
``workers``, ``log_every``, ``resume``, ``stop_after_epoch``, ``progress``; it records all of it
(``config.json`` ``train``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.losses.term import as_terms, reduce_terms
from wsss.parallel import DistributedContext, init_distributed
from wsss.paths import StageInputs
from wsss.progress import progress_bar
from wsss.training.data import EpochSampler
from wsss.training.run import RunDir, checkpoint_task, load_checkpoint
from wsss.training.schedule import WARMUP_START, PolyLR
from wsss.training.task import TrainingTask
from wsss.validation import check_allocation, check_numbers

#: options that may differ between an interrupted run and its --resume
RESUME_FREE = ("resume", "stop_after_epoch", "device", "workers", "log_every", "command", "progress")

StepHook = Callable[[dict[str, Any]], None]
EpochHook = Callable[[int, torch.nn.Module], None]


def training_device(name: str) -> torch.device:
    """The device of ``--device`` (:func:`wsss.devices.resolve_device`: ``auto``, ``cuda`` = this rank's GPU
    under torchrun), made the current CUDA device when it is one. DataLoader workers are processes of
    their own, so any ``--workers`` goes with CUDA."""
    device = resolve_device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def check_schedule(cfg: Any) -> None:
    """Ranges of the common options the loop reads (every task's configuration)."""
    check_numbers([
        ("--epochs", cfg.epochs, 1, None, {"integer": True}),
        ("--batch-size", cfg.batch_size, 1, None, {"integer": True}),
        ("--lr", cfg.lr, 0, None, {"low_open": True}),
        ("--lr-power", cfg.lr_power, 0, None),
        ("--momentum", cfg.momentum, 0, 1, {"high_open": True}),
        ("--weight-decay", cfg.weight_decay, 0, None),
        ("--head-lr-mult", cfg.head_lr_mult, 0, None),
        ("--width-mult", cfg.width_mult, 0, None, {"low_open": True}),
        ("--crop-size", cfg.crop_size, 16, None, {"integer": True}),
        ("--seed", cfg.seed, 0, 2**63 - 1, {"integer": True}),
        ("--workers", cfg.workers, 0, None, {"integer": True}),
        ("--log-every", cfg.log_every, 0, None, {"integer": True, "reason": "0 logs epochs only"}),
        ("--stop-after-epoch", cfg.stop_after_epoch, 0, None, {"integer": True}),
    ])


def check_crop_memory(cfg: Any, channels: int) -> None:
    """Refuse a ``--crop-size`` × ``--batch-size`` whose input batch alone cannot fit: ``batch ×
    crop² × (3 float32 image channels + channels float32 of targets/logits)`` bytes."""
    nbytes = float(cfg.batch_size) * float(cfg.crop_size) ** 2 * 4 * (3 + channels)
    check_allocation(nbytes, f"--crop-size {cfg.crop_size} with --batch-size {cfg.batch_size}: one batch of crops",
                     "Use a smaller --crop-size or --batch-size.")


def _all_reduce(t: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    if ctx.world_size > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
    return t


def _barrier(ctx: DistributedContext) -> None:
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


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


def with_added_options(recorded: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """``recorded`` (a run's stored configuration dict) with every field of the dataclass ``cfg`` that it lacks
    filled in at the field's default: an option added after the run started counts at its default, which is
    what the run was trained with."""
    added = {f.name: f.default for f in dataclasses.fields(cfg)
             if f.name not in recorded and f.default is not dataclasses.MISSING}
    return {**added, **recorded}


def restore_or_create(task: TrainingTask, cfg: Any, run: RunDir, record: dict[str, Any],
                      ctx: DistributedContext) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """``(model on CPU, checkpoint dict or None)``: the interrupted run's model and checkpoint under
    ``cfg.resume``, else a new run directory and the task's freshly built model."""
    state = None
    # --resume of a run stopped before its first checkpoint: nothing to continue, start afresh
    fresh_over_interrupted = cfg.resume and not run.last.exists()
    if fresh_over_interrupted and ctx.is_main:
        warnings.warn(f"{run.root}: no checkpoint to resume from yet; starting the run from the beginning.")
    if cfg.resume and not fresh_over_interrupted:
        state = load_checkpoint(run.last)
        old = state.get("config", {}).get("train", {})
        new = record["train"]
        old = with_added_options(old, cfg)
        diff = sorted(k for k in set(_comparable(old)) | set(_comparable(new)) if old.get(k) != new.get(k))
        if diff:
            raise UserError(f"{run.root}: was started with other options ({', '.join(diff)}). "
                            "Resume with the same options or start a new run with another --out.")
        if checkpoint_task(state) != task.name:
            raise UserError(f"{run.root}: holds a '{checkpoint_task(state)}' run, not '{task.name}'. "
                            "Resume it with the command that started it, or choose another --out.")
        model = task.empty_model()
        model.load_state_dict(state["model"])
        return model, state
    if run.last.exists() or (run.config_path.exists() and not fresh_over_interrupted):
        raise UserError(f"{run.root}: already holds a run. Pass --resume to continue it, or choose another --out.")
    _barrier(ctx)
    run.create(record)
    with warnings.catch_warnings():
        if not ctx.is_main:
            warnings.simplefilter("ignore")
        model = task.build_model()
    return model, None


@dataclass
class Trainer:
    """What one epoch of :func:`run_task` works with (built by :func:`run_task`)."""

    task: TrainingTask
    cfg: Any
    ctx: DistributedContext
    device: torch.device
    run: RunDir
    model: torch.nn.Module          # DDP-wrapped under torchrun
    core: torch.nn.Module           # the unwrapped model (checkpoints, validation)
    optimizer: torch.optim.Optimizer
    scheduler: PolyLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    loader: DataLoader
    sampler: EpochSampler
    step: int = 0


def train_one_epoch(tr: Trainer, epoch: int, on_step: StepHook | None = None,
                    advance: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train 0-based ``epoch``; returns its metrics record (without validation)."""
    task, cfg, ctx, device = tr.task, tr.cfg, tr.ctx, tr.device
    tr.sampler.set_epoch(epoch)
    info = task.epoch_info(epoch)
    sums: dict[str, float] = defaultdict(float)
    images_seen, t_epoch = 0, time.perf_counter()
    for batch in tr.loader:
        t0 = time.perf_counter()
        lr = tr.optimizer.param_groups[0]["lr"]
        terms = as_terms(task.batch_terms(tr.model, batch, device, epoch, tr.step, tr.use_amp),
                         lambda: task.normalizer(batch, device))
        objective, logged = reduce_terms(terms, ctx.world_size, lambda t: _all_reduce(t, ctx))
        tr.optimizer.zero_grad(set_to_none=True)
        tr.scaler.scale(objective).backward()
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        with warnings.catch_warnings():
            # AMP: the scaler skips the optimizer step of a batch whose gradients overflowed; the schedule
            # counts every batch all the same (torch warns when that happens on the first step)
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before", category=UserWarning)
            tr.scheduler.step()
        tr.step += 1
        rec = {"kind": "step", "epoch": epoch + 1, "step": tr.step, "lr": lr,
               "loss": sum(logged.values()), "terms": logged, **info,
               "time": time.perf_counter() - t0}
        for n, v in rec["terms"].items():
            sums[n] += v
        sums["loss"] += rec["loss"]
        images_seen += batch["image"].shape[0] * ctx.world_size
        if not math.isfinite(rec["loss"]):
            raise FloatingPointError(f"non-finite loss at step {tr.step}: {rec['terms']}")
        if on_step is not None:
            on_step(rec)
        if cfg.log_every > 0 and (tr.step % cfg.log_every == 0 or tr.step == 1):
            tr.run.log(rec)
        if advance is not None:
            speed = images_seen / max(time.perf_counter() - t_epoch, 1e-9)
            text = " ".join(f"{n} {v:.4g}" for n, v in rec["terms"].items())
            advance(1, info=f"ep {epoch + 1}/{cfg.epochs} loss {rec['loss']:.4g} ({text}) {speed:.1f} img/s")
    n_steps = max(len(tr.loader), 1)
    return {
        "kind": "epoch", "epoch": epoch + 1, "step": tr.step, **info,
        "loss": sums.pop("loss", 0.0) / n_steps, "terms": {k: v / n_steps for k, v in sums.items()},
        "images_per_s": images_seen / max(time.perf_counter() - t_epoch, 1e-9),
        "seconds": time.perf_counter() - t_epoch,
    }


def checkpoint_state(tr: Trainer, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint after ``epoch`` finished epochs (collective under DDP: every rank calls it)."""
    return {
        "task": tr.task.name, **tr.task.checkpoint_fields(), "model": tr.core.state_dict(),
        "optimizer": tr.optimizer.state_dict(), "scheduler": tr.scheduler.state_dict(),
        "scaler": tr.scaler.state_dict() if tr.use_amp else None,
        "epoch": epoch, "step": tr.step, "rng": _gather_rng(tr.ctx, tr.device), "config": record,
    }


def check_run_output(task: TrainingTask, cfg: Any) -> None:
    """The run directory ``cfg.out`` is not an input file nor inside the image or mask folders of
    the task's dataset (:meth:`wsss.paths.StageInputs.check_output`); call after ``task.setup``."""
    files = [getattr(cfg, key, None) for key in ("seeds", "pseudolabels", "tags", "weights", "superpixels")]
    inputs = StageInputs(files=[f for f in files if f and Path(f).is_file()], datasets=[getattr(task, "dataset", None)])
    inputs.check_output(cfg.out, folder=True, option="--out")


def run_task(task: TrainingTask, cfg: Any, on_step: StepHook | None = None,
             on_epoch_end: EpochHook | None = None) -> Path:
    """:func:`train_task` in a checked run directory: a run that fails before its first checkpoint
    removes what it created there, so the corrected command is not refused as "already holds a run"."""
    from wsss.parallel import distributed_context

    run = RunDir(cfg.out, enabled=distributed_context().is_main)
    before = run.existing()
    try:
        return train_task(task, cfg, on_step=on_step, on_epoch_end=on_epoch_end)
    except Exception:
        run.remove_new(before)
        raise


def train_task(task: TrainingTask, cfg: Any, on_step: StepHook | None = None,
               on_epoch_end: EpochHook | None = None) -> Path:
    """Train ``task`` with its configuration ``cfg`` (module docstring); returns the run directory.

    Args:
        task: what is trained (model, parameter groups, data, batch terms, validation).
        cfg: the task's configuration dataclass (the common fields of the module docstring).
        on_step: called on every rank with each step's record (tests, monitoring).
        on_epoch_end: called on every rank with (finished epochs, the unwrapped model) after the
            epoch's checkpoint.
    """
    ctx = init_distributed()
    device = training_device(cfg.device)
    task.setup(ctx)
    check_run_output(task, cfg)
    record = {"train": dataclasses.asdict(cfg), **task.record(), "world_size": ctx.world_size}
    run = RunDir(cfg.out, enabled=ctx.is_main)
    run.check_location()

    torch.manual_seed(cfg.seed)
    model, state = restore_or_create(task, cfg, run, record, ctx)
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
    # a configuration without the warm-up fields (the CAM task's) has no warm-up
    scheduler = PolyLR(optimizer, total_steps=cfg.epochs * len(loader), power=cfg.lr_power,
                       warmup_steps=getattr(cfg, "lr_warmup_steps", 0),
                       warmup_start=getattr(cfg, "lr_warmup_start", WARMUP_START))
    tr = Trainer(task, cfg, ctx, device, run, model, core, optimizer, scheduler, scaler, use_amp, loader, sampler)
    start_epoch = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        tr.step = int(state["step"])
        if state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        else:  # checkpoints written before the schedule was saved: it is a function of the step
            scheduler.last_epoch = tr.step
            for group, lr in zip(optimizer.param_groups, scheduler.get_lr()):
                group["lr"] = lr
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        _set_rng(state["rng"], ctx, device)
        run.truncate_metrics(start_epoch)
    else:
        torch.manual_seed(cfg.seed + 1 + ctx.rank)  # dropout stream, distinct per rank

    task.prepare_validation(ctx)

    model.train()
    stop = cfg.epochs if cfg.stop_after_epoch is None else min(cfg.epochs, cfg.stop_after_epoch)
    show = ctx.is_main and cfg.progress
    with progress_bar(task.label, total=(stop - start_epoch) * len(loader), enabled=show) as advance:
        for epoch in range(start_epoch, stop):
            epoch_rec = train_one_epoch(tr, epoch, on_step, advance if show else None)
            val = task.validate(core, device)
            if val is not None:
                epoch_rec["val"] = val
            run.save_checkpoint(checkpoint_state(tr, epoch + 1, record), epoch + 1)
            run.log(epoch_rec)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, core)
    _barrier(ctx)
    return run.root


__all__ = ["RESUME_FREE", "Trainer", "check_crop_memory", "check_run_output", "check_schedule", "checkpoint_state",
           "restore_or_create", "run_task", "train_one_epoch", "train_task", "training_device"]
