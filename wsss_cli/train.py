"""``wsss train``: train DeepLabV3+ with one of the losses of :mod:`wsss.losses.registry`.

Option parsing only; the task is :mod:`wsss.training.segmentation`, the loop :mod:`wsss.training.engine`. Runs under ``torchrun`` unchanged
(DistributedDataParallel, one run directory written by rank 0).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List, Optional

import typer

from wsss.errors import UserError
from wsss_cli.common import command, command_line, console

LOSS_HELP = (
    "pce: partial CE on seeds. full: CE on dense masks (--data split with masks). "
    "gridcrf: pCE + λ·Σ w_pq P(σ_p,σ_q) on NN4/NN8 (any --relaxation). densecrf / ncut / kernelcut: pCE + λ·R "
    "with the bilateral filter. collision: soft self-labeling (solver per batch, then pCE + η·CE(y,σ)); --hard for "
    "hard self-labeling. pseudo: CE on a pseudolabels artifact (soft; --hard for its label map)."
)


def _defaults_help() -> tuple[str, str]:
    from wsss.losses.defaults import DENSECRF_WEIGHT, GRIDCRF_LAMBDA, KERNELCUT_WEIGHT, NCUT_WEIGHT, SL_WEIGHT_PER_ETA

    lam = (f"Weight λ of the regularizer; each term is a mean (pCE over the seed pixels, gridcrf over valid pairs, "
           f"densecrf/ncut/kernelcut over the batch's images as rloss), so one λ serves scribbles, clicks and blocks "
           f"[gridcrf: {GRIDCRF_LAMBDA:.4g} (demo search, converted to the per-pair mean); densecrf: {DENSECRF_WEIGHT:.4g} "
           f"(rloss's recommended weight 2e-9 × its batch 12, lattice-scale corrected); ncut: {NCUT_WEIGHT:.4g}, kernelcut: "
           f"{KERNELCUT_WEIGHT:.4g} (CamVid search, converted); collision: the solver's Potts weight, 60 (demo search, "
           f"sum energy); docs/methods.md §2–§4].")
    eta = (f"collision: weight η of CE(y,σ) in the solver's sum energy [0.3: an unverified secondary source's value, confirmed on the demo "
           f"data against 0.1 and 1.0]; the network step weights the mean of CE(y,σ) over unlabelled pixels by "
           f"η × {SL_WEIGHT_PER_ETA:.4g} (the demo setting converted).")
    return lam, eta


_LAMBDA_HELP, _ETA_HELP = _defaults_help()


def _parse_pairs(values: List[str], option: str) -> dict[str, Any]:
    """KEY=VALUE strings → dict; values parsed as int, float, true/false/none or kept as strings."""
    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise UserError(f"{option} {item}: expected KEY=VALUE. Fix the option.")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        low = raw.strip().lower()
        value: Any
        if low in ("true", "false"):
            value = low == "true"
        elif low == "none":
            value = None
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        out[key] = value
    return out


def loss_options(loss: str, *, lam, eta, relaxation, ce, neighbourhood, bandwidth, solver_steps, solver_lr,
                 solver_optimizer, solver_option, crf_option, hard) -> dict[str, Any]:
    """The ``loss_options`` dict of :func:`wsss.losses.registry.make_loss` from the CLI values
    (None = the loss's default). Options that do not apply to ``loss`` are an error."""
    given = {"--lambda": lam, "--eta": eta, "--relaxation": relaxation, "--ce": ce, "--neighbourhood": neighbourhood,
             "--bandwidth": bandwidth, "--solver-steps": solver_steps, "--solver-lr": solver_lr,
             "--solver-optimizer": solver_optimizer, "--solver-option": solver_option or None,
             "--crf-option": crf_option or None, "--hard": hard or None}
    applies = {
        "pce": set(), "full": set(), "pseudo": {"--hard"},
        "gridcrf": {"--lambda", "--relaxation", "--neighbourhood", "--bandwidth"},
        "densecrf": {"--lambda", "--crf-option"}, "ncut": {"--lambda", "--crf-option"},
        "kernelcut": {"--lambda", "--crf-option"},
        "collision": {"--lambda", "--eta", "--relaxation", "--ce", "--neighbourhood", "--bandwidth", "--solver-steps",
                      "--solver-lr", "--solver-optimizer", "--solver-option", "--hard"},
    }.get(loss)
    if applies is None:
        from wsss.losses.registry import LOSS_NAMES

        raise UserError(f"--loss {loss}: unknown loss. Choose one of: {', '.join(LOSS_NAMES)}.")
    extra = sorted(k for k, v in given.items() if v is not None and k not in applies)
    if extra:
        raise UserError(f"{', '.join(extra)}: does not apply to --loss {loss}. Remove it.")
    opts: dict[str, Any] = {}
    if loss == "pseudo":
        opts["hard"] = hard
    elif loss == "gridcrf":
        for key, value in (("lam", lam), ("relaxation", relaxation), ("neighbourhood", neighbourhood), ("bandwidth", bandwidth)):
            if value is not None:
                opts[key] = value
    elif loss in ("densecrf", "ncut", "kernelcut"):
        if lam is not None:
            opts["lam"] = lam
        opts["dense"] = _parse_pairs(crf_option, "--crf-option")
    elif loss == "collision":
        solver = _parse_pairs(solver_option, "--solver-option")
        for key, value in (("lam", lam), ("eta", eta), ("relaxation", relaxation), ("ce", ce),
                           ("neighbourhood", neighbourhood), ("bandwidth", bandwidth), ("steps", solver_steps),
                           ("lr", solver_lr), ("optimizer", solver_optimizer)):
            if value is not None:
                solver[key] = value
        opts["solver"] = solver
        opts["hard"] = hard
    return opts


def register(app: typer.Typer) -> None:
    @command(app, "train", help="Train DeepLabV3+ on images + seeds (or masks, or pseudo-labels); writes a run "
                                "directory (config.json, metrics.jsonl, last.pt, checkpoints/). " + LOSS_HELP)
    def train(
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; must not hold a run unless --resume)."),
        loss: str = typer.Option("pce", "--loss", help="pce, full, gridcrf, densecrf, ncut, kernelcut, collision, pseudo."),
        seeds: Optional[Path] = typer.Option(None, "--seeds", help="Seeds artifact (wsss prepare-*); every loss but full/pseudo."),
        pseudolabels: Optional[Path] = typer.Option(None, "--pseudolabels", help="Pseudolabels artifact (wsss solve) for --loss pseudo."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the one recorded in the seeds/pseudolabels artifact)."),
        layout: str = typer.Option("auto", "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded, or train)."),
        # model
        backbone: str = typer.Option("mobilenet_v2", "--backbone", help="mobilenet_v2 (Zhang & Boykov 2025 ablations, rloss), resnet50, resnet101 (Zhang & Boykov 2025's best)."),
        output_stride: int = typer.Option(16, "--output-stride", help="16 (rloss) or 8."),
        width_mult: float = typer.Option(1.0, "--width-mult", help="MobileNetV2 width multiplier (ImageNet weights exist for 1.0)."),
        head_channels: int = typer.Option(256, "--head-channels", help="ASPP/decoder channels [DeepLabV3+: 256]."),
        weights: Optional[str] = typer.Option(None, "--weights", help="ImageNet backbone weights: a torchvision state-dict file, or 'imagenet' (downloads). Default: random init (warning)."),
        # schedule
        epochs: int = typer.Option(60, "--epochs", help="Epochs [Zhang & Boykov 2025: 60]."),
        batch_size: int = typer.Option(12, "--batch-size", help="Images per step and process [Zhang & Boykov 2025: 12]."),
        lr: float = typer.Option(0.0007, "--lr", help="Backbone learning rate, poly decay [Zhang & Boykov 2025: 0.0007]."),
        lr_power: float = typer.Option(0.9, "--lr-power", help="Poly decay power [Zhang & Boykov 2025: 0.9]."),
        momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum [rloss: 0.9]."),
        weight_decay: float = typer.Option(5e-4, "--weight-decay", help="SGD weight decay [rloss: 5e-4]."),
        head_lr_mult: float = typer.Option(10.0, "--head-lr-mult", help="lr multiplier of ASPP + decoder [rloss: 10]."),
        warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", help="pCE-only epochs first (part of --epochs). Default: 20% of epochs for collision (toolkit, untuned), else 0."),
        crop_size: int = typer.Option(513, "--crop-size", help="Training crop side [rloss: 513]."),
        scale_min: float = typer.Option(0.5, "--scale-min", help="Random scale lower bound [0.5]."),
        scale_max: float = typer.Option(2.0, "--scale-max", help="Random scale upper bound [2.0]."),
        flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flip."),
        # loss options
        lam: Optional[float] = typer.Option(None, "--lambda", help=_LAMBDA_HELP),
        eta: Optional[float] = typer.Option(None, "--eta", help=_ETA_HELP),
        relaxation: Optional[str] = typer.Option(None, "--relaxation", help="Potts relaxation (gridcrf, collision) [collision-divergence]."),
        ce: Optional[str] = typer.Option(None, "--ce", help="collision: CE term standard, reverse, collision [collision]."),
        neighbourhood: Optional[str] = typer.Option(None, "--neighbourhood", help="nn4 (Zhang & Boykov 2025) or nn8; dn for collision with bilinear/quadratic [nn4]."),
        bandwidth: Optional[float] = typer.Option(None, "--bandwidth", help="Grid colour bandwidth s, RGB 0–255 [Zhang & Boykov 2025, VOC: 9]."),
        solver_steps: Optional[int] = typer.Option(None, "--solver-steps", help="collision: solver steps per batch [mirror: 20 (toolkit training budget, docs/demo-results.md); sgd: 200 (Zhang & Boykov 2025)]."),
        solver_lr: Optional[float] = typer.Option(None, "--solver-lr", help="collision: solver step size [mirror: 1.0 (toolkit, preconditioned); sgd: 0.075 (Zhang & Boykov 2025)]."),
        solver_optimizer: Optional[str] = typer.Option(None, "--solver-optimizer", help="collision: solver optimizer: mirror (convex start + preconditioned mirror descent, toolkit default), sgd (the paper's plain GD) or adam [mirror]."),
        solver_option: List[str] = typer.Option([], "--solver-option", help="collision: any other SolverConfig field, KEY=VALUE (repeatable)."),
        crf_option: List[str] = typer.Option([], "--crf-option", help="densecrf/ncut/kernelcut: keyword option of the loss function, KEY=VALUE (repeatable), e.g. sigma_rgb=15."),
        hard: bool = typer.Option(False, "--hard", help="collision: hard self-labeling (one-hot arg-max of y). pseudo: train on the label map."),
        # run
        seed: int = typer.Option(0, "--seed", help="Random seed (weights, data order, augmentation)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
        amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision on CUDA (ignored on CPU)."),
        workers: int = typer.Option(0, "--workers", "-j", min=0, help="DataLoader worker processes per rank (0: load in the main process)."),
        log_every: int = typer.Option(10, "--log-every", help="Write a step record to metrics.jsonl every N steps (epoch records always)."),
        val_data: Optional[Path] = typer.Option(None, "--val-data", help="Dataset with dense masks for validation mIoU after every epoch."),
        val_split: str = typer.Option("val", "--val-split", help="Validation split."),
        val_layout: str = typer.Option("auto", "--val-layout", help="Validation dataset layout."),
        resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out from its last.pt (same options)."),
        stop_after_epoch: Optional[int] = typer.Option(None, "--stop-after-epoch", hidden=True, help="Stop after N finished epochs (resume later)."),
    ) -> None:
        from wsss.stages import train as stage
        from wsss.training.segmentation import TrainConfig

        opts = loss_options(loss, lam=lam, eta=eta, relaxation=relaxation, ce=ce, neighbourhood=neighbourhood,
                            bandwidth=bandwidth, solver_steps=solver_steps, solver_lr=solver_lr,
                            solver_optimizer=solver_optimizer, solver_option=solver_option, crf_option=crf_option, hard=hard)
        cfg = TrainConfig(
            out=str(out), loss=loss, loss_options=opts, seeds=str(seeds) if seeds else None,
            pseudolabels=str(pseudolabels) if pseudolabels else None, data=str(data) if data else None,
            layout=layout, split=split, backbone=backbone, output_stride=output_stride, width_mult=width_mult,
            head_channels=head_channels, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
            lr_power=lr_power, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult,
            warmup_epochs=warmup_epochs, crop_size=crop_size, scale_min=scale_min, scale_max=scale_max, flip=flip,
            seed=seed, device=device, amp=amp, workers=workers, log_every=log_every,
            val_data=str(val_data) if val_data else None, val_layout=val_layout, val_split=val_split,
            resume=resume, stop_after_epoch=stop_after_epoch, command=command_line(),
        )
        path = stage.run(cfg)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}/last.pt", highlight=False)


__all__ = ["loss_options", "register"]
