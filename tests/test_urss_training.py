"""``wsss train --loss urss`` on the one training loop: phase 1 (pCE + entropy off the superpixel
boundaries), phase 2 initialised from exactly the phase-1 weights (+ eigenspace term), bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.errors import UserError
from wsss.parallel import DistributedContext
from wsss.training import TrainConfig, load_checkpoint, train
from wsss.training.data import AugmentConfig, augment
from wsss.training.toy import make_toy_data
from wsss.training.urss import URSSTask
from wsss.stages import superpixels as superpixels_stage

TINY = dict(backbone="mobilenet_v2", width_mult=0.25, head_channels=16, batch_size=2, crop_size=40,
            lr=0.001, progress=False, log_every=1, loss="urss")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("urss")
    data, seeds = make_toy_data(root, n_train=4, n_val=2, size=48)
    sp = superpixels_stage.run(data, root / "sp.h5", split="train", n_segments=20)
    return data, seeds, sp


def test_boundary_map_follows_the_augmentation_and_padding_is_excluded():
    boundary = np.zeros((20, 30), bool)
    boundary[:, 7] = True
    boundary[12, :] = True
    labels = np.where(boundary, 1, 255).astype(np.uint8)  # the same map through the label path
    image = np.where(boundary[..., None], 200, 0).astype(np.uint8).repeat(3, -1)
    for seed in range(6):
        for scale in ((1.0, 1.0), (0.5, 2.0)):
            cfg = AugmentConfig(crop_size=32, scale_min=scale[0], scale_max=scale[1])
            s = augment(image, labels, None, cfg, np.random.default_rng(seed), boundary=boundary)
            inside = s["valid"]
            assert scale != (1.0, 1.0) or not inside.all()  # crop 32 > 20 rows at scale 1: padding
            assert s["boundary"][~inside].all()  # padding is excluded
            assert torch.equal(s["boundary"][inside], (s["labels"] == 1)[inside])  # nearest, as the labels
            if scale == (1.0, 1.0):  # no resampling: exactly the image's bright pixels
                assert torch.equal(s["boundary"][inside], (s["image"][0] > 100)[inside])


def test_phase1_then_phase2_from_exactly_phase1_weights(toy, tmp_path):
    data, seeds, sp = toy
    losses1 = []
    run1 = train(TrainConfig(out=str(tmp_path / "p1"), seeds=str(seeds), superpixels=str(sp), epochs=2, **TINY),
                 on_step=lambda r: losses1.append(r))
    assert all(math.isfinite(r["loss"]) and set(r["terms"]) == {"pce", "entropy"} for r in losses1)
    config = json.loads((run1 / "config.json").read_text())
    assert config["model"]["head"] == "urss" and config["model"]["output_stride"] == 8
    assert config["loss"]["omega1"] == 1.0 and config["loss"]["phase"] == 1
    assert [i["kind"] for i in config["inputs"]] == ["seeds", "superpixels"]

    cfg2 = TrainConfig(out=str(tmp_path / "p2"), seeds=str(seeds), superpixels=str(sp), init_from=str(run1), epochs=1,
                       loss_options={"phase": 2, "transform": "translation"}, **{**TINY, "lr": 1e-4})
    task = URSSTask(cfg2)
    task.setup(DistributedContext())
    start = task.build_model().state_dict()
    p1 = load_checkpoint(run1)["model"]
    assert set(start) == set(p1) and all(torch.equal(start[k], p1[k]) for k in p1)

    steps = []
    run2 = train(cfg2, on_step=lambda r: steps.append(r))
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    assert all(set(r["terms"]) == {"pce", "entropy", "ss"} and r["terms"]["ss"] > 0 for r in steps)
    assert json.loads((run2 / "config.json").read_text())["inputs"][-1]["kind"] == "run"
    flips = []
    train(TrainConfig(**{**cfg2.__dict__, "out": str(tmp_path / "p2flip"), "loss_options": {"phase": 2, "transform": "flip"}}),
          on_step=lambda r: flips.append(r))
    assert flips and all(math.isfinite(r["loss"]) and r["terms"]["ss"] > 0 for r in flips)

    with pytest.raises(UserError, match="another model"):
        URSSTask(TrainConfig(out=str(tmp_path / "p3"), seeds=str(seeds), superpixels=str(sp), init_from=str(run1),
                             loss_options={"phase": 2, "walk": "paper"}, **TINY)).setup(DistributedContext())


def test_urss_bad_input(toy, tmp_path):
    data, seeds, sp = toy
    with pytest.raises(UserError, match="--superpixels"):
        train(TrainConfig(out=str(tmp_path / "a"), seeds=str(seeds), epochs=1, **TINY))
    with pytest.raises(UserError, match="--init-from"):
        train(TrainConfig(out=str(tmp_path / "b"), seeds=str(seeds), superpixels=str(sp), epochs=1,
                          loss_options={"phase": 2}, **TINY))
    with pytest.raises(UserError, match="superpixels"):
        train(TrainConfig(out=str(tmp_path / "c"), seeds=str(seeds), superpixels=str(seeds), epochs=1, **TINY))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_urss_options():
    from typer.testing import CliRunner

    from wsss_cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for option in ("--superpixels", "--init-from", "--omega1", "--omega2", "--gamma", "--lr-policy", "--walk"):
        assert option in out.output
    bad = runner.invoke(app, ["train", "--out", "x", "--loss", "pce", "--omega1", "2"])
    assert bad.exit_code == 2 and "does not apply to --loss pce" in bad.output


def _same_run(a, b):
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sa["step"] == sb["step"] and sa["epoch"] == sb["epoch"]
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    la = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["loss"], r.get("terms")) for r in la] == [(r["kind"], r["loss"], r.get("terms")) for r in lb]


def test_resume_of_phase1_and_phase2_reproduces_the_uninterrupted_runs(toy, tmp_path):
    """Phase 1 (with --rotate and --blur) and phase 2 (transforms drawn per step: flip and translation
    both occur) stopped after epoch 1 and resumed give the uninterrupted runs' weights and losses."""
    data, seeds, sp = toy
    base = dict(seeds=str(seeds), superpixels=str(sp), epochs=2, **TINY, rotation=10.0, blur=True)
    full1 = train(TrainConfig(out=str(tmp_path / "full1"), **base))
    part1 = tmp_path / "part1"
    train(TrainConfig(out=str(part1), stop_after_epoch=1, **base))
    assert load_checkpoint(part1)["epoch"] == 1
    train(TrainConfig(out=str(part1), resume=True, **base))
    _same_run(full1, part1)

    base2 = {**base, "init_from": str(full1), "loss_options": {"phase": 2}, "lr": 1e-4}
    full2 = train(TrainConfig(out=str(tmp_path / "full2"), **base2))
    part2 = tmp_path / "part2"
    train(TrainConfig(out=str(part2), stop_after_epoch=1, **base2))
    with pytest.raises(UserError, match="other options"):
        train(TrainConfig(out=str(part2), resume=True, **{**base2, "loss_options": {"phase": 2, "omega2": 3.0}}))
    train(TrainConfig(out=str(part2), resume=True, **base2))
    _same_run(full2, part2)
    from wsss.training.urss import draw_transform

    assert {draw_transform(0, s)[0] for s in range(load_checkpoint(full2)["step"])} == {"flip", "translation"}


