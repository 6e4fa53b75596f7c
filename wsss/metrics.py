"""Segmentation metrics: confusion matrix, IoU / mIoU (J), pixel accuracy, boundary F, J&F,
soft Jaccard.

The definitions are those of docs/methods.md §8; ``docs/metrics.md`` details the conventions the
toolkit chose where the references leave a choice. In short:

- **Confusion matrix** ``C`` (K×K int64, rows = ground truth, columns = prediction), accumulated
  over the whole evaluated set (:class:`ConfusionMatrix`, also summed over ``torchrun`` ranks); ground-truth pixels equal to ``ignore_index`` (255) are skipped.
- **IoU_c** = C[c,c] / (row_c + col_c − C[c,c]); a class absent from both the ground truth and the
  prediction of the set has IoU NaN. **mIoU** = mean of the non-NaN IoUs (VOC convention: mean
  over the K classes, absent classes skipped). **Pixel accuracy** = trace(C) / sum(C).
- **Boundary F** (DAVIS style) per (image, class) pair, for every class present in the ground
  truth or in the prediction at labelled pixels; see :func:`boundary_f`. The set's F is the mean
  over all such pairs; J&F = (mIoU + F) / 2.
- **Soft Jaccard** Σ min(a, b) / Σ max(a, b) between two soft label maps.

Everything is vectorised numpy; the only Python loop is over the classes present in an image
(boundary F), never over pixels.
"""

from __future__ import annotations

import math

import numpy as np

from wsss.constants import IGNORE_INDEX


#: recorded in reports so readers know how mIoU was averaged
MIOU_CONVENTION = (
    "mean of per-class IoU over the K classes of the set's confusion matrix (VOC convention); "
    "a class absent from both the ground truth and the prediction has IoU NaN and is skipped"
)
F_CONVENTION = (
    "DAVIS boundary F per (image, class) pair for every class present in the ground truth or the "
    "prediction at labelled pixels, averaged over all pairs of the set; per-class F averages the "
    "pairs of that class"
)


