"""Stage ``crf``: DenseCRF cleans noisy probabilities on a two-colour image, worker invariance,
provenance, ``eval --crf`` consistency, input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wsss import metrics as M
from wsss.artifacts import Artifact, ArtifactWriter
from wsss.crf import CRFParams, dense_crf
from wsss.data import open_dataset
from wsss.data.generic import save_label_png
from wsss.errors import UserError
from wsss.stages import crf as crf_stage
from wsss.stages import evaluate

CLASSES = ["dark", "bright"]
H, W = 36, 48


def make_two_colour_dataset(root: Path, n: int = 3) -> Path:
    """Images split into a dark and a bright region along a slanted edge; masks = the regions."""
    from PIL import Image

    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    yy, xx = np.mgrid[:H, :W]
    for i in range(n):
        mask = (xx > W / 3 + (i + 1) * yy / 4).astype(np.uint8)
        image = np.where(mask[..., None] == 1, [210, 200, 60], [30, 40, 120]).astype(np.uint8)
        Image.fromarray(image).save(root / "train" / "images" / f"im{i}.png")
        save_label_png(root / "train" / "masks" / f"im{i}.png", mask)
    return root


def noisy_scores(mask: np.ndarray, seed: int) -> np.ndarray:
    """2×H×W float16 probabilities, right on average but with heavy independent pixel noise
    (about 25 % of pixels arg-max wrong)."""
    rng = np.random.default_rng(seed)
    p1 = np.clip(0.5 + 0.15 * (2 * mask.astype(float) - 1) + rng.normal(0, 0.22, mask.shape), 0.01, 0.99)
    return np.stack([1 - p1, p1]).astype(np.float16)


def write_predictions(path: Path, root: Path, scores: dict[str, np.ndarray], kind: str = "predictions") -> Path:
    ds = open_dataset(root)
    name = "scores" if kind == "predictions" else "probs"
    with ArtifactWriter(path, kind, classes=CLASSES, config={"made": "test"}, dataset=ds.describe()) as w:
        for image_id, s in scores.items():
            w.write(image_id, {name: s, "label": np.asarray(s, np.float32).argmax(0).astype(np.uint8)})
        w.commit()
    return path


@pytest.fixture()
def setup(tmp_path):
    root = make_two_colour_dataset(tmp_path / "data")
    ds = open_dataset(root)
    gts = {i: ds.load_mask(i) for i in ds.ids}
    scores = {i: noisy_scores(g, s) for s, (i, g) in enumerate(gts.items())}
    art = write_predictions(tmp_path / "pred.h5", root, scores)
    return root, gts, scores, art


def test_crf_cleans_noise_and_records_provenance(setup, tmp_path):
    root, gts, scores, art = setup
    out = crf_stage.run(art, tmp_path / "crf.h5")
    refined = Artifact(out, kind="predictions")
    assert refined.ids == sorted(gts)
    assert refined.inputs[0]["path"] == str(art.resolve()) and refined.inputs[0]["config"] == {"made": "test"}
    assert refined.config["bi_sxy"] == 80.0 and refined.config["iterations"] == 10
    conf_in = sum(M.confusion_matrix(g, scores[i].astype(np.float32).argmax(0), 2) for i, g in gts.items())
    conf_out = sum(M.confusion_matrix(g, refined.read(i, "label"), 2) for i, g in gts.items())
    miou_in, miou_out = M.mean_iou(conf_in), M.mean_iou(conf_out)
    assert miou_in < 0.7 and miou_out > 0.95 and miou_out > miou_in + 0.25
    for i in gts:
        q = refined.read(i, "scores")
        assert q.dtype == np.float16 and q.shape == (2, H, W)
        np.testing.assert_allclose(q.astype(np.float32).sum(0), 1, atol=2e-3)
        assert refined.image_attrs(i)["changed"] > 0.1
    # `eval --crf` on the input gives the figures of `eval` on the crf output
    direct = evaluate.run(out, out=tmp_path / "a.json")
    fused = evaluate.run(art, crf=CRFParams(), out=tmp_path / "b.json")
    for key in ("miou", "pixel_accuracy", "f", "jf", "confusion"):
        assert direct[key] == fused[key]
    assert fused["crf"]["bi_compat"] == 10.0
    assert evaluate.run(art, out=tmp_path / "c.json")["miou"] == pytest.approx(miou_in)


def test_unary_clipping_and_no_pairwise_is_identity():
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)  # 2×1×2 with exact zeros
    image = np.zeros((1, 2, 3), np.uint8)
    params = CRFParams(gauss_compat=0, bi_compat=0, iterations=5, eps=1e-5)
    q = dense_crf(image, probs, params)
    # no pairwise term: the marginals are the clipped, renormalised inputs: 1 / (1 + 1e-5)
    np.testing.assert_allclose(q[:, 0, :], [[1 / (1 + 1e-5), 1e-5 / (1 + 1e-5)], [1e-5 / (1 + 1e-5), 1 / (1 + 1e-5)]], rtol=1e-4)
    assert np.isfinite(q).all()
    with pytest.raises(ValueError):
        CRFParams(eps=0)


def test_workers_give_identical_output(setup, tmp_path):
    root, gts, scores, art = setup
    params = CRFParams(iterations=3)
    a = Artifact(crf_stage.run(art, tmp_path / "w1.h5", params=params, workers=1))
    b = Artifact(crf_stage.run(art, tmp_path / "w2.h5", params=params, workers=2))
    for i in gts:
        for name in ("scores", "label"):
            np.testing.assert_array_equal(a.read(i, name), b.read(i, name))


def test_pseudolabels_input(setup, tmp_path):
    root, gts, scores, art = setup
    pl = write_predictions(tmp_path / "pl.h5", root, scores, kind="pseudolabels")
    out = Artifact(crf_stage.run(pl, tmp_path / "pl_crf.h5", params=CRFParams(iterations=2)))
    ref = Artifact(crf_stage.run(art, tmp_path / "p_crf.h5", params=CRFParams(iterations=2)))
    assert out.kind == "predictions"
    np.testing.assert_array_equal(out.read("im0", "scores"), ref.read("im0", "scores"))


def test_nan_scores_wrong_size_and_wrong_kind(setup, tmp_path):
    root, gts, scores, art = setup
    bad = dict(scores)
    bad["im1"] = bad["im1"].copy()
    bad["im1"][0, 3, 3] = np.nan
    nan_art = write_predictions(tmp_path / "nan.h5", root, bad)
    with pytest.raises(UserError, match=r"nan\.h5: scores of image 'im1' contain NaN"):
        crf_stage.run(nan_art, tmp_path / "o1.h5")
    assert not (tmp_path / "o1.h5").exists() and not (tmp_path / "o1.h5.tmp").exists() and not (tmp_path / "o1.h5.parts").exists()
    small = {i: s[:, :, :-2] for i, s in scores.items()}
    small_art = write_predictions(tmp_path / "small.h5", root, small)
    with pytest.raises(UserError, match=r"small\.h5: scores of image 'im0' are 46×36 but the image .* is 48×36"):
        crf_stage.run(small_art, tmp_path / "o2.h5")
    ds = open_dataset(root)
    seeds = tmp_path / "seeds.h5"
    with ArtifactWriter(seeds, "seeds", classes=CLASSES, config={}, dataset=ds.describe()) as w:
        w.write("im0", {"label": gts["im0"]})
        w.commit()
    with pytest.raises(UserError, match="is a 'seeds' artifact"):
        crf_stage.run(seeds, tmp_path / "o3.h5")
    with pytest.raises(UserError, match="is an input of this command"):
        crf_stage.run(art, art)


def test_cli(setup, tmp_path):
    from wsss_cli.main import app

    root, gts, scores, art = setup
    runner = CliRunner()
    result = runner.invoke(app, ["crf", str(art), "--crf-iterations", "2", "--bi-sxy", "40"])
    assert result.exit_code == 0, result.output
    out = Artifact(tmp_path / "pred_crf.h5")
    assert out.config["bi_sxy"] == 40.0 and out.config["iterations"] == 2
    bad = runner.invoke(app, ["crf", str(art), "--bi-srgb", "0", "-o", str(tmp_path / "x.h5")])
    assert bad.exit_code == 2 and "bi_srgb 0.0: must be > 0" in bad.output


def test_cli_lattice_engine_agrees_with_pydensecrf(setup, tmp_path):
    from wsss_cli.main import app

    root, gts, scores, art = setup
    runner = CliRunner()
    for engine in ("lattice", "pydensecrf"):
        result = runner.invoke(app, ["crf", str(art), "--engine", engine, "--crf-device", "cpu",
                                     "-o", str(tmp_path / f"{engine}.h5")])
        assert result.exit_code == 0, result.output
    lat, ref = Artifact(tmp_path / "lattice.h5"), Artifact(tmp_path / "pydensecrf.h5")
    assert lat.config["engine"] == "lattice" and lat.config["device"] == "cpu"
    assert ref.config["engine"] == "pydensecrf"
    for i in gts:
        assert np.mean(lat.read(i, "label") == ref.read(i, "label")) >= 0.99
    fused = evaluate.run(art, crf=CRFParams(engine="lattice", device="cpu"), out=tmp_path / "l.json")
    assert fused["crf"]["engine"] == "lattice"
    assert fused["miou"] == evaluate.run(lat.path, out=tmp_path / "d.json")["miou"]
    bad = runner.invoke(app, ["crf", str(art), "--engine", "fast", "-o", str(tmp_path / "y.h5")])
    assert bad.exit_code == 2 and "engine must be one of" in bad.output
