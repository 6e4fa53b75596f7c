"""``wsss train --loss spml`` on the one training loop: a short CLI run on the tiny demo data with finite,
decreasing loss, ``--resume`` (bit-exact, memory bank included), bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from wsss.errors import UserError
from wsss.training import TrainConfig, load_checkpoint, train
from wsss_cli.main import app

TINY = ["--backbone", "mobilenet_v2", "--width-mult", "0.25", "--weights", "none", "--batch-size", "4",
        "--crop-size", "48", "--lr", "0.01", "--log-every", "1", "--embedding-dim", "16", "--kmeans-grid", "3",
        "--seed", "0"]


@pytest.fixture(scope="module")
def demo(demo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("spml")
    runner = CliRunner()
    seeds, sp = root / "scribbles.h5", root / "sp.h5"
    for args in (["prepare-scribbles", str(demo_root), str(seeds)],
                 ["superpixels", str(demo_root), str(sp), "--n-segments", "30"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return demo_root, seeds, sp


def _train(out, seeds, sp, *extra):
    return CliRunner().invoke(app, ["train", "--out", str(out), "--loss", "spml", "--seeds", str(seeds),
                                    "--superpixels", str(sp), *TINY, *extra])


def _steps(run):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"]


def test_cli_trains_with_finite_decreasing_loss_and_resumes_exactly(demo, tmp_path):
    _, seeds, sp = demo
    full = tmp_path / "full"
    result = _train(full, seeds, sp, "--epochs", "4")
    assert result.exit_code == 0, result.output
    steps = _steps(full)
    assert len(steps) == 8 and all(math.isfinite(r["loss"]) for r in steps)
    assert set(steps[0]["terms"]) == {"img", "ann", "cls", "occ"}
    losses = [r["loss"] for r in steps]
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    config = json.loads((full / "config.json").read_text())
    assert config["model"]["head"] == "spml" and config["model"]["output_stride"] == 8
    assert config["loss"]["w_occ"] == 0.5 and config["loss"]["kappa_occ"] == 12.0
    assert [i["kind"] for i in config["inputs"]] == ["seeds", "superpixels"]
    state = load_checkpoint(full)
    assert state["task"] == "spml" and len(state["spml_memory"]["entries"]) == 2

    part = tmp_path / "part"
    assert _train(part, seeds, sp, "--epochs", "4", "--stop-after-epoch", "2").exit_code == 0
    result = _train(part, seeds, sp, "--epochs", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert [r["loss"] for r in _steps(part)] == losses
    resumed = load_checkpoint(part)["model"]
    assert all(torch.equal(resumed[k], state["model"][k]) for k in resumed)

    from wsss.training.spml import load_spml_model

    model, meta = load_spml_model(full)
    assert meta["classes"] == config["classes"]
    out = model(torch.zeros(1, 3, 32, 32))
    assert out["embedding"].shape == (1, 16, 8, 8) and out["logits"].shape == (1, len(meta["classes"]), 8, 8)
    bad = CliRunner().invoke(app, ["predict", str(full), "--out", str(tmp_path / "p.h5")])
    assert bad.exit_code == 2 and "spml" in bad.output


def test_bad_input_is_one_line_exit_2(demo, tmp_path):
    data, seeds, sp = demo
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--out", str(tmp_path / "a"), "--loss", "spml", "--seeds", str(seeds), *TINY])
    assert missing.exit_code == 2 and "--superpixels" in missing.output
    wrong = _train(tmp_path / "b", seeds, seeds, "--epochs", "1")
    assert wrong.exit_code == 2 and "superpixels" in wrong.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    other = runner.invoke(app, ["train", "--out", str(tmp_path / "c"), "--loss", "pce", "--seeds", str(seeds),
                                "--w-img", "1"])
    assert other.exit_code == 2 and "does not apply to --loss pce" in other.output


def test_mismatched_superpixels_and_unseeded_image(demo, tmp_path):
    import numpy as np

    from wsss.artifacts import Artifact, ArtifactWriter

    data, seeds, sp = demo
    src = Artifact(sp, "superpixels")
    small = tmp_path / "small.h5"
    with ArtifactWriter(small, "superpixels", classes=src.classes, config={}, dataset=src.dataset) as w:
        for image_id in src.ids:
            w.write(image_id, {"segments": src.read(image_id, "segments")[:-2]})
        w.commit()
    with pytest.raises(UserError, match="segment map"):
        train(TrainConfig(out=str(tmp_path / "m"), loss="spml", seeds=str(seeds), superpixels=str(small), epochs=1,
                          backbone="mobilenet_v2", width_mult=0.25, weights="none", batch_size=2, crop_size=32,
                          progress=False))
    seeds_art = Artifact(seeds, "seeds")
    holed = tmp_path / "holed.h5"
    with ArtifactWriter(holed, "seeds", classes=seeds_art.classes, config={}, dataset=seeds_art.dataset) as w:
        for n, image_id in enumerate(seeds_art.ids):
            label = seeds_art.read(image_id, "label")
            w.write(image_id, {"label": np.full_like(label, 255) if n == 1 else label})
        w.commit()
    result = _train(tmp_path / "h", holed, sp, "--epochs", "1")
    assert result.exit_code == 2 and "has no seed pixel" in result.output and seeds_art.ids[1] in result.output
