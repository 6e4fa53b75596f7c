"""What a human annotator labels: the object rule and stroke width of generated annotations.

Generated scribbles, clicks and blocks (``prepare-scribbles --from-masks``, ``prepare-points``,
``prepare-blocks``) imitate a person annotating the image, not an exhaustive labelling of every
fragment of the dense mask:

- **One seed per object region above a minimum size.** An object is an 8-connected component of
  one class (:func:`~wsss.annotations.objects.find_objects`). A region whose area is at least
  ``min_fraction`` of the image area gets one scribble (or click); smaller fragments (a distant
  pole, a sliver of pavement between two cars, single void-split pixels) stay unlabelled, as a
  person would skip them. Default :data:`MIN_OBJECT_FRACTION` = 0.2 % of the image (≈ 86 px, a
  9×9 patch, on a 240×180 CamVid frame; ≈ 375 px on a 500×375 VOC image).
- **The scribble** is the longest path of the region's skeleton (its medial axis,
  :func:`~wsss.annotations.scribbles.skeleton_path`): a stroke through the middle of the object
  along its longest extent, as ScribbleSup annotators draw.
- **Stroke width relative to the image**: :data:`REFERENCE_WIDTH` = 3 px per
  :data:`REFERENCE_SIDE` = 500 px of the image's longer side (rloss's 3-px rasterisation of the
  ScribbleSup polylines on PASCAL VOC, whose images are 500 px on the longer side), rounded, at
  least 1 px: 3 px on VOC, 1 px on 240×180 CamVid frames and 96² demo images.

Why these numbers: ScribbleSup's human scribbles label about 3 % of the VOC pixels (Lin et al.,
CVPR 2016). With the rule above, full-length scribbles label 2.99 % of the CamVid train pixels
(16.3 scribbles per image; docs/results.md), against 11.7 % (81 per image) when every fragment was
scribbled 3 px wide (``objects="all"``, the earlier behaviour, kept as an option).
"""

from __future__ import annotations

import numpy as np

from wsss.annotations.objects import Objects

#: Default minimum object area of generated annotations, as a fraction of the image area (toolkit rule).
MIN_OBJECT_FRACTION = 0.002
#: Object rules: ``large`` (objects of at least the minimum area, the default) or ``all`` (every fragment).
OBJECT_RULES = ("large", "all")
#: Stroke width of ScribbleSup scribbles on VOC (rloss's conversion) and the VOC image side it refers to.
REFERENCE_WIDTH = 3
REFERENCE_SIDE = 500


def stroke_width(shape: tuple[int, int]) -> int:
    """Default stroke width in px for an (H, W) image: ``max(1, round(3 · max(H, W) / 500))``."""
    return max(1, int(round(REFERENCE_WIDTH * max(shape) / REFERENCE_SIDE)))


def annotated_objects(objects: Objects, shape: tuple[int, int], rule: str = "large",
                      min_fraction: float = MIN_OBJECT_FRACTION) -> np.ndarray:
    """Which objects a human annotator labels.

    Args:
        objects: the image's objects.
        shape: (H, W) of the image (the area the fraction refers to).
        rule: ``large``: objects with area ≥ ``min_fraction · H · W``; ``all``: every object.
        min_fraction: minimum area as a fraction of the image area, in [0, 1].

    Returns:
        (N,) bool, True for the objects that get a seed.
    """
    if rule not in OBJECT_RULES:
        raise ValueError(f"rule must be one of {OBJECT_RULES}, got {rule!r}")
    if rule == "all":
        return np.ones(len(objects), dtype=bool)
    return objects.areas() >= min_fraction * shape[0] * shape[1]


def unannotated_pixels(objects: Objects, selected: np.ndarray) -> np.ndarray:
    """H×W bool: pixels of the objects not ``selected`` ((N,) bool), which stay unlabelled."""
    lut = np.concatenate([[False], ~np.asarray(selected, dtype=bool)])
    return lut[objects.labels]


__all__ = ["MIN_OBJECT_FRACTION", "OBJECT_RULES", "REFERENCE_SIDE", "REFERENCE_WIDTH", "annotated_objects",
           "stroke_width", "unannotated_pixels"]
