"""CAM → seeds (affinity rule with/without CRF, SPML threshold rule, boxes) and the threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.cam.seeds import (affinity_seeds, background_score, boxes_to_seeds, densecrf_refine, threshold_seeds,
                            with_background)
from wsss.cam.threshold_sweep import DEFAULT_THRESHOLDS, ThresholdSweep, cam_label, sweep_thresholds
from wsss.errors import UserError

U = 255
CLASSES = [3, 7]


def _cams(pairs):
    """1×N map of (r_3, r_7) pairs → 2×1×N float32."""
    return np.asarray(pairs, dtype=np.float32).T[:, None, :]


# hand-derived table: (r_3, r_7) → rule (a) α 1/24 without CRF, rule (b) α 6 / 0.2, rule (b) α 2 / 0.5
CASES = [
    ((0.9, 0.1), 3, 3, 3),      # low: bg 0.1 < 0.9; high: bg 1e-24
    ((0.0, 0.0), 0, 0, 0),      # bg 1 everywhere
    ((0.3, 0.5), U, 7, 7),      # low: bg 0.5 ties 0.5 → bg; high: bg 6e-8 → class; (b): 0.5 wins, not < 0.5
    ((0.6, 0.2), 3, 3, 3),      # low: bg 0.4 < 0.6
    ((0.02, 0.01), 0, 0, 0),    # high: bg 0.98^24 = 0.616 > 0.02
    ((0.1, 0.05), U, 0, 0),     # low: bg 0.9; high: 0.9^24 = 0.080 < 0.1; (b) α 6: 0.531; α 2: 0.81
    ((0.4, 0.3), U, 3, U),      # high bg 4.7e-6; (b) α 6: 0.6^6 = 0.047 < 0.4; α 2: 0.36 < 0.4 < 0.5 → 255
]


def test_rules_on_constructed_cams():
    cams = _cams([c[0] for c in CASES])
    a = affinity_seeds(cams, CLASSES, refine=None)
    b = threshold_seeds(cams, CLASSES)
    b2 = threshold_seeds(cams, CLASSES, alpha=2, min_score=0.5)
    assert a.dtype == np.uint8 and a.shape == (1, len(CASES))
    assert a[0].tolist() == [c[1] for c in CASES]
    assert b[0].tolist() == [c[2] for c in CASES]
    assert b2[0].tolist() == [c[3] for c in CASES]
    # α 6 / 0.2 never leaves a pixel unlabelled: max(m, (1 − m)^6) ≥ 0.222 (documented)
    dense = np.linspace(0, 1, 1001, dtype=np.float32)[None, None, :]
    assert not np.any(threshold_seeds(dense, [3]) == U)
    assert np.any(threshold_seeds(dense, [3], min_score=0.23) == U)
    # no tags: everything is background
    empty = np.zeros((0, 2, 3), np.float32)
    assert np.all(affinity_seeds(empty, [], refine=None) == 0) and np.all(threshold_seeds(empty, []) == 0)


def test_background_power():
    r = np.random.default_rng(0).random((2, 9, 9)).astype(np.float32)
    assert np.allclose(background_score(r, 3), (1 - r.max(0)) ** 3)
    assert with_background(r, 3).shape == (3, 9, 9)
    # bg = (1 − max r)^α ≤ 1: a larger power weakens the background, so the background set shrinks
    bg = [threshold_seeds(r, CLASSES, alpha=a, min_score=0) == 0 for a in (0.5, 1, 2, 6, 24)]
    for weak, strong in zip(bg[1:], bg[:-1]):
        assert np.all(weak <= strong)
    assert bg[0].sum() > bg[-1].sum()
    lo = affinity_seeds(r, CLASSES, alpha_low=1, alpha_high=4, refine=None)
    hi = affinity_seeds(r, CLASSES, alpha_low=1, alpha_high=24, refine=None)
    assert np.all((hi == 0) <= (lo == 0)) and (hi == 0).sum() < (lo == 0).sum()


def test_refine_callable_and_background_override():
    cams = _cams([c[0] for c in CASES])
    image = np.zeros((1, len(CASES), 3), np.uint8)
    calls = []

    def refine(probs, img):
        calls.append(probs)
        assert img is image and probs.dtype == np.float32
        assert np.allclose(probs.sum(0), 1, atol=1e-6)
        if len(calls) == 1:                        # α_low pass: unchanged
            return probs
        out = np.zeros_like(probs)                 # α_high pass: background everywhere
        out[0] = 1
        return out

    seeds = affinity_seeds(cams, CLASSES, image, refine=refine)
    assert len(calls) == 2 and np.all(seeds == 0)  # the α_high background overrides the α_low classes
    with pytest.raises(ValueError):
        affinity_seeds(cams, CLASSES, None, refine=refine)


def test_densecrf_refine_follows_colour():
    h, w = 16, 20
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (220, 30, 30)
    image[:, w // 2:] = (30, 30, 220)
    probs = np.empty((2, h, w), np.float32)
    probs[0], probs[1] = 0.6, 0.4
    probs[:, :, w // 2:] = probs[::-1, :, w // 2:]
    probs[:, 5, 3] = (0.45, 0.55)                  # a wrong pixel inside the red half
    out = densecrf_refine(probs, image)
    assert out.shape == (2, h, w) and np.allclose(out.sum(0), 1, atol=1e-4)
    label = out.argmax(0)
    assert label[5, 3] == 0 and np.all(label[:, : w // 2] == 0) and np.all(label[:, w // 2:] == 1)
    cams = np.stack([np.full((h, w), 0.05, np.float32), np.zeros((h, w), np.float32)])
    cams[0, :, : w // 2] = 0.9
    seeds = affinity_seeds(cams, [1, 2], image)    # default: DenseCRF on both α
    assert np.all(seeds[:, : w // 2] == 1) and np.all(seeds[:, w // 2:] == 0)


def test_boxes_to_seeds():
    h, w = 8, 12
    cams = np.zeros((2, h, w), np.float32)
    cams[0] = np.array([0, 0.1, 0.2, 0.5, 0.8, 1.0, 0.9, 0.3, 0, 0, 0, 0], np.float32)[None, :]   # class 3: by column
    cams[1] = np.linspace(0, 1, h, dtype=np.float32)[:, None]                                     # class 7: by row
    boxes = np.array([[3, 1, 1, 6, 4],     # cols 1..6, rows 1..4
                      [7, 5, 2, 9, 7]])    # cols 5..9, rows 2..7
    seeds = boxes_to_seeds(cams, CLASSES, boxes)
    exp = np.zeros((h, w), np.uint8)
    # box 3: (v − 0.1)/0.9 over cols 1..6 = 0, .11, .44, .78, 1, .89 → cols 4, 5, 6 pass
    exp[1:5, 1:7] = U
    exp[1:5, 4:7] = 3
    # box 7: rows 2..7 normalized (y − 2)/5 = 0, .2, .4, .6, .8, 1 → rows 5..7 pass
    box7 = exp[2:8, 5:10]
    box7[box7 == 0] = U
    # overlap rows 2..4, cols 5..6: class 3 passes with .89–1, class 7 fails there → keeps 3
    exp[5:8, 5:10] = 7
    assert seeds.tolist() == exp.tolist()
    # where both pass, the higher normalized score wins
    cams = np.zeros((2, h, w), np.float32)
    cams[0, :, 4:7] = (0.2, 1.0, 0.7)            # class 3 over cols 4..6 → 0, 1, .625
    cams[1, 3:8] = np.array([0, 0.2, 0.6, 0.8, 1.0], np.float32)[:, None]   # class 7 rows 3..7 → 0 .2 .6 .8 1
    both = boxes_to_seeds(cams, CLASSES, np.array([[3, 4, 0, 6, 7], [7, 0, 3, 11, 7]]))
    assert [both[6, 5], both[6, 6], both[5, 6], both[7, 6], both[5, 4], both[4, 5]] == [3, 7, 3, 7, 7, 3]
    assert both[4, 4] == U and both[3, 0] == U and both[0, 0] == 0 and both[1, 5] == 3 and both[0, 11] == 0
    with pytest.raises(UserError):
        boxes_to_seeds(cams, CLASSES, np.array([[5, 0, 0, 2, 2]]))
    with pytest.raises(UserError):
        boxes_to_seeds(cams, CLASSES, np.array([[3, 20, 0, 30, 2]]))


# -- threshold sweep -------------------------------------------------------------------------

def test_cam_label_ties_to_background():
    cams = _cams([(0.3, 0.2), (0.1, 0.4), (0.25, 0.0)])
    assert cam_label(cams, CLASSES, 0.25)[0].tolist() == [3, 7, 0]


def _brute_j(items, t, k):
    inter, union = np.zeros(k), np.zeros(k)
    for cams, classes, gt in items:
        pred = np.zeros(gt.shape, int)
        for y in range(gt.shape[0]):
            for x in range(gt.shape[1]):
                best = int(np.argmax(cams[:, y, x]))
                if cams[best, y, x] > t:
                    pred[y, x] = classes[best]
        keep = gt != U
        for c in range(k):
            inter[c] += np.sum((pred == c) & (gt == c) & keep)
            union[c] += np.sum(((pred == c) | (gt == c)) & keep)
    present = union > 0
    return np.mean(inter[present] / union[present])


def test_sweep_matches_brute_force():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(3):
        gt = rng.integers(0, 4, size=(6, 7))
        gt[0, :3] = U
        classes = np.array(sorted(rng.choice([1, 2, 3, 4], size=2, replace=False)))
        cams = rng.random((2, 6, 7)).astype(np.float32) * 0.6
        items.append((cams, classes, gt))
    res = sweep_thresholds(items, 5)
    assert res.thresholds.shape == (60,) and res.thresholds[-1] == pytest.approx(0.59)
    for i in (0, 17, 33, 59):
        assert res.j[i] == pytest.approx(_brute_j(items, res.thresholds[i], 5), rel=1e-12)
    assert res.best_j == pytest.approx(np.nanmax(res.j)) and res.j[list(res.thresholds).index(res.best_threshold)] == res.best_j
    assert res.confusions.sum() == 3 * 42 * 60 - 3 * 3 * 60


def test_sweep_finds_the_separating_threshold():
    gt = np.zeros((4, 10), np.int64)
    gt[:, 6:] = 2
    cams = np.zeros((1, 4, 10), np.float32)
    cams[0, :, :6] = 0.2                           # background pixels score 0.2
    cams[0, :, 6:] = 0.45                          # object pixels 0.45
    sweep = ThresholdSweep(3, DEFAULT_THRESHOLDS)
    sweep.update(cams, [2], gt)
    res = sweep.result()
    assert res.best_threshold == pytest.approx(0.2) and res.best_j == pytest.approx(1.0)   # first maximum
    assert np.all(res.j[20:45] == 1.0) and res.j[19] < 1 and res.j[45] < 1
    empty = ThresholdSweep(3, (0.1,)).result()
    assert np.isnan(empty.j[0]) and empty.best_threshold == pytest.approx(0.1)
