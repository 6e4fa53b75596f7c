"""Dataset layouts (VOC + SBD, Cityscapes, ADE20k) on tiny datasets written in the real formats,
and the input errors they report, through the library and the command line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from wsss.data import detect_layout, open_dataset
from wsss.data.ade20k import ADE20K_CLASSES
from wsss.data.cityscapes import CITYSCAPES_CLASSES, label_ids_to_train_ids
from wsss.data.voc import VOC_CLASSES
from wsss.errors import UserError
from wsss.palette import palette_bytes
from wsss_cli.main import app

runner = CliRunner()
RNG = np.random.default_rng(0)


def _jpeg(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=90)


def _png_rgb(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _png_label(path, label, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(label, np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        im.putpalette(palette_bytes())
    im.save(path)


def _voc_mask(height, width, cls):
    mask = np.zeros((height, width), np.uint8)
    mask[4:12, 5:15] = cls
    mask[3, 5:15] = 255  # VOC boundary band
    return mask


@pytest.fixture()
def voc(tmp_path):
    """VOCdevkit/VOC2012 with 3 images: 2 train (one only in SBD), 1 val."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    sizes = {"2007_000032": (16, 20), "2007_000039": (18, 16), "2008_000002": (16, 16)}
    for image_id, (h, w) in sizes.items():
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg", h, w)
        _png_label(root / "SegmentationClassAug" / f"{image_id}.png", _voc_mask(h, w, 7))
    _png_label(root / "SegmentationClass" / "2007_000032.png", _voc_mask(16, 20, 15), palette=True)
    _png_label(root / "SegmentationClass" / "2007_000039.png", _voc_mask(18, 16, 20), palette=True)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000032\n")
    (sets / "val.txt").write_text("2007_000039\n")
    (sets / "trainval.txt").write_text("2007_000032\n2007_000039\n")
    aug = root / "ImageSets" / "SegmentationAug"
    aug.mkdir(parents=True)
    (aug / "train_aug.txt").write_text(
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
        "/JPEGImages/2008_000002.jpg /SegmentationClassAug/2008_000002.png\n"
    )
    (root / "Annotations").mkdir()
    (root / "Annotations" / "2007_000032.xml").write_text("<annotation><object><name>person</name></object></annotation>")
    return tmp_path


def test_voc_roots_splits_classes_and_masks(voc):
    voc2012 = voc / "VOCdevkit" / "VOC2012"
    assert detect_layout(voc) == "voc" and detect_layout(voc2012) == "voc"
    for root in (voc, voc / "VOCdevkit", voc2012):
        ds = open_dataset(root, layout="voc", split="train")
        assert ds.ids == ["2007_000032"]
    ds = open_dataset(voc, split="trainval")
    assert ds.layout == "voc" and ds.classes == VOC_CLASSES and ds.classes[15] == "person" and len(ds.classes) == 21
    assert ds.ids == ["2007_000032", "2007_000039"]
    assert ds.load_image("2007_000039").shape == (18, 16, 3)
    mask = ds.load_mask("2007_000032")  # palette PNG: indices are the classes, 255 kept
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 15, 255}
    assert ds.load_mask("2007_000039")[5, 6] == 20
    assert ds.annotation_path("2007_000032") == voc2012 / "Annotations" / "2007_000032.xml"
    assert ds.annotation_path("2007_000032").exists()


def test_voc_train_aug_and_list_file(voc, tmp_path):
    ds = open_dataset(voc, layout="voc", split="train_aug")
    assert ds.ids == ["2007_000032", "2008_000002"]
    assert ds.load_mask("2007_000032")[5, 6] == 7  # SBD grey mask preferred for train_aug
    assert ds.load_mask("2008_000002")[5, 6] == 7
    listing = tmp_path / "mine.txt"
    listing.write_text("2008_000002 -1\n# comment\n\n2007_000039\n")
    ds = open_dataset(voc, layout="voc", split="custom", list_file=listing)
    assert ds.ids == ["2007_000039", "2008_000002"]
    assert ds.describe()["list_file"] == str(listing.resolve())
    with pytest.raises(UserError, match="test.txt"):
        open_dataset(voc, layout="voc", split="test")
    listing.write_text("2099_999999\n")
    with pytest.raises(UserError, match="2099_999999"):
        open_dataset(voc, layout="voc", list_file=listing)


