"""The procedural demo dataset: layout, determinism, ignore band, scene statistics, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, maximum_filter, minimum_filter, sobel
from typer.testing import CliRunner

from wsss.data import open_dataset
from wsss.data.demo import FAMILY_COLOURS, generate_demo, ignore_band
from wsss.errors import UserError
from wsss_cli.main import app

runner = CliRunner()


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fixture_reads_back_in_the_generic_layout(demo_root, demo_train, demo_val):
    assert demo_train.layout == "generic"
    assert demo_train.classes == ["background", "ellipse", "rectangle", "triangle"]
    assert demo_train.ids == [f"train_{i:04d}" for i in range(8)]
    assert demo_val.ids == [f"val_{i:04d}" for i in range(4)]
    present = set()
    for ds in (demo_train, demo_val):
        for image_id in ds.ids:
            image = ds.load_image(image_id)
            mask = ds.load_mask(image_id)
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            assert mask.shape == (64, 64) and mask.max() < 4
            present |= set(np.unique(mask).tolist())
    assert present == {0, 1, 2, 3}
    assert (demo_root / "demo.json").exists()


def test_same_seed_gives_identical_bytes_and_prefix_property(tmp_path):
    a = generate_demo(tmp_path / "a", train=3, val=2, size=(32, 40), classes=5, seed=7, progress=False)
    b = generate_demo(tmp_path / "b", train=3, val=2, size=(32, 40), classes=5, seed=7, progress=False)
    c = generate_demo(tmp_path / "c", train=3, val=2, size=(32, 40), classes=5, seed=8, progress=False)
    short = generate_demo(tmp_path / "s", train=1, val=1, size=(32, 40), classes=5, seed=7, progress=False)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    images = [k for k in fa if "/images/" in k]
    assert any(fa[k] != fc[k] for k in images)
    for name in ("train/images/train_0000.png", "train/masks/train_0000.png", "val/images/val_0000.png"):
        assert _files(short)[name] == fa[name]
    ds = open_dataset(a, split="train")
    assert ds.load_image("train_0000").shape == (32, 40, 3)


def test_ignore_band_marks_only_class_boundaries():
    mask = np.zeros((10, 10), np.uint8)
    mask[3:7, 3:7] = 2
    banded = ignore_band(mask, 1)
    assert banded[0, 0] == 0 and banded[5, 5] == 2 and banded[4, 4] == 2
    assert banded[3, 3] == 255 and banded[2, 3] == 255 and banded[1, 3] == 0
    assert np.array_equal(ignore_band(mask, 0), mask)


def test_scene_statistics_make_a_fair_weak_supervision_test_bed(demo_train):
    """The documented properties: class identity mostly follows colour, confusers and rims make colour
    alone insufficient, and colour edges mostly (not always) lie on object boundaries."""
    images = np.stack([demo_train.load_image(i) for i in demo_train.ids]).astype(np.float64)
    masks = np.stack([demo_train.load_mask(i) for i in demo_train.ids])
    grad = np.sqrt(sum(sobel(images[..., c], axis=a) ** 2 for c in range(3) for a in (1, 2)))
    strong = grad > np.percentile(grad, 85)
    boundary = np.stack([maximum_filter(m, 3) != minimum_filter(m, 3) for m in masks])
    near_boundary = np.stack([maximum_filter(b.astype(np.uint8), 5) > 0 for b in boundary])
    on_edges = (strong & boundary).sum() / boundary.sum()
    assert 0.5 < on_edges < 0.95  # most, not all, boundaries have a colour edge
    assert (strong & near_boundary).sum() / strong.sum() < 0.8  # clutter/texture edges exist elsewhere
    # object pixels: the nearest family colour names the class (hues far apart) ...
    obj = masks > 0
    family = FAMILY_COLOURS[: demo_train.num_classes - 1]
    nearest = ((images[..., None, :] - family) ** 2).sum(-1).argmin(-1) + 1
    assert (nearest[obj] == masks[obj]).mean() > 0.9
    # ... objects are saturated, the background mostly grey, but confusers put object colours on it
    saturation = images.max(-1) - images.min(-1)
    assert (saturation[obj] > 60).mean() > 0.8
    assert 0.01 < (saturation[~obj] > 60).mean() < 0.3
    # rims: near the outline the colour is farther from the family colour than inside
    depth = np.stack([distance_transform_edt(m > 0) for m in masks])
    distance = np.sqrt(((images - np.concatenate([np.zeros((1, 3)), family])[masks]) ** 2).sum(-1))
    assert distance[obj & (depth <= 2)].mean() > 1.4 * distance[obj & (depth > 6)].mean()
    # so a nearest class-mean colour classifier is informative but far from perfect
    means = np.stack([images[masks == k].mean(0) for k in range(demo_train.num_classes)])
    pred = ((images[..., None, :] - means) ** 2).sum(-1).argmin(-1)
    assert 0.6 < (pred == masks).mean() < 0.95


def test_bad_options_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--classes"):
        generate_demo(tmp_path / "x", classes=20, progress=False)
    with pytest.raises(UserError, match="--size"):
        generate_demo(tmp_path / "x", size=(8, 8), progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        generate_demo(tmp_path / "file", train=1, val=0, size=(16, 16), progress=False)


def test_cli_demo_data(tmp_path):
    out = tmp_path / "d"
    result = runner.invoke(app, ["demo-data", str(out), "--train", "2", "--val", "1", "--size", "24", "32",
                                 "--classes", "3", "--seed", "3", "--ignore-border", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == ["train_0000.png", "train_0001.png"]
    assert (out / "classes.txt").read_text().split() == ["background", "ellipse", "rectangle"]
    ds = open_dataset(out, split="val")
    assert ds.load_image("val_0000").shape == (24, 32, 3)
    bad = runner.invoke(app, ["demo-data", str(tmp_path / "e"), "--size", "8", "8"])
    assert bad.exit_code == 2
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--size" in lines[0]
    help_text = runner.invoke(app, ["demo-data", "--help"]).output
    assert "default: 64" in help_text and "96, 96" in help_text
