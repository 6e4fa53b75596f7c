"""Stages ``cam train``, ``cam export`` and ``cam seeds``: image tags → CAMs → seeds (docs/methods.md §6).

- :func:`run_train`: images + ``tags`` artifact → run directory (the CAM classifier on the
  toolkit's training loop, :mod:`wsss.cam.training`).
- :func:`run_export`: run directory + ``tags`` → ``cams`` artifact: per image ``cams`` ``T×H×W``
  float16 (multi-scale + flip, max-normalised, image resolution) and ``classes`` ``T`` int16 (the
  label values of the image's tags), via :func:`wsss.parallel.run_per_image` (``--workers``,
  ``torchrun``, ``--resume``).
- :func:`run_seeds`: ``cams`` (+ ``tags`` for boxes and checks) → ``seeds`` artifact (``label``
  ``H×W`` uint8, 255 = unlabelled), readable by ``wsss solve`` / ``wsss train`` like any seeds:
  rule ``affinity`` (AffinityNet seeds, α_low/α_high with DenseCRF, hfpl default), ``threshold``
  (SPML, α = 6, min score 0.2) or ``boxes`` (SPML box rule, 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.artifacts import Artifact
from wsss.cam.export import DEFAULT_SCALES, export_cams
from wsss.cam.seeds import (AFFINITY_ALPHAS, BOX_THRESHOLD, SPML_ALPHA, SPML_MIN_SCORE, affinity_seeds, boxes_to_seeds,
                            densecrf_refine, threshold_seeds)
from wsss.cam.training import LABEL_OFFSET, CamTrainConfig, cam_model_from_checkpoint, open_tags, read_tags, train_cams
from wsss.constants import IGNORE_INDEX
from wsss.crf import CRFParams, crf_workers
from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.parallel import run_per_image
from wsss.paths import StageInputs
from wsss.stages.artifact_inputs import check_ids, resolve_dataset
from wsss.validation import check_finite_arrays, check_numbers, check_pass_memory, check_scales

SEED_RULES = ("affinity", "threshold", "boxes")

__all__ = ["SEED_RULES", "read_cams", "run_export", "run_seeds", "run_train"]


def run_train(config: CamTrainConfig) -> Path:
    """Train the CAM classifier; returns the run directory."""
    return train_cams(config)


def _checkpoint_provenance(path: Path, state: Mapping[str, Any]) -> dict[str, Any]:
    config = state.get("config", {})
    return {"path": str(path.resolve()), "kind": "cam-run", "schema": 0, "created": None,
            "config": config.get("train", {}), "inputs": config.get("inputs", []), "epoch": state.get("epoch")}


def run_export(checkpoint: str | Path, out: str | Path, *, tags: str | Path | None = None, data: str | Path | None = None,
               layout: str = "auto", split: str | None = None, scales: Sequence[float] = DEFAULT_SCALES,
               flip: bool = True, device: str = "cpu", workers: int = 1, resume: bool = False,
               config: Mapping[str, Any] | None = None) -> Path:
    """CAMs of every image of the tags artifact (default: the one the run was trained on).

    ``scales`` (default 0.5, 1, 1.5, 2) × ``flip``: the passes of docs/methods.md §6; the stored map is the
    classifier's CAM (``export_map`` "cam"; SEAM's PCM-refined map does not exist here).
    """
    from wsss.training.run import load_checkpoint, resolve_checkpoint, run_directory

    ckpt = resolve_checkpoint(checkpoint)
    state = load_checkpoint(ckpt)
    model = cam_model_from_checkpoint(state)
    scales = check_scales("--scales", scales)
    if tags is None:
        tags = state.get("tags")
        if tags is None or not Path(tags).exists():
            raise UserError(f"{ckpt}: the tags artifact the run was trained on ({tags}) is not there. Pass --tags TAGS.h5.")
    tag_art, dataset = open_tags(str(tags), str(data) if data else None, layout, split)
    if list(state.get("classes", [])) != list(dataset.classes):
        raise UserError(f"{ckpt}: the classifier was trained on classes {state.get('classes', [])[:4]}… "
                        f"({len(state.get('classes', []))}), the dataset {dataset.root} has {dataset.num_classes}. "
                        "Export on a dataset with the training classes.")
    dev = resolve_device(device, workers)
    model.to(dev).eval()
    num_fg = dataset.num_classes - LABEL_OFFSET
    posterior = state["model_config"]["posterior"]
    record = {"stage": "cam export", "checkpoint": str(ckpt), "tags": str(tag_art.path), "scales": list(scales),
              "flip": flip, "export_map": "cam", "posterior": posterior}
    config = {**record, **dict(config)} if config is not None else record
    config["posterior"] = posterior
    config["export_map"] = "cam"

    def one(image_id: str):
        image = dataset.load_image(image_id)
        check_pass_memory("--scales", image.shape[:2], scales, dataset.num_classes,
                          dev if dev.type == "cuda" else None, image_id)
        values = read_tags(tag_art, image_id, dataset.num_classes)
        cams, classes = export_cams(model.cam, image, values, num_fg, scales=scales, flip=flip,
                                    label_offset=LABEL_OFFSET, device=dev)
        arrays = {"cams": cams.astype(np.float16), "classes": classes.astype(np.int16)}
        check_finite_arrays(out, image_id, arrays)
        return arrays, {}

    def finalize(writer) -> None:
        writer.set_attrs(cam={"posterior": posterior, "export_map": "cam", "scales": list(scales), "flip": flip})

    with torch.inference_mode():
        return run_per_image(one, tag_art.ids, {
            "path": Path(out), "kind": "cams", "classes": dataset.classes, "config": config,
            "inputs": [tag_art.provenance(), _checkpoint_provenance(ckpt, state)], "dataset": dataset.describe(),
            "sources": StageInputs(files=[ckpt, tag_art.path], folders=[run_directory(ckpt)], datasets=[dataset]),
        }, workers=workers, resume=resume, description="cam export", finalize=finalize)


def read_cams(art: Artifact, image_id: str, num_classes: int, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(cams T×H×W float32, classes T int64)`` of one image of a ``cams`` artifact, checked:
    classes are object classes 1..K−1, one map per class, finite values, ``shape`` when given."""
    cams = art.read(image_id, "cams").astype(np.float32)
    classes = np.asarray(art.read(image_id, "classes"), dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != classes.size:
        raise UserError(f"{art.path}: image '{image_id}' has cams of shape {cams.shape} for {classes.size} classes. "
                        "Recreate it with wsss cam export.")
    if classes.size and (classes.min() < LABEL_OFFSET or classes.max() >= num_classes):
        raise UserError(f"{art.path}: image '{image_id}' has CAMs for classes {classes.tolist()} outside 1..{num_classes - 1}. "
                        "Pass the dataset the CAMs were made from (--data), or recreate them.")
    if not np.isfinite(cams).all():
        raise UserError(f"{art.path}: image '{image_id}' has NaN or infinite CAM values. Recreate it with wsss cam export.")
    if shape is not None and cams.shape[1:] != tuple(shape):
        raise UserError(f"{art.path}: CAMs of image '{image_id}' are {cams.shape[2]}×{cams.shape[1]} but the image is "
                        f"{shape[1]}×{shape[0]} (W×H). Pass the dataset the CAMs were made from (--data).")
    return cams, classes


def open_cams(path: str | Path, data=None, layout=None, split=None):
    """The cams artifact and its dataset, checked against each other (classes, ids)."""
    art = Artifact(path, "cams")
    dataset = resolve_dataset(art, data, layout, split)
    if list(art.classes) != list(dataset.classes):
        raise UserError(f"{art.path}: its classes {art.classes[:4]}… ({len(art.classes)}) differ from those of the dataset "
                        f"{dataset.root} ({dataset.num_classes}: {dataset.classes[:4]}…): the CAMs come from another dataset. "
                        "Pass the dataset they were made from (--data).")
    check_ids(art, dataset, art.ids)
    return art, dataset


def _recorded_tags(art: Artifact) -> str | None:
    for record in art.inputs:
        if record.get("kind") == "tags" and Path(record.get("path", "")).exists():
            return record["path"]
    return None


def run_seeds(cams: str | Path, out: str | Path, *, rule: str = "affinity", tags: str | Path | None = None,
              alpha_low: float | None = None, alpha_high: float | None = None, crf: CRFParams | None = CRFParams(),
              alpha: float = SPML_ALPHA, min_score: float = SPML_MIN_SCORE, box_threshold: float = BOX_THRESHOLD,
              data=None, layout=None, split=None, workers: int = 1, resume: bool = False,
              config: Mapping[str, Any] | None = None) -> Path:
    """CAMs → a ``seeds`` artifact (see the module docstring).

    ``alpha_low``/``alpha_high`` default by the CAMs' posterior: 1/24 binomial (hfpl), 2/4
    multinomial (docs/methods.md §6). ``crf=None``: affinity rule without DenseCRF (plain arg-max). ``tags``:
    default the tags artifact recorded in the cams artifact; when available, every image's CAM
    classes must be among its tags; the ``boxes`` rule needs its boxes.
    """
    if rule not in SEED_RULES:
        raise UserError(f"--rule {rule}: unknown rule. Choose one of: {', '.join(SEED_RULES)}.")
    art, dataset = open_cams(cams, data, layout, split)
    out = Path(out)
    k = dataset.num_classes
    posterior = (art.json_attr("cam") or {}).get("posterior") or art.config.get("posterior", "binomial")
    lo_default, hi_default = AFFINITY_ALPHAS.get(posterior, AFFINITY_ALPHAS["binomial"])
    alpha_low = lo_default if alpha_low is None else float(alpha_low)
    alpha_high = hi_default if alpha_high is None else float(alpha_high)
    check_numbers([
        ("--alpha-low", alpha_low, 0, None, {"low_open": True, "reason": "a background power"}),
        ("--alpha-high", alpha_high, 0, None, {"low_open": True, "reason": "a background power"}),
        ("--alpha", alpha, 0, None, {"low_open": True, "reason": "a background power"}),
        ("--min-score", min_score, 0, 1, {"reason": "scores are in [0, 1]"}),
        ("--box-threshold", box_threshold, 0, 1, {"reason": "normalised CAMs are in [0, 1]"}),
    ])
    tags_path = str(tags) if tags is not None else _recorded_tags(art)
    tag_art = None
    if tags_path is not None:
        tag_art = Artifact(tags_path, "tags")
        if list(tag_art.classes) != list(art.classes):
            raise UserError(f"{tag_art.path}: its classes differ from those of {art.path}. Pass the tags of the same dataset.")
        missing = [i for i in art.ids if i not in set(tag_art.ids)]
        if missing:
            raise UserError(f"{tag_art.path}: has no tags for image '{missing[0]}' ({len(missing)} missing). "
                            "Pass the tags the CAMs were exported with.")
    if rule == "boxes" and tag_art is None:
        raise UserError(f"{art.path}: --rule boxes needs the boxes of a tags artifact. Pass --tags TAGS.h5.")
    resolved = {"rule": rule, "posterior": posterior, "tags": tags_path}
    if rule == "affinity":
        resolved.update(alpha_low=alpha_low, alpha_high=alpha_high, crf=crf.to_dict() if crf is not None else None)
    elif rule == "threshold":
        resolved.update(alpha=alpha, min_score=min_score)
    else:
        resolved.update(box_threshold=box_threshold)
    config = {"stage": "cam seeds", "cams": str(art.path), **resolved, **dict(config or {}), **resolved}
    refine = (lambda probs, image: densecrf_refine(probs, image, crf)) if crf is not None else None

    def one(image_id: str):
        need_image = rule == "affinity" and crf is not None
        image = dataset.load_image(image_id) if need_image else None
        shape = image.shape[:2] if image is not None else None
        maps, classes = read_cams(art, image_id, k, shape)
        if tag_art is not None:
            have = set(read_tags(tag_art, image_id, k).tolist())
            extra = [c for c in classes.tolist() if c not in have]
            if extra:
                raise UserError(f"{art.path}: image '{image_id}' has CAMs for classes {extra} it has no tag for "
                                f"(tags {sorted(have)} in {tag_art.path}). Pass the tags the CAMs were exported with.")
        if rule == "affinity":
            label = affinity_seeds(maps, classes, image, alpha_low, alpha_high, refine=refine)
        elif rule == "threshold":
            label = threshold_seeds(maps, classes, alpha, min_score)
        else:
            label = boxes_to_seeds(maps, classes, tag_art.read(image_id, "boxes"), threshold=box_threshold)
        return {"label": label}, {"labelled": float(np.mean(label != IGNORE_INDEX))}

    def finalize(writer) -> None:
        if not any(np.any(writer.read(i, "label") != IGNORE_INDEX) for i in writer.ids):
            raise UserError(f"{out}: rule {rule} gave no seed pixel in any of the {len(writer.ids)} images, so the seeds "
                            "would solve and train as nothing at all; nothing written. Lower --min-score or "
                            "--box-threshold, or check the CAMs.")

    return run_per_image(one, art.ids, {
        "path": out, "kind": "seeds", "classes": dataset.classes, "config": config,
        "inputs": [art.provenance()] + ([tag_art.provenance()] if tag_art is not None else []),
        "dataset": dataset.describe(),
        "sources": StageInputs(files=[art.path, tag_art.path if tag_art is not None else None], datasets=[dataset]),
    }, workers=crf_workers(crf, workers), resume=resume, description=f"cam seeds ({rule})", finalize=finalize)
