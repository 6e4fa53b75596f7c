"""The prepare-* stages through the command line (typer CliRunner) on small synthetic datasets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from wsss.artifacts import Artifact
from wsss.stages.prepare import run_scribbles
from wsss_cli.main import app

runner = CliRunner()
CLASSES = ["background", "cat", "dog", "bird"]
H, W = 120, 160
N_IMAGES = 5


def synthetic_mask(seed: int) -> np.ndarray:
    """Background with 3–6 ellipses of classes 1..3 and a 255 band on class boundaries (as VOC)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[:H, :W]
    for _ in range(int(rng.integers(3, 7))):
        cy, cx, ry, rx = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(8, H / 4), rng.uniform(8, W / 4)
        mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.integers(1, 4)
    mask[ndimage.maximum_filter(mask, 3) != ndimage.minimum_filter(mask, 3)] = 255
    return mask


@pytest.fixture
def dataset(tmp_path):
    """Generic layout: root/train/images/*.png, root/train/masks/*.png, root/classes.txt."""
    root = tmp_path / "data"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "train" / "images" / f"im{i}.png")
        Image.fromarray(synthetic_mask(i), mode="L").save(root / "train" / "masks" / f"im{i}.png")
    return root


def masks(root):
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((root / "train" / "masks").glob("*.png"))}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def labels(path):
    with Artifact(path, "seeds") as art:
        return {i: art.read(i, "label") for i in art.ids}


def assert_clean_failure(result, output, *names):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for name in names:
        assert name in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not output.exists() and not output.with_name(output.name + ".tmp").exists() and not output.with_name(output.name + ".parts").exists()


# -- every command runs and reports ------------------------------------------------------------


@pytest.mark.parametrize(
    "command, extra, band",
    [
        # full-length skeleton scribbles: a few percent (7-8 % on these 120×160 images; coverage of
        # 3-px strokes scales like 1/side, see test_annotations_scribbles for VOC-sized images)
        ("prepare-scribbles", [], (0.005, 0.15)),
        ("prepare-scribbles", ["--length-ratio", "0.3", "--shrink-rate", "0.5", "--drop-rate", "0.2"], (0.0005, 0.05)),
        ("prepare-points", ["--radius", "2"], (0.0005, 0.02)),
        ("prepare-blocks", ["--block-size", "16", "--keep", "0.3"], (0.15, 0.35)),
    ],
)
def test_seed_commands_complete_with_progress_and_statistics(dataset, tmp_path, command, extra, band):
    out = tmp_path / "seeds.h5"
    result = invoke(command, dataset, out, *extra)
    assert result.exit_code == 0, result.output
    assert f"{N_IMAGES}/{N_IMAGES}" in result.output  # the progress bar
    assert "statistics of" in result.output and "labelled pixels" in result.output and "objects without seed" in result.output
    with Artifact(out, "seeds") as art:
        assert len(art) == N_IMAGES and art.classes == CLASSES
        stats = art.json_attr("stats")
        assert art.config["command"].startswith("wsss ") and art.dataset["layout"] == "generic"
        for i in art.ids:
            label = art.read(i, "label")
            mask = np.asarray(Image.open(dataset / "train" / "masks" / f"{i}.png"))
            assert label.dtype == np.uint8 and label.shape == (H, W)
            seeded = label != 255
            assert np.all(label[seeded] == mask[seeded])  # inside the dense label, never on 255
    lo, hi = band
    assert lo <= stats["labelled_fraction"]["mean"] <= hi, stats["labelled_fraction"]
    assert stats["images"] == N_IMAGES and sum(stats["per_class_pixels"]) == stats["labelled_pixels"]
    assert stats["objects"] > 0 and 0 <= stats["objects_without_seed"] <= stats["objects"]
    if command == "prepare-points":
        assert stats["objects_without_seed"] == 0


