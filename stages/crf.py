"""Stage ``crf``: DenseCRF post-processing of class probabilities.

Reads a ``predictions`` (``scores``) or ``pseudolabels`` (``probs``) artifact and the images of
its dataset, refines every image with :func:`wsss.crf.dense_crf` and writes a ``predictions``
artifact: ``scores`` (K×H×W float16 mean-field marginals) and ``label`` (H×W uint8, arg-max of
the float32 marginals), plus the per-image attribute ``changed`` (fraction of pixels whose
arg-max the CRF changed).

Images are processed independently (``--workers`` processes, ``torchrun`` ranks) and the output
does not depend on how they are split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsss.artifacts import Artifact
from wsss.crf import CRFParams, crf_workers, dense_crf
from wsss.data import Dataset
from wsss.errors import UserError
from wsss.parallel import run_per_image
from wsss.paths import StageInputs
from wsss.stages.artifact_inputs import SOFT_SCORES, check_ids, read_soft_scores, resolve_dataset
from wsss.validation import check_finite_arrays


def refine(
    art: Artifact,
    dataset: Dataset,
    image_id: str,
    params: CRFParams,
    num_classes: int,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """DenseCRF marginals of one image of an artifact (the per-image work of this stage and of
    ``wsss eval --crf``).

    Args:
        art: the input artifact (``predictions`` or ``pseudolabels``).
        dataset: where the image is read from.
        image_id: the image.
        params: CRF parameters.
        num_classes: K.
        scores: the image's soft scores when already read (K×H×W), else read from ``art``.

    Returns:
        K×H×W float32 marginals.
    """
    if scores is None:
        scores = read_soft_scores(art, image_id, num_classes)
    image = dataset.load_image(image_id)
    if scores.shape[1:] != image.shape[:2]:
        raise UserError(
            f"{art.path}: scores of image '{image_id}' are {scores.shape[2]}×{scores.shape[1]} but the image "
            f"{dataset.image_path(image_id)} is {image.shape[1]}×{image.shape[0]} (W×H). "
            "Use the dataset the artifact was made from (--data) or recreate the artifact at image size."
        )
    return dense_crf(image, scores, params)


def run(
    artifact: str | Path,
    out: str | Path,
    *,
    params: CRFParams = CRFParams(),
    data: str | Path | None = None,
    layout: str | None = None,
    split: str | None = None,
    workers: int = 1,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Refine every image of a predictions / pseudolabels artifact with DenseCRF.

    Args:
        artifact: input ``predictions`` or ``pseudolabels`` artifact.
        out: output ``predictions`` artifact (must differ from the input).
        params: CRF parameters (defaults: DeepLab's, :mod:`wsss.crf`).
        data, layout, split: override the dataset recorded in the artifact.
        workers: processes per rank (1 when the CRF runs on CUDA, :func:`wsss.crf.crf_workers`).
        resume: keep the images an interrupted run already finished (``out.parts/``).
        config: configuration recorded in the output (the CLI passes every option and the
            command line); default: the parameters and paths.

    Returns:
        the output path.
    """
    art = Artifact(artifact, kind=tuple(SOFT_SCORES))
    out = Path(out)
    dataset = resolve_dataset(art, data, layout, split)
    sources = StageInputs(files=[art.path], datasets=[dataset])
    classes = art.classes
    num_classes = len(classes)
    if num_classes != dataset.num_classes:
        raise UserError(
            f"{art.path}: has {num_classes} classes but the dataset {dataset.root} has {dataset.num_classes}. "
            "Pass the dataset the artifact was made from (--data)."
        )
    ids = art.ids
    check_ids(art, dataset, ids)
    if config is None:
        config = {"stage": "crf", "artifact": str(art.path), "out": str(out), **params.to_dict()}

    def one(image_id: str):
        scores = read_soft_scores(art, image_id, num_classes)
        q = refine(art, dataset, image_id, params, num_classes, scores=scores)
        label = q.argmax(axis=0).astype(np.uint8)
        changed = float(np.mean(label != scores.argmax(axis=0)))
        arrays = {"scores": q.astype(np.float16), "label": label}
        check_finite_arrays(out, image_id, arrays)
        return arrays, {"changed": changed}

    return run_per_image(
        one,
        ids,
        {
            "path": out,
            "kind": "predictions",
            "classes": classes,
            "config": dict(config),
            "inputs": [art.provenance()],
            "dataset": dataset.describe(),
            "sources": sources,
        },
        workers=crf_workers(params, workers),
        resume=resume,
        description="crf",
    )


__all__ = ["refine", "run"]
