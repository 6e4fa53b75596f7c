"""The SPML final classifier's extra augmentations (Ke et al. 2021, "Inference and testing"; the SPML code's
classifier dataset; docs/methods.md §10.5), options of every ``wsss train`` loss, off by default, applied by
:func:`wsss.training.data.augment` to the image only (labels, targets and the validity mask are unchanged):

- :func:`grayscale`: with probability ``--grayscale P`` (SPML code: 0.3) every pixel's three channels are
  replaced by ``0.3 R + 0.59 G + 0.11 B`` (the code's weights, not ITU-R 601's 0.299 / 0.587 / 0.114);
- the SPML blur (``--blur --blur-kernel spml``): with probability 0.5 a 5×5 kernel
  ``exp(−(x² + y²) / s²)`` at offsets ``x, y ∈ {−2, …, 2}``, normalised, with ``s ~ U[0.1, 5]`` drawn per
  sample. That is a Gaussian of standard deviation ``s / √2`` (:func:`spml_blur_sigma`), applied by the
  separable :func:`wsss.training.rotation_blur.gaussian_blur` (borders mirrored without repeating the edge
  pixel, as OpenCV's ``filter2D`` default). ``--blur-kernel urss`` (default) is the URSS code's fixed σ 1.1.

Grayscale and blur are linear, so their order does not matter; the code applies both after the crop, the
toolkit before it (with the URSS blur, on the scaled image), so crop padding is never blurred into the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from wsss.errors import UserError

#: the SPML code's grayscale weights of R, G, B
GRAYSCALE_WEIGHTS = (0.3, 0.59, 0.11)
#: the SPML code's grayscale probability (final classifier; ``--grayscale`` default 0 = off)
SPML_GRAYSCALE_P = 0.3
#: range of the SPML code's blur parameter ``s`` of ``exp(−r²/s²)`` (uniform per sample)
SPML_BLUR_RANGE = (0.1, 5.0)
#: the blurs of ``--blur-kernel``: ``urss`` (5×5, σ 1.1; Pan et al. 2021) and ``spml`` (5×5, s ~ U[0.1, 5])
BLUR_KERNELS = ("urss", "spml")


def check_blur_kernel(name: str) -> str:
    """``name`` if it is one of :data:`BLUR_KERNELS`, else a :class:`~wsss.errors.UserError` naming ``--blur-kernel``."""
    if name not in BLUR_KERNELS:
        raise UserError(f"--blur-kernel {name}: choose one of {', '.join(BLUR_KERNELS)}.")
    return name


def grayscale(image: Tensor) -> Tensor:
    """Gray version of an image with the SPML code's weights.

    Args:
        image: ``1×3×H×W`` float RGB.

    Returns:
        ``1×3×H×W``, the three channels equal to ``0.3 R + 0.59 G + 0.11 B``, same dtype.
    """
    w = torch.tensor(GRAYSCALE_WEIGHTS, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def spml_blur_sigma(s: float) -> float:
    """The standard deviation ``s / √2`` of the Gaussian ``exp(−d² / s²)`` (the SPML code's kernel)."""
    return s / math.sqrt(2.0)


def draw_spml_blur(rng: np.random.Generator) -> float:
    """One sample's blur standard deviation: ``s ~ U[0.1, 5]`` of the SPML code, as ``s / √2``."""
    return spml_blur_sigma(float(rng.uniform(*SPML_BLUR_RANGE)))


__all__ = ["BLUR_KERNELS", "GRAYSCALE_WEIGHTS", "check_blur_kernel", "SPML_BLUR_RANGE", "SPML_GRAYSCALE_P", "draw_spml_blur", "grayscale",
           "spml_blur_sigma"]
