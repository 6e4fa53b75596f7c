"""Class weights of the cross-entropy from the training masks: median frequency balancing.

``full`` (dense supervision) on a dataset with rare classes (CamVid: pole, sign, fence, pedestrian and
bicyclist are each ≤ 1.2 % of the pixels) learns to ignore them within a short schedule, and is then no
upper bound for the mIoU of methods whose seeds label every object (one scribble per object over-samples
small objects). Median frequency balancing (Eigen & Fergus, ICCV 2015; SegNet's CamVid setting,
Badrinarayanan et al., TPAMI 2017) weighs class ``c`` by

    f_c = (pixels of class c) / (pixels of the images in which c appears)
    w_c = median_{c': f_c' > 0} f_c' / f_c          (0 for a class absent from the training set)

so that a median-frequency class weighs 1 and rarer classes more (docs/methods.md §3.1).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from wsss.constants import IGNORE_INDEX

#: The ``--class-weights`` choices of ``full``.
CLASS_WEIGHTINGS = ("none", "median-frequency")


def class_pixel_counts(masks: Iterable[np.ndarray], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, image_pixels)``: per class (``K`` int64 each), its labelled pixels over all ``masks``, and the
    labelled pixels of the masks in which it appears. masks: ``H×W`` integer label maps, 255 = void (ignored;
    other values ≥ ``num_classes`` are an error)."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[labels != IGNORE_INDEX].astype(np.int64)
        if labels.size and int(labels.max()) >= num_classes:
            raise ValueError(f"mask label {int(labels.max())} is not a class (K = {num_classes})")
        counts = np.bincount(labels, minlength=num_classes)
        pixels += counts
        image_pixels[counts > 0] += labels.size
    return pixels, image_pixels


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """``w_c = median f / f_c`` (module docstring) from :func:`class_pixel_counts`' outputs; ``K`` float64,
    0 for classes with no pixel."""
    pixels = np.asarray(pixels, dtype=np.float64)
    image_pixels = np.asarray(image_pixels, dtype=np.float64)
    present = pixels > 0
    if not present.any():
        raise ValueError("no labelled pixel in the masks")
    freq = np.zeros_like(pixels)
    freq[present] = pixels[present] / image_pixels[present]
    weights = np.zeros_like(pixels)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


__all__ = ["CLASS_WEIGHTINGS", "class_pixel_counts", "median_frequency_weights"]
