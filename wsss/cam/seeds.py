"""CAMs → seeds (sparse pseudo-labels, 255 = unlabelled) from image tags or boxes.

Method: docs/methods.md §6.6. Inputs are the exported CAMs of
one image: ``cams`` ``T×H×W`` float in [0, 1] for its ``T`` present classes and ``classes`` ``T``
int label values (as written by :func:`wsss.cam.export.export_cams`). Outputs are ``H×W`` uint8
label maps: 0 = background, ``classes[t]`` = class, 255 = unlabelled. Per image, numpy, CPU.

Background score (Ahn & Kwak convention): ``bg = (1 − max_t r_t)^α``. Since ``1 − max r ∈ [0, 1]``,
a *larger* power α gives a *smaller* background score, hence fewer background pixels: the low α
marks confident foreground (background strong), the high α confident background.

- :func:`affinity_seeds` — rule (a), hfpl code default: ``[bg, classes]`` with α_low and with
  α_high, each refined by DenseCRF (or any ``refine`` callable, or none); foreground seeds = the
  α_low arg-max where it is a class, background seeds = where the α_high arg-max is background
  (overrides); the rest 255. α_low/α_high = 1/24 (binomial with ISL); SEAM's 4/24; multinomial 2/4.
- :func:`threshold_seeds` — rule (b), SPML: α = 6, arg-max over ``[bg, classes]``, winning score
  < 0.2 → 255; no CRF.
- :func:`boxes_to_seeds` — SPML boxes: inside each box the box class's CAM min–max normalized over
  the box, ≥ 0.5 → the class, the rest of the box 255, outside all boxes background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wsss.constants import IGNORE_INDEX
from wsss.crf import CRFParams, dense_crf
from wsss.errors import UserError

#: (α_low, α_high) of rule (a) (docs/methods.md §6): binomial with ISL (hfpl), SEAM's original, multinomial.
AFFINITY_ALPHAS = {"binomial": (1.0, 24.0), "seam": (4.0, 24.0), "multinomial": (2.0, 4.0)}
#: Rule (b), SPML: background power and minimum winning score.
SPML_ALPHA = 6.0
SPML_MIN_SCORE = 0.2
#: Boxes → seeds: normalized-CAM threshold inside a box (SPML).
BOX_THRESHOLD = 0.5
#: ε of the in-box min–max normalization (as the CAM normalization of docs/methods.md §6).
BOX_EPS = 1e-5
#: ``refine(probs, image) -> probs``: ``K×H×W`` float32 (sums to 1 per pixel) and ``H×W×3`` uint8
#: → ``K×H×W`` float. Plug the crf stage's function here.
Refine = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check(cams: np.ndarray, classes: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(cams, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != classes.size:
        raise ValueError(f"cams must be T×H×W with T = len(classes) = {classes.size}, got {cams.shape}")
    if classes.size and (classes.min() < 1 or classes.max() >= IGNORE_INDEX):
        raise ValueError(f"class labels must be in 1..254, got {classes.tolist()}")
    return cams, classes


def background_score(cams: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 − max_t r_t)^α``: ``T×H×W`` float in [0, 1] → ``H×W`` float32 (all ones when ``T = 0``)."""
    cams = np.asarray(cams, dtype=np.float32)
    if cams.shape[0] == 0:
        return np.ones(cams.shape[1:], dtype=np.float32)
    return np.power(np.clip(1.0 - cams.max(axis=0), 0.0, 1.0), alpha, dtype=np.float32)


def with_background(cams: np.ndarray, alpha: float) -> np.ndarray:
    """``[bg, r_1 … r_T]``: ``T×H×W`` → ``(T+1)×H×W`` float32 scores (not normalized)."""
    cams = np.asarray(cams, dtype=np.float32)
    return np.concatenate([background_score(cams, alpha)[None], cams], axis=0)


def densecrf_refine(probs: np.ndarray, image: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """DenseCRF refinement of rule (a): ``K×H×W`` probabilities + ``H×W×3`` uint8 RGB → ``K×H×W``
    float32 marginals, via the toolkit's :func:`wsss.crf.dense_crf` (one CRF code path).

    Defaults :class:`wsss.crf.CRFParams` = those of docs/methods.md §6.6 for this step: 10 iterations, Gaussian sxy 3
    compat 3, bilateral sxy 80 srgb 13 compat 10, probabilities clipped at 1e-5 before ``−ln``.
    """
    return dense_crf(np.ascontiguousarray(image, dtype=np.uint8), probs, params if params is not None else CRFParams())


def _argmax(scores: np.ndarray, image: np.ndarray | None, refine: Refine | None) -> np.ndarray:
    """Arg-max over channels of ``scores`` (``K×H×W``), after ``refine`` of the per-pixel
    normalized scores when given. Ties go to the lower channel (background first)."""
    if refine is not None:
        if image is None:
            raise ValueError("refine needs the image (H×W×3 uint8)")
        probs = scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-12)
        scores = np.asarray(refine(probs.astype(np.float32), image))
    return scores.argmax(axis=0)


