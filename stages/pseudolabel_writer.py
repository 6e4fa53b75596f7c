"""The per-image loop the stages that turn seeds into a ``pseudolabels`` artifact share (``solve``,
``spml-labels``, ``spml-relabel``): each image and its seed map read and checked
(:func:`wsss.stages.artifact_inputs.read_seed_map`), the stage's per-image function called, the artifact
written by :func:`wsss.parallel.run_per_image` (``--workers`` processes, ``torchrun`` ranks, ``--resume``) with
the seeds' class list, the stage's configuration, its inputs' provenance and the dataset."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.artifacts import Artifact
from wsss.data import Dataset
from wsss.parallel import run_per_image
from wsss.paths import StageInputs
from wsss.stages.artifact_inputs import read_seed_map

#: ``(image_id, image H×W×3 uint8, seed map H×W uint8) -> (arrays, attrs)`` of one image
SeededImageFn = Callable[[str, np.ndarray, np.ndarray], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]


def write_pseudolabels(
    fn: SeededImageFn,
    seeds: Artifact,
    dataset: Dataset,
    out: str | Path,
    *,
    config: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    sources: StageInputs,
    workers: int = 1,
    resume: bool = False,
    description: str = "pseudolabels",
) -> Path:
    """Write the ``pseudolabels`` artifact ``out`` of every image of ``seeds``.

    Args:
        fn: the stage's work on one image, given the image and its checked seed map.
        seeds: the ``seeds`` artifact (image ids, seed maps, class list of the output).
        dataset: the images.
        out: the output path.
        config: the configuration recorded in the output.
        inputs: provenance of every input (the seeds first).
        sources: the stage's inputs, for the output-path check and ``--resume`` fingerprints.
        workers, resume, description: as :func:`wsss.parallel.run_per_image`.

    Returns:
        the output path.
    """
    k = len(seeds.classes)

    def one(image_id: str):
        image = dataset.load_image(image_id)
        return fn(image_id, image, read_seed_map(seeds, dataset, image_id, image.shape[:2], k))

    return run_per_image(
        one,
        seeds.ids,
        {
            "path": Path(out),
            "kind": "pseudolabels",
            "classes": seeds.classes,
            "config": dict(config),
            "inputs": list(inputs),
            "dataset": dataset.describe(),
            "sources": sources,
        },
        workers=workers,
        resume=resume,
        description=description,
    )


__all__ = ["SeededImageFn", "write_pseudolabels"]
