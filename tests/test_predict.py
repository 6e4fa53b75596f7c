"""Prediction: multi-scale / flip averaging and the predictions artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsss.artifacts import Artifact
from wsss.stages.predict import PredictConfig, predict_probs, run
from wsss.training import TrainConfig, train
from wsss.training.toy import make_toy_data



class PixelModel(nn.Module):
    """A per-pixel model (1×1 conv): equivariant to flips, and to resizing up to interpolation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x / 255.0) * 3


def test_flip_and_scales_average_equivariant_model():
    model = PixelModel()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 32), indexing="ij")
    image = torch.stack([255 * yy, 255 * xx, 128 + 60 * torch.sin(4 * xx)])[None]
    single = predict_probs(model, image)
    torch.testing.assert_close(single.sum(1), torch.ones(1, 24, 32))
    torch.testing.assert_close(predict_probs(model, image, flip=True), single)
    multi = predict_probs(model, image, scales=(0.5, 1.0, 1.5), flip=True)
    assert multi.shape == single.shape
    assert (multi - single).abs().max() < 0.02  # smooth image: only interpolation differences
    asym = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        a = predict_probs(asym, image, flip=True)
        b = 0.5 * (torch.softmax(asym(image), 1) + torch.softmax(asym(image.flip(-1)), 1).flip(-1))
    torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pred")
    root, seeds = make_toy_data(tmp / "toy", n_train=2, n_val=3, size=40)
    run_dir = train(TrainConfig(out=str(tmp / "run"), seeds=str(seeds), epochs=1, backbone="mobilenet_v2",
                                width_mult=0.25, head_channels=8, batch_size=2, crop_size=32, progress=False))
    return root, run_dir


def test_predict_stage_writes_scores_and_labels(trained, tmp_path):
    root, run_dir = trained
    out = run(PredictConfig(checkpoint=str(run_dir), out=str(tmp_path / "p.h5"), data=str(root), split="val",
                            scales=(0.75, 1.0), flip=True, device="cpu"))
    art = Artifact(out, "predictions")
    assert art.ids == ["val000", "val001", "val002"] and art.classes == ["background", "disc", "box"]
    scores = art.read("val001", "scores")
    label = art.read("val001", "label")
    assert scores.dtype == np.float16 and scores.shape == (3, 40, 40) and label.dtype == np.uint8
    np.testing.assert_allclose(scores.astype(np.float32).sum(0), 1.0, atol=3e-3)
    assert (np.take_along_axis(scores, label[None].astype(np.int64), 0)[0] >= scores.max(0)).all()
    assert art.config["scales"] == [0.75, 1.0] and art.config["flip"] is True
    assert art.dataset["split"] == "val"
    # default images: the training dataset recorded in the checkpoint; two workers give the same result
    out2 = run(PredictConfig(checkpoint=str(run_dir / "last.pt"), out=str(tmp_path / "q.h5"), device="cpu", workers=2))
    out3 = run(PredictConfig(checkpoint=str(run_dir / "last.pt"), out=str(tmp_path / "r.h5"), device="cpu"))
    a2, a3 = Artifact(out2), Artifact(out3)
    assert a2.ids == ["train000", "train001"] and a2.dataset["split"] == "train"
    for i in a2.ids:
        assert np.array_equal(a2.read(i, "scores"), a3.read(i, "scores"))


def test_predict_cli_errors(trained, tmp_path):
    from typer.testing import CliRunner

    from wsss_cli.main import app

    _, run_dir = trained
    runner = CliRunner()
    bad = runner.invoke(app, ["predict", str(run_dir), "--out", str(tmp_path / "p.h5"), "--scales", "1,x"])
    assert bad.exit_code == 2 and "--scales" in bad.output
    bad = runner.invoke(app, ["predict", str(tmp_path / "nothing"), "--out", str(tmp_path / "p.h5")])
    assert bad.exit_code == 2 and "no checkpoint" in bad.output


def test_predict_refuses_a_cam_classifier_run(tmp_path):
    from wsss.errors import UserError
    from wsss.stages.predict import load_model
    from wsss.training.run import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "task": "cam", "model": {}}, tmp_path / "last.pt")
    with pytest.raises(UserError, match="wsss cam export"):
        load_model(tmp_path)


def test_window_starts_cover_the_side_and_end_flush():
    from wsss.inference import default_window_stride, window_starts

    assert default_window_stride(465) == 310  # ⌈465·2/3⌉, the URSS code
    assert window_starts(465, 465, 310) == [0] and window_starts(100, 465, 310) == [0]
    assert window_starts(1024, 465, 310) == [0, 310, 559]  # ⌈(1024 − 465)/310⌉ + 1 = 3 windows, the last flush
    assert window_starts(775, 465, 310) == [0, 310]


def _direct_windowed(model, image, window, stride, long_side, scales):
    """The URSS inference written out per pixel: for each scale the image resized to a long side of
    scale·long_side, padded at the bottom/right to the window; every window start along a side is
    k·stride for k = 0, 1, … while the window still starts inside, plus the flush last one; each pixel's
    probabilities averaged over the windows containing it; back to H×W (bilinear, corners aligned), mean
    over scales."""
    import math

    import torch.nn.functional as F

    _, _, big_h, big_w = image.shape
    result = torch.zeros(1, 4, big_h, big_w, dtype=torch.float64)
    for scale in scales:
        f = scale * long_side / max(big_h, big_w)
        h, w = max(1, round(big_h * f)), max(1, round(big_w * f))
        x = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        ph, pw = max(h, window), max(w, window)
        padded = torch.zeros(1, 3, ph, pw)
        padded[:, :, :h, :w] = x

        def starts(n):
            out = [k * stride for k in range(n) if k * stride + window <= n]
            return out + ([n - window] if out[-1] + window < n else [])

        outputs = {(y0, x0): torch.softmax(model(padded[:, :, y0:y0 + window, x0:x0 + window]), 1)[0].double()
                   for y0 in starts(ph) for x0 in starts(pw)}
        probs = torch.zeros(1, 4, h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                hits = [o[:, i - y0, j - x0] for (y0, x0), o in outputs.items()
                        if y0 <= i < y0 + window and x0 <= j < x0 + window]
                probs[0, :, i, j] = torch.stack(hits).mean(0)
        result += F.interpolate(probs, size=(big_h, big_w), mode="bilinear", align_corners=True)
        assert math.isclose(max(h, w), scale * long_side, abs_tol=0.5)
    return result / len(scales)


def test_sliding_windows_and_long_side_scales_equal_a_direct_computation():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1))  # window borders matter
    image = torch.rand(1, 3, 21, 30) * 255
    with torch.no_grad():
        got = predict_probs(model, image, scales=(0.5, 1.0, 1.5), long_side=24, window=10, window_stride=7)
        want = _direct_windowed(model, image, window=10, stride=7, long_side=24, scales=(0.5, 1.0, 1.5))
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
        # one window that holds the whole image: the plain pass; long side = the image's: plain scales
        torch.testing.assert_close(predict_probs(model, image, window=30, window_stride=30)[:, :, :21],
                                   _direct_windowed(model, image, 30, 30, 30, (1.0,)).float(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(predict_probs(model, image, scales=(0.5, 1.0), long_side=30),
                                   predict_probs(model, image, scales=(0.5, 1.0)))
        square = image[:, :, :, :21]
        torch.testing.assert_close(predict_probs(model, square, window=21), predict_probs(model, square))
