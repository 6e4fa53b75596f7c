"""Clicks (wsss.annotations.points)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsss.annotations import find_objects, image_rng, points_from_mask, read_points_file, render_points
from wsss.annotations.points import check_points
from wsss.errors import UserError

CLASSES = ["background", "cat", "dog"]


def two_objects():
    mask = np.zeros((40, 50), np.uint8)
    mask[5:16, 5:26] = 1  # 11×21 rectangle: peak at its centre (10, 15)
    mask[25:36, 30:45] = 2
    mask[0, :] = 255
    return mask


def test_distance_peak_is_the_centre_of_a_rectangle():
    mask = two_objects()
    points, objects = points_from_mask(mask, 3, exclude=(0,))
    assert [(p.row, p.col, p.cls) for p in points] == [(10, 15, 1), (30, 37, 2)]
    label = render_points(points, mask.shape, 0, objects=objects)
    assert (label != 255).sum() == 2


def test_one_click_per_object_inside_and_radius_clipped():
    mask = two_objects()
    points, objects = points_from_mask(mask, 3)  # background included
    assert len(points) == len(objects) == 3
    label = render_points(points, mask.shape, 4, objects=objects)
    seeded = label != 255
    assert np.all(label[seeded] == mask[seeded])
    counts = np.bincount(objects.labels[seeded], minlength=4)[1:]
    assert np.all(counts > 0)
    assert counts[1] == 49  # dog-object disk of radius 4 fits: 49 pixels with dr²+dc² ≤ 16


def test_random_points_inside_deterministic_and_seed_dependent():
    mask = two_objects()
    objects = find_objects(mask, 3)
    a, _ = points_from_mask(mask, 3, rng=image_rng(0, "i", "points"))
    b, _ = points_from_mask(mask, 3, rng=image_rng(0, "i", "points"))
    assert [(p.row, p.col) for p in a] == [(p.row, p.col) for p in b]
    for p in a:
        assert objects.labels[p.row, p.col] == p.obj + 1
    seen = {tuple((p.row, p.col) for p in points_from_mask(mask, 3, rng=image_rng(s, "i", "points"))[0]) for s in range(5)}
    assert len(seen) > 1


def test_csv_and_json_import(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("# clicks\nimage_id,x,y,class,radius\na,3,4,cat,2\na,10,1,2,\nb,0,0,Background,0\n")
    points, problems = read_points_file(csv, CLASSES)
    assert problems == {}
    assert [(p.row, p.col, p.cls, p.radius) for p in points["a"]] == [(4, 3, 1, 2), (1, 10, 2, None)]
    label = render_points(points["a"], (12, 12), 0)
    assert label[4, 3] == 1 and label[4, 5] == 1 and label[4, 6] == 255 and label[1, 10] == 2
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"a": [{"x": 3, "y": 4, "class": "cat"}]}))
    assert read_points_file(js, CLASSES)[0]["a"][0].row == 4
    js.write_text(json.dumps([{"image_id": "a", "x": 3, "y": 4, "class": "cat"}]))
    assert read_points_file(js, CLASSES)[0]["a"][0].col == 3
    headerless = tmp_path / "h.csv"
    headerless.write_text("a,3,4,cat\n")
    assert read_points_file(headerless, CLASSES)[0]["a"][0].cls == 1


def test_bad_points(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("a,3,4,zebra\nb,30,4,cat\n")
    points, problems = read_points_file(csv, CLASSES)
    assert "zebra" in problems["a"] and f"{csv}:1" in problems["a"]
    with pytest.raises(UserError, match="outside"):
        check_points(points["b"], (10, 10), csv)
    js = tmp_path / "p.json"
    js.write_text("{not json")
    with pytest.raises(UserError, match="malformed JSON"):
        read_points_file(js, CLASSES)
