"""Two optional training augmentations of the URSS code (Pan et al. 2021, §5: "rotated (−10 to 10),
blurred by a Gaussian kernel of size (5,5) with a standard deviation of 1.1"; docs/methods.md §9),
off by default in ``wsss train`` (``--rotate DEG``, ``--blur``), applied by
:func:`wsss.training.data.augment` after the random scale:

- :func:`rotate_maps`: rotation by ``angle`` degrees about the image centre, on the same ``H×W`` canvas
  (corners rotated out are lost). The image and soft targets are resampled bilinearly, label maps by
  nearest neighbour. Pixels whose nearest source pixel lies outside the image ("rotated in") are returned
  as ``inside = False``: :func:`~wsss.training.data.augment` makes them invalid, like crop padding
  (labels 255, image 0, excluded from every term, pseudo-boundary map True).
- :func:`gaussian_blur`: 5×5 Gaussian of σ 1.1 on the image only (separable; borders mirrored without
  repeating the edge pixel, OpenCV's default border). σ 1.1 is also what OpenCV derives from a 5-pixel
  kernel, ``0.3·((k − 1)/2 − 1) + 0.8``.

Coordinates: pixel ``(i, j)`` has its centre at ``(i + ½, j + ½)``; the centre of rotation is
``(H/2, W/2)``. A positive angle turns the content counter-clockwise as displayed (rows downwards), as
``numpy.rot90`` does for 90°.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: probability of a rotation, and of a blur, per sample (URSS code)
ROTATION_P = 0.5
BLUR_P = 0.5
#: the rotation range of the URSS code, degrees (``--rotate`` takes any; 0 = off, the toolkit default)
URSS_ROTATION = 10.0
#: the Gaussian blur of the URSS code: kernel side and σ in pixels
BLUR_KERNEL = 5
BLUR_SIGMA = 1.1


def rotation_sources(h: int, w: int, angle: float) -> tuple[Tensor, Tensor]:
    """Source coordinates of every output pixel of a rotation by ``angle`` degrees.

    Returns:
        ``(y, x)``: two ``h×w`` float64 tensors, the (row, column) pixel index (centres at integers) in the
        input whose value lands on each output pixel.
    """
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    yo = torch.arange(h, dtype=torch.float64)[:, None] + 0.5 - h / 2
    xo = torch.arange(w, dtype=torch.float64)[None, :] + 0.5 - w / 2
    # the content turns counter-clockwise on screen: an input offset (x, y) lands on
    # (x cos t + y sin t, −x sin t + y cos t); invert that for the source of each output offset
    xs = c * xo - s * yo
    ys = s * xo + c * yo
    return ys + h / 2 - 0.5, xs + w / 2 - 0.5


def rotate_maps(image: Tensor, labels: Tensor, probs: Tensor | None, angle: float) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Rotate an image, its label channels and soft targets together (module docstring).

    Args:
        image: ``1×3×H×W`` float.
        labels: ``1×C×H×W`` float label channels (label values, pseudo-boundary flags), resampled by nearest
            neighbour; values at rotated-in pixels are left as read from the clamped source (the caller
            overwrites them).
        probs: ``1×K×H×W`` float soft targets or None (bilinear).
        angle: degrees, counter-clockwise.

    Returns:
        ``(image 1×3×H×W, labels 1×C×H×W, probs 1×K×H×W or None, inside H×W bool)``.
    """
    h, w = image.shape[-2:]
    ys, xs = rotation_sources(h, w, angle)
    iy, ix = torch.round(ys).long(), torch.round(xs).long()
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).reshape(-1)
    out_labels = labels.reshape(labels.shape[0], labels.shape[1], -1)[:, :, flat].reshape(labels.shape)
    # grid_sample's normalised coordinates (align_corners=False): index −½ ↦ −1, index n − ½ ↦ +1
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1)[None].to(image.dtype)

    def bilinear(t: Tensor) -> Tensor:
        return F.grid_sample(t, grid.to(t.dtype), mode="bilinear", padding_mode="border", align_corners=False)

    return bilinear(image), out_labels, (bilinear(probs) if probs is not None else None), inside


def gaussian_kernel(size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """The normalised 1-D Gaussian ``exp(−d²/(2σ²))`` at offsets ``d = −(size−1)/2 … (size−1)/2``; ``size`` float64."""
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(d ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def gaussian_blur(image: Tensor, size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """Separable Gaussian blur with mirrored borders (edge pixel not repeated).

    Args:
        image: ``1×C×H×W`` float.
        size: odd kernel side.
        sigma: standard deviation in pixels.

    Returns:
        ``1×C×H×W`` blurred image, same dtype.
    """
    r = size // 2
    c = image.shape[1]
    g = gaussian_kernel(size, sigma).to(image.dtype)
    x = image
    for dim, kernel in ((-1, g.view(1, 1, 1, size)), (-2, g.view(1, 1, size, 1))):
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        mode = "reflect" if x.shape[dim] > r else "replicate"  # reflect needs more pixels than the radius
        x = F.conv2d(F.pad(x, pad, mode=mode), kernel.expand(c, 1, *kernel.shape[-2:]), groups=c)
    return x


__all__ = ["BLUR_KERNEL", "BLUR_P", "BLUR_SIGMA", "ROTATION_P", "URSS_ROTATION", "gaussian_blur", "gaussian_kernel",
           "rotate_maps", "rotation_sources"]
