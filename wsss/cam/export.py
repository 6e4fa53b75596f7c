"""CAMs at image resolution from a trained classifier: multi-scale + flip inference.

Method: docs/methods.md §6.5. For each scale (default {0.5, 1, 1.5, 2}, PIL bicubic resize of
the uint8 image) and each of {image, horizontal flip} (8 passes), the foreground scores are
flipped back, upsampled bilinearly (``align_corners=False``, as the hfpl / SEAM export code) to the
original size and summed over passes (the pass loop is :func:`wsss.inference.multiscale_flip_sum`);
only the classes present in the image are kept (= multiplying by the tag vector). The sum
is clipped at 0 and min–max normalized per class as ``r``:
``ReLU(ReLU(Σ) − m − ε) / (M − m + ε)``, ε = 1e-5.

This module is the per-image maths only; the stage that writes the ``cams`` artifact
(``cams`` C×H×W float16, ``classes`` C int16) and records ``--export-map cam|refined`` comes later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from wsss.cam.losses import CAM_EPS
from wsss.constants import IMAGENET_MEAN, IMAGENET_STD, PIXEL_MAX
from wsss.errors import UserError
from wsss.inference import multiscale_flip_sum, scaled_size

#: Export scales of the hfpl / SEAM inference code (docs/methods.md §6).
DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0)

#: ``model(x)``: ``1×3×h×w`` float normalised image → ``1×C×h'×w'`` foreground scores
#: (e.g. :meth:`wsss.cam.classifier.CamClassifier.cam`).
ScoreFn = Callable[[Tensor], Tensor]


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """PIL bicubic resize of an ``H×W×3`` uint8 image by ``scale`` (size rounded to nearest, ≥ 1)."""
    if scale == 1:
        return image
    h, w = scaled_size(image.shape[:2], scale)
    return np.asarray(Image.fromarray(image).resize((w, h), resample=Image.BICUBIC))


def normalize_image(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``H×W×3`` uint8 → ``1×3×H×W`` float tensor ``(I/255 − mean)/std`` (ImageNet by default)."""
    x = torch.as_tensor(np.array(image, dtype=np.uint8), device=device).permute(2, 0, 1).to(dtype) / PIXEL_MAX
    m = torch.as_tensor(mean, dtype=dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=x.device).view(3, 1, 1)
    return ((x - m) / s).unsqueeze(0)


def normalize_cams(cams: Tensor, eps: float = CAM_EPS) -> Tensor:
    """Clip at 0 and min–max normalize per channel: ``C×H×W`` float → ``C×H×W`` in [0, 1)."""
    pos = F.relu(cams)
    big = pos.amax(dim=(1, 2), keepdim=True)
    small = pos.amin(dim=(1, 2), keepdim=True)
    return F.relu(pos - small - eps) / (big - small + eps)


def present_channels(tags: Sequence[int] | np.ndarray, num_classes: int, label_offset: int = 1) -> np.ndarray:
    """Sorted unique label values of ``tags`` (int16), checked to lie in
    ``[label_offset, label_offset + num_classes)``; channel = label − ``label_offset``."""
    labels = np.unique(np.asarray(tags, dtype=np.int64).reshape(-1))
    if labels.size and (labels.min() < label_offset or labels.max() >= label_offset + num_classes):
        raise UserError(
            f"tags: tag values {labels.tolist()} outside {label_offset}..{label_offset + num_classes - 1}. "
            "Check the tags artifact against the class list.")
    return labels.astype(np.int16)


@torch.no_grad()
def export_cams(model: ScoreFn, image: np.ndarray, tags: Sequence[int] | np.ndarray, num_classes: int,
                scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True, label_offset: int = 1,
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Multi-scale, flip-augmented CAMs of one image for its present classes.

    Args:
        model: :data:`ScoreFn`, ``1×3×h×w`` → ``1×C×h'×w'`` foreground scores (put it in eval mode).
        image: ``H×W×3`` uint8 RGB.
        tags: label values of the classes present (class 0 = background is not a tag).
        num_classes: ``C``, channels returned by ``model``.
        scales: resize factors (default {0.5, 1, 1.5, 2}, docs/methods.md §6); ``flip``: add horizontal flips.
        label_offset: channel = label − ``label_offset`` (default 1).
        normalize: apply :func:`normalize_cams` (default); False returns the raw pass sum.

    Returns ``(cams, classes)``: ``cams`` float32 ``T×H×W`` (T present classes, sorted by label),
    ``classes`` int16 ``T`` label values. No tag gives ``0×H×W``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H×W×3 uint8, got {image.shape} {image.dtype}")
    classes = present_channels(tags, num_classes, label_offset)
    h, w = image.shape[:2]
    channels = torch.as_tensor(classes.astype(np.int64) - label_offset, device=device)
    if not len(classes):
        return torch.zeros(0, h, w, dtype=dtype).numpy(), classes

    def present_scores(x: Tensor) -> Tensor:
        s = model(x)
        if s.dim() != 4 or s.shape[:2] != (1, num_classes):
            raise ValueError(f"model must return 1×{num_classes}×h×w scores, got {tuple(s.shape)}")
        return s[:, channels].to(dtype)

    total, _ = multiscale_flip_sum(present_scores,
                                   lambda scale: normalize_image(resize_image(image, scale), mean, std, device, dtype),
                                   (h, w), scales, flip, align_corners=False)
    total = total[0]
    out = normalize_cams(total) if normalize else total
    return out.cpu().numpy(), classes