def test_tags_from_masks_and_from_voc_xml(dataset, tmp_path):
    out = tmp_path / "tags.h5"
    result = invoke("prepare-tags", dataset, out)
    assert result.exit_code == 0, result.output
    assert "tags per image" in result.output and f"{N_IMAGES}/{N_IMAGES}" in result.output
    with Artifact(out, "tags") as art:
        for i, mask in masks(dataset).items():
            present = sorted(set(np.unique(mask).tolist()) - {0, 255})
            assert art.read(i, "tags").tolist() == present
            boxes = art.read(i, "boxes")
            assert boxes.dtype == np.int32 and boxes.shape[1] == 5 and set(boxes[:, 0].tolist()) == set(present)
    xml_dir = tmp_path / "Annotations"
    xml_dir.mkdir()
    for i in range(N_IMAGES):
        (xml_dir / f"im{i}.xml").write_text(
            "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>160</xmax><ymax>120</ymax>"
            "</bndbox></object><object><name>Cat</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax>"
            "</bndbox></object></annotation>"
        )
    out2 = tmp_path / "tags2.h5"
    result = invoke("prepare-tags", dataset, out2, "--xml", xml_dir)
    assert result.exit_code == 0, result.output
    with Artifact(out2, "tags") as art:
        assert art.read("im0", "tags").tolist() == [1, 2]
        assert art.read("im0", "boxes").tolist() == [[2, 0, 1, 159, 119], [1, 9, 19, 29, 39]]
        assert art.config["resolved"]["source"] == "xml"


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_maps_different_seed_different_drops_and_blocks(dataset, tmp_path):
    def run(cmd, seed, *extra):
        out = tmp_path / f"{cmd}{seed}{len(extra)}.h5"
        assert invoke(cmd, dataset, out, "--seed", seed, *extra).exit_code == 0
        return labels(out)

    for cmd, extra in (("prepare-scribbles", ("--drop-rate", "0.5", "--shrink-rate", "0.5")), ("prepare-blocks", ())):
        a, b, c = run(cmd, 1, *extra), run(cmd, 1, *extra), run(cmd, 2, *extra)
        assert all(np.array_equal(a[i], b[i]) for i in a)
        assert any(not np.array_equal(a[i], c[i]) for i in a)


def test_results_do_not_depend_on_workers(dataset, tmp_path):
    one = run_scribbles(dataset, tmp_path / "w1.h5", drop_rate=0.5, shrink_rate=0.3, seed=3, workers=1)
    two = run_scribbles(dataset, tmp_path / "w2.h5", drop_rate=0.5, shrink_rate=0.3, seed=3, workers=2)
    a, b = labels(one), labels(two)
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)


def test_ratio_zero_is_one_click_per_object_through_the_stage(dataset, tmp_path):
    out = tmp_path / "clicks.h5"
    assert invoke("prepare-scribbles", dataset, out, "--length-ratio", "0", "--width", "1").exit_code == 0
    from wsss.annotations import find_objects

    for i, label in labels(out).items():
        objects = find_objects(masks(dataset)[i], len(CLASSES))
        counts = np.bincount(objects.labels[label != 255], minlength=len(objects) + 1)[1:]
        assert np.all(counts == 1)


# -- imports ---------------------------------------------------------------------------------


def write_scribblesup(folder, image_id, polygons):
    body = "".join(
        "<polygon><tag>" + tag + "</tag>" + "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in pts) + "</polygon>"
        for tag, pts in polygons
    )
    (folder / f"{image_id}.xml").write_text(f"<annotation><filename>{image_id}.jpg</filename>{body}</annotation>")


@pytest.fixture
def xml_dir(tmp_path):
    folder = tmp_path / "pascal_2012"
    folder.mkdir()
    for i in range(N_IMAGES):
        write_scribblesup(folder, f"im{i}", [("background", [(5, 5), (150, 10)]), ("cat", [(20, 100), (80, 60), (140, 110)])])
    return folder


def test_scribblesup_import_respects_255_and_width(dataset, xml_dir, tmp_path):
    raw, kept = tmp_path / "raw.h5", tmp_path / "kept.h5"
    assert invoke("prepare-scribbles", dataset, raw, "--xml", xml_dir, "--no-mask-ignore").exit_code == 0
    result = invoke("prepare-scribbles", dataset, kept, "--xml", xml_dir)
    assert result.exit_code == 0 and "statistics of" in result.output
    a, b = labels(raw), labels(kept)
    for i, mask in masks(dataset).items():
        assert np.array_equal(b[i], np.where(mask == 255, 255, a[i]))
        assert a[i][5, 5] == 0 and a[i][4, 4] == 0 and a[i][3, 3] == 255  # 3 px wide
        assert a[i][60, 80] == 1


