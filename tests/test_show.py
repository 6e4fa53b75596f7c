"""Stage ``show``: figure size, seed colours in the seeds panel, every showable kind, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from wsss.artifacts import ArtifactWriter
from wsss.errors import UserError
from wsss.palette import VOC_PALETTE, colorize, voc_palette
from wsss.stages import show
from wsss_cli.main import app

runner = CliRunner()


def _write(path, kind, dataset, arrays_of):
    with ArtifactWriter(path, kind, classes=dataset.classes, config={"test": kind}, dataset=dataset.describe()) as w:
        for image_id in dataset.ids[:2]:
            w.write(image_id, arrays_of(image_id))
        w.commit()
    return path


def _seeds(dataset, image_id):
    mask = dataset.load_mask(image_id)
    label = np.full_like(mask, 255)
    label[::5, ::3] = mask[::5, ::3]  # sparse stripes of true labels
    return label


def _quadrants():
    rows, cols = np.mgrid[0:64, 0:64]
    return ((rows >= 32) * 2 + (cols >= 40)).astype(np.int32)


@pytest.fixture(scope="module")
def artifacts(demo_train, tmp_path_factory):
    folder = tmp_path_factory.mktemp("show_inputs")
    ds = demo_train
    k = ds.num_classes

    def scores(image_id):
        onehot = np.eye(k, dtype=np.float16)[ds.load_mask(image_id)]  # H×W×K
        return np.moveaxis(onehot, -1, 0)

    return {
        "seeds": _write(folder / "seeds.h5", "seeds", ds, lambda i: {"label": _seeds(ds, i)}),
        "predictions": _write(folder / "pred.h5", "predictions", ds, lambda i: {"scores": scores(i)}),
        "pseudolabels": _write(folder / "pl.h5", "pseudolabels", ds,
                               lambda i: {"probs": scores(i), "label": ds.load_mask(i)}),
        "superpixels": _write(folder / "sp.h5", "superpixels", ds,
                              lambda i: {"segments": _quadrants()}),
        "cams": _write(folder / "cams.h5", "cams", ds,
                       lambda i: {"cams": scores(i)[1:] * np.float16(3.0), "classes": np.arange(1, k, dtype=np.int16)}),
    }


def test_palette_is_the_voc_palette():
    assert VOC_PALETTE[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert VOC_PALETTE[15].tolist() == [192, 128, 128] and VOC_PALETTE[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in voc_palette(256).tolist()}) == 256
    assert colorize(np.array([[1, 255]], np.uint8)).tolist() == [[[128, 0, 0], [224, 224, 192]]]


def test_figure_size_and_seed_colours(demo_train, artifacts, tmp_path):
    out = show.run(tmp_path / "figs", [artifacts["seeds"], artifacts["predictions"]], limit=1, scale=2, progress=False)
    image_id = demo_train.ids[0]
    path = out / f"{image_id}.png"
    assert path.exists()
    figure = np.asarray(Image.open(path).convert("RGB"))
    n = 4  # image, seeds, predictions, ground truth
    assert figure.shape[1] == n * 64 * 2 + (n + 1) * show.MARGIN
    assert figure.shape[0] > 64 * 2 + show.TITLE_HEIGHT
    # seeds panel: every seed pixel has its class colour, at the recorded panel position
    image = demo_train.load_image(image_id)
    panels = [show.Panel("image", image), show.artifact_panel(show.Artifact(artifacts["seeds"]), image_id, image, 0.5)]
    _, boxes = show.compose(panels, demo_train.classes, 2)
    x0, y0, x1, y1 = boxes[1]
    seeds_panel = figure[y0:y1:2, x0:x1:2]  # undo the ×2 nearest upscaling
    label = _seeds(demo_train, image_id)
    seeded = label != 255
    np.testing.assert_array_equal(seeds_panel[seeded], VOC_PALETTE[label[seeded]])
    np.testing.assert_array_equal(seeds_panel[~seeded], image[~seeded])
    # the predictions panel blends the arg-max colours with alpha = 0.5
    x0, y0, _, _ = boxes[1]
    pred_panel = figure[y0:y1:2, x0 + 64 * 2 + show.MARGIN: x0 + 2 * (64 * 2) + show.MARGIN: 2]
    expected = np.rint(0.5 * image + 0.5 * colorize(demo_train.load_mask(image_id)).astype(np.float32))
    assert np.abs(pred_panel.astype(int) - expected.astype(int)).max() <= 1


def test_every_kind_and_legend(demo_train, artifacts):
    image_id = demo_train.ids[0]
    image = demo_train.load_image(image_id)
    mask = demo_train.load_mask(image_id)
    from wsss.artifacts import Artifact

    panels = {kind: show.artifact_panel(Artifact(path), image_id, image, 0.5) for kind, path in artifacts.items()}
    present = {int(v) for v in np.unique(mask)}
    assert panels["predictions"].labels == present == panels["pseudolabels"].labels
    assert panels["seeds"].labels <= present
    edges = (panels["superpixels"].rgb == show.BOUNDARY_COLOUR).all(-1)
    expected = np.zeros((64, 64), bool)
    expected[31, :] = True
    expected[:, 39] = True
    np.testing.assert_array_equal(edges, expected)
    assert panels["superpixels"].title.endswith("(4)")
    # cams are 3 on objects: divided by the maximum → 1 (red) there, 0 (dark blue) elsewhere
    low, high = show.heat_colours(np.array([0.0, 1.0]))
    assert low[2] > max(low[:2]) and high[0] > max(high[1:])
    heat_rgb = show.heat_colours((mask > 0).astype(np.float32)).astype(np.float32)
    expected = np.rint(0.5 * image.astype(np.float32) + 0.5 * heat_rgb)
    assert np.abs(panels["cams"].rgb.astype(int) - expected.astype(int)).max() <= 1
    figure, boxes = show.compose(list(panels.values()), demo_train.classes, 1)
    assert len(boxes) == 5 and figure.size[0] == 5 * 64 + 6 * show.MARGIN
    legend = np.asarray(figure)[boxes[0][3]:]  # below the panels: one swatch per class present
    for lab in present - {0}:
        assert (legend == VOC_PALETTE[lab]).all(-1).any()


def test_errors(demo_train, artifacts, tmp_path):
    with pytest.raises(UserError, match="--data"):
        show.run(tmp_path / "o", [], progress=False)
    with pytest.raises(UserError, match="nope"):
        show.run(tmp_path / "o", [artifacts["seeds"]], ids=["nope"], progress=False)
    with pytest.raises(UserError, match="--alpha"):
        show.run(tmp_path / "o", [artifacts["seeds"]], alpha=2.0, progress=False)
    with pytest.raises(UserError, match="pred.h5"):  # the artifact lacks the third image
        show.run(tmp_path / "o", [artifacts["predictions"]], ids=[demo_train.ids[2]], progress=False)
    tags = tmp_path / "tags.h5"
    with ArtifactWriter(tags, "tags", classes=demo_train.classes, config={}) as w:
        w.write(demo_train.ids[0], {"tags": np.array([1], np.int16)})
        w.commit()
    with pytest.raises(UserError, match="tags.h5"):
        show.run(tmp_path / "o", [tags], data=None, progress=False)


def test_cli_show(demo_root, demo_train, artifacts, tmp_path):
    out = tmp_path / "figs"
    result = runner.invoke(app, ["show", str(artifacts["superpixels"]), "--seeds", str(artifacts["seeds"]),
                                 "--cams", str(artifacts["cams"]), "--data", str(demo_root), "--ids",
                                 f"{demo_train.ids[1]},{demo_train.ids[0]}", "-o", str(out), "--alpha", "0.3"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.png" for i in demo_train.ids[:2]]
    width = Image.open(out / f"{demo_train.ids[0]}.png").size[0]
    assert width == 5 * 64 * show.auto_scale(64, 64) + 6 * show.MARGIN
    wrong = runner.invoke(app, ["show", "--pred", str(artifacts["seeds"]), "-o", str(out)])
    assert wrong.exit_code == 2 and "seeds.h5" in wrong.output and "expected 'predictions'" in wrong.output
