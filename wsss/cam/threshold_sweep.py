"""Background-threshold sweep of CAM pseudo-labels: the J curve, its best threshold and J.

Method: docs/methods.md §6.7, hfpl code and docs/methods.md §8 (J = mIoU). The CAM
pseudo-label at threshold ``t`` is the arg-max over ``{t, r_c of the present classes}`` (ties go to
the background ``t``). For every ``t`` in 0.00–0.59 (step 0.01) one ``K×K`` confusion is
accumulated over the whole set (GT 255 ignored); J(t) = mean IoU over the K classes (VOC: 21),
a class absent from both GT and prediction of the set is NaN and skipped
(:func:`wsss.metrics.mean_iou`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from wsss.metrics import ConfusionMatrix

#: 0.00, 0.01, …, 0.59 (docs/methods.md §6.7, hfpl code).
DEFAULT_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(60))


def cam_label(cams: np.ndarray, classes: Sequence[int] | np.ndarray, threshold: float) -> np.ndarray:
    """CAM pseudo-label: ``T×H×W`` float CAMs, ``T`` label values → ``H×W`` uint8; 0 where
    ``max_t r_t ≤ threshold`` (background wins ties), else the arg-max class."""
    cams = np.asarray(cams)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    top = cams.max(axis=0)
    return np.where(top > threshold, classes[cams.argmax(axis=0)], 0).astype(np.uint8)


@dataclass
class SweepResult:
    """``thresholds`` ``T`` float64, ``j`` ``T`` float64 (J per threshold, in [0, 1]), the best
    threshold and its J (first maximum), and the ``T×K×K`` int64 confusions."""

    thresholds: np.ndarray
    j: np.ndarray
    best_threshold: float
    best_j: float
    confusions: np.ndarray


class ThresholdSweep:
    """Accumulates one confusion per threshold over a set of images (streaming), in a stacked
    :class:`wsss.metrics.ConfusionMatrix` (``T×K×K``).

    ``num_classes``: K including background (VOC 21). ``update(cams, classes, gt)`` with ``cams``
    ``T×H×W`` float, ``classes`` ``T`` label values, ``gt`` ``H×W`` int (255 ignored); :meth:`add` and
    :meth:`all_reduce` combine sweeps made in worker processes and on ``torchrun`` ranks;
    ``result()`` gives a :class:`SweepResult`. Vectorised over thresholds and pixels.
    """

    def __init__(self, num_classes: int, thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
        self.num_classes = int(num_classes)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.counts = ConfusionMatrix(self.num_classes, stack=len(self.thresholds))

    @property
    def confusions(self) -> np.ndarray:
        """``T×K×K`` int64, one confusion per threshold."""
        return self.counts.matrix

    def update(self, cams: np.ndarray, classes: Sequence[int] | np.ndarray, gt: np.ndarray) -> "ThresholdSweep":
        cams = np.asarray(cams, dtype=np.float32)
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        gt = np.asarray(gt).astype(np.int64)
        if cams.shape[1:] != gt.shape or cams.shape[0] != classes.size:
            raise ValueError(f"cams {cams.shape}, classes {classes.shape} and gt {gt.shape} do not match")
        nt = len(self.thresholds)
        if classes.size:
            top = cams.max(axis=0)
            arg = classes[cams.argmax(axis=0)]
            pred = np.where(top[None] > self.thresholds.astype(np.float32)[:, None, None], arg[None], 0)   # T×H×W
        else:
            pred = np.zeros((nt, *gt.shape), dtype=np.int64)
        self.counts.update(gt, pred)
        return self

    def add(self, confusions: np.ndarray) -> "ThresholdSweep":
        """Add ``T×K×K`` counts of a sweep over the same thresholds."""
        self.counts.add(confusions)
        return self

    def all_reduce(self) -> "ThresholdSweep":
        """Sum the counts over ``torchrun`` ranks (every rank must call it)."""
        self.counts.all_reduce()
        return self

    def result(self) -> SweepResult:
        j = np.asarray(self.counts.compute()["miou"], dtype=np.float64)
        best = int(np.nanargmax(j)) if np.isfinite(j).any() else 0
        return SweepResult(self.thresholds.copy(), j, float(self.thresholds[best]), float(j[best]), self.confusions.copy())


def sweep_thresholds(items: Iterable[tuple[np.ndarray, Sequence[int] | np.ndarray, np.ndarray]], num_classes: int,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> SweepResult:
    """J over background thresholds for ``(cams, classes, gt)`` triples; see :class:`ThresholdSweep`."""
    sweep = ThresholdSweep(num_classes, thresholds)
    for cams, classes, gt in items:
        sweep.update(cams, classes, gt)
    return sweep.result()
