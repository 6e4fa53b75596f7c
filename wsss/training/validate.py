"""Validation during training: single-scale whole-image prediction and confusion-matrix mIoU.

(A minimal mIoU for the per-epoch log, counted by :class:`wsss.metrics.ConfusionMatrix` as
``wsss eval`` counts; ``wsss eval`` is the reference evaluation.)
"""

from __future__ import annotations

import torch
from torch import nn

from wsss.metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, device: torch.device) -> dict[str, float | list[float]]:
    """mIoU of ``model`` (in eval mode during the call) on a loader of :class:`~wsss.training.data.EvalSet`
    samples (batch size 1): ``{"miou": float, "iou": K floats}``, per-class IoU NaN for a class absent
    from both ground truth and prediction (:func:`wsss.metrics.mean_iou` skips those)."""
    was_training = model.training
    model.eval()
    conf = ConfusionMatrix(num_classes)
    for sample in loader:
        logits = model(sample["image"].to(device))
        conf.update(sample["mask"], logits.argmax(1))
    model.train(was_training)
    region = conf.compute()
    return {"miou": region["miou"], "iou": region["iou"].tolist()}
