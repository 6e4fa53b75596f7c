"""Stage ``predict``: a trained checkpoint + images → ``predictions`` artifact.

Per image: ``scores`` (K×H×W float16 class probabilities) and ``label`` (H×W uint8, arg-max of the
float32 probabilities). With several ``scales`` and/or ``flip`` the probabilities are averaged:
for each scale ``s`` the image is resized bilinearly to ``round(s·H)×round(s·W)``, the softmax of
the logits is resized back to ``H×W`` (bilinear, ``align_corners=True`` as the model's own
upsampling), and with ``flip`` the mirrored image's probabilities are mirrored back and averaged
too (``2·len(scales)`` passes). The pass loop is :func:`wsss.inference.multiscale_flip_sum`.

Options of the URSS code's inference (Pan et al. 2021; docs/methods.md §9), off by default:
``long_side`` (scales relative to a long side of that many pixels, :func:`wsss.inference.long_side_size`)
and ``window`` / ``window_stride`` (each pass as the mean over sliding ``window×window`` crops,
:func:`wsss.inference.sliding_window_mean`; stride default ⌈2·window/3⌉). The URSS code's setting is
``scales 0.5, 0.75, …, 2``, ``long_side 512``, ``window 465``, no flip.

Images: ``data`` / ``layout`` / ``split`` where given, else the dataset recorded in the checkpoint
(the training images; ``split`` overrides its split). Images are independent: ``--workers``
processes (CPU) or ``torchrun`` ranks (one GPU each) split them, and the artifact does not depend on
how.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss.data import Dataset, open_dataset, open_recorded_dataset
from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.inference import default_window_stride, long_side_size, multiscale_flip_sum, scaled_size, sliding_window_mean
from wsss.models import ModelConfig, empty_model
from wsss.parallel import run_per_image
from wsss.paths import StageInputs
from wsss.training.run import load_checkpoint, resolve_checkpoint, run_directory
from wsss.models.random_walk import check_walk_memory
from wsss.validation import check_finite_arrays, check_numbers, check_pass_memory, check_scales


@dataclass
class PredictConfig:
    """Options of ``wsss predict`` (defaults: single scale, no flip, as training validation)."""

    checkpoint: str
    out: str
    data: str | None = None
    layout: str | None = None
    split: str | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    long_side: int | None = None  # scales relative to this long side (URSS code: 512); None: the image's size
    window: int | None = None  # sliding-window side (URSS code: 465); None: whole image per pass
    window_stride: int | None = None  # None: ⌈2·window/3⌉ (URSS code)
    device: str = "auto"
    workers: int = 1
    resume: bool = False
    initial_classifier: bool = False  # a SPML embedding run: predict with its jointly trained initial classifier
    command: str = ""


def load_model(checkpoint: str | os.PathLike, device: torch.device | str = "cpu",
               initial_classifier: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint (eval mode, on ``device``) and the checkpoint dict (without weights).

    A segmentation run gives its DeepLabV3+ (or URSS network), a SPML final classifier run its
    :class:`~wsss.models.spml_final.SPMLFinal`; a SPML embedding run is predicted with only with
    ``initial_classifier`` (its jointly trained classifier, :class:`~wsss.models.spml_final.SPMLInitial`).
    Every model maps ``B×3×H×W`` RGB 0–255 to ``B×K×H×W`` logits and has ``config.num_classes``.
    """
    from wsss.spml.runs import EMBEDDING_TASK, FINAL_TASK

    state = load_checkpoint(checkpoint)
    task = state.get("task", "segmentation")
    if initial_classifier and task != EMBEDDING_TASK:
        raise UserError(f"{checkpoint}: holds a '{task}' run; --initial-classifier applies to a SPML embedding run "
                        "(wsss train --loss spml) only. Remove it.")
    if task == EMBEDDING_TASK and not initial_classifier:
        raise UserError(f"{checkpoint}: holds a SPML embedding run, whose classifier is the initial one. Train the final "
                        "classifier (wsss spml-labels, then wsss train --loss pseudo --init-from RUN) and predict with it, "
                        "or pass --initial-classifier.")
    if task == EMBEDDING_TASK:
        from wsss.models.spml_final import SPMLInitial
        from wsss.training.spml import spml_model_from_state

        net, _ = spml_model_from_state(state, device)
        model: nn.Module = SPMLInitial(net).eval()
    elif task == FINAL_TASK:
        from wsss.training.spml_final import final_model_from_state

        model = final_model_from_state(state, device)
    elif task != "segmentation":
        hint = " Use 'wsss cam export' for a CAM classifier run." if task == "cam" else ""
        raise UserError(f"{checkpoint}: holds a '{task}' run, not a segmentation network.{hint}")
    else:
        model = empty_model(ModelConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
        model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "scaler", "rng")}
    return model, meta


