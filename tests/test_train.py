"""Training: augmentation with validity mask, run directory, metrics, resume reproducibility, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsss.errors import UserError
from wsss.training import TrainConfig, load_checkpoint, train
from wsss.training.data import AugmentConfig, EpochSampler, augment
from wsss.training.toy import make_toy_data

TINY = dict(backbone="mobilenet_v2", width_mult=0.25, head_channels=16, batch_size=2, crop_size=40,
            lr=0.01, progress=False, log_every=1)



@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_data(tmp_path_factory.mktemp("toy"), n_train=4, n_val=2, size=48)


def test_augment_padding_is_a_mask_not_a_label():
    rng = np.random.default_rng(0)
    image = np.full((10, 12, 3), 200, np.uint8)
    labels = np.zeros((10, 12), np.uint8)  # every pixel labelled 0
    probs = np.ones((2, 10, 12), np.float32) / 2
    s = augment(image, labels, probs, AugmentConfig(crop_size=16, scale_min=1.0, scale_max=1.0, flip=False), rng)
    assert s["valid"].sum() == 10 * 12
    assert (s["labels"][s["valid"]] == 0).all()
    assert (s["image"][:, ~s["valid"]] == 0).all() and (s["image"][:, s["valid"]] == 200).all()
    assert (s["probs"][:, ~s["valid"]] == 0).all() and torch.allclose(s["probs"][:, s["valid"]], torch.tensor(0.5))
    # the valid window is one rectangle of the image's size
    rows, cols = torch.nonzero(s["valid"], as_tuple=True)
    assert rows.max() - rows.min() + 1 == 10 and cols.max() - cols.min() + 1 == 12


def test_augment_scale_flip_crop_deterministic():
    image = (np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3)
    labels = (np.arange(20 * 30) % 3).astype(np.uint8).reshape(20, 30)
    cfg = AugmentConfig(crop_size=24)
    a = augment(image, labels, None, cfg, np.random.default_rng([0, 1, 2]))
    b = augment(image, labels, None, cfg, np.random.default_rng([0, 1, 2]))
    c = augment(image, labels, None, cfg, np.random.default_rng([0, 2, 2]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (3, 24, 24) and a["labels"].dtype == torch.int64 and a["valid"].dtype == torch.bool
    # labels keep their values (nearest), padding pixels are 255 *and* invalid
    assert set(a["labels"][a["valid"]].unique().tolist()) <= {0, 1, 2}
    assert (a["labels"][~a["valid"]] == 255).all()


def test_sampler_shards_and_depends_on_epoch():
    data = list(range(7))
    s0 = EpochSampler(data, rank=0, world_size=2, seed=3)
    s1 = EpochSampler(data, rank=1, world_size=2, seed=3)
    s0.set_epoch(0), s1.set_epoch(0)
    e0 = [i for _, i in s0] + [i for _, i in s1]
    assert set(e0) == set(data) and all(e == 0 for e, _ in s0)
    s0.set_epoch(1)
    assert all(e == 1 for e, _ in s0)
    big = EpochSampler(list(range(50)), seed=3)
    orders = []
    for epoch in (0, 1, 0):
        big.set_epoch(epoch)
        orders.append([i for _, i in big])
    assert orders[0] == orders[2] != orders[1] and sorted(orders[1]) == list(range(50))


def test_train_writes_run_and_metrics(toy, tmp_path):
    root, seeds = toy
    run = train(TrainConfig(out=str(tmp_path / "run"), seeds=str(seeds), epochs=1, val_data=str(root), **TINY))
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["loss"] == "pce" and config["model"]["num_classes"] == 3
    assert config["inputs"][0]["kind"] == "seeds"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    epochs = [r for r in lines if r["kind"] == "epoch"]
    assert len(steps) == 2 and len(epochs) == 1
    assert set(steps[0]["terms"]) == {"pce"} and np.isfinite(steps[0]["loss"])
    assert 0.0 <= epochs[0]["val"]["miou"] <= 1.0
    assert (run / "last.pt").exists() and (run / "checkpoints" / "epoch-001.pt").exists()
    state = load_checkpoint(run)
    assert state["epoch"] == 1 and state["step"] == 2
    with pytest.raises(UserError, match="already holds a run"):
        train(TrainConfig(out=str(run), seeds=str(seeds), epochs=1, **TINY))


def test_resume_reproduces_uninterrupted_run(toy, tmp_path):
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=2, **TINY)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), stop_after_epoch=1, **base))
    assert load_checkpoint(part)["epoch"] == 1
    with pytest.raises(UserError, match="other options"):
        train(TrainConfig(out=str(part), resume=True, **{**base, "lr": 0.02}))
    train(TrainConfig(out=str(part), resume=True, **base))
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    la = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_resume_of_a_run_started_before_an_option_existed(toy, tmp_path):
    """A checkpoint whose recorded options lack a newer option (here --rotate and --blur) resumes when the
    option is at its default, and is refused when it is not."""
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=2, **TINY)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), stop_after_epoch=1, **base))
    state = torch.load(part / "last.pt", weights_only=False)
    for key in ("rotation", "blur"):
        del state["config"]["train"][key]
    torch.save(state, part / "last.pt")
    with pytest.raises(UserError, match=r"other options \(rotation\)"):
        train(TrainConfig(out=str(part), resume=True, **{**base, "rotation": 5.0}))
    train(TrainConfig(out=str(part), resume=True, **base))
    a, b = load_checkpoint(full), load_checkpoint(part)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_resume_before_first_checkpoint_starts_afresh(toy, tmp_path):
    """A run stopped before its first checkpoint holds config.json but no last.pt: --resume restarts
    it from scratch (same weights as an uninterrupted run), a plain start still refuses."""
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=1, **TINY)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), **base))
    (part / "last.pt").unlink()
    for ckpt in (part / "checkpoints").glob("*.pt"):
        ckpt.unlink()
    with pytest.raises(UserError, match="already holds a run"):
        train(TrainConfig(out=str(part), **base))
    with pytest.warns(UserWarning, match="no checkpoint to resume from"):
        train(TrainConfig(out=str(part), resume=True, **base))
    a, b = load_checkpoint(full), load_checkpoint(part)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_pseudolabels_soft_targets_reach_the_loss(toy, tmp_path):
    from wsss.artifacts import ArtifactWriter
    from wsss.data import open_dataset

    root, _ = toy
    ds = open_dataset(root, split="train")
    path = tmp_path / "pseudo.h5"
    with ArtifactWriter(path, "pseudolabels", classes=ds.classes, config={}, dataset=ds.describe()) as w:
        for i in ds.ids:
            mask = ds.load_mask(i)
            probs = np.eye(3, dtype=np.float32)[mask].transpose(2, 0, 1) * 0.7 + 0.1
            w.write(i, {"probs": probs.astype(np.float16), "label": mask})
        w.commit()
    seen = []
    run = train(TrainConfig(out=str(tmp_path / "run"), loss="pseudo", pseudolabels=str(path), epochs=1,
                            **{**TINY, "scale_min": 1.0, "scale_max": 1.0, "crop_size": 56}),
                on_step=seen.append)
    assert set(seen[0]["terms"]) == {"ce"}
    # soft targets 0.8/0.1/0.1 bound the CE from below by their entropy (image fully inside the crop)
    entropy = -(0.8 * np.log(0.8) + 2 * 0.1 * np.log(0.1))
    assert all(r["loss"] >= entropy for r in seen)
    assert json.loads((run / "config.json").read_text())["inputs"][0]["kind"] == "pseudolabels"


def test_cli_train_and_errors(toy, tmp_path):
    from typer.testing import CliRunner

    from wsss_cli.main import app

    root, seeds = toy
    runner = CliRunner()
    out = tmp_path / "cli"
    # the defaults: EfficientNet-Lite0 with its packaged ImageNet weights
    args = ["train", "--out", str(out), "--loss", "full", "--data", str(root), "--epochs", "1", "--batch-size", "2",
            "--crop-size", "32", "--head-channels", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "last.pt").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["backbone"] == "efficientnet_lite0" and config["train"]["weights"] == "packaged"
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--loss", "pce", "--data", str(root)])
    assert bad.exit_code == 2 and "seeds" in bad.output
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--loss", "pce", "--seeds", str(seeds), "--eta", "1"])
    assert bad.exit_code == 2 and "--eta" in bad.output
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--loss", "nope", "--seeds", str(seeds)])
    assert bad.exit_code == 2 and "unknown loss" in bad.output