def affinity_seeds(cams: np.ndarray, classes: Sequence[int] | np.ndarray, image: np.ndarray | None = None,
                   alpha_low: float = AFFINITY_ALPHAS["binomial"][0], alpha_high: float = AFFINITY_ALPHAS["binomial"][1],
                   refine: Refine | None = densecrf_refine) -> np.ndarray:
    """Rule (a) (AffinityNet seeds, hfpl code default): ``H×W`` uint8 seeds.

    ``cams`` ``T×H×W`` float in [0, 1], ``classes`` ``T`` label values, ``image`` ``H×W×3`` uint8
    (needed when ``refine`` is set). ``refine`` defaults to :func:`densecrf_refine` (docs/methods.md §6: CRF on
    both); ``None`` uses the plain arg-max. Foreground = α_low arg-max where it is a class;
    background = α_high arg-max is background (overrides); rest 255.
    """
    cams, classes = _check(cams, classes)
    lut = np.concatenate([[0], classes]).astype(np.uint8)
    low = _argmax(with_background(cams, alpha_low), image, refine)
    high = _argmax(with_background(cams, alpha_high), image, refine)
    label = np.full(cams.shape[1:], IGNORE_INDEX, dtype=np.uint8)
    fg = low > 0
    label[fg] = lut[low[fg]]
    label[high == 0] = 0
    return label


def threshold_seeds(cams: np.ndarray, classes: Sequence[int] | np.ndarray, alpha: float = SPML_ALPHA,
                    min_score: float = SPML_MIN_SCORE) -> np.ndarray:
    """Rule (b) (SPML): arg-max over ``[bg^α, r_1 … r_T]``; winning score < ``min_score`` → 255.

    ``cams`` ``T×H×W`` float in [0, 1], ``classes`` ``T`` label values → ``H×W`` uint8 seeds.
    Defaults α = 6, 0.2 (docs/methods.md §6). Ties go to background. Note: with these defaults no pixel is
    ever 255, because ``max(m, (1 − m)^6) ≥ 0.222 > 0.2`` for every ``m = max_t r_t`` in [0, 1];
    the rule only leaves pixels unlabelled for smaller α or larger ``min_score``.
    """
    cams, classes = _check(cams, classes)
    lut = np.concatenate([[0], classes]).astype(np.uint8)
    scores = with_background(cams, alpha)
    win = scores.argmax(axis=0)
    label = lut[win]
    label[np.take_along_axis(scores, win[None], axis=0)[0] < min_score] = IGNORE_INDEX
    return label


def boxes_to_seeds(cams: np.ndarray, classes: Sequence[int] | np.ndarray, boxes: np.ndarray,
                   threshold: float = BOX_THRESHOLD, eps: float = BOX_EPS) -> np.ndarray:
    """Boxes → seeds (SPML): ``H×W`` uint8.

    ``boxes``: ``N×5`` int ``[class, x0, y0, x1, y1]`` (label value, then column/row corners,
    0-based, inclusive; clipped to the image). ``cams`` ``T×H×W`` / ``classes`` ``T`` must include
    every box class. Inside a box the class's CAM is min–max normalized over the box
    (``(r − min)/(max − min + ε)``); ≥ ``threshold`` (0.5) → the class, otherwise 255; outside all
    boxes → 0. Overlaps (unspecified by SPML): a pixel takes the passing class with the highest
    normalized score (earlier box on ties) and is 255 only if no box passes there (toolkit rule).
    No background power is applied (SPML's exact rule is unreleased).
    """
    cams, classes = _check(cams, classes)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 5)
    h, w = cams.shape[1:]
    label = np.zeros((h, w), dtype=np.uint8)
    best = np.full((h, w), -np.inf, dtype=np.float32)
    index = {int(c): t for t, c in enumerate(classes)}
    for cls, x0, y0, x1, y1 in boxes.tolist():
        if cls not in index:
            raise UserError(f"boxes: a box has class {cls}, which is not among the image's tags {classes.tolist()}. "
                            "Make the tags include every box class.")
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x1 < x0 or y1 < y0:
            raise UserError(f"boxes: box of class {cls} is empty or outside the {h}×{w} image. Fix or drop the box.")
        win = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        region = cams[index[cls]][win]
        lo = region.min()
        norm = (region - lo) / (region.max() - lo + eps)
        sub_label, sub_best = label[win], best[win]
        sub_label[np.isneginf(sub_best)] = IGNORE_INDEX        # first time inside any box
        take = (norm >= threshold) & (norm > sub_best)
        sub_label[take] = cls
        sub_best[take] = norm[take]
        sub_best[np.isneginf(sub_best)] = -1.0                 # inside a box, nothing passed yet
    return label
