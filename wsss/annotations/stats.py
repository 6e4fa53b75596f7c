"""Statistics every prepare command prints and stores (docs/methods.md §7.2).

Seeds: images, labelled-pixel fraction per image (mean, min, max; labelled pixels over all
pixels), seeds per image (scribbles, clicks or labelled blocks drawn; mean, min, max), labelled pixels per
class (a list, index = class), objects of the dense masks, objects left without any seed pixel and, for
generated seeds, objects below the object rule's minimum size (None when unknown), skipped files. Tags: images, tags per image,
images per class, boxes per class, skipped files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.constants import IGNORE_INDEX


class SeedStatistics:
    """Accumulates statistics of seed label maps.

    Args:
        classes: class names (index = label value).
    """

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.fractions: list[float] = []
        self.per_class = np.zeros(len(self.classes), dtype=np.int64)
        self.pixels = 0
        self.objects: int | None = None
        self.objects_without_seed: int | None = None
        self.objects_below_minimum: int | None = None
        self.seeds: list[int] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, label: np.ndarray, objects: int | None = None, objects_without_seed: int | None = None, *,
            seeds: int | None = None, objects_below_minimum: int | None = None) -> None:
        """Count one image's H×W uint8 label map (255 = unlabelled), its object counts and its number of
        seeds (strokes, clicks or blocks; None when not known, e.g. seed PNGs)."""
        counts = np.bincount(label.ravel(), minlength=256)
        k = len(self.classes)
        self.per_class += counts[:k]
        labelled = int(counts[:k].sum())
        self.fractions.append(labelled / max(label.size, 1))
        self.pixels += int(label.size)
        if objects is not None:
            self.objects = (self.objects or 0) + int(objects)
            self.objects_without_seed = (self.objects_without_seed or 0) + int(objects_without_seed or 0)
        if objects_below_minimum is not None:
            self.objects_below_minimum = (self.objects_below_minimum or 0) + int(objects_below_minimum)
        if seeds is not None:
            self.seeds.append(int(seeds))

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append({"image": image_id, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        f = np.array(self.fractions) if self.fractions else np.zeros(1)
        n = np.array(self.seeds) if self.seeds else None
        return {
            "images": len(self.fractions),
            "pixels": self.pixels,
            "labelled_pixels": int(self.per_class.sum()),
            "labelled_fraction": {"mean": float(f.mean()), "min": float(f.min()), "max": float(f.max())},
            "per_class_pixels": [int(n) for n in self.per_class],
            "objects": self.objects,
            "objects_without_seed": self.objects_without_seed,
            "objects_below_minimum": self.objects_below_minimum,
            "seeds_per_image": None if n is None else {"mean": float(n.mean()), "min": int(n.min()), "max": int(n.max())},
            "skipped": list(self.skipped),
        }


class TagStatistics:
    """Accumulates statistics of tags and boxes."""

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.counts: list[int] = []
        self.images_per_class = np.zeros(len(self.classes), dtype=np.int64)
        self.boxes_per_class = np.zeros(len(self.classes), dtype=np.int64)
        self.skipped: list[dict[str, str]] = []

    def add(self, tags: np.ndarray, boxes: np.ndarray) -> None:
        """Count one image's (T,) tags and N×5 boxes."""
        self.counts.append(int(len(tags)))
        k = len(self.classes)
        self.images_per_class += np.bincount(np.asarray(tags, dtype=np.int64), minlength=k)[:k]
        if len(boxes):
            self.boxes_per_class += np.bincount(np.asarray(boxes[:, 0], dtype=np.int64), minlength=k)[:k]

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append({"image": image_id, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        c = np.array(self.counts) if self.counts else np.zeros(1)
        return {
            "images": len(self.counts),
            "tags_per_image": {"mean": float(c.mean()), "min": int(c.min()), "max": int(c.max())},
            "boxes": int(self.boxes_per_class.sum()),
            "per_class_images": [int(n) for n in self.images_per_class],
            "per_class_boxes": [int(n) for n in self.boxes_per_class],
            "skipped": list(self.skipped),
        }
