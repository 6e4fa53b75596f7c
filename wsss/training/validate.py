"""Validation during training: single-scale whole-image prediction and confusion-matrix mIoU.

(A minimal mIoU for the per-epoch log; ``wsss eval`` is the reference evaluation.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from wsss.artifacts import IGNORE_INDEX


def confusion(pred: Tensor, gt: Tensor, num_classes: int) -> Tensor:
    """K×K int64 confusion matrix (rows: ground truth, cols: prediction), 255 in ``gt`` ignored.

    pred, gt: integer tensors of the same shape.
    """
    keep = gt != IGNORE_INDEX
    idx = gt[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def miou(conf: np.ndarray | Tensor) -> tuple[float, list[float]]:
    """Mean IoU over classes present in ground truth or prediction; per-class IoU (nan if absent)."""
    conf = torch.as_tensor(conf, dtype=torch.float64)
    tp = conf.diag()
    denom = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(denom > 0, tp / denom.clamp_min(1), torch.full_like(tp, float("nan")))
    present = denom > 0
    mean = float(iou[present].mean()) if present.any() else float("nan")
    return mean, iou.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, device: torch.device) -> dict[str, float | list[float]]:
    """mIoU of ``model`` (in eval mode during the call) on a loader of :class:`~wsss.training.data.EvalSet`
    samples (batch size 1)."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for sample in loader:
        logits = model(sample["image"].to(device))
        conf += confusion(logits.argmax(1).cpu(), sample["mask"], num_classes)
    model.train(was_training)
    mean, per_class = miou(conf)
    return {"miou": mean, "iou": per_class}
