"""The object rule of generated annotations (wsss.annotations.rule) through the prepare-* commands:
objects above the minimum size get exactly one seed, smaller fragments none; coverage and seed counts
against masks whose skeletons are known exactly (1-px lines are their own skeleton)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from wsss.annotations.rule import MIN_OBJECT_FRACTION, stroke_width
from wsss.artifacts import Artifact
from wsss_cli.main import app

runner = CliRunner()
CLASSES = ["background", "pole", "sign"]
H = W = 100  # area 10 000: the default minimum (0.2 %) is 20 px; stroke width round(3·100/500) = 1


def masks() -> dict[str, np.ndarray]:
    """Two void (255) masks holding 1-px lines and a small blob, nothing else.

    im0: pole line 1×30 (30 px, large), sign line 25×1 (25 px, large), pole blob 3×3 (9 px, small),
    sign line 1×15 (15 px, small). im1: sign line 1×40 (large), pole line 1×19 (19 px, just below 20).
    """
    m0 = np.full((H, W), 255, np.uint8)
    m0[10, 5:35] = 1
    m0[40:65, 70] = 2
    m0[80:83, 80:83] = 1
    m0[90, 10:25] = 2
    m1 = np.full((H, W), 255, np.uint8)
    m1[50, 20:60] = 2
    m1[5, 70:89] = 1
    return {"im0": m0, "im1": m1}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for name, mask in masks().items():
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(root / "train" / "images" / f"{name}.png")
        Image.fromarray(mask, mode="L").save(root / "train" / "masks" / f"{name}.png")
    return root


def run(*args):
    result = runner.invoke(app, [str(a) for a in args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result


def read(path):
    with Artifact(path, "seeds") as art:
        return {i: art.read(i, "label") for i in art.ids}, art.json_attr("stats", {})


def expected_large() -> dict[str, np.ndarray]:
    """The large lines only, with their class; everything else 255."""
    e0 = np.full((H, W), 255, np.uint8)
    e0[10, 5:35] = 1
    e0[40:65, 70] = 2
    e1 = np.full((H, W), 255, np.uint8)
    e1[50, 20:60] = 2
    return {"im0": e0, "im1": e1}


def test_defaults_of_the_rule():
    assert MIN_OBJECT_FRACTION == 0.002
    assert stroke_width((H, W)) == 1 and stroke_width((375, 500)) == 3 and stroke_width((180, 240)) == 1
    assert stroke_width((360, 480)) == 3 and stroke_width((1024, 2048)) == 12


def test_scribbles_label_exactly_the_large_objects(dataset, tmp_path):
    out = tmp_path / "s.h5"
    result = run("prepare-scribbles", dataset, out, "--from-masks")
    labels, stats = read(out)
    for name, expected in expected_large().items():
        assert np.array_equal(labels[name], expected), name
    # coverage: (30 + 25) / 10 000 and 40 / 10 000; seeds per image 2 and 1
    assert stats["labelled_pixels"] == 95 and stats["pixels"] == 2 * H * W
    assert stats["labelled_fraction"]["mean"] == pytest.approx((55 / 1e4 + 40 / 1e4) / 2)
    assert stats["seeds_per_image"] == {"mean": 1.5, "min": 1, "max": 2}
    assert stats["objects"] == 6 and stats["objects_below_minimum"] == 3 and stats["objects_without_seed"] == 3
    text = " ".join(result.output.split())
    assert "seeds per image" in text and "1.5 mean" in text and "0.47 % mean" in text


def test_minimum_is_a_fraction_of_the_image(dataset, tmp_path):
    # 0.0019 · 10 000 = 19 px: the 19-px pole line of im1 becomes large, the 15-px and 9-px fragments stay small
    out = tmp_path / "s.h5"
    run("prepare-scribbles", dataset, out, "--min-object", "0.0019")
    labels, stats = read(out)
    assert (labels["im1"] == 1).sum() == 19 and np.all(labels["im1"][5, 70:89] == 1)
    assert np.array_equal(labels["im0"], expected_large()["im0"])
    assert stats["seeds_per_image"]["mean"] == 2.0


def test_objects_all_is_the_earlier_behaviour(dataset, tmp_path):
    # every fragment: lines ≥ 16 px get their skeleton, smaller ones (9 and 15 px) the distance-transform peak
    out = tmp_path / "s.h5"
    run("prepare-scribbles", dataset, out, "--objects", "all")
    labels, stats = read(out)
    e0 = expected_large()["im0"].copy()
    e0[81, 81] = 1  # centre of the 3×3 blob
    e0[90, 17] = 2  # middle of the 15-px line (cols 10..24)
    assert np.array_equal(labels["im0"], e0)
    e1 = expected_large()["im1"].copy()
    e1[5, 70:89] = 1
    assert np.array_equal(labels["im1"], e1)
    assert stats["seeds_per_image"] == {"mean": 3.0, "min": 2, "max": 4} and stats["objects_below_minimum"] == 0


def test_clicks_follow_the_rule(dataset, tmp_path):
    # prepare-points: one pixel per large object (the distance-transform peak: the line's middle)
    out = tmp_path / "p.h5"
    run("prepare-points", dataset, out)
    labels, stats = read(out)
    # the distance transform is 1 on every pixel of a 1-px line: the tied pixel nearest to their mean
    # position, the first in raster order on a tie (cols 5..34: mean 19.5 → col 19)
    e0 = np.full((H, W), 255, np.uint8)
    e0[10, 19] = 1
    e0[52, 70] = 2  # rows 40..64: mean 52
    e1 = np.full((H, W), 255, np.uint8)
    e1[50, 39] = 2  # cols 20..59: mean 39.5 → col 39
    assert np.array_equal(labels["im0"], e0) and np.array_equal(labels["im1"], e1)
    assert stats["labelled_pixels"] == 3 and stats["seeds_per_image"] == {"mean": 1.5, "min": 1, "max": 2}
    # length ratio 0 of the scribbles: one click per large object as well
    out0 = tmp_path / "c.h5"
    run("prepare-scribbles", dataset, out0, "--length-ratio", "0")
    clicks, stats0 = read(out0)
    assert stats0["labelled_pixels"] == 3
    for name in ("im0", "im1"):
        assert np.all((clicks[name] != 255) <= (expected_large()[name] != 255))


def test_blocks_follow_the_rule(dataset, tmp_path):
    # every block kept: the dense labels of the large objects only
    out = tmp_path / "b.h5"
    run("prepare-blocks", dataset, out, "--keep", "1", "--block-size", "50")
    labels, stats = read(out)
    for name, expected in expected_large().items():
        assert np.array_equal(labels[name], expected), name
    # blocks holding a label: im0 (rows 10 and 40–64 at cols 5–34 and 70): 3 blocks; im1: cols 20–59 of row 50: 2
    assert stats["seeds_per_image"] == {"mean": 2.5, "min": 2, "max": 3}
    out_all = tmp_path / "ba.h5"
    run("prepare-blocks", dataset, out_all, "--keep", "1", "--objects", "all")
    labels_all, _ = read(out_all)
    for name, mask in masks().items():
        assert np.array_equal(labels_all[name], mask)


def test_no_large_object_is_a_clean_error(dataset, tmp_path):
    out = tmp_path / "s.h5"
    result = runner.invoke(app, ["prepare-scribbles", str(dataset), str(out), "--min-object", "0.5"])
    assert result.exit_code == 2 and not out.exists()
    assert "no object of at least 50 % of the image" in " ".join(result.output.split())
