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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` → ``(max(1, round(scale·H)), max(1, round(scale·W)))``."""
    h, w = size
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


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


__all__ = ["multiscale_flip_sum", "scaled_size"]
