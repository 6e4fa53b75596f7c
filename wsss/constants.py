"""Constants shared by the whole toolkit: the label value of unlabelled pixels and the ImageNet
colour statistics. Every module imports them from here; none defines its own copy.

- :data:`IGNORE_INDEX` (255): in every label map (seeds, pseudo-labels, ground truth; H×W uint8) the
  value of a pixel without a label. Ground-truth pixels with it are not evaluated (the PASCAL VOC
  void label, also Cityscapes' and ADE20k's "no class" after conversion); seed pixels with it are the
  unlabelled pixels the methods infer.
- :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`: per-channel RGB statistics of ImageNet (the values
  torchvision's pretrained weights expect) in **[0, 1] units**, i.e. as fractions of
  :data:`PIXEL_MAX`. Images in this toolkit are RGB 0–255 (uint8 on disk, float in the networks);
  :data:`IMAGENET_MEAN_255` / :data:`IMAGENET_STD_255` are the same statistics in 0–255 units
  (``value × PIXEL_MAX``, see :func:`to_pixel_units`), for models that take 0–255 input.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Label value of a pixel without a label (seeds) or not evaluated (ground truth).
IGNORE_INDEX = 255

#: Largest value of an 8-bit colour channel; images are RGB in 0..PIXEL_MAX.
PIXEL_MAX = 255

#: ImageNet RGB mean, [0, 1] units (torchvision's pretrained-weight statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet RGB standard deviation, [0, 1] units.
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_pixel_units(values: Sequence[float]) -> tuple[float, ...]:
    """Statistics in [0, 1] units → 0–255 units: each value × :data:`PIXEL_MAX`."""
    return tuple(v * PIXEL_MAX for v in values)


#: ImageNet RGB mean in 0–255 units.
IMAGENET_MEAN_255 = to_pixel_units(IMAGENET_MEAN)
#: ImageNet RGB standard deviation in 0–255 units.
IMAGENET_STD_255 = to_pixel_units(IMAGENET_STD)

__all__ = ["IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_MEAN_255", "IMAGENET_STD", "IMAGENET_STD_255", "PIXEL_MAX",
           "to_pixel_units"]
