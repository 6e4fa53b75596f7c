"""wsss.metrics against hand-derived values and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from skimage.morphology import disk

from wsss import metrics as M


# ---------------------------------------------------------------------------------------------
# confusion matrix, IoU, mIoU, accuracy
# ---------------------------------------------------------------------------------------------
def test_confusion_and_iou_by_hand():
    gt = np.array([[0, 0, 1], [1, 1, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    # counted pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (1,0); the 255 pixel is skipped
    conf = M.confusion_matrix(gt, pred, 3)
    np.testing.assert_array_equal(conf, [[1, 1, 0], [1, 2, 0], [0, 0, 0]])
    iou = M.iou_per_class(conf)
    # IoU0 = 1 / (1 + 1 + 1) = 1/3 ; IoU1 = 2 / (2 + 1 + 1) = 1/2 ; class 2 absent from both: NaN
    np.testing.assert_allclose(iou[:2], [1 / 3, 1 / 2])
    assert math.isnan(iou[2])
    assert M.mean_iou(conf) == pytest.approx((1 / 3 + 1 / 2) / 2)  # NaN class skipped
    assert M.pixel_accuracy(conf) == pytest.approx(3 / 5)


def test_class_only_in_ground_truth_counts_as_zero():
    gt = np.array([[0, 0, 2, 2]])
    pred = np.array([[0, 0, 0, 0]])
    # IoU0 = 2 / (2 + 2 + 0) = 1/2; IoU2 = 0 / (0 + 0 + 2) = 0; class 1 absent: NaN
    conf = M.confusion_matrix(gt, pred, 3)
    iou = M.iou_per_class(conf)
    assert iou[0] == pytest.approx(0.5) and iou[2] == 0 and math.isnan(iou[1])
    assert M.mean_iou(conf) == pytest.approx(0.25)


def test_confusion_matches_brute_force_loops():
    rng = np.random.default_rng(0)
    k = 4
    gt = rng.integers(0, k, (13, 11))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, k, gt.shape)
    mask = rng.random(gt.shape) < 0.7
    ref = np.zeros((k, k), np.int64)
    for i in range(gt.shape[0]):
        for j in range(gt.shape[1]):
            if gt[i, j] != 255 and mask[i, j]:
                ref[gt[i, j], pred[i, j]] += 1
    conf = M.confusion_matrix(gt, pred, k, mask=mask)
    np.testing.assert_array_equal(conf, ref)
    for c in range(k):
        tp = ref[c, c]
        fp = ref[:, c].sum() - tp
        fn = ref[c, :].sum() - tp
        assert M.iou_per_class(conf)[c] == pytest.approx(tp / (tp + fp + fn))
    # accumulating per-image matrices equals the matrix of the concatenated set
    gt2, pred2 = gt[:, ::-1].copy(), rng.integers(0, k, gt.shape)
    both = M.confusion_matrix(np.concatenate([gt, gt2]), np.concatenate([pred, pred2]), k)
    np.testing.assert_array_equal(both, M.confusion_matrix(gt, pred, k) + M.confusion_matrix(gt2, pred2, k))


def test_all_ignore_and_single_class():
    gt = np.full((4, 5), 255)
    conf = M.confusion_matrix(gt, np.zeros_like(gt), 2)
    assert conf.sum() == 0
    assert math.isnan(M.mean_iou(conf)) and math.isnan(M.pixel_accuracy(conf))
    one = M.confusion_matrix(np.zeros((3, 3)), np.zeros((3, 3)), 1)
    assert M.mean_iou(one) == 1.0 and M.pixel_accuracy(one) == 1.0


def test_prediction_out_of_range():
    gt = np.array([[0, 255]])
    # 255 predicted where the ground truth is ignored is fine, at a labelled pixel it is an error
    assert M.confusion_matrix(gt, np.array([[0, 255]]), 2).sum() == 1
    with pytest.raises(ValueError):
        M.confusion_matrix(gt, np.array([[255, 0]]), 2)
    with pytest.raises(ValueError):
        M.confusion_matrix(gt, np.zeros((2, 1)), 2)


# ---------------------------------------------------------------------------------------------
# boundaries and F
# ---------------------------------------------------------------------------------------------
def _edge_brute(label, ignore=255):
    h, w = label.shape
    out = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            if label[i, j] == ignore:
                continue
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                y, x = i + di, j + dj
                if 0 <= y < h and 0 <= x < w and label[y, x] != ignore and label[y, x] != label[i, j]:
                    out[i, j] = True
    return out


def test_edge_pixels_brute_force():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, (9, 12))
    label[rng.random(label.shape) < 0.15] = 255
    np.testing.assert_array_equal(M.edge_pixels(label), _edge_brute(label))


def test_tolerance():
    # 0.008 · sqrt(180² + 240²) = 0.008 · 300 = 2.4 → 3 pixels; ≥ 1 means pixels
    assert M.boundary_tolerance((180, 240)) == 3
    assert M.boundary_tolerance((10, 10)) == 1  # 0.008 · 14.1 = 0.11 → 1
    assert M.boundary_tolerance((10, 10), 4) == 4


def test_boundary_f_by_hand():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, 5:] = 1  # class 0 left, class 1 right: inner boundaries are columns 4 and 5
    pred = gt.copy()
    pred[2, 1] = 1  # a stray class-1 pixel inside class 0
    # class 1: GT boundary column 5 (10 px); predicted: column 5 + the isolated pixel (11 px).
    #   P = 10/11, R = 10/10, F = 2·(10/11)/(10/11 + 1) = 20/21
    # class 0: GT boundary column 4 (10 px); predicted: column 4 + the 4 pixels around the stray
    #   one, (1,1) (3,1) (2,0) (2,2), all ≥ 2 px from column 4 (tolerance 1 px on 10×10):
    #   P = 10/14, R = 1, F = 2·(10/14)/(10/14 + 1) = 5/6
    p, r, f = M.boundary_f(gt, pred, 3)
    np.testing.assert_allclose(p[:2], [10 / 14, 10 / 11])
    np.testing.assert_allclose(r[:2], [1, 1])
    np.testing.assert_allclose(f[:2], [5 / 6, 20 / 21])
    assert np.isnan(f[2])  # class 2 in neither map
    # shift the predicted edge by 2 columns: 2 px > 1 px tolerance → P = R = F = 0 for both ...
    shifted = np.zeros_like(gt)
    shifted[:, 7:] = 1
    np.testing.assert_array_equal(M.boundary_f(gt, shifted, 2)[2], [0, 0])
    # ... but with a 2-pixel tolerance every pixel matches
    np.testing.assert_array_equal(M.boundary_f(gt, shifted, 2, bound_th=2)[2], [1, 1])


def test_boundary_empty_cases():
    zeros = np.zeros((8, 8), np.uint8)
    # single class everywhere in both maps: both boundaries empty → F = 1
    assert M.boundary_f(zeros, zeros, 1)[2].tolist() == [1.0]
    # prediction adds a blob of class 1: class 0 has a predicted boundary but no GT one, class 1
    # exists only in the prediction → F = 0 for both (exactly one boundary empty)
    pred = zeros.copy()
    pred[2:5, 2:5] = 1
    p, r, f = M.boundary_f(zeros, pred, 2)
    assert f.tolist() == [0.0, 0.0] and p.tolist() == [0.0, 0.0] and r.tolist() == [1.0, 1.0]
    # the other way round: precision 1, recall 0
    p, r, f = M.boundary_f(pred, zeros, 2)
    assert f.tolist() == [0.0, 0.0] and p.tolist() == [1.0, 1.0] and r.tolist() == [0.0, 0.0]
    # all-ignore ground truth: no class present, all NaN
    assert np.isnan(M.boundary_f(np.full((8, 8), 255), pred, 2)[2]).all()
    assert M.boundary_prf(np.zeros((3, 3), bool), np.zeros((3, 3), bool), 1) == (1.0, 1.0, 1.0)


def test_ignored_pixels_excluded_from_both_boundaries():
    gt = np.zeros((12, 12), np.uint8)
    gt[:, 6:] = 1
    gt[:, 4:8] = 255  # a void band over the true edge (VOC style)
    # the prediction puts its edge anywhere inside the band: nothing to evaluate → F = 1
    for edge in (4, 5, 6, 7, 8):
        pred = np.zeros_like(gt)
        pred[:, edge:] = 1
        np.testing.assert_array_equal(M.boundary_f(gt, pred, 2)[2], [1, 1])
    # an error outside the band is still seen
    pred = np.zeros_like(gt)
    pred[:, 6:] = 1
    pred[:, 10:] = 0
    assert (M.boundary_f(gt, pred, 2)[2] < 1).all()


def _prf_pairwise(gb, pb, tol):
    """P/R/F from explicit pairwise Euclidean distances between boundary pixel coordinates."""
    g = np.argwhere(gb).astype(float)
    p = np.argwhere(pb).astype(float)
    d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    precision = (d.min(axis=1) <= tol).mean()
    recall = (d.min(axis=0) <= tol).mean()
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_prf_matches_pairwise_distances_and_disk_dilation(seed):
    rng = np.random.default_rng(seed)
    h, w = 40, 50
    yy, xx = np.mgrid[:h, :w]
    gt = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    for label in (gt, pred):
        for c in (1, 2):
            cy, cx, r = rng.integers(5, 35), rng.integers(5, 45), rng.integers(4, 12)
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = c
    gt[rng.integers(0, h), :] = 255  # an ignored row
    valid = gt != 255
    tol = 3
    for c in (0, 1, 2):
        gb = M.class_boundaries(gt, c, M.edge_pixels(gt), valid)
        pb = M.class_boundaries(pred, c, M.edge_pixels(np.where(valid, pred, 255)), valid)
        if not gb.any() or not pb.any():
            continue
        got = M.boundary_prf(gb, pb, tol)
        np.testing.assert_allclose(got, _prf_pairwise(gb, pb, tol))
        # and as disk dilations (the DAVIS formulation)
        se = disk(tol).astype(bool)
        precision = (pb & binary_dilation(gb, se)).sum() / pb.sum()
        recall = (gb & binary_dilation(pb, se)).sum() / gb.sum()
        assert got[0] == pytest.approx(precision) and got[1] == pytest.approx(recall)
        # one pixel wide after thinning: no 2×2 block is fully on the boundary
        assert not (gb[:-1, :-1] & gb[1:, :-1] & gb[:-1, 1:] & gb[1:, 1:]).any()
    p, r, f = M.boundary_f(gt, pred, 3, bound_th=tol)
    present = ~np.isnan(f)
    assert present.any()


def test_j_and_f():
    assert M.j_and_f(0.6, 0.8) == pytest.approx(0.7)


# ---------------------------------------------------------------------------------------------
# soft Jaccard
# ---------------------------------------------------------------------------------------------
def test_soft_jaccard_by_hand():
    a = np.array([0.2, 0.8]).reshape(2, 1, 1)
    b = np.array([0.5, 0.5]).reshape(2, 1, 1)
    # Σmin = 0.2 + 0.5 = 0.7, Σmax = 0.5 + 0.8 = 1.3
    assert M.soft_jaccard(a, b) == pytest.approx(0.7 / 1.3)
    assert M.soft_jaccard(a, a) == 1.0
    assert M.soft_jaccard(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))) == 1.0
    # hard one-hot maps: soft Jaccard = |agreeing pixels| / (2·|pixels| − |agreeing pixels|)
    one = np.eye(2)[[0, 0, 1, 1]].T.reshape(2, 1, 4)
    two = np.eye(2)[[0, 1, 1, 1]].T.reshape(2, 1, 4)
    assert M.soft_jaccard(one, two) == pytest.approx(3 / 5)
    mask = np.array([[True, False, True, True]])
    assert M.soft_jaccard(one, two, mask) == 1.0