@torch.no_grad()
def predict_probs(model: nn.Module, image: Tensor, scales: Sequence[float] = (1.0,), flip: bool = False,
                  long_side: int | None = None, window: int | None = None, window_stride: int | None = None) -> Tensor:
    """Class probabilities averaged over scales and flips (and sliding windows).

    Args:
        model: maps ``B×3×h×w`` RGB 0–255 to ``B×K×h×w`` logits.
        image: ``B×3×H×W`` float RGB 0–255.
        scales: resize factors (of the image's size, or of ``long_side``).
        flip: also average the horizontally mirrored image.
        long_side: scales relative to an image whose long side is this many pixels (None: the image's size).
        window: side of the sliding windows of each pass (None: the whole image at once).
        window_stride: step between windows (None: :func:`wsss.inference.default_window_stride`).

    Returns:
        ``B×K×H×W`` float32 probabilities.
    """
    full = tuple(image.shape[-2:])

    def image_at(scale: float) -> Tensor:
        size = scaled_size(full, scale) if long_side is None else long_side_size(full, long_side, scale)
        return image if size == full else F.interpolate(image, size=size, mode="bilinear", align_corners=False)

    def probs(x: Tensor) -> Tensor:
        return torch.softmax(model(x).float(), dim=1)

    forward = probs
    if window is not None:
        stride = window_stride or default_window_stride(window)

        def forward(x: Tensor) -> Tensor:
            return sliding_window_mean(probs, x, window, stride)

    total, passes = multiscale_flip_sum(forward, image_at, full, scales, flip, align_corners=True)
    return total / passes


def pass_sizes(shape: tuple[int, int], cfg: "PredictConfig") -> list[tuple[int, int]]:
    """``(h, w)`` of the network input of each scale's pass (a window where ``cfg.window`` is set)."""
    sizes = [scaled_size(shape, s) if cfg.long_side is None else long_side_size(shape, cfg.long_side, s)
             for s in cfg.scales]
    if cfg.window is not None:
        sizes = [(cfg.window, cfg.window) for _ in sizes]
    return sizes


def open_images(meta: dict[str, Any], data: str | None, layout: str | None, split: str | None) -> Dataset:
    """The images to predict (see the module docstring)."""
    if data is not None:
        return open_dataset(data, layout=layout or "auto", split=split or "val")
    record = dict(meta.get("dataset") or {})
    if not record:
        raise UserError("--data: the checkpoint records no dataset. Pass the images with --data (and --split).")
    if split is not None:
        record["split"] = split
    if layout is not None:
        record["layout"] = layout
    return open_recorded_dataset(record)


def run(cfg: PredictConfig) -> Path:
    """Write the predictions artifact; returns its path."""
    check_scales("--scales", cfg.scales)
    check_numbers([("--long-side", cfg.long_side, 1, None, {"integer": True}),
                   ("--window", cfg.window, 8, None, {"integer": True}),
                   ("--window-stride", cfg.window_stride, 1, cfg.window, {"integer": True, "reason": "at most --window"})])
    if cfg.window_stride is not None and cfg.window is None:
        raise UserError("--window-stride: needs --window. Pass --window SIDE or drop --window-stride.")
    ckpt = resolve_checkpoint(cfg.checkpoint)
    device = resolve_device(cfg.device, cfg.workers)
    model, meta = load_model(ckpt, device, initial_classifier=cfg.initial_classifier)
    dataset = open_images(meta, cfg.data, cfg.layout, cfg.split)
    classes = meta.get("classes") or dataset.classes
    if len(classes) != model.config.num_classes or dataset.num_classes != model.config.num_classes:
        raise UserError(f"{ckpt}: the model has {model.config.num_classes} classes but the dataset {dataset.root} has "
                        f"{dataset.num_classes}. Predict on a dataset with the training classes.")
    scales = tuple(float(s) for s in cfg.scales)

    def one(image_id: str):
        array = dataset.load_image(image_id)
        shape = array.shape[:2]
        effective = scales if cfg.long_side is None else tuple(s * cfg.long_side / max(shape) for s in scales)
        check_pass_memory("--scales", shape, effective, len(classes), device if device.type == "cuda" else None, image_id)
        if getattr(model.config, "head", None) == "urss":  # the walk's N×N matrices of the largest pass
            h, w = max(pass_sizes(shape, cfg), key=lambda hw: hw[0] * hw[1])
            check_walk_memory(1, (-(-h // 8), -(-w // 8)), device, training=False)
        image = torch.from_numpy(array).permute(2, 0, 1)[None].float().to(device)
        probs = predict_probs(model, image, scales, cfg.flip, cfg.long_side, cfg.window, cfg.window_stride)[0]
        arrays = {"scores": probs.cpu().numpy().astype(np.float16), "label": probs.argmax(0).cpu().numpy().astype(np.uint8)}
        check_finite_arrays(cfg.out, image_id, arrays)
        return arrays, None

    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    config["checkpoint"] = str(ckpt.resolve())
    config["checkpoint_epoch"] = meta.get("epoch")
    config["train_config"] = meta.get("config", {}).get("train")
    for key in ("workers", "resume", "device"):
        config.pop(key)  # do not change the result
    return run_per_image(
        one, dataset.ids,
        {"path": cfg.out, "kind": "predictions", "classes": classes, "config": config,
         "inputs": [], "dataset": dataset.describe(),
         "sources": StageInputs(files=[ckpt], folders=[run_directory(ckpt)], datasets=[dataset])},
        workers=cfg.workers, resume=cfg.resume, description="predict",
    )
