"""Stage ``spml-labels``: random-walk pseudo-labels from a stand-in network recover a two-colour split from
noisy classifier scores; absent classes; worker invariance and --resume; a real SPMLNet run through the CLI,
accepted by ``train --loss pseudo``, ``eval`` and ``show``; bad input (wrong runs, mismatched or missing
inputs) is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter, parts_path
from wsss.crf import AUTO_ENGINE
from wsss.data import open_dataset
from wsss.errors import UserError
from wsss.stages import spml_labels as stage
from wsss.training.run import RunDir
from wsss_cli.main import app

from two_colour_data import make_two_colour_dataset
from two_colour_data import write_seeds as write_two_colour_seeds

CLASSES = ["dark", "bright", "unused"]
H, W = 48, 64
runner = CliRunner()


def make_dataset(root: Path, n: int = 3) -> Path:
    return make_two_colour_dataset(root, CLASSES, H, W, n)


def write_seeds(path: Path, root: Path, labels: dict[str, np.ndarray], classes=CLASSES) -> Path:
    return write_two_colour_seeds(path, root, labels, classes)


class ColourNet:
    """Stand-in embedding network: the embedding is the pixel's (centred) colour, so the two colour regions
    are far apart; the logits are the truth plus heavy noise (about a third of the cells wrong)."""

    def __init__(self):
        self.g = torch.Generator().manual_seed(0)

    def __call__(self, image):
        small = F.avg_pool2d(image / 255.0 - 0.5, 4)
        bright = (small.mean(1, keepdim=True) > 0).float()
        noise = torch.randn(small.shape[0], 1, *small.shape[-2:], generator=self.g)
        logits = torch.cat([-(2 * bright - 1) - 2.2 * noise, (2 * bright - 1) + 2.2 * noise,
                            torch.zeros_like(bright)], dim=1)
        return small, logits


def stand_in_loader(run, device):
    return ColourNet(), {"classes": CLASSES, "dataset": None, "epoch": 1, "checkpoint": Path(run) / "last.pt"}


@pytest.fixture()
def setup(tmp_path):
    root = make_dataset(tmp_path / "data")
    ds = open_dataset(root)
    seeds = {}
    for i in ds.ids:  # one dot per colour, far from the edge; class 2 never seeded
        s = np.full((H, W), 255, np.uint8)
        s[H // 2, 2] = 0
        s[H // 2, W - 3] = 1
        seeds[i] = s
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"stand-in")
    return root, ds, write_seeds(tmp_path / "seeds.h5", root, seeds), run


def accuracy(art: Artifact, ds) -> float:
    return float(np.mean([np.mean(art.read(i, "label") == ds.load_mask(i)) for i in ds.ids]))


def test_walk_recovers_the_split_from_noisy_scores(setup, tmp_path):
    root, ds, seeds, run = setup
    out = stage.run(run, seeds, tmp_path / "pl.h5", crf=None, net_loader=stand_in_loader)
    art = Artifact(out, "pseudolabels")
    assert art.ids == ds.ids and art.classes == CLASSES
    # the classifier alone (arg-max of its noisy logits, upsampled) is far from the truth
    net = ColourNet()
    raw = []
    for i in ds.ids:
        x = torch.from_numpy(ds.load_image(i)).permute(2, 0, 1)[None].float()
        logits = F.interpolate(net(x)[1], size=(H, W), mode="bilinear", align_corners=True)
        raw.append(np.mean(logits[0].argmax(0).numpy() == ds.load_mask(i)))
    assert np.mean(raw) < 0.85
    assert accuracy(art, ds) > 0.95  # errors only along the boundary, at the 1/8 grid's resolution
    for i in ds.ids:
        probs = art.read(i, "probs").astype(np.float32)
        assert probs.shape == (3, H, W)
        assert np.allclose(probs.sum(0), 1.0, atol=3e-3)
        assert np.all(probs[2] == 0)  # never seeded: absent, exactly 0 without the CRF
        assert art.image_attrs(i)["seeded"] == pytest.approx(2 / (H * W))
    assert art.config["crf"] is None and art.config["walk"]["squarings"] == 6


def test_crf_keeps_the_split_and_workers_do_not_change_the_result(setup, tmp_path):
    root, ds, seeds, run = setup
    one = Artifact(stage.run(run, seeds, tmp_path / "a.h5", net_loader=stand_in_loader), "pseudolabels")
    assert accuracy(one, ds) > 0.97
    assert one.config["crf"]["bi_sxy"] == 67.0 and one.config["crf"]["engine"] == AUTO_ENGINE["cpu"]
    two = Artifact(stage.run(run, seeds, tmp_path / "b.h5", workers=2, net_loader=stand_in_loader), "pseudolabels")
    for i in ds.ids:
        assert np.array_equal(one.read(i, "label"), two.read(i, "label"))


def test_resume_keeps_finished_images(setup, tmp_path, monkeypatch):
    root, ds, seeds, run = setup
    out = tmp_path / "pl.h5"
    calls = []
    original = stage.image_pseudolabels

    def failing(net, image, present, walk, device, scores=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(net, image, present, walk, device, scores)

    monkeypatch.setattr(stage, "image_pseudolabels", failing)
    with pytest.raises(RuntimeError):
        stage.run(run, seeds, out, crf=None, net_loader=stand_in_loader)
    assert not out.exists() and parts_path(out).exists()
    calls.clear()
    monkeypatch.setattr(stage, "image_pseudolabels", lambda *a: (calls.append(1), original(*a))[1])
    stage.run(run, seeds, out, crf=None, resume=True, net_loader=stand_in_loader)
    assert len(calls) == len(ds.ids) - 1 and len(Artifact(out)) == len(ds.ids)


def test_bad_inputs_are_refused_before_anything_is_written(setup, tmp_path):
    root, ds, seeds, run = setup
    out = tmp_path / "pl.h5"
    with pytest.raises(UserError, match="is an input"):
        stage.run(run, seeds, seeds, net_loader=stand_in_loader)
    other = write_seeds(tmp_path / "two.h5", root, {i: np.zeros((H, W)) for i in ds.ids}, classes=["a", "b", "c"])
    with pytest.raises(UserError, match="trained on the classes"):
        stage.run(run, other, out, net_loader=stand_in_loader)
    empty = write_seeds(tmp_path / "empty.h5", root, {i: np.full((H, W), 255) for i in ds.ids})
    with pytest.raises(UserError, match="no labelled pixel"):
        stage.run(run, empty, out, net_loader=stand_in_loader)
    small = write_seeds(tmp_path / "small.h5", root, {i: np.zeros((H // 2, W)) for i in ds.ids})
    with pytest.raises(UserError, match="seeds of image"):
        stage.run(run, small, out, net_loader=stand_in_loader)
    assert not out.exists()


# -- a real (untrained) SPMLNet run through the CLI ------------------------------------------------------------

def save_spml_run(path: Path, dataset, task: str = "spml") -> Path:
    from wsss.models.spml_net import SPMLModelConfig, SPMLNet

    torch.manual_seed(0)
    net = SPMLNet(SPMLModelConfig(num_classes=dataset.num_classes, backbone="mobilenet_v2", width_mult=0.25,
                                  embedding_dim=8))
    state = {"task": task, "model_config": net.config.to_dict(), "model": net.state_dict(),
             "classes": dataset.classes, "dataset": dataset.describe(), "epoch": 1}
    RunDir(path).save_checkpoint(state, 1)
    return path


def test_cli_artifact_is_accepted_by_train_eval_and_show(demo_root, demo_train, tmp_path):
    seeds = tmp_path / "seeds.h5"
    r = runner.invoke(app, ["prepare-scribbles", str(demo_root), str(seeds), "--split", "train"])
    assert r.exit_code == 0, r.output
    run = save_spml_run(tmp_path / "spml-run", demo_train)
    out = tmp_path / "pl.h5"
    r = runner.invoke(app, ["spml-labels", str(run), "--seeds", str(seeds), "--out", str(out), "--engine", "lattice",
                            "--crf-device", "cpu"])
    assert r.exit_code == 0, r.output
    art = Artifact(out, "pseudolabels")
    assert art.ids == demo_train.ids and art.config["crf"]["engine"] == "lattice"
    assert art.config["stage"] == "spml-labels" and art.config["walk"]["power"] == 20.0
    r = runner.invoke(app, ["eval", str(out), "--seeds", str(seeds), "--out", str(tmp_path / "pl.metrics.json")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "pl.metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    r = runner.invoke(app, ["show", str(out), "-o", str(tmp_path / "overlays"), "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 2
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "final"), "--loss", "pseudo", "--pseudolabels", str(out),
                            "--epochs", "1", "--batch-size", "4", "--crop-size", "32", "--backbone", "mobilenet_v2",
                            "--width-mult", "0.25", "--weights", "none", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "final" / "last.pt").exists()


@pytest.mark.parametrize("task", ["segmentation", "cam"])
def test_cli_refuses_a_run_that_is_not_an_embedding_run(demo_root, demo_train, tmp_path, task):
    seeds = tmp_path / "seeds.h5"
    assert runner.invoke(app, ["prepare-scribbles", str(demo_root), str(seeds), "--split", "train"]).exit_code == 0
    RunDir(tmp_path / "run").save_checkpoint({"task": task, "model": {}, "classes": demo_train.classes}, 1)
    out = tmp_path / "pl.h5"
    r = runner.invoke(app, ["spml-labels", str(tmp_path / "run"), "--seeds", str(seeds), "--out", str(out)])
    assert r.exit_code == 2
    assert "needs a SPML embedding run" in r.output and "wsss train --loss spml" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not out.exists() and not parts_path(out).exists()
    r = runner.invoke(app, ["spml-labels", str(tmp_path / "nowhere"), "--seeds", str(seeds), "--out", str(out)])
    assert r.exit_code == 2 and "no checkpoint" in r.output


def write_cams(path: Path, root: Path, maps: dict[str, tuple[np.ndarray, list[int]]]) -> Path:
    ds = open_dataset(root)
    with ArtifactWriter(path, "cams", classes=CLASSES, config={"made": "test"}, dataset=ds.describe()) as w:
        for image_id, (cams, classes) in maps.items():
            w.write(image_id, {"cams": cams.astype(np.float16), "classes": np.asarray(classes, np.int16)})
        w.commit()
    return path


def test_walk_from_cams_instead_of_the_classifier(setup, tmp_path):
    """--cams: the walk starts from the CAMs with the background (1 − max CAM)^α: with CAMs that are right on
    average but noisy, the split is recovered whatever the (noisy) classifier says; cam_scores' layout."""
    root, ds, seeds, run = setup
    rng = np.random.default_rng(4)
    maps = {i: (np.clip(0.7 * ds.load_mask(i) + rng.normal(0, 0.2, (H, W)), 0, 1)[None], [1]) for i in ds.ids}
    cams = write_cams(tmp_path / "cams.h5", root, maps)
    start = stage.cam_scores(Artifact(cams, "cams"), ds.ids[0], 3, (H, W), alpha=6.0)
    cam = maps[ds.ids[0]][0][0].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(start[1], cam)
    np.testing.assert_allclose(start[0], (1 - cam) ** 6, rtol=1e-5, atol=1e-6)
    assert np.all(start[2] == 0)
    out = stage.run(run, seeds, tmp_path / "pl.h5", crf=None, cams=cams, net_loader=stand_in_loader)
    art = Artifact(out, "pseudolabels")
    assert accuracy(art, ds) > 0.95
    assert art.config["cams"] == str(cams) and art.inputs[-1]["kind"] == "cams"
    one = write_cams(tmp_path / "one.h5", root, {ds.ids[0]: maps[ds.ids[0]]})
    with pytest.raises(UserError, match="has no CAMs for 2 images"):
        stage.run(run, seeds, tmp_path / "bad.h5", cams=one, net_loader=stand_in_loader)
    with pytest.raises(UserError, match="--cam-bg-power"):
        stage.run(run, seeds, tmp_path / "bad.h5", cams=cams, cam_bg_power=0.0, net_loader=stand_in_loader)
    assert not (tmp_path / "bad.h5").exists()