@pytest.fixture(scope="module")
def phase1(toy, tmp_path_factory):
    data, seeds, sp = toy
    return train(TrainConfig(out=str(tmp_path_factory.mktemp("p1") / "run"), seeds=str(seeds), superpixels=str(sp),
                             epochs=1, **TINY))


def test_cli_bad_inputs_one_line_exit_2_nothing_written(toy, phase1, tmp_path, monkeypatch):
    """Superpixels of other images or sizes, a feature grid too large for memory, phase 2 pointed at a run
    of another backbone, head or class list: one line, exit 2, no run directory."""
    import shutil

    from typer.testing import CliRunner

    from wsss.models import random_walk
    from wsss_cli.main import app

    data, seeds, sp = toy
    other_size, _ = make_toy_data(tmp_path / "big", n_train=4, n_val=1, size=40)  # same ids, 40² images
    sp_size = superpixels_stage.run(other_size, tmp_path / "sp-size.h5", split="train", n_segments=20)
    sp_val = superpixels_stage.run(data, tmp_path / "sp-val.h5", split="val", n_segments=20)
    renamed = Path(shutil.copytree(data, tmp_path / "renamed"))
    (renamed / "classes.txt").write_text("background\nball\nbrick\n")
    pce_run = train(TrainConfig(out=str(tmp_path / "pce"), seeds=str(seeds), epochs=1, **{**TINY, "loss": "pce"}))

    base = ["train", "--loss", "urss", "--seeds", str(seeds), "--epochs", "1", "--batch-size", "2", "--crop-size", "40"]
    common = base + ["--backbone", "mobilenet_v2", "--width-mult", "0.25", "--head-channels", "16"]
    phase2 = ["--urss-phase", "2", "--superpixels", str(sp)]
    cases = [
        (["--superpixels", str(sp_size)], "has a 40×40 segment map but its seeds are 48×48"),
        (["--superpixels", str(sp_val)], "has no segments for 4 training images"),
        (["--superpixels", str(seeds)], "is a 'seeds' artifact"),
        (["--superpixels", str(tmp_path / "none.h5")], "no such artifact"),
        (phase2, "Pass --init-from PHASE1_RUN"),
        (phase2 + ["--init-from", str(pce_run)], "another model (mobilenet_v2 ×0.25, head deeplabv3plus, 3 classes; "
                                                 "this run: mobilenet_v2 ×0.25, head urss, walk code, 3 classes)"),
        (phase2 + ["--init-from", str(phase1), "--walk", "paper"], "walk code, 3 classes; this run: mobilenet_v2 ×0.25, "
                                                                   "head urss, walk paper"),
        (phase2 + ["--init-from", str(phase1), "--data", str(renamed)], "another class list (3 classes, this dataset 3; "
                                                                        "class 1: 'disc' vs 'ball')"),
        (phase2 + ["--init-from", str(tmp_path / "no-run")], "no-run"),
    ]
    runner = CliRunner()
    for i, (extra, reason) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = runner.invoke(app, common + ["--out", str(out)] + extra)
        text = result.output.strip()
        assert result.exit_code == 2 and "Traceback" not in text and len(text.splitlines()) == 1, (extra, text)
        assert reason in text, (extra, text)
        assert not out.exists(), extra
    backbone = runner.invoke(app, base + ["--backbone", "resnet50", "--weights", "none", "--out", str(tmp_path / "rn")]
                             + phase2 + ["--init-from", str(phase1)])
    assert backbone.exit_code == 2 and "resnet50" in backbone.output and not (tmp_path / "rn").exists(), backbone.output

    monkeypatch.setattr(random_walk, "available_bytes", lambda device: 1 << 10)  # 1 KiB free
    out = tmp_path / "memory"
    result = runner.invoke(app, common + ["--out", str(out), "--superpixels", str(sp)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "random walk on a 5×5 feature grid" in result.output and "smaller --crop-size" in result.output
    assert not out.exists()


def test_predict_a_urss_run_with_the_urss_inference_and_refuse_a_grid_too_large(toy, phase1, tmp_path, monkeypatch):
    from wsss.artifacts import Artifact
    from wsss.models import random_walk
    from wsss.stages import predict

    data, _, _ = toy
    cfg = predict.PredictConfig(checkpoint=str(phase1), out=str(tmp_path / "p.h5"), data=str(data), split="val",
                                scales=(0.5, 1.0, 1.5), long_side=48, window=40, device="cpu")
    art = Artifact(predict.run(cfg), "predictions")
    scores = art.read(art.ids[0], "scores").astype(np.float32)
    assert scores.shape == (3, 48, 48) and np.allclose(scores.sum(0), 1, atol=1e-2)
    monkeypatch.setattr(random_walk, "available_bytes", lambda device: 1 << 10)
    with pytest.raises(UserError, match=r"--scales: the URSS random walk on a 9×9 feature grid .* Use --window"):
        predict.run(predict.PredictConfig(checkpoint=str(phase1), out=str(tmp_path / "q.h5"), data=str(data), split="val",
                                          scales=(1.5,), device="cpu"))
    assert not (tmp_path / "q.h5").exists()
