"""Stage ``solve``: soft pseudo-labels from seeds (and network predictions) with the self-labeling
solver (docs/methods.md §4.5, :func:`wsss.potts.solver.solve_pseudolabels`).

Reads a ``seeds`` artifact (``label``, H×W uint8, 255 = unlabelled), optionally a ``predictions``
(``scores``) or ``pseudolabels`` (``probs``) artifact with class probabilities at image size, and the
images of the seeds' dataset. Per image it minimizes ``η Σ_{p∉S} CE(y_p, σ_p) + λ Σ w_pq P(y_p, y_q)``
with ``y = ȳ`` on the seeds and writes a ``pseudolabels`` artifact: ``probs`` (K×H×W float16) and
``label`` (H×W uint8, arg-max of the float32 probabilities), plus the per-image attributes
``seeded`` (fraction of seed pixels) and, with predictions, ``changed`` (fraction of pixels whose
arg-max differs from the predictions').

Predictions are probabilities; the solver's logits are ``ln max(p, 1e-8)`` (same softmax). Without
predictions the solver starts uniform and has no CE term (``--init uniform``; η is then unused).
Images are independent (``--workers`` processes, ``torchrun`` ranks); the output does not depend on
the split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsss.artifacts import Artifact
from wsss.constants import IGNORE_INDEX
from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.paths import StageInputs
from wsss.potts.solver import SolverConfig
from wsss.stages.artifact_inputs import SOFT_SCORES, check_ids, read_soft_scores, resolve_dataset
from wsss.stages.pseudolabel_writer import write_pseudolabels
from wsss.validation import check_finite_arrays, check_seeds_labelled

#: Probabilities are clamped at this value before ``ln`` when predictions become the solver's logits.
PROB_EPS = 1e-8


def solve_image(image: np.ndarray, seeds: np.ndarray, probs: np.ndarray | None, num_classes: int,
                config: SolverConfig, device: Any = "cpu") -> np.ndarray:
    """Pseudo-labels of one image.

    Args:
        image: H×W×3 uint8 RGB.
        seeds: H×W integer labels (0..K-1, 255 = unlabelled).
        probs: K×H×W class probabilities (any float dtype) or None (uniform start, no CE term).
        num_classes: K.
        config: solver options.
        device: torch device.

    Returns:
        K×H×W float32 probabilities.
    """
    import torch

    from wsss.potts.solver import solve_pseudolabels

    im = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device)
    sd = torch.from_numpy(seeds.astype(np.int64))[None].to(device)
    logits = None
    if probs is not None:
        logits = torch.log(torch.from_numpy(probs.astype(np.float32)).clamp_min(PROB_EPS))[None].to(device)
    y = solve_pseudolabels(logits, sd, im, config, num_classes=num_classes)
    return y[0].float().cpu().numpy()


def run(
    seeds: str | Path,
    out: str | Path,
    *,
    predictions: str | Path | None = None,
    solver: SolverConfig = SolverConfig(),
    data: str | Path | None = None,
    layout: str | None = None,
    split: str | None = None,
    device: str = "cpu",
    workers: int = 1,
    resume: bool = False,
    allow_empty: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Solve for soft pseudo-labels of every image of a seeds artifact.

    Args:
        seeds: input ``seeds`` artifact.
        out: output ``pseudolabels`` artifact (must differ from the inputs).
        predictions: ``predictions`` / ``pseudolabels`` artifact with the network's probabilities at
            image size, or None (then ``solver.init`` must be ``uniform``).
        solver: solver options (:class:`wsss.potts.solver.SolverConfig`; toolkit defaults).
        data, layout, split: override the dataset recorded in the seeds artifact.
        device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``.
        workers: processes per rank (CPU only).
        resume: keep the images an interrupted run already finished (``out.parts/``).
        allow_empty: with predictions, accept a seeds artifact without any labelled pixel (the
            solver then only regularizes the predictions). Without predictions an image with no
            seed is always an error: its result would be the uniform start.
        config: configuration recorded in the output (the CLI passes every option and the command
            line); default: the solver options and paths.

    Returns:
        the output path.
    """
    try:
        solver = solver.resolved(seeds_only=predictions is None)
    except UserError as exc:
        raise UserError(f"solver options: {exc}") from exc
    seeds_art = Artifact(seeds, kind="seeds")
    pred_art = Artifact(predictions, kind=tuple(SOFT_SCORES)) if predictions is not None else None
    if pred_art is None and solver.init != "uniform":
        raise UserError(f"{seeds_art.path}: no --predictions given, so there are no logits to start from. "
                        "Pass --predictions PRED.h5, or --init uniform.")
    out = Path(out)
    dataset = resolve_dataset(seeds_art, data, layout, split)
    sources = StageInputs(files=[seeds_art.path, pred_art.path if pred_art is not None else None], datasets=[dataset])
    classes = seeds_art.classes
    k = len(classes)
    if k != dataset.num_classes:
        raise UserError(f"{seeds_art.path}: has {k} classes but the dataset {dataset.root} has "
                        f"{dataset.num_classes}. Pass the dataset the seeds were made for (--data).")
    if pred_art is not None and list(pred_art.classes) != list(classes):
        raise UserError(f"{pred_art.path}: its classes {list(pred_art.classes)} differ from the seeds' {list(classes)}. "
                        "Pass predictions made on the same class list.")
    ids = seeds_art.ids
    check_ids(seeds_art, dataset, ids)
    if pred_art is not None:
        missing = sorted(set(ids) - set(pred_art.ids))
        if missing:
            raise UserError(f"{pred_art.path}: has no predictions for {len(missing)} images of the seeds "
                            f"(e.g. '{missing[0]}'). Predict on the same images.")
    if pred_art is not None and not allow_empty:
        check_seeds_labelled(seeds_art, "solve from", "Recreate the seeds so that they label some pixels, or pass "
                             "--allow-empty to only regularize the predictions.")
    dev = resolve_device(device, workers)
    if config is None:
        config = {"stage": "solve", "seeds": str(seeds_art.path), "out": str(out),
                  "predictions": None if pred_art is None else str(pred_art.path), "device": device,
                  **dataclasses.asdict(solver)}

    def one(image_id: str, image: np.ndarray, label: np.ndarray):
        if pred_art is None and not np.any(label != IGNORE_INDEX):
            raise UserError(f"{seeds_art.path}: image '{image_id}' has no labelled pixel, and without --predictions "
                            "its pseudo-labels would be the uniform start. Pass --predictions, or seeds that label "
                            "every image.")
        probs = None
        if pred_art is not None:
            probs = read_soft_scores(pred_art, image_id, k)
            if probs.shape[1:] != label.shape:
                raise UserError(f"{pred_art.path}: scores of image '{image_id}' are {probs.shape[2]}×{probs.shape[1]} "
                                f"but the image is {label.shape[1]}×{label.shape[0]} (W×H). "
                                "Predict at image size on the same dataset.")
        y = solve_image(image, label, probs, k, solver, dev)
        check_finite_arrays(out, image_id, {"probs": y})
        arg = y.argmax(axis=0).astype(np.uint8)
        attrs = {"seeded": float(np.mean(label != IGNORE_INDEX))}
        if probs is not None:
            attrs["changed"] = float(np.mean(arg != np.asarray(probs, np.float32).argmax(axis=0)))
        return {"probs": y.astype(np.float16), "label": arg}, attrs

    inputs = [seeds_art.provenance()] + ([pred_art.provenance()] if pred_art is not None else [])
    return write_pseudolabels(one, seeds_art, dataset, out, config=config, inputs=inputs, sources=sources,
                              workers=workers, resume=resume, description="solve")


__all__ = ["PROB_EPS", "run", "solve_image"]
