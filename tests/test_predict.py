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
