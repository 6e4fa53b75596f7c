"""Objects of a dense mask (connected components per class) and the background class."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError

#: 8-connectivity (the toolkit's choice for "connected component"; skeletons are 8-connected too)
STRUCTURE_8 = np.ones((3, 3), dtype=bool)
BACKGROUND_NAMES = ("background", "bg", "_background_", "backgroundclass")


@dataclass
class Objects:
    """Connected objects of a dense mask.

    Attributes:
        labels: H×W int32, 0 = no object (ignored pixels or excluded classes), ``i`` (1-based) =
            pixel of object ``i``.
        classes: (N,) int64, class of object ``i + 1`` at index ``i``.
        slices: N bounding-box slice pairs (rows, cols) as from ``scipy.ndimage.find_objects``.
    """

    labels: np.ndarray
    classes: np.ndarray
    slices: list[tuple[slice, slice]]

    def __len__(self) -> int:
        return len(self.classes)

    def region(self, index: int) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Boolean crop of object ``index`` (0-based) and the crop's slices."""
        sl = self.slices[index]
        return self.labels[sl] == index + 1, sl

    def areas(self) -> np.ndarray:
        """(N,) int64 pixel count of every object."""
        return np.bincount(self.labels.ravel(), minlength=len(self) + 1)[1:].astype(np.int64)


def find_objects(mask: np.ndarray, num_classes: int, *, exclude: tuple[int, ...] = ()) -> Objects:
    """Split a dense mask into objects: the 8-connected components of each class.

    Args:
        mask: H×W uint8 dense labels, 0..K-1 or 255 (never part of an object).
        num_classes: K.
        exclude: classes left out (e.g. the background class).

    Returns:
        :class:`Objects`, numbered class by class (ascending), components in raster order of
        their first pixel within a class, so the numbering is deterministic.
    """
    labels = np.zeros(mask.shape, dtype=np.int32)
    classes: list[np.ndarray] = []
    count = 0
    present = np.unique(mask)
    for c in present.tolist():
        if c == IGNORE_INDEX or c >= num_classes or c in exclude:
            continue
        comp, n = ndimage.label(mask == c, structure=STRUCTURE_8)
        inside = comp > 0
        labels[inside] = comp[inside] + count
        classes.append(np.full(n, c, dtype=np.int64))
        count += n
    slices = ndimage.find_objects(labels, max_label=count) if count else []
    return Objects(labels=labels, classes=np.concatenate(classes) if classes else np.zeros(0, np.int64), slices=list(slices))


def interior_peak(region: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from a region's boundary (distance-transform maximum).

    Pixels outside the crop count as outside the region (so the image border is a boundary).
    Ties (a plateau, e.g. the ridge of a rectangle) go to the tied pixel nearest to the tied
    pixels' mean position, then to the first in raster order.

    Args:
        region: h×w bool, not empty.

    Returns:
        (row, col) in the crop.
    """
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    tied = np.argwhere(dist >= dist.max() - 1e-9)
    centre = tied.mean(axis=0)
    best = tied[int(np.argmin(((tied - centre) ** 2).sum(axis=1)))]
    return int(best[0]), int(best[1])


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def class_index(name: str, classes: list[str], where: str) -> int:
    """Index of a class given by name or number.

    Names match ignoring case, spaces and punctuation (``"tv/monitor"`` = ``"tvmonitor"``,
    ``"potted plant"`` = ``"pottedplant"``); a plain integer is taken as the index.

    Raises:
        UserError: unknown class (``where`` names the file, and line if any).
    """
    text = str(name).strip()
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value < len(classes):
            return value
        raise UserError(f"{where}: class index {value} is not in 0..{len(classes) - 1}. Use a class of the dataset.")
    wanted = _norm(text)
    for i, c in enumerate(classes):
        if _norm(c) == wanted:
            return i
    shown = ", ".join(classes[:25]) + (", ..." if len(classes) > 25 else "")
    raise UserError(f"{where}: unknown class name '{text}'. Use one of: {shown}.")


def find_background(classes: list[str], choice: str = "auto") -> int | None:
    """The background class index.

    Args:
        classes: class names of the dataset.
        choice: ``auto`` (a class named background / bg / _background_, else none), ``none``, or a
            class name or index.
    """
    if choice == "none":
        return None
    if choice == "auto":
        for i, c in enumerate(classes):
            if _norm(c) in BACKGROUND_NAMES:
                return i
        return None
    return class_index(choice, classes, "--background-class")