# --------------------------------------------------------------------------------------------
# Region similarity J
# --------------------------------------------------------------------------------------------
class ConfusionMatrix:
    """Confusion counts accumulated over a set of images: the one implementation behind ``wsss eval``,
    the per-epoch validation of training and the CAM background-threshold sweep.

    ``matrix[i, j]`` (int64) is the number of counted pixels of ground-truth class ``i`` predicted
    ``j`` (rows = ground truth, columns = prediction); ground-truth pixels equal to ``ignore_index``
    are never counted. With ``stack = T`` the object holds ``T`` matrices (``T×K×K``), one per
    candidate labelling of the same pixels (e.g. one per background threshold), updated together.

    Use: :meth:`update` per image (or batch), :meth:`add` for counts made elsewhere (a worker
    process), :meth:`all_reduce` to sum over ``torchrun`` ranks, :meth:`compute` for IoU, mIoU and
    pixel accuracy (:func:`region_summary`).

    Args:
        num_classes: K.
        stack: None for one K×K matrix, or T for T stacked matrices.
        ignore_index: ground-truth value of pixels that are not counted.
    """

    def __init__(self, num_classes: int, stack: int | None = None, ignore_index: int = IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.stack = None if stack is None else int(stack)
        self.ignore_index = ignore_index
        lead = () if self.stack is None else (self.stack,)
        self.matrix = np.zeros(lead + (self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, gt, pred, mask=None) -> "ConfusionMatrix":
        """Count one image (or a batch) of label maps; returns ``self``.

        Args:
            gt: integer ground truth of any shape ``S`` (``H×W``, ``B×H×W``), values 0..K-1 or
                ``ignore_index``; numpy array or torch tensor (any device).
            pred: integer prediction, shape ``S`` (``T×S`` with ``stack = T``), values 0..K-1 at every
                counted pixel.
            mask: optional bool of shape ``S``; only pixels where it is True are counted (e.g. the
                labelled pixels of a seed map, or the unlabelled pixels of a pseudo-label evaluation).

        Raises:
            ValueError: shapes differ, or a counted pixel has a ground truth or prediction outside
                0..K-1 (other than ignored ground truth).
        """
        gt, pred = _numpy(gt), _numpy(pred)
        want = gt.shape if self.stack is None else (self.stack, *gt.shape)
        if pred.shape != want:
            raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
        keep = gt != self.ignore_index
        if mask is not None:
            mask = _numpy(mask)
            if mask.shape != gt.shape:
                raise ValueError(f"mask {mask.shape} and ground truth {gt.shape} differ in shape")
            keep &= mask.astype(bool)
        k = self.num_classes
        g = gt[keep].astype(np.int64)
        p = (pred[keep] if self.stack is None else pred[:, keep]).astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= k):
            raise ValueError(f"ground truth values outside 0..{k - 1} and {self.ignore_index}")
        if p.size and (p.min() < 0 or p.max() >= k):
            bad = np.unique(p[(p < 0) | (p >= k)])[:5].tolist()
            raise ValueError(f"prediction values {bad} outside 0..{k - 1} at labelled ground-truth pixels")
        code = g * k + p
        if self.stack is not None:  # matrix t occupies codes t·K² .. (t+1)·K² − 1
            code = code + (np.arange(self.stack, dtype=np.int64) * k * k)[:, None]
        self.matrix += np.bincount(code.ravel(), minlength=self.matrix.size).reshape(self.matrix.shape)
        return self

    def add(self, counts: np.ndarray) -> "ConfusionMatrix":
        """Add counts of the same shape as :attr:`matrix` (made by another ConfusionMatrix)."""
        counts = np.asarray(counts)
        if counts.shape != self.matrix.shape:
            raise ValueError(f"counts {counts.shape} do not match the confusion matrix {self.matrix.shape}")
        self.matrix += counts.astype(np.int64)
        return self

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum :attr:`matrix` over the ``torchrun`` ranks (:func:`wsss.parallel.all_reduce_sum`; a no-op
        in a single process). Every rank must call it."""
        from wsss.parallel import all_reduce_sum

        self.matrix = np.asarray(all_reduce_sum(self.matrix), dtype=np.int64)
        return self

    def compute(self) -> dict:
        """:func:`region_summary` of the matrix: ``{"iou", "miou", "pixel_accuracy", "pixels"}``; with a
        stack, the same keys hold ``T×K``, ``T``, ``T`` and ``T`` arrays."""
        if self.stack is None:
            return region_summary(self.matrix)
        parts = [region_summary(m) for m in self.matrix]
        return {key: np.array([part[key] for part in parts]) for key in ("iou", "miou", "pixel_accuracy", "pixels")}


def _numpy(x) -> np.ndarray:
    """numpy view of an array or a (possibly CUDA) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Confusion matrix of one label map pair: :class:`ConfusionMatrix` counts of that pair alone.

    Args:
        gt: H×W integer ground truth, values 0..K-1 or ``ignore_index``.
        pred: H×W integer prediction, values 0..K-1 at every counted pixel.
        num_classes: K.
        ignore_index: ground-truth value of pixels that are not counted.
        mask: optional H×W bool; only pixels where it is True are counted.

    Returns:
        K×K int64, ``C[i, j]`` = number of counted pixels of ground-truth class i predicted j.

    Raises:
        ValueError: see :meth:`ConfusionMatrix.update`.
    """
    return ConfusionMatrix(num_classes, ignore_index=ignore_index).update(gt, pred, mask).matrix


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """Per-class intersection over union from a confusion matrix.

    Args:
        conf: K×K confusion matrix (rows ground truth, columns prediction).

    Returns:
        K float64: TP / (TP + FP + FN); NaN for a class absent from both ground truth and
        prediction (its denominator is 0).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """mIoU: mean of :func:`iou_per_class` over the classes that are not NaN (VOC convention).

    Returns NaN when no class occurs at all (an empty confusion matrix).
    """
    iou = iou_per_class(conf)
    valid = ~np.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else math.nan


def pixel_accuracy(conf: np.ndarray) -> float:
    """Fraction of counted pixels predicted correctly: trace(C) / sum(C) (NaN when empty)."""
    conf = np.asarray(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else math.nan


def region_summary(conf: np.ndarray) -> dict:
    """Per-class IoU, mIoU, pixel accuracy and pixel count of a confusion matrix.

    Returns:
        ``{"iou": K float64 array, "miou": float, "pixel_accuracy": float, "pixels": int}``.
    """
    return {
        "iou": iou_per_class(conf),
        "miou": mean_iou(conf),
        "pixel_accuracy": pixel_accuracy(conf),
        "pixels": int(np.asarray(conf).sum()),
    }


# --------------------------------------------------------------------------------------------
# Contour quality F
# --------------------------------------------------------------------------------------------
def boundary_tolerance(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Tolerance in pixels: ``ceil(bound_th · sqrt(H² + W²))`` for ``bound_th < 1`` (a fraction
    of the image diagonal, DAVIS default 0.008), else ``bound_th`` pixels as given."""
    if bound_th >= 1:
        return int(round(bound_th))
    h, w = shape
    return int(math.ceil(bound_th * math.hypot(h, w)))


def edge_pixels(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Pixels of a label map with a 4-neighbour of another (non-ignored) value.

    A pixel labelled ``ignore_index`` is never an edge pixel, and an ignored neighbour does not
    make its neighbours edge pixels (the true boundary lies somewhere inside the ignored
    region). The image border is not an edge. ``edge_pixels(label) & (label == c)`` is the
    inner boundary of class c: the pixels of c that touch another class.

    Args:
        label: H×W integer label map.
        ignore_index: value without a class.

    Returns:
        H×W bool.
    """
    label = np.asarray(label)
    edge = np.zeros(label.shape, dtype=bool)
    valid = label != ignore_index
    # vertical neighbours (rows r and r+1) and horizontal ones (columns c and c+1)
    for a, b in (
        (np.s_[:-1, :], np.s_[1:, :]),
        (np.s_[:, :-1], np.s_[:, 1:]),
    ):
        differ = (label[a] != label[b]) & valid[a] & valid[b]
        edge[a] |= differ
        edge[b] |= differ
    return edge


def _thin(mask: np.ndarray) -> np.ndarray:
    from skimage.morphology import thin

    return thin(mask) if mask.any() else mask


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _within(src: np.ndarray, dst: np.ndarray, tol: int) -> int:
    """Number of True pixels of ``src`` at Euclidean distance ≤ tol of a True pixel of ``dst``
    (= ``src`` ∧ dilation of ``dst`` by a disk of radius ``tol``). Both non-empty, same shape."""
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(~dst)
    return int(np.count_nonzero(dist[src] <= tol))


def boundary_prf(gt_b: np.ndarray, pred_b: np.ndarray, tol: int) -> tuple[float, float, float]:
    """Boundary precision, recall and F of two boundary maps.

    Precision = fraction of predicted boundary pixels within ``tol`` pixels (Euclidean, i.e. a
    disk dilation of radius ``tol``) of a ground-truth boundary pixel; recall the other way;
    F = 2PR / (P + R) (0 when P + R = 0). Empty boundaries: both empty → P = R = F = 1; only the
    prediction empty → P = 1, R = 0, F = 0; only the ground truth empty → P = 0, R = 1, F = 0.

    Args:
        gt_b, pred_b: H×W bool boundary maps.
        tol: tolerance in pixels (:func:`boundary_tolerance`).

    Returns:
        (precision, recall, F) as floats.
    """
    n_gt = int(np.count_nonzero(gt_b))
    n_pred = int(np.count_nonzero(pred_b))
    if n_gt == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0, 0.0
    # all boundary pixels lie in the union's bounding box, so distances computed in it are exact
    box = _bbox(gt_b | pred_b)
    g, p = gt_b[box], pred_b[box]
    precision = _within(p, g, tol) / n_pred
    recall = _within(g, p, tol) / n_gt
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


def class_boundaries(label: np.ndarray, cls: int, edges: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of class ``cls``: its edge pixels at valid positions, thinned.

    Args:
        label: H×W integer label map.
        cls: class index.
        edges: :func:`edge_pixels` of ``label`` (H×W bool).
        valid: H×W bool, pixels that may carry a boundary (ground truth not ignored).

    Returns:
        H×W bool.
    """
    b = edges & (label == cls) & valid
    if not b.any():
        return b
    out = np.zeros_like(b)
    box = _bbox(b)
    out[box] = _thin(b[box])
    return out


def boundary_f(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    bound_th: float = 0.008,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DAVIS-style boundary precision / recall / F per class of one image.

    For every class c present in the ground truth or in the prediction at labelled pixels
    (ground truth ≠ ``ignore_index``): the boundary of the binary mask ``label == c`` in each
    map is its inner boundary (pixels of c with a 4-neighbour of another value, :func:`edge_pixels`),
    where only neighbour pairs whose two pixels are labelled in the ground truth count (in both
    maps: ignored pixels are excluded from both boundaries), thinned to one pixel
    (``skimage.morphology.thin``); then :func:`boundary_prf` with the tolerance
    :func:`boundary_tolerance` of the image size.

    Args:
        gt: H×W integer ground truth (0..K-1, ``ignore_index``).
        pred: H×W integer prediction (0..K-1 wherever the ground truth is labelled).
        num_classes: K.
        ignore_index: unlabelled ground-truth value, excluded from both boundaries.
        bound_th: tolerance as a fraction of the diagonal (< 1) or in pixels (≥ 1).

    Returns:
        (precision, recall, F): three K float64 arrays, NaN for classes absent from both maps.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    valid = gt != ignore_index
    present = np.zeros(num_classes, dtype=bool)
    for values in (gt[valid], pred[valid]):
        v = values[values < num_classes].astype(np.int64)
        present[np.unique(v)] = True
    out = np.full((3, num_classes), np.nan)
    if not present.any():
        return out[0], out[1], out[2]
    tol = boundary_tolerance(gt.shape, bound_th)
    gt_edges = edge_pixels(gt, ignore_index)
    # a pair of neighbours counts only where both have a ground-truth label, in both maps
    pred_edges = edge_pixels(np.where(valid, pred, ignore_index), ignore_index)
    for c in np.flatnonzero(present):
        gb = class_boundaries(gt, c, gt_edges, valid)
        pb = class_boundaries(pred, c, pred_edges, valid)
        out[:, c] = boundary_prf(gb, pb, tol)
    return out[0], out[1], out[2]


def j_and_f(miou: float, f: float) -> float:
    """J&F = (J + F) / 2 with J = mIoU and F = mean boundary F."""
    return (miou + f) / 2


# --------------------------------------------------------------------------------------------
# Pseudo-label quality
# --------------------------------------------------------------------------------------------
def soft_jaccard_sums(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Σ min(a, b) and Σ max(a, b) of two soft label maps (accumulate over a set, then divide).

    Args:
        a, b: K×H×W non-negative arrays (any float dtype; summed in float64).
        mask: optional H×W bool of the pixels to include.

    Returns:
        (Σ min, Σ max) as floats.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"soft label maps differ in shape: {a.shape} vs {b.shape}")
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    if mask is not None:
        lo = lo[..., mask]
        hi = hi[..., mask]
    return float(lo.sum()), float(hi.sum())


def soft_jaccard(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Soft Jaccard index Σ min(a, b) / Σ max(a, b) (1 for two all-zero maps).

    Args:
        a, b: K×H×W non-negative arrays (e.g. pseudo-labels and a reference solution).
        mask: optional H×W bool of the pixels to include.
    """
    lo, hi = soft_jaccard_sums(a, b, mask)
    return lo / hi if hi > 0 else 1.0


__all__ = [
    "F_CONVENTION",
    "IGNORE_INDEX",
    "MIOU_CONVENTION",
    "boundary_f",
    "boundary_prf",
    "boundary_tolerance",
    "class_boundaries",
    "confusion_matrix",
    "edge_pixels",
    "iou_per_class",
    "j_and_f",
    "mean_iou",
    "pixel_accuracy",
    "region_summary",
    "soft_jaccard",
    "soft_jaccard_sums",
]
