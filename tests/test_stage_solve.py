"""Stage ``solve``: pseudo-labels from a few seeds recover a two-colour split, with and without
predictions; worker invariance; provenance; input errors; the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter
from wsss.data import open_dataset
from wsss.errors import UserError
from wsss.potts.solver import SolverConfig
from wsss.stages import solve as solve_stage

from two_colour_data import make_two_colour_dataset
from two_colour_data import write_seeds as write_two_colour_seeds

CLASSES = ["dark", "bright"]
H, W = 30, 40


def make_dataset(root: Path, n: int = 3) -> Path:
    return make_two_colour_dataset(root, CLASSES, H, W, n)


def write_seeds(path: Path, root: Path, labels: dict[str, np.ndarray], classes=CLASSES) -> Path:
    return write_two_colour_seeds(path, root, labels, classes)


def write_predictions(path: Path, root: Path, scores: dict[str, np.ndarray]) -> Path:
    ds = open_dataset(root)
    with ArtifactWriter(path, "predictions", classes=CLASSES, config={"made": "pred"}, dataset=ds.describe()) as w:
        for image_id, s in scores.items():
            w.write(image_id, {"scores": s, "label": s.astype(np.float32).argmax(0).astype(np.uint8)})
        w.commit()
    return path


@pytest.fixture()
def setup(tmp_path):
    root = make_dataset(tmp_path / "data")
    ds = open_dataset(root)
    gts = {i: ds.load_mask(i) for i in ds.ids}
    seeds = {}
    for i, g in gts.items():  # one 1-pixel dot per class, far from the edge
        s = np.full((H, W), 255, np.uint8)
        s[H // 2, 2] = 0
        s[H // 2, W - 3] = 1
        assert g[H // 2, 2] == 0 and g[H // 2, W - 3] == 1
        seeds[i] = s
    rng = np.random.default_rng(1)
    scores = {}
    for i, g in gts.items():  # noisy predictions: about a quarter of the pixels wrong
        p1 = np.clip(0.5 + 0.15 * (2 * g - 1.0) + rng.normal(0, 0.22, g.shape), 0.01, 0.99)
        scores[i] = np.stack([1 - p1, p1]).astype(np.float16)
    return root, gts, write_seeds(tmp_path / "seeds.h5", root, seeds), write_predictions(tmp_path / "pred.h5", root, scores), scores


def accuracy(art: Artifact, gts) -> float:
    return float(np.mean([np.mean(art.read(i, "label") == g) for i, g in gts.items()]))


def test_uniform_start_without_predictions(setup, tmp_path):
    root, gts, seeds, pred, _ = setup
    out = solve_stage.run(seeds, tmp_path / "pl.h5", solver=SolverConfig(init="uniform", relaxation="quadratic"))
    art = Artifact(out, kind="pseudolabels")
    assert art.ids == sorted(gts) and art.classes == CLASSES
    assert art.inputs[0]["path"] == str(seeds.resolve()) and art.config["relaxation"] == "quadratic"
    assert accuracy(art, gts) > 0.97  # two seed pixels label the whole image along the colour edge
    for i in gts:
        p = art.read(i, "probs")
        assert p.dtype == np.float16 and p.shape == (2, H, W)
        np.testing.assert_allclose(p.astype(np.float32).sum(0), 1, atol=2e-3)
        assert art.image_attrs(i)["seeded"] == pytest.approx(2 / (H * W))
    with pytest.raises(UserError, match="no --predictions"):
        solve_stage.run(seeds, tmp_path / "x.h5")


def test_predictions_are_cleaned_and_workers_agree(setup, tmp_path):
    root, gts, seeds, pred, scores = setup
    before = float(np.mean([np.mean(s.astype(np.float32).argmax(0) == gts[i]) for i, s in scores.items()]))
    cfg = SolverConfig(steps=20)
    a = Artifact(solve_stage.run(seeds, tmp_path / "a.h5", predictions=pred, solver=cfg, workers=1))
    b = Artifact(solve_stage.run(seeds, tmp_path / "b.h5", predictions=pred, solver=cfg, workers=2))
    assert before < 0.85 and accuracy(a, gts) > 0.95
    assert [r["kind"] for r in a.inputs] == ["seeds", "predictions"]
    for i in gts:
        np.testing.assert_array_equal(a.read(i, "probs"), b.read(i, "probs"))
        assert a.image_attrs(i)["changed"] > 0.05


def test_input_errors(setup, tmp_path):
    root, gts, seeds, pred, _ = setup
    bad = write_seeds(tmp_path / "bad.h5", root, {"im0": np.full((H, W), 7, np.uint8)})
    with pytest.raises(UserError, match=r"bad\.h5: seeds of image 'im0' contain label 7"):
        solve_stage.run(bad, tmp_path / "o1.h5", solver=SolverConfig(init="uniform"))
    assert not (tmp_path / "o1.h5").exists()
    with pytest.raises(UserError, match="is a 'predictions' artifact"):
        solve_stage.run(pred, tmp_path / "o2.h5")
    with pytest.raises(UserError, match="is an input of this command"):
        solve_stage.run(seeds, seeds, solver=SolverConfig(init="uniform"))
    with pytest.raises(UserError, match="dn"):
        solve_stage.run(seeds, tmp_path / "o3.h5", predictions=pred,
                        solver=SolverConfig(neighbourhood="dn", relaxation="collision-ce"))


def test_cli(setup, tmp_path):
    from wsss_cli.main import app

    root, gts, seeds, pred, _ = setup
    runner = CliRunner()
    result = runner.invoke(app, ["solve", str(seeds), "--init", "uniform", "--relaxation", "quadratic"])
    assert result.exit_code == 0, result.output
    art = Artifact(tmp_path / "pseudolabels.h5")
    assert art.config["relaxation"] == "quadratic" and art.config["command"].startswith("wsss")
    result = runner.invoke(app, ["solve", str(seeds), "-p", str(pred), "--optimizer", "sgd", "--steps", "5",
                                 "-o", str(tmp_path / "sgd.h5")])
    assert result.exit_code == 0, result.output
    assert Artifact(tmp_path / "sgd.h5").config["optimizer"] == "sgd"
    bad = runner.invoke(app, ["solve", str(seeds), "--init", "uniform", "--relaxation", "cubic", "-o", str(tmp_path / "y.h5")])
    assert bad.exit_code == 2 and "unknown Potts relaxation" in bad.output
