"""Training samples with a ``superpixels`` artifact (``wsss superpixels``), shared by the tasks that use
low-level regions: URSS (pseudo-boundaries, :mod:`wsss.training.urss`) and SPML (region ids,
:mod:`wsss.training.spml`).

- :func:`open_superpixels`: the artifact, checked to hold every training image (and, given the seeds, to
  match their sizes).
- :class:`SuperpixelTrainSet`: :class:`~wsss.training.data.TrainSet` samples plus the image's segment map,
  checked against the image size and scaled / flipped / cropped with it by nearest neighbour:
  ``boundary`` (c×c bool, True on the map's boundaries of width ``boundary_width`` and on padding) and / or
  ``regions`` (c×c int64 segment ids, -1 on padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from wsss.artifacts import Artifact
from wsss.errors import UserError
from wsss.training.data import AugmentConfig, TrainSet, augment


def open_superpixels(path: str | None, image_ids: Sequence[str], loss: str, purpose: str,
                     seeds: Artifact | None = None) -> Artifact:
    """The ``superpixels`` artifact at ``path`` holding every id of ``image_ids`` (:class:`UserError`
    otherwise, or when ``path`` is None; ``loss`` and ``purpose`` word the message). With ``seeds`` (an
    artifact with a ``label`` map per image) every segment map must also have its image's seed map size,
    checked from the files' metadata (no map is read), so a mismatch is refused before training starts."""
    if path is None:
        raise UserError(f"--loss {loss}: needs {purpose}. Pass --superpixels SUPERPIXELS.h5 (from wsss superpixels).")
    artifact = Artifact(path, "superpixels")
    have = set(artifact.ids)
    missing = [i for i in image_ids if i not in have]
    if missing:
        raise UserError(f"{path}: has no segments for {len(missing)} training images (e.g. {missing[0]}). "
                        "Run wsss superpixels on the dataset of the seeds.")
    for image_id in image_ids if seeds is not None else ():
        shape, want = artifact.shape(image_id, "segments"), seeds.shape(image_id, "label")
        if shape != want:
            raise UserError(f"{path}: image '{image_id}' has a {shape[1]}×{shape[0]} segment map but its seeds are "
                            f"{want[1]}×{want[0]}. Recompute it with wsss superpixels on the dataset of the seeds.")
    return artifact


class SuperpixelTrainSet(TrainSet):
    """:class:`TrainSet` whose samples also carry the superpixel map (module docstring): ``boundary`` when
    ``boundary_width`` is given, ``regions`` when ``regions`` is True."""

    def __init__(self, dataset, targets, augment_config: AugmentConfig, seed: int, superpixels: Artifact,
                 boundary_width: int | None = None, regions: bool = False):
        super().__init__(dataset, targets, augment_config, seed)
        self.superpixels = superpixels
        self.boundary_width = None if boundary_width is None else int(boundary_width)
        self.regions = bool(regions)

    def segments(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """The ``H×W`` integer segment map of an image, checked against the image ``shape``."""
        segments = self.superpixels.read(image_id, "segments")
        if segments.shape != tuple(shape):
            raise UserError(f"{self.superpixels.path}: image '{image_id}' has a {segments.shape} segment map but the "
                            f"image is {tuple(shape)}. Recompute it with wsss superpixels on this dataset.")
        return segments

    def __getitem__(self, key):
        from wsss.stages.superpixels import superpixel_boundaries

        epoch, index = key if isinstance(key, tuple) else (0, key)
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        labels, probs = self.targets.load(image_id, image.shape[:2])
        segments = self.segments(image_id, image.shape[:2])
        boundary = None if self.boundary_width is None else superpixel_boundaries(segments, self.boundary_width)
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        sample = augment(image, labels, probs, self.config, rng, boundary=boundary,
                         regions=segments if self.regions else None)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample


__all__ = ["SuperpixelTrainSet", "open_superpixels"]
