"""SPML final classifier: the embedding stays frozen (no gradient, batch norms in eval mode, weights equal to
the SPML run's after training), ``wsss train --loss pseudo --init-from SPML_RUN`` trains and resumes,
``wsss predict`` reads the run (and an embedding run only with --initial-classifier); the wrong kind of run on
either side is one line, exit 2, no run left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter
from wsss.models.spml_final import SPMLFinal, SPMLFinalConfig
from wsss.models.spml_net import SPMLModelConfig, SPMLNet
from wsss.training.run import RunDir, load_checkpoint
from wsss_cli.main import app

runner = CliRunner()


def tiny_config(k: int = 4) -> SPMLModelConfig:
    return SPMLModelConfig(num_classes=k, backbone="mobilenet_v2", width_mult=0.25, embedding_dim=8)


def test_embedding_is_frozen_and_the_output_is_at_image_size():
    torch.manual_seed(0)
    model = SPMLFinal(SPMLFinalConfig(tiny_config()))
    model.train()
    assert not model.net.training and model.classifier.training
    bn = next(m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    logits = model(torch.rand(2, 3, 40, 48) * 255)
    assert logits.shape == (2, 4, 40, 48)
    logits.sum().backward()
    assert torch.equal(bn.running_mean, before)
    assert all(p.grad is None for p in model.net.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert model.config.dropout == 0.65 and model.classifier.layers[3].p == 0.65


def save_spml_run(path: Path, dataset, task: str = "spml") -> Path:
    torch.manual_seed(0)
    net = SPMLNet(tiny_config(dataset.num_classes))
    RunDir(path).save_checkpoint({"task": task, "model_config": net.config.to_dict(), "model": net.state_dict(),
                                  "classes": dataset.classes, "dataset": dataset.describe(), "epoch": 3}, 3)
    return path


def write_pseudolabels(path: Path, dataset) -> Path:
    """Pseudo-labels equal to the ground truth (one-hot probabilities)."""
    k = dataset.num_classes
    with ArtifactWriter(path, "pseudolabels", classes=dataset.classes, config={"made": "test"},
                        dataset=dataset.describe()) as w:
        for i in dataset.ids:
            mask = dataset.load_mask(i)
            probs = (np.arange(k)[:, None, None] == np.where(mask == 255, 0, mask)[None]).astype(np.float16)
            w.write(i, {"probs": probs, "label": mask.astype(np.uint8)})
        w.commit()
    return path


def train_args(out: Path, pl: Path, init: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--loss", "pseudo", "--hard", "--pseudolabels", str(pl), "--init-from", str(init),
            "--batch-size", "4", "--crop-size", "32", "--lr", "3e-3", "--device", "cpu", *extra]


def test_train_resume_and_predict(demo_root, demo_train, tmp_path):
    spml = save_spml_run(tmp_path / "spml", demo_train)
    pl = write_pseudolabels(tmp_path / "pl.h5", demo_train)
    final = tmp_path / "final"
    r = runner.invoke(app, train_args(final, pl, spml, "--epochs", "2", "--stop-after-epoch", "1"))
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, train_args(final, pl, spml, "--epochs", "2", "--resume"))
    assert r.exit_code == 0, r.output
    state = load_checkpoint(final)
    assert state["task"] == "spml-classifier" and state["epoch"] == 2
    assert state["model_config"]["head"] == "spml-final" and state["model_config"]["dropout"] == 0.65
    original = load_checkpoint(spml)["model"]
    for name, value in original.items():  # the embedding network (and its initial classifier) untouched
        assert torch.equal(state["model"][f"net.{name}"], value), name
    lrs = sorted(g["lr"] for g in state["optimizer"]["param_groups"])
    assert len(lrs) == 2 and lrs[1] == pytest.approx(2 * lrs[0])  # biases at twice the weights' rate
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.0, 5e-4}
    pred = tmp_path / "pred.h5"
    r = runner.invoke(app, ["predict", str(final), "--data", str(demo_root), "--split", "val", "--out", str(pred),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    art = Artifact(pred, "predictions")
    assert art.read(art.ids[0], "scores").shape[0] == demo_train.num_classes
    r = runner.invoke(app, ["eval", str(pred), "--out", str(tmp_path / "pred.metrics.json")])
    assert r.exit_code == 0, r.output


def test_predict_takes_an_embedding_run_only_with_initial_classifier(demo_root, demo_train, tmp_path):
    spml = save_spml_run(tmp_path / "spml", demo_train)
    pred = tmp_path / "pred.h5"
    r = runner.invoke(app, ["predict", str(spml), "--data", str(demo_root), "--out", str(pred), "--device", "cpu"])
    assert r.exit_code == 2 and "SPML embedding run" in r.output and "--initial-classifier" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not pred.exists()
    r = runner.invoke(app, ["predict", str(spml), "--data", str(demo_root), "--out", str(pred), "--device", "cpu",
                            "--initial-classifier"])
    assert r.exit_code == 0, r.output
    scores = Artifact(pred, "predictions").read(Artifact(pred).ids[0], "scores").astype(np.float32)
    net = SPMLNet(tiny_config(demo_train.num_classes))
    net.load_state_dict(load_checkpoint(spml)["model"])
    net.eval()
    from wsss.data import open_dataset

    val = open_dataset(demo_root, split="val")
    image = torch.from_numpy(val.load_image(Artifact(pred).ids[0])).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        ref = torch.softmax(net.class_logits(image), 1)[0].numpy()
    assert np.allclose(scores, ref, atol=2e-3)
    RunDir(tmp_path / "seg").save_checkpoint({"task": "segmentation", "model": {}}, 1)
    r = runner.invoke(app, ["predict", str(tmp_path / "seg"), "--out", str(tmp_path / "p2.h5"), "--initial-classifier"])
    assert r.exit_code == 2 and "applies to a SPML embedding run" in r.output


@pytest.mark.parametrize("task", ["segmentation", "spml-classifier"])
def test_init_from_must_be_an_embedding_run(demo_train, tmp_path, task):
    pl = write_pseudolabels(tmp_path / "pl.h5", demo_train)
    other = save_spml_run(tmp_path / "other", demo_train, task=task)
    final = tmp_path / "final"
    r = runner.invoke(app, train_args(final, pl, other, "--epochs", "1"))
    assert r.exit_code == 2, r.output
    assert "needs a SPML embedding run" in r.output and len(r.output.strip().splitlines()) == 1
    assert not final.exists()


def test_init_from_with_other_classes_is_refused(demo_train, tmp_path):
    pl = write_pseudolabels(tmp_path / "pl.h5", demo_train)
    spml = tmp_path / "spml"
    net = SPMLNet(tiny_config(demo_train.num_classes))
    RunDir(spml).save_checkpoint({"task": "spml", "model_config": net.config.to_dict(), "model": net.state_dict(),
                                  "classes": ["w", "x", "y", "z"], "epoch": 1}, 1)
    r = runner.invoke(app, train_args(tmp_path / "final", pl, spml, "--epochs", "1"))
    assert r.exit_code == 2 and "was trained on the classes" in r.output
    assert not (tmp_path / "final").exists()
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--loss", "pce", "--init-from", str(spml)])
    assert r.exit_code == 2 and "--init-from: does not apply to --loss pce" in r.output
