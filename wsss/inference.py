"""Multi-scale + flip inference: the one pass loop behind ``wsss predict`` and ``wsss cam export``.

For each scale ``s`` of ``scales`` the caller provides the image at size
:func:`scaled_size` ``= (max(1, round(s·H)), max(1, round(s·W)))``; the network sees it, and with
``flip`` its horizontal mirror too. Each output is mirrored back (for the mirrored pass) and resized
to ``H×W``, and the passes are summed (:func:`multiscale_flip_sum`; the caller divides by the pass
count to average).

Resize convention, stated once: outputs are resized back **bilinearly with** ``align_corners=True``,
as the segmentation network upsamples its own logits (docs/methods.md §1.1, "Logits at image size";
the DeepLabV3+ of the rloss code). A method that says otherwise passes ``align_corners=False``:
the CAM export does, as the hfpl / SEAM export code (docs/methods.md §6.5). How the *input* is
resized is the caller's part (``wsss predict``: bilinear on the float image, ``align_corners=False``;
CAM export: PIL bicubic on the uint8 image).

Two options of ``wsss predict`` give the inference of the URSS code (Pan et al. 2021; docs/methods.md §9):

- :func:`long_side_size`: scales relative to a fixed long side (512 in the URSS code) instead of the
  image's own size;
- :func:`sliding_window_mean`: at each scale the network sees ``window×window`` crops (465) placed every
  ``stride`` pixels (⌈2·465/3⌉ = 310), the last one flush with the far edge (:func:`window_starts`); an
  image smaller than a window is padded at the bottom / right with 0 (as the training crop padding) and
  the padding cut off again; each pixel's output is the mean over the windows that contain it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` → ``(max(1, round(scale·H)), max(1, round(scale·W)))``."""
    h, w = size
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def long_side_size(size: tuple[int, int], long_side: int, scale: float) -> tuple[int, int]:
    """``(H, W)`` resized so that its long side is ``scale · long_side`` (aspect kept, rounded, at least 1)."""
    h, w = size
    return scaled_size((h, w), scale * long_side / max(h, w))


def default_window_stride(window: int) -> int:
    """The URSS code's window stride: ⌈2·window/3⌉ (310 for a 465 window)."""
    return int(math.ceil(2 * window / 3))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels with step ``stride`` along a side of ``length`` pixels
    (``length ≥ window``): ``0, stride, 2·stride, …``, the last one moved to ``length − window``; ``[0]`` when
    ``length ≤ window``."""
    if length <= window:
        return [0]
    count = int(math.ceil((length - window) / stride)) + 1
    return [min(i * stride, length - window) for i in range(count)]


def sliding_window_mean(forward: Callable[[Tensor], Tensor], image: Tensor, window: int, stride: int) -> Tensor:
    """Mean of ``forward`` over sliding windows (module docstring).

    Args:
        forward: ``B×3×window×window`` → ``B×C×window×window`` (an output at input size, e.g. probabilities).
        image: ``B×3×h×w`` float input.
        window: window side in pixels.
        stride: step between window starts.

    Returns:
        ``B×C×h×w``: each pixel's mean over the windows that contain it, in the output's dtype.
    """
    b, _, h, w = image.shape
    ph, pw = max(h, window), max(w, window)
    x = F.pad(image, (0, pw - w, 0, ph - h)) if (ph, pw) != (h, w) else image
    total = None
    count = torch.zeros(ph, pw, dtype=torch.int32, device=image.device)
    for y0 in window_starts(ph, window, stride):
        for x0 in window_starts(pw, window, stride):
            out = forward(x[:, :, y0:y0 + window, x0:x0 + window])
            if total is None:
                total = torch.zeros(b, out.shape[1], ph, pw, dtype=out.dtype, device=out.device)
            total[:, :, y0:y0 + window, x0:x0 + window] += out
            count[y0:y0 + window, x0:x0 + window] += 1
    return (total / count.to(total.dtype))[:, :, :h, :w]


def multiscale_flip_sum(forward: Callable[[Tensor], Tensor], image_at: Callable[[float], Tensor],
                        size: tuple[int, int], scales: Sequence[float] = (1.0,), flip: bool = False,
                        align_corners: bool = True) -> tuple[Tensor, int]:
    """Sum of the network's outputs over scales and flips, at size ``H×W``.

    Args:
        forward: ``B×3×h×w`` input → ``B×C×h'×w'`` output (logits, probabilities or CAM scores; any
            float dtype; ``h'×w'`` may differ from ``h×w``, e.g. a feature grid).
        image_at: scale ``s`` → the ``B×3×h×w`` input at :func:`scaled_size` ``((H, W), s)``.
        size: ``(H, W)``, the size every output is resized to.
        scales: resize factors, one pass (two with ``flip``) each.
        flip: also run the horizontally mirrored input and mirror its output back.
        align_corners: of the bilinear resize back to ``H×W`` (see the module docstring); an output
            already ``H×W`` is not resized.

    Returns:
        ``(total, passes)``: ``B×C×H×W`` sum over the ``passes = len(scales)·(2 if flip else 1)``
        outputs, in their dtype.
    """
    size = (int(size[0]), int(size[1]))
    total = None
    passes = 0
    for scale in scales:
        x = image_at(scale)
        for mirrored in ((False, True) if flip else (False,)):
            out = forward(x.flip(-1) if mirrored else x)
            if mirrored:
                out = out.flip(-1)
            if tuple(out.shape[-2:]) != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=align_corners)
            total = out if total is None else total + out
            passes += 1
    if total is None:
        raise ValueError("multiscale_flip_sum: no scale given")
    return total, passes


__all__ = ["default_window_stride", "long_side_size", "multiscale_flip_sum", "scaled_size", "sliding_window_mean",
           "window_starts"]
