"""Tags and boxes (wsss.annotations.tags)."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.annotations import boxes_from_mask, read_tags_csv, read_voc_xml, tags_from_mask
from wsss.errors import UserError

CLASSES = ["background", "aeroplane", "bicycle", "diningtable"]


def voc_xml(path, objects):
    body = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, (a, b, c, d) in objects
    )
    path.write_text(f"<annotation><filename>x.jpg</filename><size><width>40</width><height>30</height></size>{body}</annotation>")
    return path


def test_voc_xml_boxes_are_converted_to_zero_based(tmp_path):
    path = voc_xml(tmp_path / "a.xml", [("bicycle", (1, 2, 40, 30)), ("aeroplane", (5, 6, 7, 8)), ("bicycle", (3, 3, 4, 4))])
    tags, boxes = read_voc_xml(path, CLASSES, (30, 40))
    assert tags.tolist() == [1, 2] and tags.dtype == np.int16
    assert boxes.dtype == np.int32
    assert boxes.tolist() == [[2, 0, 1, 39, 29], [1, 4, 5, 6, 7], [2, 2, 2, 3, 3]]


@pytest.mark.parametrize(
    "objects, reason",
    [([("zebra", (1, 1, 2, 2))], "unknown class"), ([("bicycle", (1, 1, 41, 2))], "outside"),
     ([("bicycle", (5, 1, 2, 2))], "inverted"), ([], "no <object>")],
)
def test_bad_voc_xml(tmp_path, objects, reason):
    path = voc_xml(tmp_path / "b.xml", objects)
    with pytest.raises(UserError) as info:
        read_voc_xml(path, CLASSES, (30, 40))
    assert str(path) in str(info.value) and reason in str(info.value)


def test_tags_and_boxes_from_mask_against_brute_force():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9] = 1
    mask[10:18, 20:25] = 1
    mask[12:14, 2:4] = 3
    mask[0, 0] = 255
    assert tags_from_mask(mask, 4, background=0).tolist() == [1, 3]
    assert tags_from_mask(mask, 4, background=None).tolist() == [0, 1, 3]
    boxes = boxes_from_mask(mask, 4, background=0)
    expected = []
    for c, rows, cols in ((1, slice(2, 5), slice(3, 9)), (1, slice(10, 18), slice(20, 25)), (3, slice(12, 14), slice(2, 4))):
        component = np.zeros(mask.shape, bool)
        component[rows, cols] = True
        ys, xs = np.nonzero(component & (mask == c))
        expected.append([c, xs.min(), ys.min(), xs.max(), ys.max()])
    assert boxes.tolist() == expected
    for c, x0, y0, x1, y1 in boxes.tolist():  # each box is tight around pixels of its class
        sub = mask[y0 : y1 + 1, x0 : x1 + 1] == c
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()


def test_tags_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("image_id,classes\na,aeroplane,3\nb,zebra\n")
    tags, problems = read_tags_csv(path, CLASSES)
    assert tags["a"].tolist() == [1, 3]
    assert "zebra" in problems["b"] and f"{path}:3" in problems["b"]