def test_cityscapes_ids_masks_and_label_id_conversion(tmp_path):
    frames = {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bremen": ["bremen_000000_000019"]}
    for city, names in frames.items():
        for name in names:
            _png_rgb(tmp_path / "leftImg8bit" / "train" / city / f"{name}_leftImg8bit.png", 8, 16)
    train_ids = np.full((8, 16), 255, np.uint8)
    train_ids[:, :8] = 0
    train_ids[:, 8:] = 18
    for name in ("aachen_000000_000019", "bremen_000000_000019"):
        city = name.split("_")[0]
        _png_label(tmp_path / "gtFine" / "train" / city / f"{name}_gtFine_labelTrainIds.png", train_ids)
    label_ids = np.zeros((8, 16), np.uint8)
    label_ids[:, 4:8] = 7  # road
    label_ids[:, 8:12] = 26  # car
    label_ids[:, 12:] = 33  # bicycle
    _png_label(tmp_path / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png", label_ids)
    ds = open_dataset(tmp_path, split="train")
    assert ds.layout == "cityscapes" and ds.classes == CITYSCAPES_CLASSES and len(ds.classes) == 19
    assert ds.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bremen/bremen_000000_000019"]
    assert ds.load_image("bremen/bremen_000000_000019").shape == (8, 16, 3)
    np.testing.assert_array_equal(ds.load_mask("aachen/aachen_000000_000019"), train_ids)
    converted = ds.load_mask("aachen/aachen_000001_000019")
    assert converted[0, 0] == 255 and converted[0, 5] == 0 and converted[0, 9] == 13 and converted[0, 13] == 18
    assert label_ids_to_train_ids(np.array([[24, 9]], np.uint8)).tolist() == [[11, 255]]
    with pytest.raises(UserError, match="val"):
        open_dataset(tmp_path, layout="cityscapes", split="val")


def test_ade20k_split_names_and_mask_shift(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for folder, name in (("training", "ADE_train_00000001"), ("training", "ADE_train_00000002"),
                         ("validation", "ADE_val_00000001")):
        _jpeg(base / "images" / folder / f"{name}.jpg", 10, 12)
        raw = np.zeros((10, 12), np.uint8)
        raw[:, 4:8] = 1
        raw[:, 8:] = 150
        _png_label(base / "annotations" / folder / f"{name}.png", raw)
    for root in (tmp_path, base):
        ds = open_dataset(root, layout="ade20k", split="train")
        assert ds.ids == ["ADE_train_00000001", "ADE_train_00000002"]
    assert detect_layout(tmp_path) == "ade20k"
    ds = open_dataset(tmp_path, split="val")
    assert ds.layout == "ade20k" and ds.ids == ["ADE_val_00000001"]
    assert len(ds.classes) == 150 and ds.classes == ADE20K_CLASSES and ds.classes[0] == "wall"
    mask = ds.load_mask("ADE_val_00000001")
    assert mask[0, 0] == 255 and mask[0, 5] == 0 and mask[0, 9] == 149
    assert ds.load_image("ADE_val_00000001").shape == (10, 12, 3)
    with pytest.raises(UserError, match="split"):
        open_dataset(tmp_path, layout="ade20k", split="test")


# -- input errors ---------------------------------------------------------------------------------
def _one_error_line(result, name):
    """Exit code 2, no traceback, exactly one error line and it names ``name``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert len(errors) == 1 and name in errors[0], result.output
    assert result.output.rstrip().splitlines()[-1] == errors[0]  # the last thing printed


def test_mask_of_wrong_size(voc, tmp_path):
    voc2012 = voc / "VOCdevkit" / "VOC2012"
    _png_label(voc2012 / "SegmentationClass" / "2007_000032.png", np.zeros((10, 10), np.uint8), palette=True)
    ds = open_dataset(voc, split="train")
    with pytest.raises(UserError, match=r"2007_000032\.png.*10×10.*20×16"):
        ds.load_mask("2007_000032")
    result = runner.invoke(app, ["show", "--data", str(voc), "--split", "train", "-o", str(tmp_path / "out")])
    _one_error_line(result, "SegmentationClass/2007_000032.png")


def test_label_values_out_of_range(voc, tmp_path):
    voc2012 = voc / "VOCdevkit" / "VOC2012"
    bad = _voc_mask(18, 16, 21)  # 21 ≥ K = 21 and ≠ 255
    _png_label(voc2012 / "SegmentationClass" / "2007_000039.png", bad, palette=True)
    ds = open_dataset(voc, split="val")
    with pytest.raises(UserError, match=r"2007_000039\.png.*\[21\]"):
        ds.load_mask("2007_000039")
    result = runner.invoke(app, ["show", "--data", str(voc), "--layout", "voc", "--split", "val", "-o", str(tmp_path / "o")])
    _one_error_line(result, "2007_000039.png")
    # ADE20k: raw 151 becomes 150 ≥ 150
    base = tmp_path / "ade" / "ADEChallengeData2016"
    _jpeg(base / "images" / "validation" / "ADE_val_1.jpg", 6, 6)
    _png_label(base / "annotations" / "validation" / "ADE_val_1.png", np.full((6, 6), 151, np.uint8))
    with pytest.raises(UserError, match="ADE_val_1.png"):
        open_dataset(tmp_path / "ade", split="val").load_mask("ADE_val_1")


def test_corrupt_image(voc, tmp_path):
    voc2012 = voc / "VOCdevkit" / "VOC2012"
    (voc2012 / "JPEGImages" / "2007_000039.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(UserError, match="2007_000039.jpg"):
        open_dataset(voc, split="val").load_image("2007_000039")
    out = tmp_path / "sp.h5"
    result = runner.invoke(app, ["superpixels", str(voc), str(out), "--split", "trainval", "--n-segments", "10"])
    _one_error_line(result, "2007_000039.jpg")
    assert not out.exists() and not out.with_name("sp.h5.tmp").exists() and not out.with_name("sp.h5.parts").exists()  # nothing half-written


def test_empty_dataset_and_unknown_layout(voc, tmp_path):
    (voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(UserError, match="no images"):
        open_dataset(voc, split="val")
    result = runner.invoke(app, ["superpixels", str(voc), str(tmp_path / "a.h5"), "--split", "val"])
    _one_error_line(result, str(voc))
    empty_city = tmp_path / "city"
    (empty_city / "leftImg8bit" / "train").mkdir(parents=True)
    result = runner.invoke(app, ["superpixels", str(empty_city), str(tmp_path / "b.h5")])
    _one_error_line(result, str(empty_city))
    result = runner.invoke(app, ["superpixels", str(voc), str(tmp_path / "c.h5"), "--layout", "pascal"])
    _one_error_line(result, "pascal")
    odd = tmp_path / "odd"
    (odd / "pictures").mkdir(parents=True)
    result = runner.invoke(app, ["superpixels", str(odd), str(tmp_path / "d.h5")])
    _one_error_line(result, str(odd))
    with pytest.raises(UserError, match="unknown dataset layout"):
        open_dataset(voc, layout="pascal")
