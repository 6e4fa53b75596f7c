"""Reading a stage's input artifacts: the helpers every stage that reads an artifact shares
(``crf``, ``solve``, ``eval``, ``cam export`` / ``cam seeds``).

- :func:`resolve_dataset`: the dataset an artifact refers to (recorded, or overridden by
  ``--data`` / ``--layout`` / ``--split``);
- :func:`check_ids`: the artifact's images must be images of that dataset;
- :data:`SOFT_SCORES`, :func:`read_soft_scores`: the per-image class probabilities of a
  ``predictions`` or ``pseudolabels`` artifact, checked (shape, finite values);
- :func:`read_seed_map`: the seed map of one image of a ``seeds`` artifact, checked (size, labels).

Every failure is a :class:`~wsss.errors.UserError` naming the artifact and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.artifacts import Artifact
from wsss.constants import IGNORE_INDEX
from wsss.data import Dataset, open_dataset, open_recorded_dataset
from wsss.errors import UserError

#: artifact kind -> name of its per-image soft class scores (K×H×W probabilities)
SOFT_SCORES = {"predictions": "scores", "pseudolabels": "probs"}


def resolve_dataset(
    art: Artifact,
    data: str | Path | None = None,
    layout: str | None = None,
    split: str | None = None,
) -> Dataset:
    """The dataset an artifact refers to: the one it recorded, or ``data`` / ``layout`` /
    ``split`` where given (each overrides the recorded value).

    Raises:
        UserError: the artifact records no dataset and ``data`` is not given.
    """
    record = art.dataset
    if record is None:
        if data is None:
            raise UserError(f"{art.path}: records no dataset. Pass the dataset folder with --data.")
        return open_dataset(data, layout=layout or "auto", split=split or "train")
    record = dict(record)
    if layout is not None:
        record["layout"] = layout
    if split is not None:
        record["split"] = split
    if data is not None and layout is None and Path(data).resolve() != Path(record.get("root", "")).resolve():
        record["layout"] = "auto"
    return open_recorded_dataset(record, override_root=data)


def check_ids(art: Artifact, dataset: Dataset, ids: list[str]) -> None:
    """Every id must be an image of ``dataset``; raises a UserError naming the artifact."""
    known = set(dataset.ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UserError(
            f"{art.path}: {len(unknown)} images are not in the dataset {dataset.root} "
            f"[{dataset.split}] (e.g. '{unknown[0]}'). Pass the matching --data/--layout/--split."
        )


def read_soft_scores(art: Artifact, image_id: str, num_classes: int) -> np.ndarray:
    """The soft class scores of one image, checked.

    Returns:
        K×H×W array as stored (float16 usually).

    Raises:
        UserError: the kind has no soft scores, K differs from the class list, or NaN/inf values.
    """
    name = SOFT_SCORES.get(art.kind)
    if name is None:
        raise UserError(
            f"{art.path}: a '{art.kind}' artifact has no class probabilities to refine. "
            f"Pass a {' or '.join(SOFT_SCORES)} artifact."
        )
    scores = art.read(image_id, name)
    if scores.ndim != 3 or scores.shape[0] != num_classes:
        raise UserError(
            f"{art.path}: {name} of image '{image_id}' have shape {scores.shape}, expected "
            f"{num_classes}×H×W for its {num_classes} classes. Recreate the artifact."
        )
    if not np.isfinite(scores).all():
        raise UserError(
            f"{art.path}: {name} of image '{image_id}' contain NaN or infinite values. "
            "Recreate the artifact (check the model or solver that wrote it)."
        )
    return scores


def read_seed_map(art: Artifact, dataset: Dataset, image_id: str, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """The seed map of one image, checked against the image.

    Args:
        art: the ``seeds`` artifact.
        dataset: the images (named in the messages).
        image_id: the image.
        shape: ``(H, W)`` of the image.
        num_classes: K.

    Returns:
        ``H×W`` uint8 labels, each a class ``0..K-1`` or 255 (unlabelled).

    Raises:
        UserError: the map's size differs from the image's, or it holds a label that is neither a class nor 255.
    """
    label = art.read(image_id, "label")
    if label.shape != tuple(shape):
        raise UserError(f"{art.path}: seeds of image '{image_id}' are {label.shape[1]}×{label.shape[0]} but "
                        f"the image {dataset.image_path(image_id)} is {shape[1]}×{shape[0]} (W×H). "
                        "Use the dataset the seeds were made for (--data).")
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        raise UserError(f"{art.path}: seeds of image '{image_id}' contain label {int(label[bad][0])}, "
                        f"not a class 0..{num_classes - 1} nor 255. Recreate the seeds for these {num_classes} classes.")
    return label


__all__ = ["SOFT_SCORES", "check_ids", "read_seed_map", "read_soft_scores", "resolve_dataset"]
