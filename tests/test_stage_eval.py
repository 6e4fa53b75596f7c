"""Stage ``eval``: figures against direct metric computations, every artifact kind, worker and
world-size invariance, errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wsss import metrics as M
from wsss.artifacts import ArtifactWriter
from wsss.data import open_dataset
from wsss.data.generic import save_label_png
from wsss.errors import UserError
from wsss.stages import evaluate

CLASSES = ["background", "square", "bar"]
H, W = 30, 40


def make_dataset(root: Path, n: int = 4) -> Path:
    """Generic layout, ``n`` images of H×W: a square (class 1) and a bar (class 2) on a gradient,
    a void (255) line at the square's top edge."""
    from PIL import Image

    rng = np.random.default_rng(7)
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for i in range(n):
        mask = np.zeros((H, W), np.uint8)
        y, x = rng.integers(2, 12), rng.integers(2, 20)
        mask[y : y + 12, x : x + 12] = 1
        mask[20:26, 5 + i : 35] = 2
        mask[y, x : x + 12] = 255
        image = np.stack([mask * 80 + 20, 200 - mask * 60, np.full_like(mask, 90)], -1).astype(np.uint8)
        Image.fromarray(image).save(root / "train" / "images" / f"im{i}.png")
        save_label_png(root / "train" / "masks" / f"im{i}.png", mask)
    return root


def gt_of(root: Path) -> dict[str, np.ndarray]:
    ds = open_dataset(root)
    return {i: ds.load_mask(i) for i in ds.ids}


