"""wsss.metrics.ConfusionMatrix, the one confusion count behind training validation, ``wsss eval``
and the CAM threshold sweep: against brute-force per-pixel counts, stacked and all-reduced."""

from __future__ import annotations

import math
import multiprocessing as mp
import os

import numpy as np
import pytest
import torch
from torch import nn

from wsss import metrics as M
from wsss.cam.threshold_sweep import ThresholdSweep
from wsss.training.validate import evaluate

K = 4


def _brute_force(gts, preds, k: int, ignore: int = 255) -> np.ndarray:
    """K×K counts by a Python loop over every pixel of every image."""
    ref = np.zeros((k, k), np.int64)
    for gt, pred in zip(gts, preds):
        for g, p in zip(np.asarray(gt).ravel().tolist(), np.asarray(pred).ravel().tolist()):
            if g != ignore:
                ref[g, p] += 1
    return ref


def _brute_miou(ref: np.ndarray) -> tuple[float, list[float]]:
    ious = []
    for c in range(len(ref)):
        tp, fp, fn = ref[c, c], ref[:, c].sum() - ref[c, c], ref[c, :].sum() - ref[c, c]
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    present = [v for v in ious if not math.isnan(v)]
    return sum(present) / len(present), ious


class _PixelClassifier(nn.Module):
    """Logits ``B×K×H×W`` from a fixed 1×1 convolution of the image (no training)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, K, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.4, 0.4, 0.4]]).view(K, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def _val_set(n: int = 3, h: int = 6, w: int = 7):
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        mask = torch.randint(0, K, (1, h, w), generator=g)
        mask[torch.rand((1, h, w), generator=g) < 0.2] = 255
        samples.append({"image": torch.rand((1, 3, h, w), generator=g) * 255, "mask": mask})
    return samples


def test_validate_and_metrics_agree_with_brute_force():
    model = _PixelClassifier()
    samples = _val_set()
    preds = [model(s["image"]).argmax(1) for s in samples]
    ref = _brute_force([s["mask"] for s in samples], preds, K)
    assert ref.sum() > 0 and (np.diag(ref) > 0).sum() >= 2  # a non-trivial count

    counted = M.ConfusionMatrix(K)
    for s, p in zip(samples, preds):
        counted.update(s["mask"].numpy(), p.numpy())
    np.testing.assert_array_equal(counted.matrix, ref)
    np.testing.assert_array_equal(sum(M.confusion_matrix(s["mask"], p, K) for s, p in zip(samples, preds)), ref)

    miou, ious = _brute_miou(ref)
    region = counted.compute()
    assert region["miou"] == pytest.approx(miou) and region["pixels"] == ref.sum()
    assert region["pixel_accuracy"] == pytest.approx(np.trace(ref) / ref.sum())
    val = evaluate(model, samples, K, torch.device("cpu"))
    assert val["miou"] == pytest.approx(miou)
    np.testing.assert_allclose(val["iou"], ious, equal_nan=True)


def test_stacked_matrices_equal_separate_ones_and_the_sweep():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, K, (9, 8))
    gt[rng.random(gt.shape) < 0.2] = 255
    preds = rng.integers(0, K, (3, 9, 8))
    mask = rng.random(gt.shape) < 0.8
    stacked = M.ConfusionMatrix(K, stack=3).update(gt, preds, mask=mask)
    for t in range(3):
        np.testing.assert_array_equal(stacked.matrix[t], _brute_force([np.where(mask, gt, 255)], [preds[t]], K))
        assert stacked.compute()["miou"][t] == pytest.approx(M.mean_iou(stacked.matrix[t]))
    with pytest.raises(ValueError, match="differ in shape"):
        M.ConfusionMatrix(K, stack=2).update(gt, preds)
    # the CAM sweep's counts: threshold t labels a pixel background when every CAM is ≤ t
    cams = rng.random((2, 9, 8)).astype(np.float32)
    classes = np.array([1, 3])
    sweep = ThresholdSweep(K, (0.2, 0.6)).update(cams, classes, gt)
    for i, t in enumerate((0.2, 0.6)):
        label = np.where(cams.max(0) > t, classes[cams.argmax(0)], 0)
        np.testing.assert_array_equal(sweep.confusions[i], _brute_force([gt], [label], K))


def _rank_counts(rank: int, init_file: str, out):
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        rng = np.random.default_rng(rank)
        gt, pred = rng.integers(0, K, (5, 6)), rng.integers(0, K, (5, 6))
        conf = M.ConfusionMatrix(K).update(gt, pred)
        out.put((rank, conf.matrix.copy(), conf.all_reduce().matrix))
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_the_ranks(tmp_path):
    assert np.array_equal(M.ConfusionMatrix(K).update([[0, 1]], [[0, 0]]).all_reduce().matrix,
                          [[1, 0, 0, 0], [1, 0, 0, 0], [0] * 4, [0] * 4])  # one process: unchanged
    ctx = mp.get_context("fork")  # the children inherit the imported modules (spawn re-imports: ~1 min)
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_counts, args=(r, str(tmp_path / "init"), out)) for r in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    local = {rank: mine for rank, mine, _ in results}
    for _, _, reduced in results:
        np.testing.assert_array_equal(reduced, local[0] + local[1])