def test_png_import_with_drop(dataset, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(N_IMAGES):
        seed = np.full((H, W), 255, np.uint8)
        for k in range(8):  # 8 separate cat strokes and a background one
            seed[10 + 12 * k : 12 + 12 * k, 20:60] = 1
        seed[5, :] = 0
        Image.fromarray(seed, mode="L").save(folder / f"im{i}.png")
    out = tmp_path / "png.h5"
    result = invoke("prepare-scribbles", dataset, out, "--png", folder, "--drop-rate", "0.5", "--no-mask-ignore")
    assert result.exit_code == 0, result.output
    got = labels(out)
    strokes = [int(sum((got[i][11 + 12 * k, 20:60] == 1).all() for k in range(8))) for i in got]
    assert 0 < sum(strokes) < 8 * N_IMAGES  # some dropped, some kept, each stroke entirely
    assert all((got[i][5] == 0).all() for i in got)  # background kept
    bad = invoke("prepare-scribbles", dataset, tmp_path / "x.h5", "--png", folder, "--length-ratio", "0.5")
    assert_clean_failure(bad, tmp_path / "x.h5", str(folder))


def test_points_from_csv(dataset, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("image_id,x,y,class\n" + "".join(f"im{i},{10 + i},20,dog\n" for i in range(N_IMAGES)))
    out = tmp_path / "p.h5"
    result = invoke("prepare-points", dataset, out, "--points", csv, "--radius", "1", "--no-mask-ignore")
    assert result.exit_code == 0, result.output
    for i, label in labels(out).items():
        k = int(i[2:])
        assert label[20, 10 + k] == 2 and (label != 255).sum() == 5


# -- bad input ---------------------------------------------------------------------------------


def test_bad_xml_files_fail_cleanly_or_are_skipped(dataset, xml_dir, tmp_path):
    out = tmp_path / "s.h5"
    cases = [
        ("im1", "<annotation><polygon><tag>cat", "malformed XML"),
        ("im2", "<annotation><polygon><tag>zebra</tag><point><X>1</X><Y>1</Y></point></polygon></annotation>", "unknown class"),
        ("im3", "<annotation><polygon><tag>cat</tag><point><X>500</X><Y>1</Y></point></polygon></annotation>", "outside"),
    ]
    for image_id, text, reason in cases:
        good = (xml_dir / f"{image_id}.xml").read_text()
        (xml_dir / f"{image_id}.xml").write_text(text)
        assert_clean_failure(invoke("prepare-scribbles", dataset, out, "--xml", xml_dir), out, f"{image_id}.xml", reason)
        (xml_dir / f"{image_id}.xml").write_text(good)
    for image_id, text, _ in cases:
        (xml_dir / f"{image_id}.xml").write_text(text)
    result = invoke("prepare-scribbles", dataset, out, "--xml", xml_dir, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "skipped 3 image(s)" in result.output
    for image_id, _, reason in cases:
        assert f"{image_id}.xml" in result.output
    with Artifact(out, "seeds") as art:
        assert art.ids == ["im0", "im4"] and len(art.json_attr("stats")["skipped"]) == 3


def test_bad_masks_fail_cleanly_or_are_skipped(dataset, tmp_path):
    out = tmp_path / "s.h5"
    mask_dir = dataset / "train" / "masks"
    Image.fromarray(np.zeros((H + 1, W), np.uint8), mode="L").save(mask_dir / "im1.png")  # wrong size
    for cmd in ("prepare-scribbles", "prepare-points", "prepare-blocks", "prepare-tags"):
        assert_clean_failure(invoke(cmd, dataset, out), out, "im1.png")
    Image.fromarray(synthetic_mask(1), mode="L").save(mask_dir / "im1.png")
    Image.fromarray(np.full((H, W), 255, np.uint8), mode="L").save(mask_dir / "im2.png")  # no object
    for cmd in ("prepare-scribbles", "prepare-points", "prepare-blocks", "prepare-tags"):
        assert_clean_failure(invoke(cmd, dataset, out), out, "im2.png")
    result = invoke("prepare-points", dataset, out, "--skip-bad")
    assert result.exit_code == 0 and "im2.png" in result.output
    with Artifact(out, "seeds") as art:
        assert "im2" not in art.ids and len(art) == N_IMAGES - 1


def test_bad_points_file(dataset, tmp_path):
    csv = tmp_path / "points.csv"
    out = tmp_path / "p.h5"
    rows = "".join(f"im{i},10,20,dog\n" for i in range(N_IMAGES))
    csv.write_text(rows + "im3,500,20,dog\n")
    assert_clean_failure(invoke("prepare-points", dataset, out, "--points", csv), out, "points.csv", "outside")
    csv.write_text(rows + "im3,5,5,zebra\n")
    assert_clean_failure(invoke("prepare-points", dataset, out, "--points", csv), out, "points.csv:6", "zebra")
    csv.write_text("".join(f"im{i},10,20,dog\n" for i in range(N_IMAGES - 1)))
    assert_clean_failure(invoke("prepare-points", dataset, out, "--points", csv), out, "points.csv", "im4")


def test_option_range_errors(dataset, tmp_path):
    out = tmp_path / "s.h5"
    assert_clean_failure(invoke("prepare-scribbles", dataset, out, "--length-ratio", "1.5"), out, "--length-ratio")
    assert_clean_failure(invoke("prepare-blocks", dataset, out, "--keep", "-0.1"), out, "--keep")


def test_help_explains_every_option():
    for cmd, words in (
        ("prepare-scribbles", ("--length-ratio", "--shrink-rate", "--drop-rate", "--drop-unit", "--width", "--skip-bad", "rloss")),
        ("prepare-points", ("--random", "--radius", "distance")),
        ("prepare-blocks", ("--block-size", "--keep", "toolkit")),
        ("prepare-tags", ("--source", "--boxes", "--csv", "0-based")),
    ):
        result = runner.invoke(app, [cmd, "--help"], terminal_width=200)
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        for word in words:
            assert word in text, (cmd, word)