def corrupt(mask: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic imperfect prediction: shifted by one column, a wrong block, no 255."""
    rng = np.random.default_rng(seed)
    pred = np.where(mask == 255, 0, mask)
    pred = np.roll(pred, 1, axis=1)
    y, x = rng.integers(0, H - 5), rng.integers(0, W - 5)
    pred[y : y + 5, x : x + 5] = rng.integers(0, 3)
    return pred.astype(np.uint8)


def write_artifact(path: Path, root: Path, labels: dict[str, np.ndarray], kind: str = "predictions",
                   soft: bool = True, classes=CLASSES) -> Path:
    """A predictions / pseudolabels / seeds artifact from hard labels (soft = smoothed one-hot)."""
    ds = open_dataset(root)
    with ArtifactWriter(path, kind, classes=classes, config={"test": True}, dataset=ds.describe()) as w:
        for image_id, label in labels.items():
            arrays = {"label": label.astype(np.uint8)}
            if soft and kind != "seeds":
                onehot = np.eye(len(classes), dtype=np.float32)[np.minimum(label, len(classes) - 1)].transpose(2, 0, 1)
                arrays["scores" if kind == "predictions" else "probs"] = (0.8 * onehot + 0.2 / len(classes)).astype(np.float16)
            w.write(image_id, arrays)
        w.commit()
    return path


@pytest.fixture()
def data(tmp_path):
    return make_dataset(tmp_path / "data")


def _figures(report: dict) -> dict:
    """The report without what legitimately differs between runs."""
    return {k: v for k, v in report.items() if k not in ("created", "path", "config")}


def test_perfect_predictions(data, tmp_path):
    gts = gt_of(data)
    art = write_artifact(tmp_path / "pred.h5", data, {i: np.where(g == 255, 0, g) for i, g in gts.items()})
    report = evaluate.run(art)
    assert report["miou"] == 1.0 and report["pixel_accuracy"] == 1.0
    assert report["f"] == 1.0 and report["jf"] == 1.0
    assert report["f_pairs"] == 3 * len(gts)
    written = json.loads((tmp_path / "pred.metrics.json").read_text())
    assert written["miou"] == 1.0
    assert written["artifact"]["path"] == str(art.resolve()) and written["artifact"]["config"] == {"test": True}
    assert written["dataset"]["root"] == str(data.resolve())


def test_figures_equal_direct_computation(data, tmp_path):
    gts = gt_of(data)
    preds = {i: corrupt(g, s) for s, (i, g) in enumerate(gts.items())}
    art = write_artifact(tmp_path / "pred.h5", data, preds)
    report = evaluate.run(art, out=tmp_path / "m.json")
    conf = sum(M.confusion_matrix(gts[i], preds[i], 3) for i in gts)
    assert report["confusion"] == conf.tolist()
    assert report["miou"] == pytest.approx(M.mean_iou(conf))
    assert report["pixel_accuracy"] == pytest.approx(M.pixel_accuracy(conf))
    iou = M.iou_per_class(conf)
    assert [report["iou"][c] for c in CLASSES] == pytest.approx(iou.tolist())
    f = np.stack([M.boundary_f(gts[i], preds[i], 3)[2] for i in gts])
    assert report["f"] == pytest.approx(np.nanmean(f))  # mean over (image, class) pairs
    assert report["f_per_class"]["bar"] == pytest.approx(np.nanmean(f[:, 2]))
    assert report["jf"] == pytest.approx((report["miou"] + report["f"]) / 2)
    assert 0 < report["miou"] < 1 and 0 < report["f"] < 1


def test_workers_do_not_change_results(data, tmp_path):
    gts = gt_of(data)
    art = write_artifact(tmp_path / "pred.h5", data, {i: corrupt(g, s) for s, (i, g) in enumerate(gts.items())})
    one = evaluate.run(art, workers=1, out=tmp_path / "a.json")
    two = evaluate.run(art, workers=2, out=tmp_path / "b.json")
    assert _figures(one) == _figures(two)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun missing")
def test_torchrun_two_ranks_equal_single_process(data, tmp_path):
    gts = gt_of(data)
    art = write_artifact(tmp_path / "pred.h5", data, {i: corrupt(g, s) for s, (i, g) in enumerate(gts.items())})
    single = evaluate.run(art, out=tmp_path / "single.json")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(bindir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(bindir / "wsss"),
         "eval", str(art), "--out", str(tmp_path / "dist.json")],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = json.loads((tmp_path / "dist.json").read_text())
    assert _figures(dist) == _figures(json.loads(json.dumps(single)))


def test_missing_images_and_partial(data, tmp_path):
    gts = gt_of(data)
    some = dict(list(gts.items())[:2])
    art = write_artifact(tmp_path / "pred.h5", data, some)
    with pytest.raises(UserError, match=r"pred\.h5: has no result for 2 of the 4 images.*--partial"):
        evaluate.run(art)
    report = evaluate.run(art, partial=True)
    assert report["images"] == 2 and report["miou"] == 1.0


def test_wrong_kind_and_wrong_size(data, tmp_path):
    ds = open_dataset(data)
    path = tmp_path / "sp.h5"
    with ArtifactWriter(path, "superpixels", classes=CLASSES, config={}, dataset=ds.describe()) as w:
        w.write("im0", {"segments": np.zeros((H, W), np.int32)})
        w.commit()
    with pytest.raises(UserError, match="cannot evaluate a 'superpixels' artifact"):
        evaluate.run(path)
    small = write_artifact(tmp_path / "small.h5", data, {i: np.zeros((H, W - 1), np.uint8) for i in ds.ids})
    with pytest.raises(UserError, match=r"small\.h5: the label map of image 'im0' is 39×30 but its ground truth"):
        evaluate.run(small)
    other = write_artifact(tmp_path / "k.h5", data, {i: np.zeros((H, W), np.uint8) for i in ds.ids}, classes=["a", "b"])
    with pytest.raises(UserError, match="differ from those of the dataset"):
        evaluate.run(other)


def test_seeds_are_evaluated_on_labelled_pixels_only(data, tmp_path):
    gts = gt_of(data)
    seeds = {}
    for i, g in gts.items():
        s = np.full_like(g, 255)
        s[::3, ::3] = g[::3, ::3]       # correct seeds on a grid (255 where the GT is void)
        s[1, 1] = (g[1, 1] + 1) % 3     # one wrong seed per image (row 1 is never void)
        seeds[i] = s
    art = write_artifact(tmp_path / "seeds.h5", data, seeds, kind="seeds")
    report = evaluate.run(art)
    labelled = sum(int(((s != 255) & (gts[i] != 255)).sum()) for i, s in seeds.items())
    valid = sum(int((g != 255).sum()) for g in gts.values())
    assert report["pixels"] == labelled
    assert report["seed_precision"] == pytest.approx((labelled - len(gts)) / labelled)
    assert report["coverage"] == pytest.approx(labelled / valid)
    assert report["f"] is None
    with pytest.raises(UserError, match="--crf needs class probabilities"):
        evaluate.run(art, crf=evaluate.CRFParams())


def test_pseudolabels_on_unlabelled_pixels(data, tmp_path):
    gts = gt_of(data)
    seeds, pseudo = {}, {}
    for i, g in gts.items():
        s = np.full_like(g, 255)
        s[:, : W // 2] = g[:, : W // 2]
        seeds[i] = s
        p = np.where(g == 255, 0, g).astype(np.uint8)
        p[:, W // 2 :] = 0          # right half (unseeded) all background: wrong on objects
        pseudo[i] = p
    seed_art = write_artifact(tmp_path / "seeds.h5", data, seeds, kind="seeds")
    art = write_artifact(tmp_path / "pl.h5", data, pseudo, kind="pseudolabels")
    report = evaluate.run(art, seeds=seed_art, reference=art)
    unl = sum(M.confusion_matrix(g, pseudo[i], 3, mask=seeds[i] == 255) for i, g in gts.items())
    assert report["unlabelled"]["confusion"] == unl.tolist()
    assert report["unlabelled"]["miou"] == pytest.approx(M.mean_iou(unl))
    assert report["unlabelled"]["miou"] < report["miou"] < 1
    assert report["seeds"]["path"] == str(seed_art.resolve())
    assert report["soft_jaccard"] == 1.0  # against itself
    seeds_missing = write_artifact(tmp_path / "s2.h5", data, dict(list(seeds.items())[:1]), kind="seeds")
    with pytest.raises(UserError, match=r"s2\.h5: has no image"):
        evaluate.run(art, seeds=seeds_missing)


def test_cli_table_json_and_errors(data, tmp_path):
    from wsss_cli.main import app

    gts = gt_of(data)
    art = write_artifact(tmp_path / "pred.h5", data, {i: corrupt(g, s) for s, (i, g) in enumerate(gts.items())})
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(art), "--out", str(tmp_path / "cli.json")])
    assert result.exit_code == 0, result.output
    for word in ("square", "mIoU", "pixel accuracy", "boundary F", "J&F"):
        assert word in result.output
    report = json.loads((tmp_path / "cli.json").read_text())
    assert "command" in report["config"] and report["config"]["out"] == str(tmp_path / "cli.json")
    assert math.isclose(report["miou"], evaluate.run(art, out=tmp_path / "lib.json")["miou"])
    bad = runner.invoke(app, ["eval", str(tmp_path / "nope.h5")])
    assert bad.exit_code == 2 and "nope.h5" in bad.output and "Traceback" not in bad.output
